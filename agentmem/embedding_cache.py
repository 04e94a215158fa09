"""Embeddings computed once: a memo in memory and a store on disk shared by processes and runs.

Evaluating memory programs embeds the same conversations again and again:
every candidate of an evolution run ingests the same dataset, every
evaluation process of a run does, and so does the next run. The vectors
depend only on the embedding model and the text, so they are kept:

* :class:`CachingEmbedder` wraps an embedder: an in-memory LRU memo in front
  of an optional :class:`EmbeddingStore`; only texts found in neither reach
  the model.
* :class:`EmbeddingStore` is a size-bounded SQLite store (diskcache) under
  ``<cache>/embeddings/vectors/``, keyed by a digest of the embedder's
  :attr:`~agentmem.embeddings.MiniLMEmbedder.identity` (model, weights hash,
  truncation) and the text. Several processes share it safely.

Who may write it matters, because a wrong vector would silently change every
later score: only the trusted process that runs the model writes. Sandboxed
candidates (:mod:`agentmem_evolve.worker`) never see the file (their jail
has no view of the user's cache directory) and get vectors only by asking the
controller over their channel with texts; there is no request that hands the
controller a vector. Entries are raw float32 bytes of the model's exact
dimension: anything else found in the file (a pickled value planted by
someone with write access to the user's cache, a truncated row) is a miss,
never unpickled.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem.errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from agentmem.toolkit import Embedder

ENV_STORE = "AGENTMEM_EMBEDDING_CACHE"
#: default bound of the on-disk store: some 650,000 MiniLM vectors
DEFAULT_STORE_BYTES = 1 << 30


def text_key(identity: str, text: str) -> bytes:
    """A 16-byte digest of (embedder identity, text): what the store is keyed by (never the text)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(identity.encode("utf-8"))
    digest.update(b"\0")
    digest.update(text.encode("utf-8", "surrogatepass"))
    return digest.digest()


def _raw_only_disk() -> type:
    """A diskcache ``Disk`` that returns raw bytes values only: nothing found in the file is ever unpickled."""
    import diskcache
    from diskcache.core import MODE_RAW

    class RawOnlyDisk(diskcache.Disk):
        def fetch(self, mode: int, filename: str | None, value: Any, read: bool) -> Any:
            if mode != MODE_RAW or filename is not None:
                return None  # a pickled or file-backed entry: not one this module wrote
            return super().fetch(mode, filename, value, read)

    return RawOnlyDisk


class EmbeddingStore:
    """Vectors on disk keyed by (embedder identity, text) digests; shared by processes, bounded in size.

    Reads and writes are batched (one transaction per call). A store that
    cannot be opened or written (read-only cache dir, full disk) degrades to
    a miss: embeddings are then computed, never wrong.
    """

    def __init__(self, directory: Path, *, max_bytes: int = DEFAULT_STORE_BYTES) -> None:
        import diskcache

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(self.directory),
            size_limit=max_bytes,
            eviction_policy="least-recently-stored",  # reads stay reads: no write per hit
            disk=_raw_only_disk(),
            statistics=False,
        )

    def get_many(self, keys: list[bytes], dim: int) -> dict[bytes, np.ndarray]:
        """The stored vectors among ``keys`` (float32, ``dim`` long); absent or malformed entries are left out."""
        import numpy as np

        found: dict[bytes, np.ndarray] = {}
        want = dim * 4
        try:
            for key in keys:
                raw = self._cache.get(key, default=None, retry=True)
                if isinstance(raw, bytes) and len(raw) == want:
                    vector = np.frombuffer(raw, dtype=np.float32)
                    if np.isfinite(vector).all():
                        found[key] = vector
        except Exception:
            pass
        return found

    def put_many(self, items: list[tuple[bytes, np.ndarray]]) -> None:
        import numpy as np

        try:
            with self._cache.transact(retry=True):
                for key, vector in items:
                    self._cache.set(key, np.asarray(vector, dtype=np.float32).tobytes(), retry=True)
        except Exception:
            pass

    def __len__(self) -> int:
        return len(self._cache)

    def close(self) -> None:
        self._cache.close()


def default_store_dir() -> Path:
    from agentmem.embeddings import default_cache_dir

    return default_cache_dir() / "embeddings" / "vectors"


_STORES: dict[Path, EmbeddingStore] = {}
_STORES_LOCK = threading.Lock()


