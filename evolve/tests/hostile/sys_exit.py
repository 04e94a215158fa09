"""Hostile: sys.exit() in observe."""
import sys

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Exiter(MemoryProgram):
    def observe(self, event):
        sys.exit(3)

    def recall(self, query):
        return Recall()
