"""Hostile: writes straight to file descriptors 1 and 2 (past the capped stream), without end."""
import os

from agentmem.memory import MemoryProgram
from agentmem.types import Recall

BLOCK = b"spam " * 200_000  # 1 MB


class RawOutput(MemoryProgram):
    def observe(self, event):
        while True:
            os.write(1, BLOCK)
            os.write(2, BLOCK)

    def recall(self, query):
        return Recall()
