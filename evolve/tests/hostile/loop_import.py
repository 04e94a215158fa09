"""Hostile: importing the module never finishes."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall

while True:
    pass


class LoopImport(MemoryProgram):
    def recall(self, query):
        return Recall()
