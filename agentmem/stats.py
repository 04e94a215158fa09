"""Confidence intervals over questions, and paired comparisons of two programs.

A score averaged over a dozen questions moves by a tenth when one answer
changes, so a bare mean says little about which of two memory programs is
better. Everything that compares programs (``agentmem evolve`` selecting a
child over its parent, its report comparing the best with its seed on test,
benchmarks putting a program against a baseline) goes through this module so
that every such claim comes with its evidence:

* :func:`mean_interval`: a mean with a percentile-bootstrap interval over the
  questions it averages, and :func:`mean_intervals` for every metric of one
  evaluation at the cost of about one (the metrics share the drawn resamples);
* :func:`paired_difference`: the mean of ``a - b`` over the questions both
  programs were scored on, with a percentile-bootstrap interval and an exact
  sign test (wins against losses, ties dropped). Pairing removes the
  question's own difficulty from the comparison, which is what makes a small
  gain visible at all;
* :func:`half_width` and :func:`questions_needed`: the normal-approximation
  size of an interval, used to size evaluation splits.

The bootstrap is seeded, so the same scores always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from statistics import NormalDist
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "DEFAULT_RESAMPLES",
    "Interval",
    "Method",
    "PairedDifference",
    "half_width",
    "mean_interval",
    "mean_intervals",
    "paired_difference",
    "paired_interval",
    "questions_needed",
    "shared_questions",
    "sign_test",
]

DEFAULT_RESAMPLES = 10_000
_MAX_CELLS = 4_000_000  # indices drawn at once (32 MB); larger bootstraps are drawn in blocks
Method = Literal["bootstrap", "sign", "both"]


class Interval(BaseModel):
    """A mean over ``n`` questions with a ``level`` confidence interval [``low``, ``high``]."""

    model_config = ConfigDict(frozen=True)

    mean: float
    low: float
    high: float
    n: int = Field(ge=0)
    level: float = Field(0.95, gt=0, lt=1)

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest difference it can tell from zero."""
        return (self.high - self.low) / 2

    def text(self, digits: int = 3) -> str:
        """``0.512 [0.430, 0.590] n=190``: how status lines and tables print it."""
        if self.n == 0:
            return "- (n=0)"
        return f"{self.mean:.{digits}f} [{self.low:.{digits}f}, {self.high:.{digits}f}] n={self.n}"

    def rounded(self, digits: int = 4) -> dict[str, float | int]:
        """``{"mean", "low", "high", "n"}`` rounded, for result files."""
        return {
            "mean": round(self.mean, digits),
            "low": round(self.low, digits),
            "high": round(self.high, digits),
            "n": self.n,
        }


class PairedDifference(Interval):
    """The mean of ``a - b`` over shared questions, its interval, and the sign test's counts.

    ``wins``: questions where ``a`` scored higher; ``losses``: lower;
    ``ties``: equal. ``sign_p`` is the exact two-sided sign-test p-value
    over wins and losses (1.0 when there are none).
    """

    wins: int = Field(0, ge=0)
    losses: int = Field(0, ge=0)
    ties: int = Field(0, ge=0)
    sign_p: float = Field(1.0, ge=0, le=1)

    def better(self, method: Method = "both") -> bool:
        """Whether ``a`` is better than ``b`` with confidence ``level``.

        ``bootstrap``: the interval lies above zero; ``sign``: more wins than
        losses and a sign-test p-value under ``1 - level``; ``both``: both
        hold. The bootstrap alone is over-confident on a handful of questions
        (three wins out of three give the interval [1, 1]); the sign test is
        not, and ignores how large each difference is - together they demand
        a gain that is both consistent and large enough.
        """
        by_interval = self.n > 0 and self.low > 0
        by_sign = self.wins > self.losses and self.sign_p < 1 - self.level
        return {"bootstrap": by_interval, "sign": by_sign, "both": by_interval and by_sign}[method]

    def worse(self, method: Method = "both") -> bool:
        """Whether ``a`` is worse than ``b`` with confidence ``level`` (the mirror of :meth:`better`)."""
        by_interval = self.n > 0 and self.high < 0
        by_sign = self.losses > self.wins and self.sign_p < 1 - self.level
        return {"bootstrap": by_interval, "sign": by_sign, "both": by_interval and by_sign}[method]

    def text(self, digits: int = 3) -> str:
        if self.n == 0:
            return "- (no shared questions)"
        return (
            f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}] n={self.n}, "
            f"{self.wins} better / {self.losses} worse, sign p={self.sign_p:.3g}"
        )


def _values(values: Iterable[float], what: str) -> np.ndarray:
    array = np.asarray(list(values), dtype=float)
    if array.size and not np.all(np.isfinite(array)):
        raise ValueError(f"{what} must be finite numbers; give 0.0 for a question that failed")
    return array


