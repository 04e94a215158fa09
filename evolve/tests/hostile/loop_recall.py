"""Hostile: recall never returns."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class LoopRecall(MemoryProgram):
    name = "loop-recall"

    def recall(self, query):
        while True:
            pass
        return Recall()
