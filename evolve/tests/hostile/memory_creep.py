"""Hostile: grows resident memory 32 MB at a time (each page touched), under the address-space limit."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Creep(MemoryProgram):
    def observe(self, event):
        self.blocks = []
        while True:
            self.blocks.append(b"x" * (32 << 20))

    def recall(self, query):
        return Recall()