def _check(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise ValueError(f"confidence level {level} must be between 0 and 1 (e.g. 0.95)")
    if resamples < 1:
        raise ValueError(f"resamples {resamples} must be at least 1")


def _bootstrap(columns: list[np.ndarray], level: float, resamples: int, seed: int) -> list[tuple[float, float]]:
    """The percentile interval of the mean of each column over ``resamples`` resamples of its ``n`` questions.

    Every column has the same ``n``; one matrix of resample indices is drawn
    (from ``seed``) and each column's resampled means are read off it, so ``k``
    columns cost one draw and ``k`` gathers instead of ``k`` draws. A column's
    interval is exactly the one it gets alone: the indices do not depend on
    the values, and its means are computed the same way.
    """
    n = columns[0].size
    rng = np.random.default_rng(seed)
    block = resamples if resamples * n <= _MAX_CELLS else max(1, _MAX_CELLS // n)  # memory stays bounded
    parts: list[list[np.ndarray]] = [[] for _ in columns]
    for start in range(0, resamples, block):
        indices = rng.integers(0, n, size=(min(block, resamples - start), n))
        for part, values in zip(parts, columns, strict=True):
            part.append(values[indices].mean(axis=1))
    tail = (1 - level) / 2 * 100
    out = []
    for part in parts:
        low, high = np.percentile(np.concatenate(part), [tail, 100 - tail])
        out.append((float(low), float(high)))
    return out


def mean_intervals(
    columns: Mapping[str, Iterable[float]],
    *,
    level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> dict[str, Interval]:
    """The mean of each column of per-question values with its ``level`` percentile-bootstrap interval.

    The cheap way to give every metric of one evaluation its interval: the
    columns that hold the same number of questions (the metrics over all of
    an evaluation's questions) share one drawn matrix of resample indices.
    Each column is resampled over its own questions, so a category's metric,
    holding only that category's questions, is resampled within them (in a
    draw of its own size). The result for a column is exactly
    :func:`mean_interval` of that column with the same ``seed``; the
    intervals are each correct on their own, not a joint statement (two
    columns over the same questions see the same resamples).
    """
    _check(level, resamples)
    return _intervals(
        {key: _values(values, f"per-question scores of {key!r}") for key, values in columns.items()},
        level,
        resamples,
        seed,
    )


def _intervals(arrays: dict[str, np.ndarray], level: float, resamples: int, seed: int) -> dict[str, Interval]:
    by_size: dict[int, list[str]] = {}
    for key, array in arrays.items():
        if array.size:
            by_size.setdefault(int(array.size), []).append(key)
    bounds: dict[str, tuple[float, float]] = {}
    for keys in by_size.values():
        bounds.update(zip(keys, _bootstrap([arrays[k] for k in keys], level, resamples, seed), strict=True))
    out: dict[str, Interval] = {}
    for key, array in arrays.items():
        if array.size == 0:
            out[key] = Interval(mean=0.0, low=0.0, high=0.0, n=0, level=level)
        else:
            low, high = bounds[key]
            out[key] = Interval(mean=float(array.mean()), low=low, high=high, n=int(array.size), level=level)
    return out


def mean_interval(
    values: Iterable[float], *, level: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> Interval:
    """The mean of per-question ``values`` with a ``level`` percentile-bootstrap interval over the questions.

    One column of :func:`mean_intervals` (the same code, the same numbers).
    """
    _check(level, resamples)
    return _intervals({"values": _values(values, "per-question scores")}, level, resamples, seed)["values"]


def sign_test(differences: Iterable[float]) -> float:
    """The exact two-sided sign-test p-value of paired ``differences`` (zeros dropped; 1.0 when none are left)."""
    diffs = _values(differences, "paired differences")
    wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
    return _sign_p(wins, losses)


def _sign_p(wins: int, losses: int) -> float:
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def shared_questions(a: Mapping[str, float], b: Mapping[str, float]) -> list[str]:
    """The question ids both score maps hold, sorted (so that pairing never depends on insertion order)."""
    return sorted(set(a) & set(b))


def paired_interval(
    differences: Iterable[float], *, level: float = 0.95, resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> PairedDifference:
    """Mean of already paired ``differences`` (``a - b`` per question), its bootstrap interval and sign test."""
    _check(level, resamples)
    diffs = _values(differences, "paired differences")
    wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
    ties = int(diffs.size - wins - losses)
    if diffs.size == 0:
        return PairedDifference(mean=0.0, low=0.0, high=0.0, n=0, level=level)
    ((low, high),) = _bootstrap([diffs], level, resamples, seed)
    return PairedDifference(
        mean=float(diffs.mean()),
        low=low,
        high=high,
        n=int(diffs.size),
        level=level,
        wins=wins,
        losses=losses,
        ties=ties,
        sign_p=_sign_p(wins, losses),
    )


def paired_difference(
    a: Mapping[str, float],
    b: Mapping[str, float],
    *,
    level: float = 0.95,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> PairedDifference:
    """``a - b`` over the questions both were scored on (per-question score maps keyed by question id).

    Questions only one program was scored on take no part: a comparison on
    different questions would measure the questions, not the programs.
    """
    shared = shared_questions(a, b)
    return paired_interval([float(a[q]) - float(b[q]) for q in shared], level=level, resamples=resamples, seed=seed)


def half_width(sd: float, n: int, level: float = 0.95) -> float:
    """The normal-approximation half-width of a ``level`` interval of a mean of ``n`` values with standard
    deviation ``sd``.
    """
    if n <= 0:
        return math.inf
    return NormalDist().inv_cdf((1 + level) / 2) * sd / math.sqrt(n)


def questions_needed(sd: float, gain: float, level: float = 0.95) -> int:
    """The fewest questions for which a ``level`` interval's half-width is at most ``gain``.

    A true gain of ``gain`` is then told from zero about half the time; the
    interval's lower bound clears zero more often only for larger gains.
    """
    if gain <= 0:
        raise ValueError(f"gain {gain} must be > 0")
    z = NormalDist().inv_cdf((1 + level) / 2)
    return max(1, math.ceil((z * sd / gain) ** 2))
