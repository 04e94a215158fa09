"""An on-disk cache of deterministic LLM answers (SQLite, shared by processes, size-bounded).

A request is cached only when its answer is determined by it: temperature 0,
or a fixed ``seed``. The key is the sha256 of the canonical JSON of the whole
request (the model's identity, the messages and every parameter), so changing
any of them misses.

The database runs in WAL mode with a busy timeout, so several processes (an
evolution's workers, two `agentmem eval` runs) can read and write it at once.
It is bounded by the size of the stored answers and keys (``max_bytes``):
when a write goes over, the least recently used entries are evicted down to
90% of the bound. A cache that cannot be read or written (a full disk, a
locked or damaged file) never fails the call: it is logged and skipped.

Why not ``diskcache`` (already installed, llama-cpp-python needs it), which is
also an SQLite cache with a least-recently-used bound shared by processes:
measured side by side on the same keys and ~1 KB answers
(``python benchmarks/bench_llm_cache.py`` -> ``benchmarks/results/llm_cache.json``),
its LRU mode took 1.9x as long per write and 2.7x per hit on this machine (it
updates access metadata in more columns and indexes); its bound counts
SQLite pages, so under a 64 KiB bound it kept 20 answers where this keeps 52;
it cannot say how many entries it evicted (``stats()["evictions"]``, which
``benchmarks/bench_llm.py`` reports); and it is a directory, where the
settings' ``cache_path`` names one file. None of the speed differences matter next to a
model call; the bound, the eviction count and the one-file contract do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("agentmem.llm.cache")

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
KEY_VERSION = 1  # bump when the meaning of a stored answer changes
_BUSY_TIMEOUT_MS = 30_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key      TEXT PRIMARY KEY,
    value    TEXT NOT NULL,
    size     INTEGER NOT NULL,
    created  REAL NOT NULL,
    accessed REAL NOT NULL,
    hits     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries(accessed);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta(name, value) VALUES ('bytes', 0);
INSERT OR IGNORE INTO meta(name, value) VALUES ('evictions', 0);
"""


def is_deterministic(request: dict[str, Any]) -> bool:
    """True when the answer to ``request`` is fixed by it: temperature 0 or a fixed seed."""
    if request.get("seed") is not None:
        return True
    temperature = request.get("temperature", 0)
    return temperature is not None and float(temperature) == 0.0


