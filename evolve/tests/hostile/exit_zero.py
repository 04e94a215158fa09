"""Hostile: exits with status 0 in the middle of an operation (as if all were well)."""
import sys

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class ExitZero(MemoryProgram):
    def observe(self, event):
        sys.exit(0)

    def recall(self, query):
        return Recall()
