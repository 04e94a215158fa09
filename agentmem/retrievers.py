"""Retrieve: how a query finds stored items, as small swappable modules with bounded knobs.

A :class:`Retrieval` is a retriever followed by optional stages:

* retrievers rank a :class:`~agentmem.store.Store`'s items for a query -
  :class:`DenseRetriever` (cosine over the Chroma mirror: paraphrases),
  :class:`LexicalRetriever` (BM25: exact names, numbers, rare words) and
  :class:`HybridRetriever` (both, fused by weighted reciprocal rank, with an
  optional similarity floor);
* stages reshape the ranking - :class:`RecencyBlend` (relevance blended with
  an exponential decay of age), :class:`NearDuplicateFilter` (hits that
  repeat a better hit's words are dropped, and the list cut to ``k``) and
  :class:`NeighbourWidening` (the items stored just before and after each
  hit come along as context).

Every module declares its knobs as a ``Params`` model (bounded fields); a
program's ``Params`` includes them by inheritance and configures the module
with ``Module.from_params``.
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from agentmem.modules import Module, NoParams
from agentmem.retrieval import reciprocal_rank_fusion, tokenize, word_overlap
from agentmem.store import Store, StoredItem

__all__ = [
    "DenseRetriever",
    "Hit",
    "HybridParams",
    "HybridRetriever",
    "LexicalRetriever",
    "NearDuplicateFilter",
    "NearDuplicateParams",
    "NeighbourParams",
    "NeighbourWidening",
    "Probe",
    "RecencyBlend",
    "RecencyParams",
    "Retrieval",
    "Retriever",
    "Stage",
    "UtilityBlend",
    "UtilityParams",
    "allow_background_embedding",
]

RRF_K = 60  # reciprocal-rank fusion constant (Cormack et al.)


class Hit(NamedTuple):
    """One ranked item: its id and score (higher is better)."""

    id: str
    score: float


@dataclass
class Probe:
    """A query on its way through retrieval: its text, and its vector once some module needed it."""

    text: str
    _vector: list[float] | None = field(default=None, repr=False)
    _pending: Future[list[list[float]]] | None = field(default=None, repr=False)

    def prefetch(self, store: Store) -> None:
        """Start embedding the text in a background thread, so that word search can run meanwhile.

        Measured at 100k items (``benchmarks/bench_recall.py``): the query's embedding and the BM25
        search were a third and a sixth of an episodic recall, one after the other; the embedder
        (onnxruntime, one thread) releases the GIL, so on two cores they overlap. Only an embedder
        that declares so (``releases_gil``, see :class:`agentmem.toolkit.Embedder`) is run in a thread;
        where it does not, where no thread can be started, or where :func:`allow_background_embedding`
        turned it off (evolution's sandbox, which forbids threads), the vector is computed when asked for.
        """
        if self._vector is not None or self._pending is not None or not _BACKGROUND_EMBEDDING:
            return
        if not getattr(store.toolkit.embedder, "releases_gil", False):
            # an embedder in pure Python holds the GIL: a thread would only take turns with the word search
            # (measured with bench_recall's hashing embedder: hierarchical 11% slower at p50 at 100k items)
            return
        try:
            self._pending = _embedding_pool().submit(contextvars.copy_context().run, store.embed, [self.text])
        except RuntimeError:  # threads unavailable or the interpreter shutting down: embed when asked
            pass

    def vector(self, store: Store) -> list[float]:
        if self._vector is None:
            pending, self._pending = self._pending, None
            self._vector = (pending.result() if pending is not None else store.embed([self.text]))[0]
        return self._vector


_BACKGROUND_EMBEDDING = True


def allow_background_embedding(allowed: bool) -> None:
    """Whether :meth:`Probe.prefetch` may embed in a background thread (on unless a host forbids threads).

    Evolution's sandbox worker turns it off before its policy: a thread there would be denied (and the
    candidate failed for it), and the worker's embedder is a channel to the controller that one thread uses.
    """
    global _BACKGROUND_EMBEDDING
    _BACKGROUND_EMBEDDING = bool(allowed)


_EMBEDDING_POOL: ThreadPoolExecutor | None = None
_EMBEDDING_POOL_LOCK = threading.Lock()


def _embedding_pool() -> ThreadPoolExecutor:
    """The process's pool that embeds queries while callers search words (see :meth:`Probe.prefetch`).

    As many workers as cores (at most 8, started only when needed): recalls made at once from several
    threads (an MCP server's clients, a threaded evaluation) still embed in parallel, as they did inline.
    """
    global _EMBEDDING_POOL
    with _EMBEDDING_POOL_LOCK:
        if _EMBEDDING_POOL is None:
            _EMBEDDING_POOL = ThreadPoolExecutor(
                max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="agentmem-query-embedding"
            )
        return _EMBEDDING_POOL


def _forget_embedding_pool() -> None:
    """In a forked child: the executor came along but its thread did not (waiting on it would hang)."""
    global _EMBEDDING_POOL, _EMBEDDING_POOL_LOCK
    _EMBEDDING_POOL, _EMBEDDING_POOL_LOCK = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_embedding_pool)


@dataclass
class Context:
    """What stages share while one query is retrieved: the store, the probe, ``k`` and the items fetched so far."""

    store: Store
    probe: Probe
    k: int
    fetched: dict[str, StoredItem] = field(default_factory=dict)

    def items(self, ids: Sequence[str]) -> dict[str, StoredItem]:
        missing = [i for i in ids if i not in self.fetched]
        if missing:
            self.fetched.update(self.store.get(missing))
        return {i: self.fetched[i] for i in ids if i in self.fetched}

    def found(self, hits: Sequence[Hit]) -> list[tuple[Hit, StoredItem]]:
        """Each hit with its stored item, in ranking order (a hit whose item is gone is left out)."""
        items = self.items([h.id for h in hits])
        return [(h, items[h.id]) for h in hits if h.id in items]


# -- retrievers ---------------------------------------------------------------------------------
class Retriever(Module[Any]):
    """Ranks a store's active items for a probe: the ``k`` best hits, best first."""

    kind = "retriever"

    def search(self, store: Store, probe: Probe, k: int) -> list[Hit]:
        raise NotImplementedError


class DenseRetriever(Retriever):
    """Cosine similarity between the query's embedding and each item's (the Chroma mirror)."""

    name = "dense"
    Params = NoParams

    def search(self, store: Store, probe: Probe, k: int) -> list[Hit]:
        return [Hit(i, s) for i, s in store.nearest(probe.vector(store), k)]


class LexicalRetriever(Retriever):
    """Okapi BM25 over the items' words: exact names, numbers and rare terms that embeddings blur."""

    name = "lexical"
    Params = NoParams

    def search(self, store: Store, probe: Probe, k: int) -> list[Hit]:
        return [Hit(i, s) for i, s in store.lexical(probe.text, k)]


class HybridParams(BaseModel):
    """Knobs of hybrid retrieval."""

    model_config = ConfigDict(extra="forbid")

    dense_weight: float = Field(1.0, ge=0.0, le=3.0, description="weight of the dense (embedding) ranking")
    bm25_weight: float = Field(1.0, ge=0.0, le=3.0, description="weight of the BM25 ranking against the dense one")
    min_similarity: float = Field(
        0.0, ge=0.0, le=1.0, description="cosine similarity to the query below which an item is never returned (0: off)"
    )


class HybridRetriever(Retriever):
    """Dense and BM25 rankings fused by weighted reciprocal rank (no score calibration needed).

    Scores are the fused value over the best possible one (rank 1 in every
    ranking), so they lie in 0..1. With ``min_similarity`` every candidate,
    BM25-only ones included, must be that close to the query in embedding
    space before fusion: an unrelated query then gets nothing.
    """

    name = "hybrid"
    Params = HybridParams
    params: HybridParams

    def search(self, store: Store, probe: Probe, k: int) -> list[Hit]:
        p = self.params
        floor = p.min_similarity > 0
        needs_vector = p.dense_weight > 0 or floor
        if needs_vector and p.bm25_weight > 0:
            probe.prefetch(store)  # the query is embedded while BM25 searches
        words = [i for i, _ in store.lexical(probe.text, k)] if p.bm25_weight > 0 else []
        dense = store.nearest(probe.vector(store), k) if needs_vector else []
        if not floor:
            rankings = [[i for i, _ in dense], words]
            return fuse(rankings, [p.dense_weight, p.bm25_weight], order=store.order({i for r in rankings for i in r}))
        cosine = dict(dense)
        extra = store.vectors([i for i in words if i not in cosine])
        if extra:  # word-only hits still have to pass the similarity floor
            sims = np.stack(list(extra.values())) @ np.asarray(probe.vector(store), dtype=np.float32)
            cosine.update(zip(extra, (float(x) for x in sims)))
        eligible = sorted((i for i, s in cosine.items() if s >= p.min_similarity), key=lambda i: -cosine[i])
        allowed = set(eligible)
        return fuse(
            [eligible, [i for i in words if i in allowed]], [p.dense_weight, p.bm25_weight], order=store.order(allowed)
        )


def fuse(
    rankings: Sequence[Sequence[str]], weights: Sequence[float] | None = None, *, order: Mapping[str, int] | None = None
) -> list[Hit]:
    """Weighted reciprocal-rank fusion of rankings, scored against the best possible value, best first.

    Ties go to the item first in ``order`` (a store's insertion order: older first), then by id.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    fused = reciprocal_rank_fusion(rankings, weights=weights, k=RRF_K)
    best = sum(w for w, r in zip(weights, rankings) if w > 0) / (RRF_K + 1) or 1.0
    place = order or {}
    ranked = sorted(fused.items(), key=lambda kv: (-kv[1], place.get(kv[0], float("inf")), kv[0]))
    return [Hit(i, s / best) for i, s in ranked]


# -- stages ---------------------------------------------------------------------------------------
class Stage(Module[Any]):
    """Reshapes a ranking: rescores, filters, cuts or widens it."""

    kind = "stage"

    def apply(self, hits: list[Hit], ctx: Context) -> list[Hit]:
        raise NotImplementedError


class RecencyParams(BaseModel):
    """Knobs of the recency blend."""

    model_config = ConfigDict(extra="forbid")

    recency_weight: float = Field(0.0, ge=0.0, le=1.0, description="weight of recency against relevance")
    recency_half_life_days: float = Field(30.0, ge=0.5, le=3650.0, description="age at which recency counts half")


class RecencyBlend(Stage):
    """Relevance (against the best hit) blended with ``exp``-decay of age against the newest item.

    With ``recency_weight`` 0 it only rescales relevance so the best hit scores 1.
    """

    name = "recency"
    Params = RecencyParams
    params: RecencyParams

    def apply(self, hits: list[Hit], ctx: Context) -> list[Hit]:
        if not hits:
            return hits
        top = max(h.score for h in hits) or 1.0
        w = self.params.recency_weight
        if w <= 0:
            return [Hit(h.id, h.score / top) for h in hits]
        items = ctx.items([h.id for h in hits])
        newest = ctx.store.newest_ts()
        half_life = self.params.recency_half_life_days * 86400.0
        scored = [
            Hit(
                h.id,
                (1 - w) * h.score / top
                + w
                * math.exp(-math.log(2) * max(0.0, newest - (items[h.id].ts if h.id in items else newest)) / half_life),
            )
            for h in hits
        ]
        return sorted(scored, key=lambda h: (-h.score, items[h.id].seq if h.id in items else 0))


class UtilityParams(BaseModel):
    """Knobs of the utility blend."""

    model_config = ConfigDict(extra="forbid")

    utility_weight: float = Field(
        0.3, ge=0.0, le=1.0, description="weight of an item's utility (helped+1)/(retrieved+2) against its relevance"
    )


class UtilityBlend(Stage):
    """Relevance blended with each item's track record: items that helped before rank higher."""

    name = "utility"
    Params = UtilityParams
    params: UtilityParams

    def apply(self, hits: list[Hit], ctx: Context) -> list[Hit]:
        w = self.params.utility_weight
        items = ctx.items([h.id for h in hits])
        scored = [Hit(h.id, (1.0 - w) * h.score + w * items[h.id].utility) for h in hits if h.id in items]
        return sorted(scored, key=lambda h: (-h.score, items[h.id].seq))


class NearDuplicateParams(BaseModel):
    """Knobs of near-duplicate filtering."""

    model_config = ConfigDict(extra="forbid")

    dedup_threshold: float = Field(
        0.9, ge=0.5, le=1.0, description="word overlap above which two hits count as one (1.0: off)"
    )


class NearDuplicateFilter(Stage):
    """Keeps the ``k`` best hits, dropping any whose words overlap a better kept hit by ``dedup_threshold``."""

    name = "dedup"
    Params = NearDuplicateParams
    params: NearDuplicateParams

    def apply(self, hits: list[Hit], ctx: Context) -> list[Hit]:
        # Measured at 100k items (benchmarks/bench_recall.py, profiled): fetching every fused hit and
        # re-tokenizing both texts of every pair took a fifth of an episodic recall. Hits are fetched 2k at a
        # time (more only when duplicates use them up) and each kept text is tokenized once.
        threshold = self.params.dedup_threshold
        kept: list[Hit] = []
        kept_words: list[set[str]] = []
        step = max(2 * ctx.k, 1)
        items: dict[str, StoredItem] = {}
        for i, hit in enumerate(hits):
            if len(kept) >= ctx.k:
                break
            if i % step == 0:
                items = ctx.items([h.id for h in hits[i : i + step]])
            item = items.get(hit.id)
            if item is None:
                continue
            if threshold < 1.0:
                words = set(tokenize(item.text))
                if any(word_overlap(words, other) >= threshold for other in kept_words):
                    continue
                kept_words.append(words)
            kept.append(hit)
        return kept


class NeighbourParams(BaseModel):
    """Knobs of neighbour widening."""

    model_config = ConfigDict(extra="forbid")

    neighbors: int = Field(0, ge=0, le=3, description="adjacent items added around each hit for context")


class NeighbourWidening(Stage):
    """Adds the items stored just before and after each hit (``neighbors`` each side), scored just below it."""

    name = "neighbours"
    Params = NeighbourParams
    params: NeighbourParams

    def apply(self, hits: list[Hit], ctx: Context) -> list[Hit]:
        n = self.params.neighbors
        if n <= 0 or not hits:
            return hits
        items = ctx.items([h.id for h in hits])
        wanted: dict[int, float] = {}
        for hit in hits:
            item = items.get(hit.id)
            if item is None:
                continue
            for delta in range(1, n + 1):
                for near in (item.seq - delta, item.seq + delta):
                    wanted.setdefault(near, hit.score - 0.01 * delta)
        found = ctx.store.at_seq(wanted)
        out = list(hits)
        seen = {h.id for h in hits}
        for seq, score in wanted.items():
            item = found.get(seq)
            if item is not None and item.id not in seen:
                seen.add(item.id)
                ctx.fetched[item.id] = item
                out.append(Hit(item.id, score))
        return out


# -- the pipeline -----------------------------------------------------------------------------------
class Retrieval:
    """A retriever, then its stages: ``run`` returns ranked hits (``k`` of them unless a stage widens them).

    The retriever over-fetches (``max(fetch_factor * k, min_fetch)``
    candidates) so that stages that reorder or drop hits still have ``k`` to
    choose from; unless a stage cuts the list (near-duplicate filtering), it
    is cut to ``k`` before widening, or at the end.
    """

    def __init__(self, retriever: Retriever, *stages: Stage, fetch_factor: int = 3, min_fetch: int = 10) -> None:
        self.retriever = retriever
        self.stages = list(stages)
        self.fetch_factor = fetch_factor
        self.min_fetch = min_fetch

    def run(self, store: Store, text: str | Probe, k: int) -> tuple[list[Hit], Context]:
        probe = text if isinstance(text, Probe) else Probe(text)
        total = store.count()
        ctx = Context(store=store, probe=probe, k=min(k, total))
        if total == 0 or k <= 0 or not probe.text.strip():
            return [], ctx
        hits = self.retriever.search(store, probe, min(total, max(k * self.fetch_factor, self.min_fetch)))
        cut = False
        for stage in self.stages:
            if not cut and isinstance(stage, NeighbourWidening):
                hits, cut = hits[: ctx.k], True
            hits = stage.apply(hits, ctx)
            cut = cut or isinstance(stage, NearDuplicateFilter)
        return (hits if cut else hits[: ctx.k]), ctx

    @property
    def modules(self) -> list[Module[Any]]:
        return [self.retriever, *self.stages]

    def __repr__(self) -> str:
        return " -> ".join(repr(m) for m in self.modules)