def request_key(request: dict[str, Any]) -> str:
    """The sha256 of the canonical JSON of ``request`` (sorted keys, no spaces)."""
    canonical = json.dumps(
        {"v": KEY_VERSION, **request}, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class DiskCache:
    """A :class:`~agentmem.llm.client.CompletionCache` in one SQLite file.

    ``hits`` and ``misses`` count this object's look-ups; :meth:`stats` adds
    what is on disk (entries, bytes, evictions by every process).
    """

    def __init__(self, path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.path = Path(path).expanduser()
        self.max_bytes = int(max_bytes)
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self._counts = threading.Lock()
        self._local = threading.local()
        self._init_lock = threading.Lock()
        self._initialised_in: int | None = None  # the pid that created the schema

    # -- connections ------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        """This thread's connection (a new one after a fork)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and getattr(self._local, "pid", None) == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        with self._init_lock:
            if self._initialised_in != os.getpid():
                # auto_vacuum must be chosen before the first table exists
                conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._retry(lambda: conn.execute("PRAGMA journal_mode=WAL"))
                self._retry(lambda: conn.executescript(_SCHEMA))
                self._initialised_in = os.getpid()
        conn.execute("PRAGMA synchronous=NORMAL")
        self._local.conn = conn
        self._local.pid = os.getpid()
        return conn

    @staticmethod
    def _retry(fn: Any, tries: int = 20) -> Any:
        """``fn()``, retried while another process holds a lock the busy handler does not cover."""
        for attempt in range(tries):
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or attempt + 1 == tries:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    def _warn(self, what: str, exc: Exception) -> None:
        with self._counts:
            self.errors += 1
        log.warning("LLM cache %s at %s failed (%s): going on without it", what, self.path, exc)

    # -- the CompletionCache protocol ------------------------------------------------------
    def get(self, request: dict[str, Any]) -> str | None:
        """The cached answer to ``request``, or ``None`` (also for a non-deterministic request)."""
        if not is_deterministic(request):
            return None
        key = request_key(request)
        try:
            conn = self._connect()
            row = conn.execute("SELECT value FROM entries WHERE key = ?", (key,)).fetchone()
            if row is not None:
                # recency for LRU eviction; losing this update under contention costs nothing
                try:
                    conn.execute("UPDATE entries SET accessed = ?, hits = hits + 1 WHERE key = ?", (time.time(), key))
                except sqlite3.OperationalError:
                    pass
        except sqlite3.Error as exc:
            self._warn("read", exc)
            row = None
        with self._counts:
            if row is None:
                self.misses += 1
            else:
                self.hits += 1
        return None if row is None else str(row[0])

    def put(self, request: dict[str, Any], text: str) -> None:
        """Keep ``text`` as the answer to ``request`` (ignored for a non-deterministic one)."""
        if not is_deterministic(request):
            return
        key = request_key(request)
        size = len(text.encode("utf-8")) + len(key) + 64  # the answer, its key, the row's overhead
        if size > self.max_bytes:
            return
        try:
            self._retry(lambda: self._put(key, text, size))
        except sqlite3.Error as exc:
            self._warn("write", exc)

    def _put(self, key: str, text: str, size: int) -> None:
        conn = self._connect()
        now = time.time()
        evicted = 0
        conn.execute("BEGIN IMMEDIATE")
        try:
            old = conn.execute("SELECT size FROM entries WHERE key = ?", (key,)).fetchone()
            conn.execute(
                "INSERT OR REPLACE INTO entries(key, value, size, created, accessed, hits) VALUES (?, ?, ?, ?, ?, 0)",
                (key, text, size, now, now),
            )
            conn.execute("UPDATE meta SET value = value + ? WHERE name = 'bytes'", (size - (old[0] if old else 0),))
            total = conn.execute("SELECT value FROM meta WHERE name = 'bytes'").fetchone()[0]
            if total > self.max_bytes:
                evicted = self._evict(conn, total - int(self.max_bytes * 0.9), keep=key)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if evicted:
            try:
                conn.execute("PRAGMA incremental_vacuum")
            except sqlite3.Error:  # pragma: no cover - space is reclaimed next time
                pass

    @staticmethod
    def _evict(conn: sqlite3.Connection, excess: int, keep: str) -> int:
        """Delete least recently used rows (not ``keep``) until ``excess`` bytes are freed; the count deleted."""
        freed = 0
        doomed: list[str] = []
        for key, size in conn.execute(
            "SELECT key, size FROM entries WHERE key != ? ORDER BY accessed, created", (keep,)
        ):
            if freed >= excess:
                break
            doomed.append(key)
            freed += size
        for start in range(0, len(doomed), 500):
            chunk = doomed[start : start + 500]
            conn.execute(f"DELETE FROM entries WHERE key IN ({','.join('?' * len(chunk))})", chunk)
        conn.execute("UPDATE meta SET value = value - ? WHERE name = 'bytes'", (freed,))
        conn.execute("UPDATE meta SET value = value + ? WHERE name = 'evictions'", (len(doomed),))
        return len(doomed)

    # -- housekeeping -----------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """Hits and misses of this object, and the entries, bytes and evictions on disk."""
        entries = size = evictions = 0
        try:
            conn = self._connect()
            entries = conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
            meta = dict(conn.execute("SELECT name, value FROM meta").fetchall())
            size, evictions = int(meta.get("bytes", 0)), int(meta.get("evictions", 0))
        except sqlite3.Error as exc:
            self._warn("stats", exc)
        with self._counts:
            hits, misses, errors = self.hits, self.misses, self.errors
        looked_up = hits + misses
        return {
            "path": str(self.path),
            "entries": int(entries),
            "bytes": size,
            "max_bytes": self.max_bytes,
            "evictions": evictions,
            "hits": hits,
            "misses": misses,
            "hit_rate": round(hits / looked_up, 4) if looked_up else 0.0,
            "errors": errors,
        }

    def clear(self) -> None:
        """Remove every entry (for every process) and reset this object's counts."""
        conn = self._connect()

        def wipe() -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute("DELETE FROM entries")
                conn.execute("UPDATE meta SET value = 0")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        self._retry(wipe)
        try:
            conn.execute("PRAGMA incremental_vacuum")
        except sqlite3.Error:  # pragma: no cover
            pass
        with self._counts:
            self.hits = self.misses = self.errors = 0

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def __len__(self) -> int:
        return int(self.stats()["entries"])

    def __repr__(self) -> str:
        return f"DiskCache({self.path}, max_bytes={self.max_bytes})"


_SHARED: dict[tuple[str, int], DiskCache] = {}
_SHARED_LOCK = threading.Lock()


def shared_cache(path: str | Path, max_bytes: int = DEFAULT_MAX_BYTES) -> DiskCache:
    """The process-wide :class:`DiskCache` for ``path`` (so every client counts into one)."""
    key = (str(Path(path).expanduser().resolve()), int(max_bytes))
    with _SHARED_LOCK:
        cache = _SHARED.get(key)
        if cache is None:
            cache = _SHARED[key] = DiskCache(path, max_bytes=max_bytes)
        return cache
