"""agentmem.stats on synthetic per-question scores whose truth is known.

A comparison must accept a gain that is really there and reject one that
is only noise: both are checked on single constructed cases and, as rates,
over many seeded simulations (the false-acceptance rate stays under the
level's promise, the power at a real gain is high).
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from pydantic import ValidationError

from agentmem.stats import (
    Interval,
    PairedDifference,
    half_width,
    mean_interval,
    mean_intervals,
    paired_difference,
    paired_interval,
    questions_needed,
    sign_test,
)


def answers(rng: random.Random, n: int, p: float) -> dict[str, float]:
    """Right (1.0) or wrong (0.0) on ``n`` questions, each right with probability ``p``."""
    return {f"q{i:03d}": float(rng.random() < p) for i in range(n)}


def improved(rng: random.Random, base: dict[str, float], fix: float, break_: float) -> dict[str, float]:
    """The same answers, each wrong one fixed with probability ``fix``, each right one broken with ``break_``."""
    out = {}
    for q, v in base.items():
        r = rng.random()
        out[q] = (1.0 if r < fix else 0.0) if v == 0.0 else (0.0 if r < break_ else 1.0)
    return out


def test_a_real_gain_is_accepted():
    rng = random.Random(1)
    parent = answers(rng, 190, 0.5)
    child = improved(rng, parent, fix=0.3, break_=0.05)  # true gain 0.5*0.3 - 0.5*0.05 = 0.125
    d = paired_difference(child, parent)
    assert d.n == 190 and d.mean > 0.08
    assert d.low > 0 and d.better("bootstrap") and d.better("sign") and d.better("both")
    assert not d.worse() and d.wins > d.losses and d.sign_p < 0.05


def test_a_noise_gain_is_rejected():
    """A child that only re-rolls answers (no true gain), picked because its mean came out higher."""
    for seed in range(100):
        rng = random.Random(seed)
        parent = answers(rng, 190, 0.5)
        child = improved(rng, parent, fix=0.1, break_=0.1)  # true gain 0
        d = paired_difference(child, parent)
        if d.mean >= 0.02:
            break
    else:  # pragma: no cover - the simulation is seeded
        pytest.fail("no seed gave a positive noise gain")
    assert d.mean >= 0.02  # the means alone would pick the child
    assert not d.better("bootstrap") and not d.better("sign") and not d.better("both")
    assert d.low < 0 < d.high


def test_the_issue_s_twelve_question_win_is_noise():
    """About 0.65 against 0.62 on 12 select questions, as in issue 15: one question better; no evidence."""
    seed = [1, 1, 0.67, 0.67, 0.33, 1, 0.67, 0.33, 0, 1, 0.5, 0.33]
    child = [1, 1, 0.67, 1, 0.33, 1, 0.67, 0.33, 0, 1, 0.5, 0.33]
    d = paired_interval([c - s for c, s in zip(child, seed)])
    assert d.mean > 0 and d.n == 12 and d.wins == 1 and d.losses == 0
    assert not d.better("both") and not d.better("sign")


def test_false_acceptances_stay_under_the_level_and_real_gains_are_found():
    """Over 200 seeded null comparisons the 95% rule accepts a noise gain in at most 5%; a real 0.15 gain in >= 90%."""
    false_accept = 0
    for seed in range(200):
        rng = random.Random(1000 + seed)
        parent = answers(rng, 120, 0.5)
        child = improved(rng, parent, fix=0.15, break_=0.15)
        false_accept += paired_difference(child, parent, resamples=1000, seed=seed).better("bootstrap")
    assert false_accept <= 10  # one-sided, the 95% interval errs upward about 2.5% of the time
    found = 0
    for seed in range(50):
        rng = random.Random(5000 + seed)
        parent = answers(rng, 190, 0.5)
        child = improved(rng, parent, fix=0.35, break_=0.05)  # true gain 0.15
        found += paired_difference(child, parent, resamples=1000, seed=seed).better("both")
    assert found >= 45


def test_pairing_uses_only_the_questions_both_were_scored_on():
    a = {"q1": 1.0, "q2": 1.0, "q3": 0.0, "only-a": 1.0}
    b = {"q1": 0.0, "q2": 1.0, "q3": 0.0, "only-b": 0.0}
    d = paired_difference(a, b)
    assert d.n == 3 and (d.wins, d.losses, d.ties) == (1, 0, 2)
    assert math.isclose(d.mean, 1 / 3)
    empty = paired_difference({"x": 1.0}, {"y": 0.0})
    assert empty.n == 0 and not empty.better() and not empty.worse() and empty.sign_p == 1.0


def test_a_handful_of_wins_is_not_confidence():
    """The bootstrap of three wins out of three is [1, 1]; the sign test (p = 0.25) keeps 'both' honest."""
    d = paired_interval([1.0, 1.0, 1.0])
    assert (d.low, d.high) == (1.0, 1.0) and d.better("bootstrap")
    assert math.isclose(d.sign_p, 0.25) and not d.better("sign") and not d.better("both")


def test_sign_test_exact_values():
    assert math.isclose(sign_test([1, 1, 1]), 0.25)
    assert math.isclose(sign_test([0.2] * 10 + [-0.1] * 2), 2 * sum(math.comb(12, i) for i in range(3)) / 2**12)
    assert sign_test([0, 0]) == 1.0 and sign_test([]) == 1.0
    assert sign_test([1, -1]) == 1.0


def test_worse_mirrors_better():
    rng = random.Random(3)
    parent = answers(rng, 190, 0.5)
    child = improved(rng, parent, fix=0.05, break_=0.3)
    d = paired_difference(child, parent)
    assert d.worse() and not d.better() and d.high < 0


def test_mean_interval_covers_the_truth_and_is_seeded():
    rng = random.Random(7)
    values = [float(rng.random() < 0.3) for _ in range(400)]
    iv = mean_interval(values)
    assert isinstance(iv, Interval) and iv.n == 400 and iv.level == 0.95
    assert iv.low < 0.3 < iv.high and iv.low <= iv.mean <= iv.high
    assert 0.03 < iv.half_width < 0.06  # about 1.96 * sqrt(0.21 / 400) = 0.045
    assert mean_interval(values) == iv  # seeded: the same scores give the same interval
    assert mean_interval(values, level=0.8).half_width < iv.half_width
    assert mean_interval([]).n == 0 and mean_interval([]).text() == "- (n=0)"
    assert "n=400" in iv.text()


def test_the_bootstrap_is_the_one_the_benchmarks_quoted():
    """benchmarks/bench_mstar.py's intervals (now from this module) come out as its own code computed them."""
    rng = np.random.default_rng(11)
    diffs = rng.normal(0.02, 0.3, size=40)
    draw = np.random.default_rng(0)
    means = diffs[draw.integers(0, diffs.size, size=(10_000, diffs.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    expected = {
        "mean": round(float(diffs.mean()), 4),
        "low": round(float(low), 4),
        "high": round(float(high), 4),
        "n": 40,
    }
    assert paired_interval(diffs.tolist()).rounded() == expected


def test_large_splits_are_drawn_in_blocks_with_the_same_answer_shape():
    values = [float(i % 3 == 0) for i in range(3000)]
    iv = mean_interval(values, resamples=2000)  # 6 million draws: more than one block
    assert iv.n == 3000 and iv.low < 1 / 3 < iv.high and iv.half_width < 0.03


def _one_draw_per_column(values: list[float], resamples: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """The bootstrap as it was before columns shared their draw: its own seeded draw, in blocks when large."""
    array = np.asarray(values, dtype=float)
    n = array.size
    rng = np.random.default_rng(seed)
    if resamples * n <= 4_000_000:
        means = array[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    else:
        block = max(1, 4_000_000 // n)
        means = np.concatenate(
            [
                array[rng.integers(0, n, size=(min(block, resamples - s), n))].mean(axis=1)
                for s in range(0, resamples, block)
            ]
        )
    low, high = np.percentile(means, [2.5, 97.5])
    return float(low), float(high)


def test_several_columns_share_a_draw_and_each_gets_the_interval_it_gets_alone():
    rng = np.random.default_rng(5)
    columns = {
        "f1": rng.random(300).round(3).tolist(),
        "accuracy": (rng.random(300) < 0.4).astype(float).tolist(),  # same questions: shares f1's draw
        "f1/cat2": rng.random(47).round(3).tolist(),  # a category: resampled within its own 47 questions
        "empty": [],
    }
    got = mean_intervals(columns)
    assert list(got) == list(columns)
    for key in ("f1", "accuracy", "f1/cat2"):
        assert got[key] == mean_interval(columns[key])  # the single-metric function is one column of this one
        assert (got[key].low, got[key].high) == _one_draw_per_column(columns[key])  # and the numbers are as before
        assert got[key].n == len(columns[key])
    assert got["empty"].n == 0
    assert mean_intervals(columns, seed=1)["f1"] == mean_interval(columns["f1"], seed=1)
    assert mean_intervals(columns, level=0.8)["f1"].half_width < got["f1"].half_width


def test_columns_larger_than_the_memory_cap_are_drawn_in_blocks_with_the_same_numbers():
    rng = np.random.default_rng(6)
    columns = {"a": rng.random(2500).tolist(), "b": (rng.random(2500) < 0.5).astype(float).tolist()}
    got = mean_intervals(columns, resamples=2000)  # 5 million indices: two blocks of the 4 million cap
    for key, values in columns.items():
        assert (got[key].low, got[key].high) == _one_draw_per_column(values, resamples=2000)
    with pytest.raises(ValueError, match="'b' must be finite"):
        mean_intervals({"a": [1.0], "b": [float("nan")]})


def test_bad_input_is_one_clear_error():
    with pytest.raises(ValueError, match="finite"):
        mean_interval([0.5, float("nan")])
    with pytest.raises(ValueError, match="finite"):
        paired_difference({"q": float("inf")}, {"q": 0.0})
    with pytest.raises(ValueError, match="between 0 and 1"):
        mean_interval([1.0], level=95)
    with pytest.raises(ValueError, match="gain"):
        questions_needed(0.3, 0)


def test_sizes_for_a_given_gain():
    # 1.96 * 0.35 / 0.05 = 13.7, squared 188.2: 189 questions give a 95% half-width of 0.05
    assert questions_needed(0.35, 0.05) == 189
    assert half_width(0.35, 189) <= 0.05 < half_width(0.35, 188)
    assert half_width(0.5, 0) == math.inf
    assert questions_needed(0.35, 0.05, level=0.9) < 189


def test_results_are_typed_and_frozen():
    d = paired_interval([0.1, 0.2, -0.1])
    assert isinstance(d, PairedDifference) and isinstance(d, Interval)
    with pytest.raises(ValidationError):
        d.mean = 1.0  # type: ignore[misc]
    assert set(d.rounded()) == {"mean", "low", "high", "n"}
    assert "better" in d.text() and "sign p=" in d.text()
