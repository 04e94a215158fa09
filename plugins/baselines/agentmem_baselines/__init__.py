"""Baseline memories: the yardsticks every real memory must beat."""

from __future__ import annotations

from typing import ClassVar

from agentmem.memory import MemoryProgram
from agentmem.types import Query, Recall

__all__ = ["NoMemory"]


class NoMemory(MemoryProgram):
    """No memory at all: observes nothing, recalls nothing."""

    name: ClassVar[str] = "none"
    templates: ClassVar[dict[str, str]] = {}

    def recall(self, query: Query) -> Recall:
        return Recall(plugin=self.name)
