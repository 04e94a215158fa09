"""The LLM-free first stage of the cascade: which children go on, and whether the proxy can be trusted.

Stage 0 scores every valid child on the environment's proxy
(:class:`agentmem.environment.ProxyScoring`: what memory recalled against
the known grounding) over many questions, with ingest and recall only; only
the best fraction of them is paid an LLM for. :func:`keep_best` makes that
cut; :func:`proxy_summary` reports, for `status` and the report, how many
were screened out and the Spearman rank correlation between the proxy and
the LLM score over the programs that reached both, so a user can see
whether the proxy ranks programs as the task model does in that environment.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Any

REJECTED_STATE = "proxy_rejected"  # archive state: ids of children the proxy stage screened out
KEPT_STATE = "proxy_kept"  # ... and of those it sent on (a replay after a crash keeps both decisions)
UNSEEN_PLACES = 1
"""Children per iteration that go on because the proxy cannot tell them from their parent (see keep_best)."""


def keep_best(
    scores: dict[str, float | None],
    fraction: float,
    floor: float = 0.0,
    unseen: Iterable[str] = (),
    unseen_places: int = UNSEEN_PLACES,
) -> tuple[list[str], list[str]]:
    """(kept, screened out) ids: the best ``fraction`` (at least one) of those scoring above ``floor``, and up to
    ``unseen_places`` more from ``unseen``.

    A candidate with no proxy score (its recall-only run failed) or one at or
    below ``floor`` (with the default 0: it recalled none of the grounding)
    never goes on. Ties at the cut are broken by id, so a replay cuts the same.

    ``unseen`` are the children the proxy cannot tell from their parent (the
    same score on every question: see :func:`same_as_parent`), such as a
    child that changes only the usage text the agent reads. Their proxy score
    is their parent's, so the cut would rank them against children that
    change recall by a number that says nothing about their change, and drop
    them whenever a sibling recalls more. The first ``unseen_places`` of them
    above ``floor`` (by id) go on beside the best fraction, to the minibatch
    where their change can be seen; a capped number, so a run's worst-case
    cost stays known (:mod:`agentmem_evolve.estimate`).
    """
    best, extra = cut(scores, fraction, floor, unseen, unseen_places)
    kept = best + extra
    return kept, [pid for pid in scores if pid not in kept]


def cut(
    scores: dict[str, float | None], fraction: float, floor: float, unseen: Iterable[str], unseen_places: int
) -> tuple[list[str], list[str]]:
    """(the best fraction, the unseen children that go on beside it): :func:`keep_best`'s two parts."""
    eligible = sorted(
        ((s, pid) for pid, s in scores.items() if s is not None and s > floor), key=lambda t: (-t[0], t[1])
    )
    n = max(1, math.ceil(len(eligible) * fraction)) if eligible else 0
    best = [pid for _, pid in eligible[:n]]
    above = {pid for _, pid in eligible}
    extra = [pid for pid in sorted(set(unseen)) if pid in above and pid not in best][: max(0, unseen_places)]
    return best, extra


def same_as_parent(child: dict[str, float], parents: Iterable[dict[str, float]]) -> bool:
    """Whether the proxy cannot tell a child from one of its parents: the same score on every question.

    ``child`` and each parent are per-question proxy scores (question id ->
    score) on the same question set; an empty one proves nothing.
    """
    return bool(child) and any(child == parent for parent in parents)


PROMPT_DIGEST = "prompt_digest"
"""Proxy-stage metric: one number for every memory block the agent would have read (see :func:`prompt_digest`)."""


def prompt_digest(shown: list[str]) -> float:
    """One number for a proxy run's memory blocks (one digest a question, usage text included).

    Two programs with the same digest would put the same prompts before the
    task model on every proxy question, so the LLM (and its cache) would
    answer them alike: a child with its parent's digest changes nothing the
    model sees there. 48 bits of a SHA-256, so the number is exact as a float
    among the evaluation's float metrics.
    """
    return float(int(hashlib.sha256("\n".join(shown).encode()).hexdigest()[:12], 16))


def same_prompts(child: dict[str, float], parents: Iterable[dict[str, float]]) -> bool:
    """Whether a child would show the task model exactly what a parent shows, on every proxy question.

    ``child`` and each parent are proxy-stage metrics; the comparison is of
    their ``prompt_digest`` (:func:`prompt_digest`),
    and an evaluation without one (made before digests were kept) proves
    nothing. Such a child is inert there: every LLM score of it would be
    its parent's, answered from the cache, so it takes no place in the cut.
    """
    mine = child.get(PROMPT_DIGEST)
    return mine is not None and any(parent.get(PROMPT_DIGEST) == mine for parent in parents)


def _ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (Pearson on tie-averaged ranks); ``None`` under 3 pairs or with no spread."""
    if len(xs) != len(ys) or len(xs) < 3:
        return None
    rx, ry = _ranks(list(xs)), _ranks(list(ys))
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = sum((a - mx) ** 2 for a in rx)
    vy = sum((b - my) ** 2 for b in ry)
    if vx == 0 or vy == 0:
        return None
    return round(cov / math.sqrt(vx * vy), 4)


def rank_correlation(archive: Any, stage: str) -> dict[str, Any]:
    """Spearman between the proxy score and the LLM score at ``stage``, over programs scored on both."""
    proxy = {s.program_id: s.score for s in archive.scored("proxy")}
    llm = {s.program_id: s.score for s in archive.scored(stage)}
    both = sorted(set(proxy) & set(llm))
    return {"n": len(both), "spearman": spearman([proxy[p] for p in both], [llm[p] for p in both])}


def proxy_summary(archive: Any) -> dict[str, Any] | None:
    """For `status` and the report: programs proxy-scored, screened out, and the proxy-vs-LLM rank correlation.

    ``None`` when the run has no proxy stage (the environment has no proxy, or it was turned off).
    """
    scored = archive.evaluations(stage="proxy")
    if not scored:
        return None
    rejected = archive.get_state(REJECTED_STATE, []) or []
    return {
        "scored": len({e.program_id for e in scored}),
        "screened_out": len(rejected),
        "rank_correlation": {stage: rank_correlation(archive, stage) for stage in ("screen", "select")},
    }
