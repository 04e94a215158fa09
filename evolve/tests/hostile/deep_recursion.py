"""Hostile: recurses until the C stack gives out."""
import sys

from agentmem.memory import MemoryProgram


def down(n):
    return down(n + 1) + 1


class Deep(MemoryProgram):
    def observe(self, event):
        sys.setrecursionlimit(10**8)
        down(0)

    def recall(self, query):
        raise AssertionError("unreachable")
