"""Hostile: leaves a busy thread running after observe returns."""
import threading
import time

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


def _spin():
    while True:
        time.sleep(0.01)


class ThreadLeak(MemoryProgram):
    def observe(self, event):
        threading.Thread(target=_spin, daemon=True).start()

    def recall(self, query):
        return Recall()
