"""Hostile: allocates 8 GiB at once."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Hog(MemoryProgram):
    def observe(self, event):
        self.block = bytearray(8 << 30)

    def recall(self, query):
        return Recall()
