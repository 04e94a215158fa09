"""Vanilla RAG: fixed-size token windows over the conversation, embedded, top-k by similarity.

The textbook retrieval-augmented baseline. Observed events are appended, in
order, to one running transcript (kept verbatim in SQLite). The transcript is
cut into windows of ``chunk_tokens`` tokens that overlap by
``overlap_tokens`` (so a fact split by a window edge is whole in one of two
neighbours); each window is embedded with the toolkit's sentence embedder
into the windows' :class:`~agentmem.store.Store` (and its Chroma mirror) and
remembers which events it covers. Recall is the core dense retriever (the
``top_k`` most similar windows) and packer (by similarity into the token
budget, presented in transcript order, what did not fit counted).

The last, still-growing window is indexed too (and replaced when it fills),
so what was just said is searchable at once. Events are the source of truth:
reopening a store with other chunk sizes re-chunks it from the stored events.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentmem.encode import event_text, event_when
from agentmem.memory import MemoryProgram
from agentmem.packer import Packer, candidate
from agentmem.retrievers import DenseRetriever, Retrieval
from agentmem.store import StoredItem
from agentmem.tokens import _PIECES  # the same pieces count_tokens counts
from agentmem.types import Episode, Event, Query, Recall

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


class RAGMemory(MemoryProgram[RAGParams]):
    """Vanilla RAG: overlapping token windows, embedded, top-k by similarity."""

    name: ClassVar[str] = "rag"
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
            "CREATE TABLE IF NOT EXISTS transcript (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, session_id TEXT,"
            " event_when TEXT, body TEXT, start_tok INTEGER, n_tok INTEGER);"
            "CREATE INDEX IF NOT EXISTS transcript_start ON transcript (start_tok);"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
        )
        self.windows = self.open_store("windows", lexical=False)
        self.retrieval = Retrieval(DenseRetriever(), fetch_factor=1, min_fetch=1)
        self.packer = Packer(order="position")
        self._total = int(db.execute("SELECT COALESCE(SUM(n_tok), 0) FROM transcript").fetchone()[0])
        shape = f"{self.params.chunk_tokens}/{self.params.stride}"
        stored = self._meta("shape")
        if stored is not None and stored != shape:  # other window sizes: re-chunk from the stored events
            self.windows.delete([w.id for w in self.windows.items(include_deleted=True)])
            db.execute("DELETE FROM meta WHERE key = 'next_window'")
        self._set_meta("shape", shape)
        db.commit()
        # stored events may be ahead of the stored windows (a crash, new sizes): catch up at first use
        self._unflushed = 1 if self._total else 0

    # -- encode / store ---------------------------------------------------------
    def observe(self, event: Event) -> None:
        line = event_text(event)
        n_tok = self.toolkit.count_tokens(line)
        self.toolkit.db.execute(
            "INSERT INTO transcript (id, session_id, event_when, body, start_tok, n_tok) VALUES (?, ?, ?, ?, ?, ?)",
            (event.id, event.session_id or "", event_when(event), line, self._total, n_tok),
        )
        self._total += n_tok
        self._unflushed += 1
        if self._unflushed >= 64:  # embed in batches
            self._flush()

    def reflect(self, episode: Episode) -> None:
        self._flush()

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
        self.windows.add(
            [
                StoredItem(
                    id=f"w{w.index}", text=w.text, group=w.session_id, event_ids=w.event_ids, data=w.model_dump()
                )
                for w in windows
            ],
            replace=True,
        )
        self._set_meta("next_window", str(i))
        self.toolkit.db.commit()
        self._unflushed = 0

    def _window(self, index: int, start: int, end: int) -> Chunk:
        rows = self.toolkit.db.execute(
            "SELECT id, session_id, event_when, body, start_tok, n_tok FROM transcript"
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
        )

    def _meta(self, key: str) -> str | None:
        row = self.toolkit.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self.toolkit.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- retrieve -----------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        self._flush()
        hits, ctx = self.retrieval.run(self.windows, query.text, self.params.top_k)
        packed = self.packer.pack(
            (
                candidate(
                    w,
                    self._shown(w),
                    hit.score,
                    self.name,
                    position=w.data["index"],
                    session=w.group,
                    chunk=w.data["index"],
                )
                for hit, w in ctx.found(hits)
            ),
            query.budget_tokens,
        )
        return self.recalled(packed, context="\n---\n".join(i.content for i in packed.items))

    def _shown(self, window: StoredItem) -> str:
        return str(window.data["dated"] if self.params.with_dates else window.text)

    def chunks(self, indexes: list[int] | None = None) -> dict[int, Chunk]:
        """Stored windows by index (all of them if ``indexes`` is None)."""
        self._flush()
        if indexes is None:
            found = list(self.windows.items())
        else:
            found = list(self.windows.get([f"w{n}" for n in indexes]).values())
        return {
            int(w.data["index"]): Chunk.model_validate(w.data) for w in sorted(found, key=lambda w: w.data["index"])
        }
