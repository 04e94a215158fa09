"""The toolkit: the only door between a memory program and the world.

A program gets metered LLM calls, embeddings, a ChromaDB collection, an
SQLite database, a clock and a logger from here, and nothing else. Every
store is scoped: a toolkit built for one :class:`~agentmem.types.Scope` opens
collections and databases that no other scope can name, so one user's
memories never leak into another's.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import weakref
from datetime import datetime, timezone
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
    """Turns texts into unit vectors (see :class:`agentmem.embeddings.MiniLMEmbedder`)."""

    name: str
    dim: int

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class Clock:
    """Wall-clock time; environments replace it to replay a dataset's own dates."""

    def __init__(self, fixed: datetime | None = None) -> None:
        self._fixed = fixed

    def now(self) -> datetime:
        return self._fixed or datetime.now(timezone.utc)

    def set(self, when: datetime | None) -> None:
        """Pin the clock (``None`` returns it to wall time)."""
        self._fixed = when


class _ChromaEmbeddingFunction:
    """Adapts an :class:`Embedder` to ChromaDB's embedding-function interface."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def __call__(self, input: list[str]) -> list[Any]:  # noqa: A002 - chroma's name
        import numpy as np

        return [np.asarray(v, dtype=np.float32) for v in self._embedder.embed(list(input))]

    def embed_query(self, input: list[str]) -> list[Any]:  # noqa: A002
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
    def build_from_config(config: dict[str, Any]) -> "_ChromaEmbeddingFunction":
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

    @property
    def chroma(self) -> "chromadb.ClientAPI":
        with self._lock:
            if self._chroma is None:
                import chromadb
                from chromadb.config import Settings

                settings = Settings(anonymized_telemetry=False, allow_reset=False)
                if self.chroma_host:
                    host, _, port = self.chroma_host.partition(":")
                    self._chroma = chromadb.HttpClient(host=host, port=int(port or 8000), settings=settings)
                else:
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
        path = self.root / "scopes" / scope.key()
        path.mkdir(parents=True, exist_ok=True)
        return path


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
        self.namespace = _safe_name(namespace)
        self.clock = clock or Clock()
        self.logger = logger or logging.getLogger(f"agentmem.memory.{self.namespace}")
        self._db: sqlite3.Connection | None = None

    # -- derived toolkits ---------------------------------------------------
    def for_namespace(self, namespace: str) -> "Toolkit":
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

            raise ConfigError(f"memory '{self.namespace}' asked for an LLM but none was configured: pass model=... to the agent")
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
        full = f"am_{self.namespace}_{_safe_name(name)}_{self.scope.key()}"[:120]
        return self.stores.chroma.get_or_create_collection(
            name=full,
            embedding_function=_ChromaEmbeddingFunction(self.embedder),  # type: ignore[arg-type]
            metadata={"hnsw:space": "cosine"},
        )

    @property
    def db(self) -> sqlite3.Connection:
        """This program's SQLite database within this scope (WAL mode, autocommit off)."""
        if self._db is None:
            path = self.stores.scope_dir(self.scope) / f"{self.namespace}.sqlite"
            self._db = sqlite3.connect(path, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.row_factory = sqlite3.Row
        return self._db

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
    out = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    return out or "memory"
