"""LLM-free retrieval building blocks shared by memory programs.

Dense vectors find paraphrases; exact words (names, numbers, rare terms)
are what BM25 finds and embeddings blur. Hybrid memories rank with both and
fuse the rankings, optionally with recency. Everything here is pure Python
over in-memory structures a program rebuilds from its own SQLite rows on
open, so it adds no service and no dependency.

* :class:`BM25Index` - an incremental Okapi BM25 inverted index.
* :func:`reciprocal_rank_fusion` - weighted RRF of several rankings.
* :func:`tokenize` - the lowercase word tokens both sides use.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence

__all__ = ["BM25Index", "STOPWORDS", "jaccard", "reciprocal_rank_fusion", "tokenize", "top"]

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")

STOPWORDS: frozenset[str] = frozenset(
    """a an and are as at be been but by did do does for from had has have he her hers him his how i i'm if in
    into is it it's its me my of on or our she so that the their them then there they this to too was we were
    what when where which who whom why will with would you your yours am can could should just about also""".split()
)


def tokenize(text: str, *, stopwords: frozenset[str] = STOPWORDS) -> list[str]:
    """Lowercase word tokens of ``text`` without stop words (possessive ``'s`` dropped)."""
    out: list[str] = []
    for tok in _WORD.findall(text.lower()):
        if tok.endswith("'s"):
            tok = tok[:-2]
        if tok and tok not in stopwords:
            out.append(tok)
    return out


def jaccard(a: str, b: str) -> float:
    """Word-set overlap of two texts (0..1): a cheap near-duplicate test."""
    sa, sb = set(tokenize(a)), set(tokenize(b))
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


class BM25Index:
    """Okapi BM25 over documents added and removed one at a time.

    Scoring walks only the postings of the query's terms, so a search costs
    in proportion to how many documents share a word with the query, not to
    the size of the index. ``k1`` and ``b`` are the usual BM25 constants.
    """

    def __init__(self, k1: float = 1.2, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self._postings: dict[str, dict[str, int]] = defaultdict(dict)
        self._lengths: dict[str, int] = {}
        self._terms: dict[str, tuple[str, ...]] = {}
        self._total_len = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._lengths

    def add(self, doc_id: str, text: str) -> None:
        """Index ``text`` under ``doc_id`` (replacing what was there)."""
        if doc_id in self._lengths:
            self.remove(doc_id)
        counts = Counter(tokenize(text))
        length = sum(counts.values())
        self._lengths[doc_id] = length
        self._terms[doc_id] = tuple(counts)
        self._total_len += length
        for term, tf in counts.items():
            self._postings[term][doc_id] = tf

    def add_many(self, docs: Iterable[tuple[str, str]]) -> None:
        for doc_id, text in docs:
            self.add(doc_id, text)

    def remove(self, doc_id: str) -> None:
        """Forget ``doc_id`` (no-op if absent)."""
        length = self._lengths.pop(doc_id, None)
        if length is None:
            return
        self._total_len -= length
        for term in self._terms.pop(doc_id, ()):
            posting = self._postings.get(term)
            if posting is not None:
                posting.pop(doc_id, None)
                if not posting:
                    del self._postings[term]

    def scores(self, query: str, *, allowed: set[str] | None = None) -> dict[str, float]:
        """BM25 score of every document sharing a term with ``query`` (optionally only ``allowed`` ids)."""
        n = len(self._lengths)
        if n == 0:
            return {}
        avg = self._total_len / n or 1.0
        out: dict[str, float] = defaultdict(float)
        for term in set(tokenize(query)):
            posting = self._postings.get(term)
            if not posting:
                continue
            df = len(posting)
            idf = math.log(1.0 + (n - df + 0.5) / (df + 0.5))
            for doc_id, tf in posting.items():
                if allowed is not None and doc_id not in allowed:
                    continue
                norm = tf + self.k1 * (1.0 - self.b + self.b * self._lengths[doc_id] / avg)
                out[doc_id] += idf * tf * (self.k1 + 1.0) / norm
        return dict(out)

    def search(self, query: str, k: int = 10, *, allowed: set[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` best ``(doc_id, score)`` pairs, best first (ties by id, for determinism)."""
        scored = self.scores(query, allowed=allowed)
        return sorted(scored.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[str]],
    *,
    weights: Sequence[float] | None = None,
    k: int = 60,
) -> dict[str, float]:
    """Weighted reciprocal-rank fusion: ``sum_i w_i / (k + rank_i(d))`` over the rankings that hold ``d``.

    Rank-based fusion needs no score calibration between, say, cosine
    similarities and BM25 scores, which live on unrelated scales.
    """
    weights = list(weights) if weights is not None else [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(rankings)} rankings but {len(weights)} weights")
    fused: dict[str, float] = defaultdict(float)
    for ranking, weight in zip(rankings, weights):
        if weight <= 0:
            continue
        for rank, doc_id in enumerate(ranking):
            fused[doc_id] += weight / (k + rank + 1)
    return dict(fused)


def top(scores: Mapping[str, float], n: int) -> list[str]:
    """The ``n`` ids with the highest scores (ties by id)."""
    return [d for d, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]