def default_store() -> EmbeddingStore | None:
    """The user's shared store, as the ``embedding_cache`` setting says; ``None`` when it is off.

    The setting (``AGENTMEM_EMBEDDING_CACHE`` or ``agentmem.toml``, see
    :mod:`agentmem.config`) is on (``<cache>/embeddings/vectors``), off, or
    another directory. A store that cannot be created in the default place is
    ``None`` too (embeddings are then computed); in a directory the user named,
    it is one :class:`~agentmem.errors.ConfigError` line.
    """
    from agentmem.config import load_settings

    setting = load_settings().embedding_cache
    if setting is False:
        return None
    explicit = isinstance(setting, Path)
    directory = setting if isinstance(setting, Path) else default_store_dir()
    with _STORES_LOCK:
        store = _STORES.get(directory)
        if store is None:
            try:
                store = EmbeddingStore(directory)
            except Exception as exc:
                if not explicit:
                    return None  # the default place is unusable: compute, as without a cache
                raise ConfigError(
                    f"embedding_cache ({ENV_STORE}) = {setting}: the embedding cache cannot be opened there "
                    f"({' '.join(str(exc).split())}): set it to a writable directory or to off"
                ) from exc
            _STORES[directory] = store
        return store


class CachingEmbedder:
    """An embedder that computes each (model, text) once: memory memo, then the shared store, then the model.

    Keys are digests of the texts (with the inner embedder's identity for the
    store) and values float32 vectors, so memory is bounded by ``max_items``
    whatever the texts (a sandboxed candidate may ask to embed megabytes of
    text; none of it is kept). The store is used only when the inner
    embedder declares an ``identity``: vectors of an unnamed embedder are
    never shared.
    """

    def __init__(self, inner: Embedder, max_items: int = 100_000, *, store: EmbeddingStore | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.identity: str | None = getattr(inner, "identity", None)
        self.releases_gil = bool(getattr(inner, "releases_gil", False))
        self.store = store if self.identity else None
        self._cache: OrderedDict[bytes, Any] = OrderedDict()
        self._max = max_items
        self._lock = threading.Lock()
        #: texts the inner model embedded, texts the store answered (what the cache saved)
        self.computed = 0
        self.from_store = 0

    def _key(self, text: str) -> bytes:
        return text_key(self.identity or "", text)

    def embed(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        keys = [self._key(t) for t in texts]
        with self._lock:
            missing = list(dict.fromkeys((k, t) for k, t in zip(keys, texts) if k not in self._cache))
        if missing and self.store is not None:
            stored = self.store.get_many([k for k, _ in missing], self.dim)
            if stored:
                with self._lock:
                    self.from_store += len(stored)
                    for key, vector in stored.items():
                        self._cache[key] = vector
                    self._trim()
                missing = [(k, t) for k, t in missing if k not in stored]
        if missing:
            vectors = [np.asarray(v, dtype=np.float32) for v in self.inner.embed([t for _, t in missing])]
            if self.store is not None:
                self.store.put_many([(k, v) for (k, _), v in zip(missing, vectors)])
            with self._lock:
                self.computed += len(missing)
                for (key, _), vec in zip(missing, vectors):
                    self._cache[key] = vec
                self._trim()
        with self._lock:
            found = {k: self._cache.get(k) for k in keys}
        absent = [t for k, t in zip(keys, texts) if found[k] is None]  # evicted meanwhile: embed again
        fresh = iter(self.inner.embed(absent)) if absent else iter(())
        return [(cached.tolist() if (cached := found[k]) is not None else list(next(fresh))) for k in keys]

    def _trim(self) -> None:
        while len(self._cache) > self._max:
            self._cache.popitem(last=False)


_SHARED: dict[tuple[int, int], CachingEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder() -> CachingEmbedder:
    """The process-wide default embedder behind the memo and the user's shared store.

    What evaluation and evolution embed with: every evaluation in a process,
    every process of a run and every later run reuse each other's vectors.
    """
    from agentmem.embeddings import default_embedder

    inner = default_embedder()
    store = default_store()
    key = (id(inner), id(store))
    with _SHARED_LOCK:
        cached = _SHARED.get(key)
        if cached is None:
            cached = _SHARED[key] = CachingEmbedder(inner, store=store)
        return cached


__all__ = ["CachingEmbedder", "EmbeddingStore", "default_store", "shared_embedder", "text_key"]
