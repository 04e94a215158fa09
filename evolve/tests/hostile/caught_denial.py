"""Hostile: tries something forbidden, catches the denial and behaves as if nothing happened."""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Quiet(MemoryProgram):
    def recall(self, query):
        try:
            import agentmem_environments  # noqa: F401
        except BaseException:  # PermissionError, ImportError: swallow it all
            pass
        try:
            open("/etc/shadow").read()
        except BaseException:
            pass
        return Recall(items=[RecallItem(content="all good here")])
