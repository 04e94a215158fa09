"""Vanilla RAG: fixed-size token windows over the conversation, embedded, top-k by similarity.

The textbook retrieval-augmented baseline. Observed events are appended, in
order, to one running transcript (kept verbatim in SQLite). The transcript is
cut into windows of ``chunk_tokens`` tokens that overlap by
``overlap_tokens`` (so a fact split by a window edge is whole in one of two
neighbours); each window is embedded with the toolkit's sentence embedder
into a ChromaDB collection and remembers which events (and LoCoMo
``dia_id``) it covers. Recall embeds the query, takes the ``top_k`` most
similar windows, packs them by similarity into the token budget, presents
them in transcript order and reports how many matches did not fit.

The last, still-growing window is indexed too (and replaced when it fills),
so what was just said is searchable at once. Events are the source of truth:
reopening a store with other chunk sizes re-chunks it from the stored events.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentmem.memory import MemoryProgram
from agentmem.tokens import _PIECES  # the same pieces count_tokens counts
from agentmem.types import Episode, Event, Query, Recall, RecallItem
from agentmem_baselines._common import body, dia_id, when

__all__ = ["Chunk", "RAGMemory", "RAGParams"]


class RAGParams(BaseModel):
    """Knobs of vanilla RAG; their bounds are the space evolution searches."""

    model_config = ConfigDict(extra="forbid")

    chunk_tokens: int = Field(128, ge=16, le=1024, description="tokens per window")
    overlap_tokens: int = Field(
        32, ge=0, le=256, description="tokens shared by consecutive windows (capped at half of chunk_tokens)"
    )
    top_k: int = Field(6, ge=1, le=50, description="how many windows to recall")
    with_dates: bool = Field(True, description="mark each window (and each date change inside it) with its date")

    @property
    def stride(self) -> int:
        """Tokens between the starts of consecutive windows."""
        return self.chunk_tokens - min(self.overlap_tokens, self.chunk_tokens // 2)


class Chunk(BaseModel):
    """The schema of one stored item: one token window of the transcript."""

    index: int
    start: int
    end: int
    text: str
    dated: str
    when: str
    session_id: str
    event_ids: list[str]
    dia_ids: list[str]


class RAGMemory(MemoryProgram):
    """Vanilla RAG: overlapping token windows, embedded, top-k by similarity."""

    name: ClassVar[str] = "rag"
    Params: ClassVar[type[BaseModel]] = RAGParams
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Passages retrieved from earlier conversations, in the order they were said;"
            " a date in brackets applies to the lines after it.\n{{ context }}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        db = self.toolkit.db
        db.executescript(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, session_id TEXT,"
            " event_when TEXT, body TEXT, dia_id TEXT, start_tok INTEGER, n_tok INTEGER);"
            "CREATE INDEX IF NOT EXISTS events_start ON events (start_tok);"
            "CREATE TABLE IF NOT EXISTS chunks (idx INTEGER PRIMARY KEY, body TEXT);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
        )
        self._collection = self.toolkit.collection("chunks")
        self._total = int(db.execute("SELECT COALESCE(SUM(n_tok), 0) FROM events").fetchone()[0])
        shape = f"{self.params.chunk_tokens}/{self.params.stride}"
        stored = self._meta("shape")
        if stored is not None and stored != shape:
            self._drop_chunks()  # other window sizes: re-chunk from the stored events
        self._set_meta("shape", shape)
        db.commit()
        # stored events may be ahead of the stored windows (a crash, new sizes): catch up at first use
        self._unflushed = 1 if self._total else 0
        self._sync_collection()

    def _sync_collection(self) -> None:
        """Give Chroma every window SQLite holds (after a crash between the two writes, or a store migrated without its vectors)."""
        stored = int(self.toolkit.db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
        if stored == 0 or self._collection.count() >= stored:
            return
        present = set(self._collection.get(include=[])["ids"])
        missing = [w for w in (Chunk.model_validate_json(r[0]) for r in self.toolkit.db.execute("SELECT body FROM chunks ORDER BY idx"))
                   if f"w{w.index}" not in present]
        for start in range(0, len(missing), 4096):  # within Chroma's largest batch
            part = missing[start : start + 4096]
            self._collection.upsert(
                ids=[f"w{w.index}" for w in part],
                documents=[w.text for w in part],
                metadatas=[{"idx": w.index, "session": w.session_id} for w in part],
            )

    # -- encode / store ---------------------------------------------------------
    def observe(self, event: Event) -> None:
        line = body(event)
        n_tok = self.toolkit.count_tokens(line)
        self.toolkit.db.execute(
            "INSERT INTO events (id, session_id, event_when, body, dia_id, start_tok, n_tok) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (event.id, event.session_id or "", when(event), line, dia_id(event), self._total, n_tok),
        )
        self._total += n_tok
        self._unflushed += 1
        if self._unflushed >= 64:  # embed in batches
            self._flush()

    def reflect(self, episode: Episode) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()
        self.toolkit.close()

    def _flush(self) -> None:
        """Cut every window the new events complete (plus the growing last one), embed, store."""
        if not self._unflushed:
            return
        chunk, stride = self.params.chunk_tokens, self.params.stride
        i = int(self._meta("next_window") or 0)
        windows: list[Chunk] = []
        while True:
            start = i * stride
            if start >= self._total:
                break
            final = start + chunk <= self._total
            # a partial last window only if it adds tokens the previous window lacks
            if not final and i > 0 and (i - 1) * stride + chunk >= self._total:
                break
            windows.append(self._window(i, start, min(start + chunk, self._total)))
            if not final:
                break
            i += 1
        db = self.toolkit.db
        if windows:
            db.executemany(
                "INSERT OR REPLACE INTO chunks (idx, body) VALUES (?, ?)",
                [(w.index, w.model_dump_json()) for w in windows],
            )
            self._collection.upsert(
                ids=[f"w{w.index}" for w in windows],
                documents=[w.text for w in windows],
                metadatas=[{"idx": w.index, "session": w.session_id} for w in windows],
            )
        self._set_meta("next_window", str(i))
        db.commit()
        self._unflushed = 0

    def _window(self, index: int, start: int, end: int) -> Chunk:
        rows = self.toolkit.db.execute(
            "SELECT id, session_id, event_when, body, dia_id, start_tok, n_tok FROM events"
            " WHERE n_tok > 0 AND start_tok < ? AND start_tok + n_tok > ? ORDER BY seq",
            (end, start),
        ).fetchall()
        plain: list[str] = []
        dated: list[str] = []
        previous_when: str | None = None
        for row in rows:
            spans = list(_PIECES.finditer(row["body"]))
            lo = max(start - row["start_tok"], 0)
            hi = min(end - row["start_tok"], row["n_tok"])
            piece = row["body"][spans[lo].start() : spans[hi - 1].end()]
            plain.append(piece)
            if self.params.with_dates and row["event_when"] != previous_when:
                piece = f"[{row['event_when']}] {piece}"
            previous_when = row["event_when"]
            dated.append(piece)
        return Chunk(
            index=index,
            start=start,
            end=end,
            text="\n".join(plain),
            dated="\n".join(dated),
            when=rows[0]["event_when"] if rows else "",
            session_id=rows[0]["session_id"] if rows else "",
            event_ids=[r["id"] for r in rows],
            dia_ids=[r["dia_id"] for r in rows if r["dia_id"]],
        )

    def _drop_chunks(self) -> None:
        ids = self._collection.get(include=[])["ids"]
        for n in range(0, len(ids), 1000):
            self._collection.delete(ids=ids[n : n + 1000])
        self.toolkit.db.execute("DELETE FROM chunks")
        self.toolkit.db.execute("DELETE FROM meta WHERE key = 'next_window'")

    def _meta(self, key: str) -> str | None:
        row = self.toolkit.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.toolkit.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- retrieve -----------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        self._flush()
        total = self._collection.count()
        if total == 0:
            return Recall(plugin=self.name)
        k = min(self.params.top_k, total)
        if query.budget_tokens == 0:
            return Recall(omitted=k, plugin=self.name)
        hits = self._collection.query(query_texts=[query.text], n_results=k, include=["distances"])
        scores = {int(i[1:]): 1.0 - float(d) for i, d in zip(hits["ids"][0], hits["distances"][0])}
        chunks = self.chunks(list(scores))
        used = 0
        omitted = 0
        kept: list[tuple[Chunk, int]] = []
        for idx in sorted(chunks, key=lambda n: -scores[n]):
            cost = self.toolkit.count_tokens(self._shown(chunks[idx]))
            if used + cost > query.budget_tokens:
                omitted += 1
                continue
            used += cost
            kept.append((chunks[idx], cost))
        kept.sort(key=lambda pair: pair[0].index)
        items = [
            RecallItem(
                content=self._shown(c),
                score=round(scores[c.index], 4),
                source=self.name,
                tokens=cost,
                event_ids=c.event_ids,
                metadata={"dia_id": c.dia_ids, "session": c.session_id, "chunk": c.index},
            )
            for c, cost in kept
        ]
        return Recall(
            items=items,
            omitted=omitted,
            plugin=self.name,
            instructions=self.instructions(context="\n---\n".join(i.content for i in items)) if items else "",
        )

    def _shown(self, chunk: Chunk) -> str:
        return chunk.dated if self.params.with_dates else chunk.text

    def chunks(self, indexes: list[int] | None = None) -> dict[int, Chunk]:
        """Stored windows by index (all of them if ``indexes`` is None)."""
        self._flush()
        db = self.toolkit.db
        if indexes is None:
            rows = db.execute("SELECT idx, body FROM chunks ORDER BY idx").fetchall()
        elif not indexes:
            return {}
        else:
            marks = ",".join("?" * len(indexes))
            rows = db.execute(f"SELECT idx, body FROM chunks WHERE idx IN ({marks})", indexes).fetchall()
        return {int(r[0]): Chunk.model_validate(json.loads(r[1])) for r in rows}
