"""Episodic memory: time-stamped events, retrieved by meaning, exact words and recency.

Every observed event is kept verbatim with its time and session. Consecutive
events are grouped into chunks of ``chunk_turns`` (one by default) and kept
in a :class:`~agentmem.store.Store` (SQLite rows, a Chroma mirror, a BM25
index); a word-for-word repeat of a stored chunk is merged into it at write
time, its evidence ids kept (:meth:`Consolidate.absorb`).

Recall is the core retrieval pipeline: hybrid dense + BM25 fused by
weighted reciprocal rank, blended with recency, near-duplicates dropped,
widened with neighbouring chunks if asked, then packed by score into the
token budget and presented oldest first, saying how many matches did not
fit. What is episodic's own is only what a chunk is.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from agentmem.encode import event_text, event_when, group_turns
from agentmem.managers import Consolidate
from agentmem.memory import MemoryProgram
from agentmem.packer import Packer, candidate
from agentmem.retrievers import (
    HybridParams,
    HybridRetriever,
    NearDuplicateFilter,
    NearDuplicateParams,
    NeighbourParams,
    NeighbourWidening,
    RecencyBlend,
    RecencyParams,
    Retrieval,
)
from agentmem.store import StoredItem
from agentmem.types import Episode, Event, Query, Recall

__all__ = ["EpisodicMemory", "EpisodicParams"]

_FLUSH_EVENTS = 64  # events embedded together (never splitting a chunk)


class EpisodicParams(HybridParams, RecencyParams, NeighbourParams, NearDuplicateParams):
    """Knobs of episodic memory: its retrieval modules' plus its own; the bounds are the space evolution searches."""

    top_k: int = Field(8, ge=1, le=50, description="how many chunks to recall")
    chunk_turns: int = Field(1, ge=1, le=8, description="consecutive events stored together as one chunk")


class EpisodicMemory(MemoryProgram[EpisodicParams]):
    """Time-stamped events in a vector store, recalled by similarity and recency."""

    name: ClassVar[str] = "episodic"
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Excerpts from earlier conversations, oldest first; each line starts with its date."
            "\n{{ context }}"
            "{% if omitted is defined and omitted %}\n({{ omitted }} more matching excerpt{{ 's' if omitted != "
            "1 }} did not fit.){% endif %}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        p = self.params
        self.buffer = self.open_buffer(sync_every=_FLUSH_EVENTS)
        self.store = self.open_store("episodes")
        self.retrieval = Retrieval(
            HybridRetriever.from_params(p),
            RecencyBlend.from_params(p),
            NearDuplicateFilter.from_params(p),
            NeighbourWidening.from_params(p),
        )
        self.consolidate = Consolidate()
        self.packer = Packer(order="position")
        self._session: str | None = None

    # -- encode / store ---------------------------------------------------------
    def observe(self, event: Event) -> None:
        if self._session is not None and event.session_id != self._session:
            self._flush()
        self._session = event.session_id
        waiting = self.buffer.add(event)
        if waiting >= _FLUSH_EVENTS and waiting % self.params.chunk_turns == 0:
            self._flush()

    def reflect(self, episode: Episode) -> None:
        self._flush()

    def import_items(self, events: list[Event]) -> int:
        """Store events without any LLM call (bulk loading for benchmarks and migrations); returns the chunk count."""
        self._flush()
        return len(self._chunk(events))

    def _flush(self) -> None:
        """Group the waiting events into chunks and store them (embedded in one batch)."""
        if self.buffer:
            self._chunk(self.buffer.peek())
            self.buffer.take()  # once stored: a failure above keeps the events waiting

    def _chunk(self, events: list[Event]) -> list[StoredItem]:
        chunks = []
        for group in group_turns(events, self.params.chunk_turns):
            first = group[0]
            when = event_when(first)
            text = " / ".join(event_text(e) for e in group)
            chunks.append(
                StoredItem(
                    text=text,
                    dense_text=f"[{when}] {text}",
                    lexical_text=f"[{when}] {text}",
                    key=" ".join(text.lower().split()),
                    group=first.session_id or "",
                    ts=first.timestamp.timestamp(),
                    event_ids=[e.id for e in group],
                    data={"when": when},
                )
            )
        return self.consolidate.absorb(self.store, chunks)

    # -- retrieve -----------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        self._flush()
        if query.budget_tokens == 0:
            return Recall(plugin=self.name)
        hits, ctx = self.retrieval.run(self.store, query.text, self.params.top_k)
        packed = self.packer.pack(
            (
                candidate(c, f"[{c.data['when']}] {c.text}", hit.score, self.name, session=c.group)
                for hit, c in ctx.found(hits)
            ),
            query.budget_tokens,
        )
        return self.recalled(packed)
