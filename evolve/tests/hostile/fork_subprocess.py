"""Hostile: new processes through subprocess (and multiprocessing's spawn path if that is stopped)."""
import subprocess

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Spawner(MemoryProgram):
    def observe(self, event):
        for _ in range(100):
            subprocess.Popen(["sh", "-c", "sleep 60 &"])

    def recall(self, query):
        return Recall()
