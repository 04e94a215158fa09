"""Hostile: os._exit() in observe (no exception, the process just ends)."""
import os

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class HardExiter(MemoryProgram):
    def observe(self, event):
        os._exit(7)

    def recall(self, query):
        return Recall()
