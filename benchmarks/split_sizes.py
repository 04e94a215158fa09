"""How large a gain the default evolution splits can tell from noise (issue 15), and how many questions a gain needs.

A run's verdicts are paired: the child's score minus its parent's, question
by question, with a 95% interval of the mean difference. Its half-width is
about ``1.96 * sd / sqrt(n)``, where ``sd`` is the standard deviation of
the per-question differences and ``n`` the questions both were scored on.
A true gain equal to the half-width clears zero about half the time; one of
``(1.96 + 0.84) * sd / sqrt(n)`` does so four times in five (80% power).

``sd`` is an assumption until a run has measured it. For right/wrong
scores, ``sd**2`` is about the fraction of questions whose outcome the
change flips; the default assumption, ``--sd 0.35``, is a child that flips
about one answer in eight. Partial-credit scores (toolprefs' parameter
accuracy, LoCoMo's F1) move by less than 1 per changed answer, so the same
``sd`` allows more changed answers. ``--run RUN_DIR`` replaces the
assumption with the ``sd`` measured on a finished run: every pair of
programs scored on the same questions at the select or test stage.

Counts the questions each default split holds (toolprefs generated with the
default users; LoCoMo from ``--locomo``, whole conversations), and writes
``benchmarks/results/split_sizes.json`` with the commit, date and command.
Usage (from the repository root)::

    python benchmarks/split_sizes.py --locomo ../shared/data/locomo/locomo6.json
    python benchmarks/split_sizes.py --run runs/prefs      # measured sd instead of the assumption
"""

from __future__ import annotations

import argparse
import json
import statistics
from itertools import combinations
from pathlib import Path
from statistics import NormalDist
from typing import Any

from provenance import provenance  # benchmarks/provenance.py: the shared result header

from agentmem.stats import half_width, questions_needed

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "split_sizes.json"
GAIN = 0.05
LEVEL = 0.95
POWER = 0.8
SENSITIVITY = (0.25, 0.35, 0.5)


def detectable(sd: float, n: int, level: float = LEVEL, power: float = POWER) -> dict[str, float]:
    """The half-width (a gain seen half the time) and the gain seen with ``power``, for ``n`` questions."""
    z_power = NormalDist().inv_cdf(power)
    hw = half_width(sd, n, level)
    return {"half_width": round(hw, 4), f"gain_at_{int(power * 100)}pct_power": round(hw + z_power * sd / n**0.5, 4)}


def split_questions(locomo: str | None) -> list[dict[str, Any]]:
    """The questions of each default select and test split (the run config's defaults, unchanged)."""
    from agentmem.registry import load_environment
    from agentmem_evolve.config import DEFAULT_SPLIT_QUESTIONS, RunConfig

    rows = []
    prefs = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "toolprefs"}}).environment
    env = load_environment("toolprefs")(**prefs.options)
    rows.append(
        {
            "environment": "toolprefs",
            "how": f"generated, options {prefs.options}, whole splits",
            "select": sum(len(t.questions) for t in env.tasks("validation")),
            "test": sum(len(t.questions) for t in env.tasks("test")),
        }
    )
    if locomo:
        env = load_environment("locomo")(data=locomo)
        names = {split: ", ".join(t.id for t in env.tasks(split)) for split in ("validation", "test")}
        rows.append(
            {
                "environment": "locomo",
                "how": f"{Path(locomo).name}, whole conversations (select {names['validation']}; test {names['test']})",
                "select": sum(len(t.questions) for t in env.tasks("validation")),
                "test": sum(len(t.questions) for t in env.tasks("test")),
            }
        )
    rows.append(
        {
            "environment": "any other",
            "how": "the first questions of each split",
            "select": DEFAULT_SPLIT_QUESTIONS,
            "test": DEFAULT_SPLIT_QUESTIONS,
        }
    )
    return rows


def measured_sd(run_dir: Path) -> dict[str, Any]:
    """The sd of per-question differences over every pair of programs scored on the same questions of a run."""
    from agentmem_evolve.archive import Archive

    sds: list[float] = []
    with Archive(run_dir) as archive:
        for stage in ("select", "test"):
            by_key: dict[str, dict[str, dict[str, float]]] = {}
            for e in archive.evaluations(stage=stage, status="ok"):
                by_key.setdefault(e.key, {})[e.program_id] = e.per_instance
            for scores in by_key.values():
                for a, b in combinations(sorted(scores), 2):
                    shared = sorted(set(scores[a]) & set(scores[b]))
                    if len(shared) >= 2:
                        sds.append(statistics.stdev(scores[a][q] - scores[b][q] for q in shared))
    if not sds:
        raise SystemExit(f"{run_dir} has no two programs scored on the same questions; give a finished run")
    return {
        "run": str(run_dir),
        "pairs": len(sds),
        "sd_median": round(statistics.median(sds), 4),
        "sd_max": round(max(sds), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sd", type=float, default=0.35, help="assumed sd of per-question paired differences")
    parser.add_argument("--locomo", help="the LoCoMo file whose whole conversations make the splits")
    parser.add_argument("--run", type=Path, help="a finished run directory: measure sd there instead of assuming it")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sd_source: dict[str, Any] = {"assumed": args.sd}
    sd = args.sd
    if args.run is not None:
        sd_source = {"measured": measured_sd(args.run)}
        sd = sd_source["measured"]["sd_median"]
    splits = split_questions(args.locomo)
    for row in splits:
        for split in ("select", "test"):
            row[f"{split}_detects"] = detectable(sd, row[split])
            row[f"{split}_half_width_by_sd"] = {str(s): round(half_width(s, row[split]), 4) for s in SENSITIVITY}
    needed = {str(s): questions_needed(s, GAIN, LEVEL) for s in SENSITIVITY}
    result = {
        **provenance("split_sizes.py", argv),
        "level": LEVEL,
        "gain": GAIN,
        "sd": sd,
        "sd_source": sd_source,
        "questions_for_half_width_0.05_by_sd": needed,
        "splits": splits,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"sd of per-question differences: {sd} ({'measured' if args.run else 'assumed'}); level {LEVEL}")
    print(f"questions for a half-width of {GAIN}: " + ", ".join(f"sd {s}: {n}" for s, n in needed.items()))
    print(f"\n{'environment':12s} {'split':6s} {'questions':>9s} {'half-width':>10s} {'gain at 80%':>11s}")
    for row in splits:
        for split in ("select", "test"):
            d = row[f"{split}_detects"]
            print(
                f"{row['environment']:12s} {split:6s} {row[split]:9d} {d['half_width']:10.3f} "
                f"{d['gain_at_80pct_power']:11.3f}"
            )
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
