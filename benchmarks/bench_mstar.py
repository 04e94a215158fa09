"""M*-format programs on LoCoMo, run as M* runs them (issue 18), against ``episodic`` on the same questions.

Runs three M*-format programs the project wrote (``examples/mstar``: one keeps
the raw text, one keeps only a summary item, one has a multi-field item) and
the ``episodic`` plugin through ``agentmem eval``'s machinery
(:func:`agentmem.evaluation.run_eval`) on the same LoCoMo questions with the
same model, and reports for each program:

* ingestion: sessions ingested, extraction calls (every call tagged
  ``<program>.extract``, retries included), failed extractions, fallbacks,
  splits, length retries and repairs, and the seconds those calls took;
* wall time of the whole run, and until the first answer (ingestion plus one
  answer);
* F1 and evidence recall, and the paired difference in F1 against
  ``episodic`` on the same questions with a 95% bootstrap interval
  (10,000 resamples of the questions, seed 0).

The LLM disk cache is off unless ``--cache`` is given, so that wall times are
those of the model. On a machine whose local model server is shared and busy,
give calls a long timeout (``AGENTMEM_LLM_TIMEOUT=3600``): a request waits
for the server rather than failing. Usage (from the repository root)::

    python benchmarks/bench_mstar.py --data ../shared/data/locomo/locomo6.json --limit 40

Prints a table and writes ``benchmarks/results/mstar.json`` with the git
commit, date, machine, model and command; ``--table [FILE]`` prints the
Markdown table of a result file (as docs/mstar.md quotes it).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provenance import git_commit, git_dirty, load_average, provenance  # benchmarks/provenance.py: the shared header

from agentmem.stats import paired_interval

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "mstar.json"
PROGRAMS = ["examples/mstar/raw_text_search.py", "examples/mstar/session_summary.py", "examples/mstar/session_facts.py"]
BOOTSTRAP = 10_000


def _per_question_f1(result: Any) -> dict[str, float]:
    return {q.question_id: float(q.metrics.get("f1", 0.0)) for t in result.tasks for q in t.questions}


def _run(environment: Any, memory: str, llm: Any, *, limit: int, budget: int) -> dict[str, Any]:
    from agentmem.evaluation import run_eval

    started = time.perf_counter()
    first_answer: list[float] = []

    def progress(done: int, total: int, metrics: dict[str, float]) -> None:
        if done >= 1 and not first_answer:
            first_answer.append(time.perf_counter() - started)
        print(f"  {memory}: {done}/{total} answered, {time.perf_counter() - started:.0f} s", flush=True)

    result = run_eval(environment, [memory], llm=llm, split="all", limit=limit, budget_tokens=budget, progress=progress)
    extract = {name: stats for name, stats in result.cost.by_caller.items() if name.endswith(".extract")}
    sessions = sum(len(t.sessions) for t in environment.tasks(split="all", limit=limit))
    return {
        "memory": memory,
        "questions": result.questions,
        "f1": round(result.metrics.get("f1", 0.0), 4),
        "evidence_recall": round(result.metrics.get("evidence_recall", 0.0), 4),
        "ingestion": {
            "sessions": sessions,
            "extraction_calls": sum(s["calls"] - s["cache_hits"] for s in extract.values()),
            "extraction_cache_hits": sum(s["cache_hits"] for s in extract.values()),
            "extraction_seconds": round(sum(s["seconds"] for s in extract.values()), 1),
            "extraction_completion_tokens": sum(s["completion_tokens"] for s in extract.values()),
            **result.extraction.model_dump(),
        },
        "wall_seconds": result.cost.seconds,
        "seconds_to_first_answer": round(first_answer[0], 1) if first_answer else None,
        "llm_calls": result.cost.llm_calls,
        "cache_hits": result.cost.cache_hits,
        "tokens": result.cost.prompt_tokens + result.cost.completion_tokens,
        "per_question_f1": _per_question_f1(result),
    }


def markdown_table(result: dict[str, Any]) -> str:
    """The result file as the Markdown table docs/mstar.md quotes."""
    base = result["baseline"]
    lines = [
        f"| memory | F1 | F1 - {base} [95% CI] | sessions | extraction calls | failed | fallbacks | splits "
        "| extraction s | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        ing = row["ingestion"]
        paired = row.get("f1_minus_baseline")
        vs = f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]" if paired else "-"
        lines.append(
            f"| {Path(row['memory']).stem} | {row['f1']:.3f} | {vs} | {ing['sessions']} | {ing['extraction_calls']} "
            f"| {ing['failed']} | {ing['fallbacks']} | {ing['splits']} | {ing['extraction_seconds']:.0f} "
            f"| {row['wall_seconds']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--table"]:  # print the Markdown table of an existing result file
        print(markdown_table(json.loads(Path(argv[1] if len(argv) > 1 else RESULTS).read_text())))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "locomo" / "locomo6.json"))
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--programs", default=",".join(PROGRAMS), help="M*-format program paths, comma-separated")
    parser.add_argument("--baseline", default="episodic")
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument("--model", default=None, help="model string (default: the configured one, the local 0.5B)")
    parser.add_argument("--cache", action="store_true", help="answer repeated requests from the LLM disk cache")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from agentmem.config import load_settings
    from agentmem.evaluation import make_environment
    from agentmem.llm import LLM

    settings = load_settings(model=args.model)
    llm = LLM(
        settings.model,
        api_base=settings.api_base,
        api_key=settings.api_key,
        settings=settings,
        cache=None if args.cache else False,
    )
    environment = make_environment("locomo", data=args.data, seed=0)
    programs = [p.strip() for p in args.programs.split(",") if p.strip()]
    programs = [p if Path(p).is_file() or not (ROOT / p).is_file() else str(ROOT / p) for p in programs]
    load_start = load_average()
    commit, dirty = git_commit(), git_dirty()  # of the code that ran (read at the start)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    print(
        f"model {llm.describe()}; data {environment.source}; {args.limit} questions; cache "
        f"{'on' if args.cache else 'off'}"
    )

    rows = [_run(environment, args.baseline, llm, limit=args.limit, budget=args.budget)]
    for program in programs:
        rows.append(_run(environment, program, llm, limit=args.limit, budget=args.budget))
    baseline = rows[0]["per_question_f1"]
    for row in rows[1:]:
        mine = row["per_question_f1"]
        shared = [q for q in baseline if q in mine]
        row["f1_minus_baseline"] = paired_interval(
            [mine[q] - baseline[q] for q in shared], resamples=BOOTSTRAP
        ).rounded()

    print(
        f"\n{'memory':28s} {'F1':>6s} {'vs ' + args.baseline + ' (95% CI)':>28s} {'sessions':>8s} {'extr.calls':>10s} "
        f"{'failed':>6s} {'fallbk':>6s} {'splits':>6s} {'wall s':>7s}"
    )
    for row in rows:
        ing = row["ingestion"]
        paired = row.get("f1_minus_baseline")
        vs = f"{paired['mean']:+.3f} [{paired['low']:+.3f}, {paired['high']:+.3f}]" if paired else "-"
        print(
            f"{Path(row['memory']).stem:28s} {row['f1']:6.3f} {vs:>28s} {ing['sessions']:8d} "
            f"{ing['extraction_calls']:10d} "
            f"{ing['failed']:6d} {ing['fallbacks']:6d} {ing['splits']:6d} {row['wall_seconds']:7.0f}"
        )

    result = {
        "benchmark": "mstar",
        **provenance(
            "bench_mstar.py",
            argv,
            model=llm.describe(),
            commit=commit,
            dirty=dirty,
            machine={"load_average_at_start": load_start},
            note="2 cores shared with other work; the local model server may be shared with other processes",
        ),
        "started": started,
        "n_ctx": settings.n_ctx,
        "llm_timeout_s": settings.llm_timeout,
        "data": environment.source,
        "limit": args.limit,
        "budget_tokens": args.budget,
        "cache": args.cache,
        "baseline": args.baseline,
        "interval": f"paired difference in per-question F1 against the baseline, 95% percentile bootstrap, "
        f"{BOOTSTRAP} resamples, seed 0",
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
