"""The toolkit: the only door between a memory program and the world.

A program gets metered LLM calls, embeddings, a ChromaDB collection, an
SQLite database, a clock and a logger from here, and nothing else. Every
store is scoped: a toolkit built for one :class:`~agentmem.types.Scope` opens
collections and databases that no other scope can name, so one user's
memories never leak into another's.

Where things live (the store layout)::

    <root>/scopes/<scope key>/<storage name of the program>.sqlite
    Chroma collection  am_<storage name of the program>_<storage name of the collection>_<scope key>

:meth:`Scope.key <agentmem.types.Scope.key>` differs for different scopes and
:func:`storage_name` for different names, and a storage name never holds
``_``, so no two (scope, program, collection) triples share a file or a
collection. Stores written by earlier versions (which joined scope parts with
a separator the parts could hold, turned every non-alphanumeric character
into ``-`` and cut collection names at 120 characters) are migrated in place
the first time the new layout looks for something they hold: see
:meth:`Stores.adopt_scope` and :meth:`Toolkit.db`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sqlite3
import threading
import weakref
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from pydantic import BaseModel

from agentmem.tokens import count_tokens
from agentmem.types import Scope

if TYPE_CHECKING:  # pragma: no cover
    import chromadb

T = TypeVar("T", bound=BaseModel)


@runtime_checkable
class ChatModel(Protocol):
    """What the toolkit needs of an LLM client (see :class:`agentmem.llm.LLM`)."""

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
    ) -> str: ...

    def structured(self, messages: list[dict[str, Any]], schema: type[T], *, caller: str | None = None) -> T: ...


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit vectors (see :class:`agentmem.embeddings.MiniLMEmbedder`).

    Optional attributes: ``identity`` (a stable name of the model and its weights: vectors are then shared
    through the embedding store, :mod:`agentmem.embedding_cache`) and ``releases_gil`` (``True`` when
    ``embed`` spends its time outside Python's GIL, in onnxruntime or BLAS: retrieval then embeds a query in
    a background thread while it searches words, :meth:`agentmem.retrievers.Probe.prefetch`; an embedder
    that does not say so is called in the caller, since a thread would only wait for the GIL).
    """

    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class Clock:
    """Wall-clock time; environments replace it to replay a dataset's own dates."""

    def __init__(self, fixed: datetime | None = None) -> None:
        self._fixed = fixed

    def now(self) -> datetime:
        return self._fixed or datetime.now(UTC)

    def set(self, when: datetime | None) -> None:
        """Pin the clock (``None`` returns it to wall time)."""
        self._fixed = when


class _ChromaEmbeddingFunction:
    """Adapts an :class:`Embedder` to ChromaDB's embedding-function interface."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def __call__(self, input: list[str]) -> list[Any]:
        import numpy as np

        return [np.asarray(v, dtype=np.float32) for v in self._embedder.embed(list(input))]

    def embed_query(self, input: list[str]) -> list[Any]:
        return self(input)

    @staticmethod
    def name() -> str:
        return "agentmem"

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]

    def get_config(self) -> dict[str, Any]:
        return {"name": getattr(self._embedder, "name", "agentmem")}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> _ChromaEmbeddingFunction:
        """Chroma rebuilds the function from a stored collection's config: use the default embedder."""
        return _ChromaEmbeddingFunction(_LazyDefaultEmbedder())

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        return None

    def validate_config_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        return None


class _LazyDefaultEmbedder:
    """The default embedder, loaded on first use (Chroma may build functions it never calls)."""

    name = "all-MiniLM-L6-v2"
    dim = 384

    def embed(self, texts: list[str]) -> list[list[float]]:
        from agentmem.embeddings import default_embedder

        return default_embedder().embed(texts)


#: ``PRAGMA application_id`` of every database this layout has opened ("amem"): an earlier
#: version's file that still lacks it may be claimed by the name it was written for
LAYOUT_STAMP = 0x616D656D
#: earlier versions cut collection names here (so long names could lose their scope key)
_LEGACY_COLLECTION_LIMIT = 120
_PLAIN_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,98}[A-Za-z0-9])?")


