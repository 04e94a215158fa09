"""Hostile: prints 1 GB (in 1 MB pieces) (the cap keeps the log small)."""

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Printer(MemoryProgram):
    def observe(self, event):
        line = "x" * (1 << 20)
        for _ in range(1024):
            print(line)

    def recall(self, query):
        return Recall()
