"""Hostile: sleeps forever in recall."""
import time

from agentmem.memory import MemoryProgram


class Sleeper(MemoryProgram):
    def recall(self, query):
        while True:
            time.sleep(3600)
