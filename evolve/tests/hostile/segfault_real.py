"""Hostile: really crashes the interpreter (SIGSEGV), without ctypes."""
import faulthandler

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


class Crash(MemoryProgram):
    def recall(self, query):
        faulthandler.disable()
        faulthandler._sigsegv()
        return Recall()
