"""Episodic memory: time-stamped events, retrieved by meaning, exact words and recency.

Every observed event is kept verbatim with its time and session. Consecutive
events are grouped into chunks of ``chunk_turns`` (one by default), embedded
with the toolkit's sentence-embedding model into a ChromaDB collection, with
the chunks themselves in SQLite (the source of truth) and a BM25 index over
their words rebuilt from SQLite on first use.

Recall is hybrid: the dense ranking finds paraphrases, the BM25 ranking finds
exact names, numbers and rare words that embeddings blur; the two rankings
are fused by weighted reciprocal rank, then optionally blended with recency
(an exponential decay of the chunk's age, in days, against the newest
memory). Near-duplicate hits are dropped (a repeated "haha, same here" should
not fill the budget twice); exact repeats are already merged at write time,
their evidence ids kept. Hits are widened with neighbouring turns if asked,
packed by score into the token budget, presented oldest first, and the
recall says how many matches did not fit.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentmem.memory import MemoryProgram
from agentmem.retrieval import BM25Index, jaccard, reciprocal_rank_fusion
from agentmem.types import Episode, Event, Query, Recall, RecallItem

__all__ = ["EpisodicMemory", "EpisodicParams", "StoredChunk"]


class EpisodicParams(BaseModel):
    """Knobs of episodic memory; their bounds are the space evolution searches."""

    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(8, ge=1, le=50, description="how many chunks to recall")
    chunk_turns: int = Field(1, ge=1, le=8, description="consecutive events stored together as one chunk")
    neighbors: int = Field(0, ge=0, le=3, description="adjacent chunks added around each hit for context")
    recency_weight: float = Field(0.0, ge=0.0, le=1.0, description="weight of recency against relevance")
    recency_half_life_days: float = Field(30.0, ge=0.5, le=3650.0, description="age at which recency counts half")
    bm25_weight: float = Field(1.0, ge=0.0, le=3.0, description="weight of the BM25 ranking against the dense one (1.0)")
    dense_weight: float = Field(1.0, ge=0.0, le=3.0, description="weight of the dense (embedding) ranking")
    dedup_threshold: float = Field(0.9, ge=0.5, le=1.0, description="word overlap above which two hits count as one (1.0: off)")


class StoredChunk(BaseModel):
    """The schema of one stored item: a run of consecutive events of one session.

    ``repeats`` lists the ``(when, dia_ids)`` of later, word-for-word
    repetitions merged into this chunk at write time.
    """

    id: str
    seq: int
    session_id: str
    when: str
    text: str
    event_ids: list[str]
    dia_ids: list[str]
    repeats: list[str] = Field(default_factory=list)


def _normal(text: str) -> str:
    """The chunk's words without its date prefix, for exact-repeat detection."""
    return " ".join(re.sub(r"^\[[^\]]*\]\s*", "", text).lower().split())


