"""``MemoryService``: add, search, list and really delete memories, per user, for any memory configuration.

Why a ledger. Memory plugins keep what they derive from what they observe
(verbatim chunks, extracted facts, distilled insights), and few of them can
take one observation back out: a fact may merge several messages, an insight
several episodes. So the service keeps its own record of every memory a
client added (``ledger.sqlite``: id, user, agent, text, metadata, time) and
treats it as the truth; each user's memory is what the configured plugins made
of that user's ledger rows, in order.

* **add** writes the ledger row and commits it (``synchronous=FULL``), then
  hands the text to the memory as one observed event followed by
  ``reflect`` (so plugins that buffer, extract or distil finish before the
  call returns), then marks the row applied. A crash between the two leaves
  an unapplied row: the next call for that user rebuilds their memory from
  the ledger, so an acknowledged memory is never lost and never doubled.
  If the memory fails to take the text in, the row is removed again and the
  call fails: an error means "not stored".
* **delete** removes the row (``secure_delete``: the text is overwritten on
  disk, and the write-ahead log is truncated) and rebuilds the user's memory
  from the remaining rows in a new directory; the old directory is removed.
  Whatever the plugin derived from the deleted text (chunks, facts, their
  history, embeddings) is gone, for every plugin, without the plugin having
  to support deletion. The cost is a replay of that user's memories
  (embedding; for LLM-based plugins, LLM calls that the disk cache mostly
  answers).
* **delete_all** removes one user's rows (one agent, or all of that user's
  agents) and their memory directories. It never touches another user.

Every (user, agent) pair has its own store directory (its own ChromaDB
client and SQLite files), so nothing can cross users; operations on one pair
are serialised by a lock, different pairs run in parallel. One server process
owns a store directory at a time (a file lock): several clients share a store
by connecting to one HTTP server, not by starting several servers on it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import sqlite3
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentmem.composition import ComposedMemory
from agentmem.config import recall_budget
from agentmem.errors import AgentmemError, ConfigError
from agentmem.toolkit import ChatModel, Embedder, Stores
from agentmem.types import Episode, Event, Query, Scope

__all__ = [
    "DeleteResult",
    "FactHistory",
    "ListResult",
    "MemoryRecord",
    "MemoryService",
    "SearchHit",
    "SearchResult",
    "ServiceError",
    "parse_memory_spec",
]

log = logging.getLogger(__name__)

MAX_TEXT_CHARS = 20_000
MAX_METADATA_CHARS = 4_000
MAX_ID_CHARS = 128
MAX_LIST = 500
MAX_BUDGET = 32_000
_ID = re.compile(r"^[^\x00-\x1f\x7f]+$")
_EMBEDDING_CACHE = 5_000  # texts whose vectors stay in memory (about 12 kB each)
_SESSION = "mcp"  # every added memory is one turn of this session (what plugins that keep context see)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    applied INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS memories_scope ON memories (user_id, agent_id, seq);
CREATE TABLE IF NOT EXISTS scopes (
    user_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'ok',
    PRIMARY KEY (user_id, agent_id)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class ServiceError(AgentmemError):
    """A request the service refuses or cannot carry out; ``str()`` is one line saying why and what to do."""


class MemoryRecord(BaseModel):
    """One memory as a client added it."""

    id: str
    user_id: str
    agent_id: str
    text: str
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: str


class SearchHit(BaseModel):
    """One recalled item: what the memory returned, and which added memories it came from."""

    content: str
    score: float
    plugin: str
    memory_ids: list[str] = Field(
        default_factory=list, description="ids of the added memories this item was derived from"
    )
    metadata: dict[str, Any] = Field(default_factory=dict)


class SearchResult(BaseModel):
    user_id: str
    agent_id: str
    query: str
    hits: list[SearchHit] = Field(default_factory=list)
    omitted: int = Field(0, description="matches that did not fit the token budget or top_k")


class ListResult(BaseModel):
    user_id: str
    agent_id: str
    total: int
    memories: list[MemoryRecord] = Field(default_factory=list)


class DeleteResult(BaseModel):
    user_id: str
    agent_ids: list[str] = Field(default_factory=list)
    deleted: int
    ids: list[str] = Field(default_factory=list)


class FactHistory(BaseModel):
    user_id: str
    agent_id: str
    fact_id: str
    plugin: str
    changes: list[dict[str, Any]] = Field(default_factory=list)


def parse_memory_spec(memory: str | list[str]) -> list[str]:
    """``"episodic+semantic"`` / ``"episodic,semantic"`` / ``["notes.py"]`` -> member names (``.py`` paths
    kept whole).
    """
    specs = memory if isinstance(memory, list) else [memory]
    names: list[str] = []
    for spec in specs:
        spec = str(spec).strip()
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            names.append(spec)
        else:
            names += [n.strip() for n in spec.replace(",", "+").split("+") if n.strip()]
    return names


@dataclass
class _Open:
    """A (user, agent) memory that is loaded: its stores and its composed programs."""

    stores: Stores
    memory: ComposedMemory
    generation: int


class MemoryService:
    """Per-user memories of one configuration, built from a durable ledger (see the module's notes).

    ``memory``: plugin names composed with ``+`` (``"episodic+semantic"``), a
    program ``.py`` path, or an installed (e.g. exported evolved) plugin's
    name. ``store_dir``: where the ledger and every user's memory live.
    ``llm``: the model the plugins may call (episodic calls none).
    ``params``: per-plugin parameters, ``{"episodic": {"top_k": 4}}``.
    """

    def __init__(
        self,
        memory: str | list[str],
        store_dir: str | Path,
        *,
        llm: ChatModel | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        budget_tokens: int | None = None,
        max_open: int = 16,
        chroma_host: str | None = None,
        embedder: Embedder | None = None,
    ) -> None:
        from agentmem.registry import load_memory

        self.names = parse_memory_spec(memory)
        if not self.names or self.names == ["none"]:
            raise ConfigError(
                "--memory names no plugin; a memory server needs one, e.g. --memory episodic or episodic+semantic"
            )
        if "none" in self.names:
            raise ConfigError(f"--memory {'+'.join(self.names)}: 'none' cannot be composed with plugins; drop it")
        self.classes = [load_memory(name) for name in self.names]  # a misspelt plugin fails before anything is opened
        self.label = "+".join(Path(n).stem if n.endswith(".py") else n for n in self.names)
        self.params = params or None
        self.llm = llm
        self.budget_tokens = recall_budget(budget_tokens)  # None: the recall_budget setting
        self.max_open = max(1, int(max_open))
        self.chroma_host = chroma_host
        self.embedder = embedder
        self.store_dir = Path(store_dir).expanduser()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self._owner = self._claim(self.store_dir)
        self._db_lock = threading.RLock()
        self._locks: dict[tuple[str, str], threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._open: OrderedDict[tuple[str, str], _Open] = OrderedDict()
        self._open_guard = threading.RLock()
        self._closed = False
        try:
            self._db = sqlite3.connect(self.store_dir / "ledger.sqlite", check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA secure_delete=ON")
            self._db.executescript(_SCHEMA)
            self._check_configuration()
        except sqlite3.DatabaseError as exc:
            self._owner.release()
            raise ConfigError(
                f"{self.store_dir / 'ledger.sqlite'} is not a readable agentmem ledger ({exc}); "
                "point --store-dir at another directory"
            ) from None

    # -- capabilities ------------------------------------------------------------------
    @property
    def capabilities(self) -> dict[str, list[str]]:
        """Optional operations the configured plugins offer (``{"history": ["semantic"]}``)."""
        history = [n for n, c in zip(self.names, self.classes) if callable(getattr(c, "history", None))]
        return {"history": history} if history else {}

    # -- setup --------------------------------------------------------------------------
    @staticmethod
    def _claim(store_dir: Path) -> Any:
        """One server per store directory: a second one would corrupt the vector indexes both hold open."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(store_dir / "server.lock"))
        pid_file = store_dir / "server.pid"
        try:
            lock.acquire(timeout=0)
        except Timeout:
            other = pid_file.read_text().strip() if pid_file.is_file() else "?"
            raise ConfigError(
                f"store {store_dir} is already served by another agentmem mcp (pid {other}); stop it, "
                "give this one another --store-dir, or connect every client to one server over --transport http"
            ) from None
        pid_file.write_text(str(os.getpid()))
        return lock

    def _check_configuration(self) -> None:
        """A store made with another memory configuration is rebuilt from the ledger, user by user, on first use."""
        wanted = json.dumps({"memory": self.names, "params": self.params or {}}, sort_keys=True)
        row = self._db.execute("SELECT value FROM meta WHERE key = 'configuration'").fetchone()
        if row is not None and row[0] != wanted:
            count = self._db.execute("SELECT COUNT(*) FROM memories").fetchone()[0]
            log.warning(
                "memory configuration changed (was %s, now %s): each user's memory is rebuilt from the %d stored "
                "memories on first use",
                row[0],
                wanted,
                count,
            )
            self._db.execute("UPDATE scopes SET state = 'rebuild'")
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('configuration', ?)", (wanted,))

    # -- scopes -------------------------------------------------------------------------
    def _lock(self, key: tuple[str, str]) -> threading.RLock:
        with self._locks_guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.RLock()
            return lock

    def _scope_row(self, key: tuple[str, str]) -> tuple[int, str]:
        with self._db_lock:
            self._db.execute("INSERT OR IGNORE INTO scopes (user_id, agent_id) VALUES (?, ?)", key)
            gen, state = self._db.execute(
                "SELECT generation, state FROM scopes WHERE user_id = ? AND agent_id = ?", key
            ).fetchone()
        return int(gen), str(state)

    def _set_state(self, key: tuple[str, str], state: str, *, bump: bool = False) -> int:
        with self._db_lock:
            self._db.execute(
                "UPDATE scopes SET state = ?, generation = generation + ? WHERE user_id = ? AND agent_id = ?",
                (state, 1 if bump else 0, *key),
            )
            return int(
                self._db.execute("SELECT generation FROM scopes WHERE user_id = ? AND agent_id = ?", key).fetchone()[0]
            )

    def _scope_prefix(self, key: tuple[str, str]) -> str:
        return Scope(user_id=key[0], agent_id=key[1]).key()

    def _scope_dir(self, key: tuple[str, str], generation: int) -> Path:
        return self.store_dir / "scopes" / f"{self._scope_prefix(key)}-{generation}"

    def _memory(self, key: tuple[str, str]) -> ComposedMemory:
        """The loaded memory of ``key`` (caller holds its lock), rebuilt from the ledger first if it must be."""
        generation, state = self._scope_row(key)
        with self._db_lock:
            unapplied = self._db.execute(
                "SELECT 1 FROM memories WHERE user_id = ? AND agent_id = ? AND applied = 0 LIMIT 1", key
            ).fetchone()
        if state != "ok" or unapplied is not None:
            self._rebuild(key)
            generation, _ = self._scope_row(key)
        with self._open_guard:
            found = self._open.get(key)
            if found is not None and found.generation == generation:
                self._open.move_to_end(key)
                return found.memory
        if found is not None:
            self._close_open(key)
        opened = self._load(key, generation)
        with self._open_guard:
            self._open[key] = opened
        self._evict(keep=key)
        return opened.memory

    def _load(self, key: tuple[str, str], generation: int) -> _Open:
        from agentmem.agent.graph import build_memory_stack

        stores = Stores(self._scope_dir(key, generation), chroma_host=self.chroma_host)
        scope = Scope(user_id=key[0], agent_id=key[1])
        try:
            programs = build_memory_stack(
                self.names, scope=scope, stores=stores, llm=self.llm, params=self.params, embedder=self._embedder()
            )
        except Exception:
            stores.close()
            raise
        return _Open(stores=stores, memory=ComposedMemory(programs), generation=generation)

    def _embedder(self) -> Embedder:
        """One embedder for every user, remembering recent texts: a rebuild re-embeds nothing it has seen."""
        if self.embedder is None:
            from agentmem.embeddings import default_embedder
            from agentmem.evaluation import CachingEmbedder

            self.embedder = CachingEmbedder(default_embedder(), max_items=_EMBEDDING_CACHE)
        return self.embedder

    def _close_open(self, key: tuple[str, str]) -> None:
        with self._open_guard:
            found = self._open.pop(key, None)
        if found is None:
            return
        try:
            found.memory.close()
        finally:
            found.stores.close()

    def _evict(self, keep: tuple[str, str]) -> None:
        """Close the least recently used memories beyond ``max_open`` (skipping any in use)."""
        with self._open_guard:
            surplus = [k for k in self._open if k != keep][: max(0, len(self._open) - self.max_open)]
        for key in surplus:
            lock = self._lock(key)
            if lock.acquire(blocking=False):
                try:
                    self._close_open(key)
                finally:
                    lock.release()

    def _wipe_dirs(self, key: tuple[str, str], keep: int | None = None) -> None:
        root = self.store_dir / "scopes"
        if not root.is_dir():
            return
        prefix = self._scope_prefix(key) + "-"
        for path in root.iterdir():
            if path.name.startswith(prefix) and path.name != f"{prefix}{keep}":
                shutil.rmtree(path, ignore_errors=True)

    def _rebuild(self, key: tuple[str, str]) -> None:
        """Replace ``key``'s memory with one built from its ledger rows, in order, in a fresh directory."""
        self._close_open(key)
        generation = self._set_state(key, "rebuild", bump=True)
        self._wipe_dirs(key, keep=None)
        with self._db_lock:
            rows = self._db.execute(
                "SELECT id, user_id, agent_id, text, metadata, created_at FROM memories"
                " WHERE user_id = ? AND agent_id = ? ORDER BY seq",
                key,
            ).fetchall()
        if rows:
            log.info("rebuilding the memory of user %r agent %r from %d stored memories", key[0], key[1], len(rows))
        opened = self._load(key, generation)
        try:
            for row in rows:
                self._apply(opened.memory, _record(row))
        except Exception:
            try:
                opened.memory.close()
            finally:
                opened.stores.close()
            raise
        with self._open_guard:
            self._open[key] = opened
        with self._tx() as db:
            db.execute("UPDATE memories SET applied = 1 WHERE user_id = ? AND agent_id = ?", key)
            db.execute("UPDATE scopes SET state = 'ok' WHERE user_id = ? AND agent_id = ?", key)

    @staticmethod
    def _apply(memory: ComposedMemory, record: MemoryRecord) -> None:
        """Hand one memory to the plugins: an observed user message, then reflect (so buffers are flushed)."""
        event = Event.message(
            record.text,
            speaker="user",
            id=record.id,
            session_id=_SESSION,
            timestamp=datetime.fromisoformat(record.created_at),
            metadata={**record.metadata, "memory_id": record.id},
        )
        memory.observe(event)
        memory.reflect(
            Episode(
                id=record.id,
                task="memory",
                events=[event],
                metadata={"user_id": record.user_id, "agent_id": record.agent_id},
            )
        )

    # -- operations ---------------------------------------------------------------------
    def add(
        self, text: str, *, user_id: str, agent_id: str = "default", metadata: dict[str, Any] | None = None
    ) -> MemoryRecord:
        """Store one memory for (user, agent); durable when this returns."""
        key = self._key(user_id, agent_id)
        text = _check_text(text)
        meta = _check_metadata(metadata)
        with self._lock(key):
            self._check_open()
            memory = self._memory(key)
            record = MemoryRecord(
                id=uuid.uuid4().hex[:16],
                user_id=key[0],
                agent_id=key[1],
                text=text,
                metadata=meta,
                created_at=datetime.now(UTC).isoformat(),
            )
            with self._db_lock:
                self._db.execute(
                    "INSERT INTO memories (id, user_id, agent_id, text, metadata, created_at, applied)"
                    " VALUES (?, ?, ?, ?, ?, ?, 0)",
                    (record.id, record.user_id, record.agent_id, record.text, json.dumps(meta), record.created_at),
                )
            try:
                self._apply(memory, record)
            except Exception as exc:
                # not stored after all: drop the row, and rebuild on next use to discard what the plugins took in
                with self._db_lock:
                    self._db.execute("DELETE FROM memories WHERE id = ?", (record.id,))
                self._close_open(key)
                self._set_state(key, "rebuild")
                log.exception("memory %s could not be taken in", record.id)
                raise ServiceError(
                    f"not stored: memory {self.label} failed to take the text in ({_one_line(exc)})"
                ) from None
            with self._db_lock:
                self._db.execute("UPDATE memories SET applied = 1 WHERE id = ?", (record.id,))
            return record

    def search(
        self,
        query: str,
        *,
        user_id: str,
        agent_id: str = "default",
        top_k: int | None = None,
        budget_tokens: int | None = None,
    ) -> SearchResult:
        """What the memory recalls for ``query`` (best first), each hit with the ids of the memories behind it."""
        key = self._key(user_id, agent_id)
        if not isinstance(query, str) or not query.strip():
            raise ServiceError('query is empty: say what to look for, e.g. query="seat preference"')
        if top_k is not None and not 1 <= int(top_k) <= 200:
            raise ServiceError(f"top_k must be between 1 and 200 (got {top_k})")
        budget = self.budget_tokens if budget_tokens is None else int(budget_tokens)
        if not 1 <= budget <= MAX_BUDGET:
            raise ServiceError(f"budget_tokens must be between 1 and {MAX_BUDGET} (got {budget_tokens})")
        result = SearchResult(user_id=key[0], agent_id=key[1], query=query)
        with self._lock(key):
            self._check_open()
            with self._db_lock:
                empty = (
                    self._db.execute(
                        "SELECT 1 FROM memories WHERE user_id = ? AND agent_id = ? LIMIT 1", key
                    ).fetchone()
                    is None
                )
            if empty:
                return result
            memory = self._memory(key)
            recall = memory.recall(Query(text=query.strip(), budget_tokens=budget))
            live = self._stored_ids(key, {e for item in recall.items for e in item.event_ids})
        hits: list[SearchHit] = []
        for item in recall.items:
            ids = list(dict.fromkeys(e for e in item.event_ids if e in live))
            if item.event_ids and not ids:  # cannot happen after a real rebuild; never serve it if it does
                log.warning("recall returned an item of memories no longer stored (%s); dropped", item.event_ids[:3])
                continue
            meta = {k: v for k, v in item.metadata.items() if k not in ("dia_id", "memory_id", "session")}
            hits.append(
                SearchHit(
                    content=item.content,
                    score=float(item.score),
                    plugin=item.source or recall.plugin,
                    memory_ids=ids,
                    metadata=_jsonable(meta),
                )
            )
        hits.sort(key=lambda h: -h.score)
        result.omitted = recall.omitted
        if top_k is not None and len(hits) > top_k:
            result.omitted += len(hits) - int(top_k)
            hits = hits[: int(top_k)]
        result.hits = hits
        return result

    def list_memories(self, *, user_id: str, agent_id: str = "default", limit: int = 50, offset: int = 0) -> ListResult:
        """The memories of (user, agent), newest first."""
        key = self._key(user_id, agent_id)
        if not 1 <= int(limit) <= MAX_LIST:
            raise ServiceError(f"limit must be between 1 and {MAX_LIST} (got {limit})")
        if int(offset) < 0:
            raise ServiceError(f"offset must be 0 or more (got {offset})")
        self._check_open()
        with self._db_lock:
            total = self._db.execute(
                "SELECT COUNT(*) FROM memories WHERE user_id = ? AND agent_id = ?", key
            ).fetchone()[0]
            rows = self._db.execute(
                "SELECT id, user_id, agent_id, text, metadata, created_at FROM memories WHERE user_id = ? AND "
                "agent_id = ?"
                " ORDER BY seq DESC LIMIT ? OFFSET ?",
                (*key, int(limit), int(offset)),
            ).fetchall()
        return ListResult(user_id=key[0], agent_id=key[1], total=int(total), memories=[_record(r) for r in rows])

    def _stored_ids(self, key: tuple[str, str], ids: set[str]) -> set[str]:
        """Which of ``ids`` are memories of ``key`` in the ledger."""
        wanted = sorted(ids)
        found: set[str] = set()
        with self._db_lock:
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                found.update(
                    r[0]
                    for r in self._db.execute(
                        f"SELECT id FROM memories WHERE user_id = ? AND agent_id = ? AND id IN ({marks})", (*key, *part)
                    )
                )
        return found

    def get(self, memory_id: str, *, user_id: str, agent_id: str = "default") -> MemoryRecord:
        """One memory of (user, agent) by id (another user's id is "not found", never shown)."""
        key = self._key(user_id, agent_id)
        with self._db_lock:
            row = self._db.execute(
                "SELECT id, user_id, agent_id, text, metadata, created_at FROM memories"
                " WHERE id = ? AND user_id = ? AND agent_id = ?",
                (str(memory_id), *key),
            ).fetchone()
        if row is None:
            raise ServiceError(
                f"no memory with id {str(memory_id)!r} for user {key[0]!r} (agent {key[1]!r}); "
                "list_memories shows the ids"
            )
        return _record(row)

    def delete(self, memory_id: str, *, user_id: str, agent_id: str = "default") -> DeleteResult:
        """Delete one memory: its text leaves the ledger and everything derived from it leaves the memory."""
        key = self._key(user_id, agent_id)
        if not isinstance(memory_id, str) or not memory_id.strip():
            raise ServiceError("memory_id is empty: give the id that add_memory or list_memories returned")
        with self._lock(key):
            self._check_open()
            record = self.get(memory_id.strip(), user_id=key[0], agent_id=key[1])
            self._close_open(key)
            with self._tx() as db:
                db.execute("UPDATE scopes SET state = 'rebuild' WHERE user_id = ? AND agent_id = ?", key)
                db.execute("DELETE FROM memories WHERE id = ?", (record.id,))
            with self._db_lock:
                self._scrub()
            self._rebuild(key)  # if this fails the state stays 'rebuild': the next call retries before serving
        return DeleteResult(user_id=key[0], agent_ids=[key[1]], deleted=1, ids=[record.id])

    def delete_all(self, *, user_id: str, agent_id: str | None = None) -> DeleteResult:
        """Delete every memory of one user: of one agent if ``agent_id`` is given, else of all their agents."""
        user = _check_id("user_id", user_id)
        with self._db_lock:
            if agent_id is None:
                agents = sorted(
                    {
                        r[0]
                        for r in self._db.execute(
                            "SELECT agent_id FROM scopes WHERE user_id = ? UNION SELECT agent_id FROM memories "
                            "WHERE user_id = ?",
                            (user, user),
                        )
                    }
                )
            else:
                agents = [_check_id("agent_id", agent_id)]
        ids: list[str] = []
        for agent in agents:
            key = (user, agent)
            with self._lock(key):
                self._check_open()
                self._close_open(key)
                with self._tx() as db:
                    db.execute("INSERT OR IGNORE INTO scopes (user_id, agent_id) VALUES (?, ?)", key)
                    ids += [r[0] for r in db.execute("SELECT id FROM memories WHERE user_id = ? AND agent_id = ?", key)]
                    db.execute("UPDATE scopes SET state = 'rebuild' WHERE user_id = ? AND agent_id = ?", key)
                    db.execute("DELETE FROM memories WHERE user_id = ? AND agent_id = ?", key)
                self._wipe_dirs(key)
                self._set_state(key, "ok", bump=True)
        with self._db_lock:
            self._scrub()
        return DeleteResult(user_id=user, agent_ids=agents, deleted=len(ids), ids=ids)

    def fact_history(self, fact_id: str, *, user_id: str, agent_id: str = "default") -> FactHistory:
        """Every version of one fact (plugins with a ``history(fact_id)``, e.g. semantic)."""
        key = self._key(user_id, agent_id)
        able = self.capabilities.get("history", [])
        if not able:
            raise ServiceError(
                f"memory {self.label} keeps no fact history; serve a plugin that does (e.g. --memory semantic)"
            )
        if not isinstance(fact_id, str) or not fact_id.strip():
            raise ServiceError("fact_id is empty: give a fact id from search_memories (metadata.fact_id)")
        with self._lock(key):
            self._check_open()
            memory = self._memory(key)
            for name, program in memory.members.items():
                history = getattr(program, "history", None)
                if not callable(history):
                    continue
                try:
                    changes = history(fact_id.strip())
                except AgentmemError:
                    continue  # not this plugin's fact
                return FactHistory(
                    user_id=key[0],
                    agent_id=key[1],
                    fact_id=fact_id.strip(),
                    plugin=name,
                    changes=[
                        _jsonable(c.model_dump(mode="json")) if isinstance(c, BaseModel) else _jsonable(c)
                        for c in changes
                    ],
                )
        raise ServiceError(
            f"no fact with id {fact_id.strip()!r} for user {key[0]!r} (agent {key[1]!r}); "
            "fact ids are in search_memories hits (metadata.fact_id)"
        )

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and close every loaded memory and the ledger (stored data stays); closing twice is harmless."""
        if self._closed:
            return
        self._closed = True
        try:
            for key in list(self._open):
                with self._lock(key):
                    self._close_open(key)
            with self._db_lock:
                self._db.close()
        finally:
            self._owner.release()

    def __enter__(self) -> MemoryService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ---------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ServiceError("the memory service is shutting down; retry against a running server")

    def _key(self, user_id: str, agent_id: str) -> tuple[str, str]:
        return _check_id("user_id", user_id), _check_id("agent_id", agent_id)

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One ledger transaction: committed as a whole, or rolled back if anything in it fails."""
        with self._db_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _scrub(self) -> None:
        """Push deleted rows out of the write-ahead log (secure_delete has zeroed them in the database)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def _record(row: tuple[Any, ...]) -> MemoryRecord:
    return MemoryRecord(
        id=row[0], user_id=row[1], agent_id=row[2], text=row[3], metadata=json.loads(row[4] or "{}"), created_at=row[5]
    )


def _check_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ServiceError(f'{name} is empty: give the id of whose memory this is, e.g. {name}="ann"')
    value = value.strip()
    if len(value) > MAX_ID_CHARS or not _ID.match(value):
        raise ServiceError(f"{name} {value[:40]!r} is not an id: use at most {MAX_ID_CHARS} printable characters")
    return value


def _check_text(text: Any) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ServiceError('text is empty: give the memory as text, e.g. text="Ann prefers aisle seats"')
    text = text.strip()
    if len(text) > MAX_TEXT_CHARS:
        raise ServiceError(
            f"text is {len(text)} characters; the most is {MAX_TEXT_CHARS}: split it into several memories"
        )
    return text


def _check_metadata(metadata: Any) -> dict[str, Any]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise ServiceError(f"metadata must be an object of key: value pairs (got {type(metadata).__name__})")
    try:
        encoded = json.dumps(metadata)
    except (TypeError, ValueError):
        raise ServiceError("metadata must hold only JSON values (strings, numbers, booleans, lists, objects)") from None
    if len(encoded) > MAX_METADATA_CHARS:
        raise ServiceError(f"metadata is {len(encoded)} characters of JSON; the most is {MAX_METADATA_CHARS}")
    reserved = sorted(k for k in metadata if k in ("memory_id",))
    if reserved:
        raise ServiceError(f"metadata key {', '.join(reserved)} is reserved by the server; rename it")
    return json.loads(encoded)


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
