"""Hostile: reads address 0 through ctypes."""
import ctypes

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Segfault(MemoryProgram):
    def observe(self, event):
        ctypes.string_at(0)

    def recall(self, query):
        return Recall()
