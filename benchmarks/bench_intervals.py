"""What giving every metric of one evaluation its 95% interval costs (issue 14): one draw per metric, or one shared.

``agentmem eval`` and every fitness evaluation of ``agentmem evolve`` give
each metric that is a mean over questions a 10,000-resample percentile
bootstrap interval (:func:`agentmem.evaluation.metric_intervals`). Drawn
once per metric, that is a large share of a short evaluation's own time;
:func:`agentmem.stats.mean_intervals` draws the resample indices once for all
the metrics over the same questions and reads every metric's resampled means
off them.

This script builds synthetic task results (``--questions`` questions with
``--metrics`` per-question metrics in five categories of LoCoMo's uneven sizes), times

* ``per_metric``: the way before, one :func:`agentmem.stats.mean_interval`
  per metric (its own draw of the same seed), and
* ``shared``: :func:`agentmem.evaluation.metric_intervals` as it is now,

in two cases (the metrics over all questions; the same plus every metric per
category), checks that both give the same intervals, and writes
``benchmarks/results/intervals.json`` with the shared header. Usage (from the
repository root)::

    python benchmarks/bench_intervals.py
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provenance import provenance  # benchmarks/provenance.py: the shared result header

from agentmem.environment import QuestionResult, TaskResult
from agentmem.evaluation import metric_intervals, question_scores
from agentmem.stats import Interval, mean_interval

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "intervals.json"
CATEGORIES = ("1", "2", "3", "4", "5")
CATEGORY_WEIGHTS = (282, 321, 96, 841, 446)  # LoCoMo's questions per category: uneven, so each has its own size


def synthetic(questions: int, metrics: int, seed: int = 0) -> list[TaskResult]:
    """``questions`` questions in tasks of ten, each with ``metrics`` scores in [0, 1] (half of them right/wrong)."""
    rng = random.Random(seed)
    names = [f"m{i}" for i in range(metrics)]
    tasks = []
    for t in range(0, questions, 10):
        tasks.append(
            TaskResult(
                task_id=f"t{t // 10}",
                questions=[
                    QuestionResult(
                        question_id=f"q{i}",
                        category=rng.choices(CATEGORIES, weights=CATEGORY_WEIGHTS)[0],
                        question="?",
                        reference="r",
                        prediction="p",
                        metrics={
                            name: float(rng.random() < 0.4) if j % 2 else round(rng.random(), 3)
                            for j, name in enumerate(names)
                        },
                    )
                    for i in range(min(10, questions - t))
                ],
            )
        )
    return tasks


def aggregate(tasks: list[TaskResult], metrics: int, per_category: bool) -> dict[str, float]:
    """The metrics an environment would report: each mean, and (``per_category``) each per category with its n."""
    out: dict[str, float] = {"questions": float(sum(len(t.questions) for t in tasks))}
    for j in range(metrics):
        values = list(question_scores(tasks, f"m{j}").values())
        out[f"m{j}"] = sum(values) / len(values)
    if per_category:
        for cat in CATEGORIES:
            for j in range(metrics):
                values = list(question_scores(tasks, f"m{j}", category=cat).values())
                out[f"m{j}/cat{cat}"] = sum(values) / len(values)
            out[f"n/cat{cat}"] = float(len(values))
    return out


def per_metric(tasks: list[TaskResult], metrics: dict[str, float]) -> dict[str, Interval]:
    """The way before: each metric's per-question values and one ``mean_interval`` (one draw) for each."""
    out = {}
    for key in metrics:
        if key == "questions" or key.startswith("n/"):
            continue
        metric, _, group = key.partition("/")
        values = list(question_scores(tasks, metric, category=group.removeprefix("cat") or None).values())
        out[key] = Interval(**mean_interval(values).rounded())
    return out


def timed(ways: dict[str, Callable[[], Any]], repeats: int) -> dict[str, tuple[list[float], Any]]:
    """Each way run ``repeats`` times, interleaved and in alternating order (a machine's load drifts)."""
    seconds: dict[str, list[float]] = {name: [] for name in ways}
    results: dict[str, Any] = {}
    for r in range(repeats):
        for name in list(ways) if r % 2 == 0 else list(ways)[::-1]:
            start = time.perf_counter()
            results[name] = ways[name]()
            seconds[name].append(round(time.perf_counter() - start, 4))
    return {name: (seconds[name], results[name]) for name in ways}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=500)
    parser.add_argument("--metrics", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=7, help="timings per case and way (the median is reported)")
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    tasks = synthetic(args.questions, args.metrics)
    cases = []
    for per_category in (False, True):
        metrics = aggregate(tasks, args.metrics, per_category)
        runs = timed(
            {
                "per_metric": lambda m=metrics: per_metric(tasks, m),
                "shared": lambda m=metrics: metric_intervals(tasks, m),
            },
            args.repeats,
        )
        (before, old), (after, new) = runs["per_metric"], runs["shared"]
        if old != new:
            raise SystemExit(f"the shared draw changed an interval: {sorted(k for k in old if old[k] != new.get(k))}")
        cases.append(
            {
                "case": "every metric per category too" if per_category else "metrics over all questions",
                "intervals": len(new),
                "per_metric_seconds_median": statistics.median(before),
                "shared_seconds_median": statistics.median(after),
                "speedup": round(statistics.median(before) / statistics.median(after), 2),
                "per_metric_seconds": before,
                "shared_seconds": after,
                "identical_intervals": True,
            }
        )
        print(
            f"{cases[-1]['case']}: {len(new)} intervals, one draw per metric {statistics.median(before):.3f} s, "
            f"shared {statistics.median(after):.3f} s (median of {args.repeats})"
        )
    result = {
        **provenance("bench_intervals.py", argv, args.note),
        "questions": args.questions,
        "metrics": args.metrics,
        "categories": len(CATEGORIES),
        "resamples": 10_000,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
