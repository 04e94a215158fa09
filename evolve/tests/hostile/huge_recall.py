"""Hostile: returns a 100 MB recall."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class HugeRecall(MemoryProgram):
    def recall(self, query):
        return Recall(items=[RecallItem(content="y" * (100 << 20))])
