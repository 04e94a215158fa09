"""Hostile: starts a thread the policy never sees, which keeps running between operations.

The worker replaces ``_thread.start_new_thread`` after its trusted imports, but ``_imp.create_builtin``
(no audit event) makes a fresh copy of the built-in ``_thread`` module with the original function.
A raw thread is not in ``threading.enumerate()``, so the worker's check for leftover threads after an
op does not see it either: it runs on between ops (here it counts; it could race the hook's path
checks or read the controller's messages).
"""
import _imp
import importlib.machinery
import time

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem

TICKS = [0]


def _spin():
    while True:
        TICKS[0] += 1
        time.sleep(0.01)


class RawThread(MemoryProgram):
    def observe(self, event):
        fresh = _imp.create_builtin(importlib.machinery.ModuleSpec("_thread", importlib.machinery.BuiltinImporter))
        fresh.start_new_thread(_spin, ())

    def recall(self, query):
        before = TICKS[0]
        time.sleep(0.2)
        return Recall(items=[RecallItem(content=f"thread alive: {TICKS[0] > before}, ticks {TICKS[0]}")])