def storage_name(name: str) -> str:
    """The name as it appears in file and collection names: safe for both, and different for different names.

    A plain name (ASCII letters, digits and inner ``-``, at most 100
    characters; every first-party plugin's name) is kept as it is, so its
    files keep their names. Any other name becomes a readable slug, a ``.``
    and 16 hex digits of its SHA-256: the ``.`` never occurs in a plain name,
    so a slugged name never equals a plain one, and two slugged names differ
    in their digests. Neither form holds ``_``, the separator of collection
    names.
    """
    if _PLAIN_NAME.fullmatch(name):
        return name
    slug = re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-")[:40].strip("-") or "n"
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{slug}.{digest}"


class Stores:
    """Where scoped data lives: one directory, one Chroma client, SQLite files per scope.

    ``chroma_host`` switches from the embedded ``PersistentClient`` under
    ``root/chroma`` to a Chroma server (``host:port``).
    """

    def __init__(self, root: Path | str, chroma_host: str | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.chroma_host = chroma_host
        self._chroma: Any = None
        self._release: weakref.finalize | None = None
        self._lock = threading.Lock()
        self._adopted: set[str] = set()  # scope keys whose earlier-version data has been looked for

    @property
    def chroma(self) -> chromadb.ClientAPI:
        with self._lock:
            if self._chroma is None:
                import chromadb
                from chromadb.config import Settings

                settings = Settings(anonymized_telemetry=False, allow_reset=False)
                if self.chroma_host:
                    host, _, port = self.chroma_host.partition(":")
                    self._chroma = chromadb.HttpClient(host=host, port=int(port or 8000), settings=settings)
                else:
                    from agentmem.scrub import scrub_freed_memory

                    scrub_freed_memory()  # Chroma writes unused index slots as the allocator left them
                    self._chroma = chromadb.PersistentClient(path=str(self.root / "chroma"), settings=settings)
                # a Stores dropped without close() must not keep its files open for the process's life
                self._release = weakref.finalize(self, _close_client, self._chroma)
            return self._chroma

    def close(self) -> None:
        """Release the Chroma client (its SQLite handles and index files); stored data stays.

        Chroma keeps one system per path alive for the whole process until
        every client on it is closed, so a process that opens many stores
        (an evaluation opens one per task) would otherwise run out of file
        descriptors. Using the store again reopens it.
        """
        with self._lock:
            self._chroma = None
            release, self._release = self._release, None
        if release is not None:
            release()

    def scope_dir(self, scope: Scope) -> Path:
        """The directory of ``scope``'s SQLite files (created; an earlier version's is moved here first)."""
        self.adopt_legacy(scope)
        path = self.root / "scopes" / scope.key()
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- migration from earlier layouts ---------------------------------------------------
    def adopt_legacy(self, scope: Scope) -> None:
        """Move what an earlier version stored under ``scope``'s old key to its key (once per process)."""
        key = scope.key()
        if key in self._adopted:
            return
        old = scope.legacy_key()
        if old is not None:
            self._move_scope(old, key)
        self._adopted.add(key)

    def adopt_scope(self, old: Scope, new: Scope) -> None:
        """Move everything stored under scope ``old`` to scope ``new`` (for callers that re-spell their scopes).

        SQLite files and Chroma collections move by renaming (nothing is
        copied); what ``new`` already holds is kept and the same thing under
        ``old`` is left where it is. Safe to call again, and safe against
        other processes doing the same (a file lock serialises moves).
        """
        self._move_scope(old.legacy_key() or old.key(), new.key())

    def _migration_lock(self) -> Any:
        from filelock import FileLock

        return FileLock(str(self.root / ".migration.lock"))

    def _move_scope(self, old_key: str, new_key: str) -> None:
        source = self.root / "scopes" / old_key
        if old_key == new_key or not source.is_dir():
            return
        with self._migration_lock():
            if not source.is_dir():
                return
            target = self.root / "scopes" / new_key
            target.mkdir(parents=True, exist_ok=True)
            for db in sorted(source.glob("*.sqlite")):
                if not (target / db.name).exists():
                    _move_sqlite(db, target / db.name)
            suffix = f"_{old_key}"
            for name in self._collection_names():
                if name.endswith(suffix):
                    self._rename_collection(name, name[: -len(suffix)] + f"_{new_key}")
            with contextlib.suppress(OSError):
                source.rmdir()  # only when nothing was left behind

    def claim_legacy_db(self, legacy: Path, path: Path) -> None:
        """Move an earlier version's database ``legacy`` to ``path``, unless this layout already uses it."""
        if path.exists() or not legacy.exists():
            return
        with self._migration_lock():
            if path.exists() or not legacy.exists() or _stamped(legacy):
                return
            _move_sqlite(legacy, path)

    def claim_legacy_collection(self, legacy: str, name: str) -> None:
        """Rename an earlier version's collection ``legacy`` to ``name`` when ``name`` does not exist yet."""
        client = self.chroma
        if _collection_exists(client, name) or not _collection_exists(client, legacy):
            return  # the common case: nothing to migrate, no lock taken
        with self._migration_lock():
            self._rename_collection(legacy, name)

    def _collection_names(self) -> list[str]:
        return [getattr(c, "name", c) for c in self.chroma.list_collections()]

    def _rename_collection(self, old: str, new: str) -> None:
        client = self.chroma
        function = _ChromaEmbeddingFunction(_LazyDefaultEmbedder())
        if _collection_exists(client, new):
            return
        try:
            found = client.get_collection(old, embedding_function=function)
        except (ValueError, LookupError, _chroma_not_found()):
            return
        found.modify(name=new)


class Toolkit:
    """Services handed to one memory program for one scope.

    ``namespace`` names the program (its collections and database are its
    own); ``llm`` and ``embedder`` may be ``None`` for programs that need
    neither, in which case asking for them is a clear error.
    """

    def __init__(
        self,
        *,
        scope: Scope,
        stores: Stores,
        llm: ChatModel | None = None,
        embedder: Embedder | None = None,
        namespace: str = "memory",
        clock: Clock | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.scope = scope
        self.stores = stores
        self._llm = llm
        self._embedder = embedder
        self.namespace = _safe_name(namespace)  # the label meters and logs show
        self.storage_name = storage_name(namespace)  # the name files and collections use
        self._legacy_name = _safe_name(namespace)  # where earlier versions kept this program's data
        self.clock = clock or Clock()
        self.logger = logger or logging.getLogger(f"agentmem.memory.{self.namespace}")
        self._db: sqlite3.Connection | None = None

    # -- derived toolkits ---------------------------------------------------
    def for_namespace(self, namespace: str) -> Toolkit:
        """The same services for another program (composition gives each plugin its own)."""
        return Toolkit(
            scope=self.scope,
            stores=self.stores,
            llm=self._llm,
            embedder=self._embedder,
            namespace=namespace,
            clock=self.clock,
            logger=None,
        )

    # -- services -------------------------------------------------------------
    @property
    def llm(self) -> ChatModel:
        if self._llm is None:
            from agentmem.errors import ConfigError

            raise ConfigError(
                f"memory '{self.namespace}' asked for an LLM but none was configured: pass model=... to the agent"
            )
        return self._llm

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from agentmem.embeddings import default_embedder

            self._embedder = default_embedder()
        return self._embedder

    def complete(self, messages: list[dict[str, Any]], *, op: str = "llm", **kw: Any) -> str:
        """A metered LLM call tagged with this program and operation."""
        from agentmem.llm.context import call_context

        with call_context(plugin=self.namespace, op=op):
            return self.llm.complete(messages, caller=f"{self.namespace}.{op}", **kw)

    def structured(self, messages: list[dict[str, Any]], schema: type[T], *, op: str = "llm") -> T:
        """A metered LLM call whose answer is parsed into ``schema``."""
        from agentmem.llm.context import call_context

        with call_context(plugin=self.namespace, op=op):
            return self.llm.structured(messages, schema, caller=f"{self.namespace}.{op}")

    def note(self, event: str, *, op: str = "llm") -> None:
        """Count an outcome of this program's work (``fallback``, ``split``) on the LLM's meter,
        so that evaluation results report it; a no-op for a model without one."""
        note = getattr(self._llm, "note", None)
        if callable(note):
            note(event, f"{self.namespace}.{op}")

    def embed(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed(texts)

    def collection(self, name: str = "items") -> Any:
        """This program's ChromaDB collection ``name`` within this scope (cosine space)."""
        key = self.scope.key()
        full = f"am_{self.storage_name}_{storage_name(name)}_{key}"
        self.stores.adopt_legacy(self.scope)
        legacy = f"am_{self._legacy_name}_{_safe_name(name)}_{key}"
        # a legacy name past the old cut lost its scope key: every scope shared it, so no scope may claim it
        if legacy != full and len(legacy) <= _LEGACY_COLLECTION_LIMIT and self._may_claim_legacy_namespace():
            self.stores.claim_legacy_collection(legacy, full)
        return self.stores.chroma.get_or_create_collection(
            name=full,
            embedding_function=_ChromaEmbeddingFunction(self.embedder),
            metadata={"hnsw:space": "cosine"},
        )

    @property
    def db(self) -> sqlite3.Connection:
        """This program's SQLite database within this scope (WAL mode, autocommit off)."""
        if self._db is None:
            folder = self.stores.scope_dir(self.scope)
            path = folder / f"{self.storage_name}.sqlite"
            if self._legacy_name != self.storage_name and not path.exists():
                self.stores.claim_legacy_db(folder / f"{self._legacy_name}.sqlite", path)
            db = sqlite3.connect(path, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            if db.execute("PRAGMA application_id").fetchone()[0] != LAYOUT_STAMP:
                db.execute(
                    f"PRAGMA application_id={LAYOUT_STAMP}"
                )  # in use by this layout: never claimed by another name
                db.commit()
            db.row_factory = sqlite3.Row
            self._db = db
        return self._db

    def _may_claim_legacy_namespace(self) -> bool:
        """Whether this program may take over collections an earlier version kept under its old name.

        Earlier versions spelled ``my_notes`` and ``my-notes`` alike; once the
        program whose name that spelling is today has opened its database
        there (it carries :data:`LAYOUT_STAMP`), the data is its own.
        """
        if self._legacy_name == self.storage_name:
            return True
        legacy = self.stores.root / "scopes" / self.scope.key() / f"{self._legacy_name}.sqlite"
        return not (legacy.exists() and _stamped(legacy))

    def count_tokens(self, text: str) -> int:
        return count_tokens(text)

    def close(self) -> None:
        if self._db is not None:
            self._db.commit()
            self._db.close()
            self._db = None


def _close_client(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()


def _safe_name(name: str) -> str:
    """A display label for a program (and how versions before the storage names spelled it on disk)."""
    out = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    return out or "memory"


def _stamped(path: Path) -> bool:
    """Whether the database at ``path`` has been opened by this layout."""
    try:
        conn = sqlite3.connect(path)
        try:
            return conn.execute("PRAGMA application_id").fetchone()[0] == LAYOUT_STAMP
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True  # not a database we can read: leave it alone


def _move_sqlite(source: Path, target: Path) -> None:
    """Move a (WAL-mode) SQLite database by renaming, after folding its write-ahead log into it."""
    with contextlib.suppress(sqlite3.DatabaseError):
        conn = sqlite3.connect(source)
        try:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(source, target)
    for side in ("-wal", "-shm"):
        leftover = source.with_name(source.name + side)
        if leftover.exists():
            os.replace(leftover, target.with_name(target.name + side))


def _chroma_not_found() -> type[Exception]:
    try:
        from chromadb.errors import NotFoundError

        return NotFoundError
    except ImportError:  # pragma: no cover - older chromadb
        return ValueError


def _collection_exists(client: Any, name: str) -> bool:
    try:
        client.get_collection(name, embedding_function=_ChromaEmbeddingFunction(_LazyDefaultEmbedder()))
    except (ValueError, LookupError, _chroma_not_found()):
        return False
    return True