class EpisodicMemory(MemoryProgram):
    """Time-stamped events in a vector store, recalled by similarity and recency."""

    name: ClassVar[str] = "episodic"
    Params: ClassVar[type[BaseModel]] = EpisodicParams
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Excerpts from earlier conversations, oldest first; each line starts with its date."
            "\n{{ context }}"
            "{% if omitted is defined and omitted %}\n({{ omitted }} more matching excerpt{{ 's' if omitted != 1 }} did not fit.){% endif %}"
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
        db.execute("CREATE TABLE IF NOT EXISTS chunk_keys (norm TEXT PRIMARY KEY, seq INTEGER)")
        db.commit()
        self._collection = self.toolkit.collection("episodes")
        self._bm25: BM25Index | None = None  # built from SQLite on first recall
        self._sync_collection()

    def _sync_collection(self) -> None:
        """Give Chroma every chunk SQLite holds (after a crash between the two writes, or a store migrated without its vectors)."""
        stored = self._count()
        if stored == 0 or self._collection.count() >= stored:
            return
        present = set(self._collection.get(include=[])["ids"])
        missing = []
        for seq, ts, body in self.toolkit.db.execute("SELECT seq, ts, body FROM chunks ORDER BY seq"):
            chunk = StoredChunk.model_validate_json(body)
            if chunk.id not in present:
                missing.append((chunk, float(ts or 0.0)))
        for start in range(0, len(missing), 4096):  # within Chroma's largest batch
            part = missing[start : start + 4096]
            self._collection.upsert(
                ids=[c.id for c, _ in part],
                documents=[c.text for c, _ in part],
                metadatas=[{"seq": c.seq, "ts": ts, "session": c.session_id} for c, ts in part],
            )

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
        next_seq = db.execute("SELECT COALESCE(MAX(seq), -1) + 1 FROM chunks").fetchone()[0]
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
        self._store(chunks, [_ts(g[0].timestamp) for g in groups])

    def _store(self, chunks: list[StoredChunk], stamps: list[float]) -> None:
        """Write chunks to SQLite, Chroma and BM25; a word-for-word repeat of a stored chunk is merged into it."""
        db = self.toolkit.db
        fresh: list[tuple[StoredChunk, float]] = []
        merged: dict[int, StoredChunk] = {}
        seen: dict[str, StoredChunk] = {}
        for chunk, ts in zip(chunks, stamps):
            norm = _normal(chunk.text)
            prior = seen.get(norm)
            if prior is None:
                row = db.execute("SELECT seq FROM chunk_keys WHERE norm = ?", (norm,)).fetchone() if norm else None
                if row is not None:
                    prior = merged.get(int(row[0])) or self._rows([int(row[0])]).get(int(row[0]))
            if prior is not None and norm:
                prior.event_ids.extend(chunk.event_ids)
                prior.dia_ids.extend(chunk.dia_ids)
                prior.repeats.append(chunk.when)
                if prior.seq not in {c.seq for c, _ in fresh}:
                    merged[prior.seq] = prior
                continue
            seen[norm] = chunk
            fresh.append((chunk, ts))
        if fresh:
            db.executemany(
                "INSERT OR REPLACE INTO chunks (seq, id, session_id, ts, body) VALUES (?, ?, ?, ?, ?)",
                [(c.seq, c.id, c.session_id, ts, c.model_dump_json()) for c, ts in fresh],
            )
            db.executemany(
                "INSERT OR IGNORE INTO chunk_keys (norm, seq) VALUES (?, ?)",
                [(_normal(c.text), c.seq) for c, _ in fresh if _normal(c.text)],
            )
        if merged:
            db.executemany("UPDATE chunks SET body = ? WHERE seq = ?", [(c.model_dump_json(), seq) for seq, c in merged.items()])
        db.commit()
        if fresh:
            for start in range(0, len(fresh), 4096):  # within Chroma's largest batch
                part = fresh[start : start + 4096]
                self._collection.upsert(
                    ids=[c.id for c, _ in part],
                    documents=[c.text for c, _ in part],
                    metadatas=[{"seq": c.seq, "ts": ts, "session": c.session_id} for c, ts in part],
                )
            if self._bm25 is not None:
                for c, _ in fresh:
                    self._bm25.add(str(c.seq), c.text)

    def import_items(self, events: list[Event]) -> int:
        """Store events without any LLM call (bulk loading for benchmarks and migrations); returns the chunk count."""
        before = self._count()
        self._flush()
        self._pending = list(events)
        self._flush()
        return self._count() - before

    def _count(self) -> int:
        return int(self.toolkit.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])

    def _index(self) -> BM25Index:
        if self._bm25 is None:
            index = BM25Index()
            for seq, body in self.toolkit.db.execute("SELECT seq, body FROM chunks"):
                index.add(str(seq), json.loads(body)["text"])
            self._bm25 = index
        return self._bm25

    # -- retrieve -----------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        self._flush()
        total = self._count()
        if total == 0 or query.budget_tokens == 0:
            return Recall(plugin=self.name)
        p = self.params
        k = min(p.top_k, total)
        # over-fetch: fusion, recency and de-duplication may reorder or drop candidates
        fetch = min(total, max(k * 3, 10))
        rankings: list[list[str]] = []
        weights: list[float] = []
        if p.dense_weight > 0:
            hits = self._collection.query(query_texts=[query.text], n_results=fetch, include=["metadatas"])
            rankings.append([str(int(m["seq"])) for m in hits["metadatas"][0]])
            weights.append(p.dense_weight)
        if p.bm25_weight > 0:
            rankings.append([doc for doc, _ in self._index().search(query.text, fetch)])
            weights.append(p.bm25_weight)
        fused = reciprocal_rank_fusion(rankings, weights=weights) if rankings else {}
        if not fused:
            return Recall(plugin=self.name)
        top_fused = max(fused.values())
        scored = {int(doc): value / top_fused for doc, value in fused.items()}
        if p.recency_weight > 0:
            stamps = self._stamps(list(scored))
            newest = self.toolkit.db.execute("SELECT MAX(ts) FROM chunks").fetchone()[0] or 0.0
            half_life = p.recency_half_life_days * 86400.0
            w = p.recency_weight
            scored = {
                s: (1 - w) * rel + w * math.exp(-math.log(2) * max(0.0, newest - stamps.get(s, newest)) / half_life)
                for s, rel in scored.items()
            }
        order = sorted(scored, key=lambda s: (-scored[s], s))
        rows = self._rows(order)
        ranked: list[int] = []
        dropped = 0
        for seq in order:
            if len(ranked) >= k:
                break
            chunk = rows.get(seq)
            if chunk is None:
                continue
            if p.dedup_threshold < 1.0 and any(jaccard(_normal(chunk.text), _normal(rows[r].text)) >= p.dedup_threshold for r in ranked):
                dropped += 1
                continue
            ranked.append(seq)
        chosen: dict[int, float] = {}
        for seq in ranked:
            chosen.setdefault(seq, scored[seq])
            for delta in range(1, p.neighbors + 1):
                for near in (seq - delta, seq + delta):
                    chosen.setdefault(near, scored[seq] - 0.01 * delta)
        rows.update(self._rows([s for s in chosen if s not in rows]))
        # pack by score, present chronologically
        budget = query.budget_tokens
        used = 0
        kept: list[tuple[StoredChunk, float, int]] = []
        omitted = 0
        for seq in sorted((s for s in chosen if s in rows), key=lambda s: -chosen[s]):
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
        return Recall(
            items=items, omitted=omitted, plugin=self.name,
            instructions=self.instructions(context="\n".join(i.content for i in items), omitted=omitted),
        )

    def _stamps(self, seqs: list[int]) -> dict[int, float]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        rows = self.toolkit.db.execute(f"SELECT seq, ts FROM chunks WHERE seq IN ({marks})", seqs).fetchall()
        return {int(r[0]): float(r[1] or 0.0) for r in rows}

    def _rows(self, seqs: list[int]) -> dict[int, StoredChunk]:
        if not seqs:
            return {}
        marks = ",".join("?" * len(seqs))
        rows = self.toolkit.db.execute(f"SELECT seq, body FROM chunks WHERE seq IN ({marks})", seqs).fetchall()
        return {int(r[0]): StoredChunk.model_validate(json.loads(r[1])) for r in rows}


def _ts(when: datetime) -> float:
    return when.timestamp()
