"""Episodic memory: time-stamped events, embedded, retrieved by meaning and recency.

Every observed event is kept verbatim with its time and session. Consecutive
events are grouped into chunks of ``chunk_turns`` (one by default), embedded
with the toolkit's sentence-embedding model and stored in a ChromaDB
collection, with the raw events in SQLite. Recall embeds the query, takes the
``top_k`` nearest chunks, optionally re-weights them by recency and widens
them with neighbouring turns, then packs them, oldest first, into the token
budget and reports how many matches did not fit.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentmem.memory import MemoryProgram
from agentmem.types import Episode, Event, Query, Recall, RecallItem

__all__ = ["EpisodicMemory", "EpisodicParams", "StoredChunk"]


class EpisodicParams(BaseModel):
    """Knobs of episodic memory; their bounds are the space evolution searches."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(8, ge=1, le=50, description="how many chunks to recall")
    chunk_turns: int = Field(1, ge=1, le=8, description="consecutive events stored together as one chunk")
    neighbors: int = Field(0, ge=0, le=3, description="adjacent chunks added around each hit for context")
    recency_weight: float = Field(0.0, ge=0.0, le=1.0, description="weight of recency against similarity")


class StoredChunk(BaseModel):
    """The schema of one stored item: a run of consecutive events of one session."""

    id: str
    seq: int
    session_id: str
    when: str
    text: str
    event_ids: list[str]
    dia_ids: list[str]


class EpisodicMemory(MemoryProgram):
    """Time-stamped events in a vector store, recalled by similarity and recency."""

    name: ClassVar[str] = "episodic"
    Params: ClassVar[type[BaseModel]] = EpisodicParams
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Excerpts from earlier conversations, oldest first; each line starts with its date."
            "\n{{ context }}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self._pending: list[Event] = []
        db = self.toolkit.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS chunks (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, session_id TEXT,"
            " ts REAL, body TEXT)"
        )
        db.commit()
        self._collection = self.toolkit.collection("episodes")

    # -- encode / store ---------------------------------------------------------
    def observe(self, event: Event) -> None:
        if self._pending and self._pending[-1].session_id != event.session_id:
            self._flush()
        self._pending.append(event)
        # embed in batches, never splitting a chunk across two batches
        if len(self._pending) >= 64 and len(self._pending) % self.params.chunk_turns == 0:
            self._flush()

    def reflect(self, episode: Episode) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()
        self.toolkit.close()

    def _flush(self) -> None:
        """Group pending events into chunks, embed them in one batch, store them."""
        if not self._pending:
            return
        events, self._pending = self._pending, []
        size = self.params.chunk_turns
        groups: list[list[Event]] = []
        for event in events:
            if groups and len(groups[-1]) < size and groups[-1][-1].session_id == event.session_id:
                groups[-1].append(event)
            else:
                groups.append([event])
        db = self.toolkit.db
        next_seq = (db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM chunks").fetchone()[0])
        chunks: list[StoredChunk] = []
        for offset, group in enumerate(groups):
            first = group[0]
            when = str(first.metadata.get("date_time") or first.timestamp.strftime("%Y-%m-%d %H:%M"))
            lines = [f"{e.speaker}: {e.content}" if e.speaker else e.content for e in group]
            chunks.append(
                StoredChunk(
                    id=first.id,
                    seq=next_seq + offset,
                    session_id=first.session_id or "",
                    when=when,
                    text=f"[{when}] " + " / ".join(lines),
                    event_ids=[e.id for e in group],
                    dia_ids=[str(e.metadata["dia_id"]) for e in group if "dia_id" in e.metadata],
                )
            )
        db.executemany(
            "INSERT OR REPLACE INTO chunks (seq, id, session_id, ts, body) VALUES (?, ?, ?, ?, ?)",
            [(c.seq, c.id, c.session_id, _ts(g[0].timestamp), c.model_dump_json()) for c, g in zip(chunks, groups)],
        )
        db.commit()
        self._collection.upsert(
            ids=[c.id for c in chunks],
            documents=[c.text for c in chunks],
            metadatas=[{"seq": c.seq, "ts": _ts(g[0].timestamp), "session": c.session_id} for c, g in zip(chunks, groups)],
        )

    # -- retrieve -----------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        self._flush()
        total = self._collection.count()
        if total == 0 or query.budget_tokens == 0:
            return Recall(plugin=self.name)
        k = min(self.params.top_k, total)
        # over-fetch when recency may reorder the candidates
        fetch = min(total, k * 3 if self.params.recency_weight > 0 else k)
        hits = self._collection.query(query_texts=[query.text], n_results=fetch, include=["metadatas", "distances"])
        seqs = [int(m["seq"]) for m in hits["metadatas"][0]]
        sims = [1.0 - float(d) for d in hits["distances"][0]]
        scored = dict(zip(seqs, sims))
        if self.params.recency_weight > 0:
            newest = self.toolkit.db.execute("SELECT MAX(seq) FROM chunks").fetchone()[0] or 1
            w = self.params.recency_weight
            scored = {s: (1 - w) * sim + w * (s / max(newest, 1)) for s, sim in scored.items()}
        ranked = sorted(scored, key=lambda s: -scored[s])[:k]
        chosen: dict[int, float] = {}
        for rank, seq in enumerate(ranked):
            chosen.setdefault(seq, scored[seq])
            for delta in range(1, self.params.neighbors + 1):
                for near in (seq - delta, seq + delta):
                    chosen.setdefault(near, scored[seq] - 0.01 * delta)
        rows = self._rows(list(chosen))
        # pack by score, present chronologically
        budget = query.budget_tokens
        used = 0
        kept: list[tuple[StoredChunk, float, int]] = []
        omitted = 0
        for seq in sorted(rows, key=lambda s: -chosen[s]):
            chunk = rows[seq]
            cost = self.toolkit.count_tokens(chunk.text)
            if used + cost > budget:
                omitted += 1
                continue
            used += cost
            kept.append((chunk, chosen[seq], cost))
        kept.sort(key=lambda item: item[0].seq)
        items = [
            RecallItem(
                content=chunk.text,
                score=round(score, 4),
                source=self.name,
                tokens=cost,
                event_ids=chunk.event_ids,
                metadata={"dia_id": chunk.dia_ids, "session": chunk.session_id},
            )
            for chunk, score, cost in kept
        ]
        return Recall(items=items, omitted=omitted, plugin=self.name,
                      instructions=self.instructions(context="\n".join(i.content for i in items)))

    def _rows(self, seqs: list[int]) -> dict[int, StoredChunk]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        rows = self.toolkit.db.execute(f"SELECT seq, body FROM chunks WHERE seq IN ({marks})", seqs).fetchall()
        return {int(r[0]): StoredChunk.model_validate(json.loads(r[1])) for r in rows}


def _ts(when: datetime) -> float:
    return when.timestamp()
