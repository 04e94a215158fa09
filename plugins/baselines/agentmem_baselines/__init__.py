"""Baseline memories: the yardsticks every real memory must beat.

* ``none`` - no memory at all;
* ``full-context`` - every event, truncated to the budget keeping the newest;
* ``rag`` - vanilla retrieval: overlapping token windows, embedded, top-k.
"""

from __future__ import annotations

from typing import ClassVar

from agentmem.memory import MemoryProgram
from agentmem.types import Query, Recall
from agentmem_baselines.full_context import FullContextMemory, FullContextParams
from agentmem_baselines.rag import Chunk, RAGMemory, RAGParams

__all__ = ["Chunk", "FullContextMemory", "FullContextParams", "NoMemory", "RAGMemory", "RAGParams"]


class NoMemory(MemoryProgram):
    """No memory at all: observes nothing, recalls nothing."""

    name: ClassVar[str] = "none"
    templates: ClassVar[dict[str, str]] = {}

    def recall(self, query: Query) -> Recall:
        return Recall(plugin=self.name)
