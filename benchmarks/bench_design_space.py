"""First-party plugins before and after the design-space rebuild (issue 13): lines of code and scores.

The rebuild moved every first-party plugin onto the core modules (store,
retrievers, packer, managers, encode). Its promise was "behaviour stays, the
code shrinks". This script checks both on real runs:

* **lines**: the non-blank lines of each plugin's package at the two commits
  (``git show``, no checkout needed);
* **scores**: ``agentmem eval`` of each plugin on LoCoMo (the 40 questions of
  the subset that docs/memory-plugins.md uses) and on toolprefs' validation
  split, run once with the code of each commit, and the paired difference
  after - before over the same questions with a 95% bootstrap interval;
* **recall speed**: today's ``benchmarks/bench_recall.py`` (hash embedder,
  100,000 items, 200 questions each asked three times) run by each commit's interpreter, so the same
  measurement times both codes one after the other on the same machine.

"Before" runs in a separate checkout of the older commit with its own virtual
environment (``git worktree add --detach DIR 499a624`` then ``uv sync
--all-packages`` in it); "after" runs in this repository. Each cell's result
file is kept in ``--work`` and a cell whose file exists is not run again, so
the script resumes where it stopped (a full run takes hours with the local
0.5B on 2 cores). Usage (from the repository root)::

    python benchmarks/bench_design_space.py --before-checkout ../wt-before13

writes ``benchmarks/results/design-space.json`` (the header of
``benchmarks/provenance.py``: git commit, date, machine, model, command) and
prints the table; ``--table`` prints the Markdown table of the result file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from provenance import git_dirty, provenance  # benchmarks/provenance.py: the script's own folder is on sys.path

from agentmem.stats import paired_interval  # the same seeded bootstrap as the M* benchmark and agentmem evolve

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "benchmarks" / "results" / "design-space.json"
BEFORE = "499a624"
_BASELINES = "plugins/baselines/agentmem_baselines/"
PLUGINS = {  # plugin -> the source paths that are its own (a folder, or files; a path absent at a commit counts 0)
    "episodic": ["plugins/episodic"],
    "semantic": ["plugins/semantic"],
    "procedural": ["plugins/procedural"],
    "hierarchical": ["plugins/hierarchical"],
    # the two baselines share one package; before the rebuild both used _common.py, counted with each
    "rag": [_BASELINES + "rag.py", _BASELINES + "_common.py"],
    "full-context": [_BASELINES + "full_context.py", _BASELINES + "_common.py"],
}
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo6.json"
CELLS = {  # environment cell -> (env, primary metric, extra eval arguments)
    "locomo": ("locomo", "f1", ["--data", str(LOCOMO), "--limit", "40"]),
    "toolprefs": ("toolprefs", "param_accuracy", ["--split", "validation"]),
}


# Per (environment, plugin) memory parameters, the same on both sides. Semantic on LoCoMo runs with the setting of
# docs/memory-plugins.md's LoCoMo table (one extraction per 24 turns): at its default of 6 one side takes over an
# hour on 2 cores (measured: 3,959 s before the rebuild), and the docs' setting is the one users see quoted.
PARAMS: dict[tuple[str, str], list[str]] = {("locomo", "semantic"): ["-p", "batch_turns=24"]}

RECALL_ARGS = [
    *("--items", "100000", "--queries", "200", "--repeats", "3", "--embedder", "hash"),
    *("--plugins", ",".join(PLUGINS)),
]


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True).stdout


def plugin_lines(commit: str, paths: list[str]) -> int:
    """Non-blank lines of the plugin's Python source (tests excluded) at ``commit``."""
    files = [
        f
        for f in _git("ls-tree", "-r", "--name-only", commit, "--", *paths).split()
        if f.endswith(".py") and "/tests/" not in f
    ]
    return sum(1 for f in files for line in _git("show", f"{commit}:{f}").splitlines() if line.strip())


def run_cell(checkout: Path, version: str, cell: str, plugin: str, work: Path) -> dict[str, Any]:
    """One ``agentmem eval`` in ``checkout`` (skipped when its result file exists); returns the parsed result."""
    env, _, extra = CELLS[cell]
    out = work / f"{version}-{cell}-{plugin}.json"
    if not out.exists():
        cmd = [
            str(checkout / ".venv" / "bin" / "agentmem"),
            "eval",
            "--env",
            env,
            "--memory",
            plugin,
            *PARAMS.get((cell, plugin), []),
            *extra,
            "--out",
            str(out),
        ]
        print(f"[{datetime.now():%H:%M:%S}] {version} {cell} {plugin}: {' '.join(cmd[1:])}", flush=True)
        environ = {
            **os.environ,
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "AGENTMEM_LLM_TIMEOUT": os.environ.get("AGENTMEM_LLM_TIMEOUT", "3600"),
        }
        proc = subprocess.run(cmd, cwd=checkout, env=environ)
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"{version} {cell} {plugin}: agentmem eval failed with status {proc.returncode}")
    return json.loads(out.read_text())


def run_recall(checkout: Path, version: str, work: Path) -> dict[str, Any]:
    """Today's recall benchmark under ``checkout``'s interpreter (skipped when its result file exists)."""
    out = work / f"{version}-recall.json"
    if not out.exists():
        script = ROOT / "benchmarks" / "bench_recall.py"
        cmd = [str(checkout / ".venv" / "bin" / "python"), str(script), *RECALL_ARGS, "--out", str(out)]
        print(f"[{datetime.now():%H:%M:%S}] {version} recall: bench_recall.py {' '.join(RECALL_ARGS)}", flush=True)
        proc = subprocess.run(cmd, cwd=checkout, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        if proc.returncode != 0 or not out.exists():
            raise SystemExit(f"{version} recall: bench_recall.py failed with status {proc.returncode}")
    return json.loads(out.read_text())


def recall_rows(before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    """Per plugin: each side's recall p50 / p99 in ms and after / before (below 1 is faster than before)."""
    b = {row["plugin"]: row for row in before["results"]}
    rows = []
    for row in after["results"]:
        old = b.get(row["plugin"])
        if old is None:
            continue
        rows.append(
            {
                "plugin": row["plugin"],
                "items": row["items"],
                "before_p50_ms": old["p50_ms"],
                "before_p99_ms": old["p99_ms"],
                "after_p50_ms": row["p50_ms"],
                "after_p99_ms": row["p99_ms"],
                "p50_ratio": round(row["p50_ms"] / old["p50_ms"], 2) if old["p50_ms"] else None,
                "p99_ratio": round(row["p99_ms"] / old["p99_ms"], 2) if old["p99_ms"] else None,
            }
        )
    return rows


def per_question(result: dict[str, Any], metric: str) -> dict[str, float]:
    return {
        q["question_id"]: float(q["metrics"].get(metric, 0.0))
        for task in result.get("tasks", [])
        for q in task["questions"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before-checkout", type=Path, help=f"a checkout of {BEFORE} with its .venv")
    parser.add_argument("--before", default=BEFORE, help="the commit before the rebuild")
    parser.add_argument("--plugins", default=",".join(PLUGINS))
    parser.add_argument("--cells", default=",".join(CELLS))
    parser.add_argument("--no-recall", action="store_true", help="skip the recall-speed comparison")
    parser.add_argument("--work", type=Path, default=ROOT / "results" / "design-space")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--table", nargs="?", const=str(RESULTS), help="print the Markdown table of a result file")
    args = parser.parse_args(argv)
    if args.table:
        print(table(json.loads(Path(args.table).read_text())))
        return 0
    if args.before_checkout is None or not (args.before_checkout / ".venv").is_dir():
        parser.error(
            f"--before-checkout must name a checkout of {args.before} with a .venv "
            f"(git worktree add --detach DIR {args.before}; cd DIR; uv sync --all-packages)"
        )
    head, dirty = _git("rev-parse", "HEAD").strip(), git_dirty()
    before_head = _git("rev-parse", "HEAD", cwd=args.before_checkout).strip()
    if not before_head.startswith(_git("rev-parse", args.before).strip()):
        raise SystemExit(
            f"{args.before_checkout} is at {before_head[:12]}, not {args.before}: check out {args.before} there"
        )
    args.work.mkdir(parents=True, exist_ok=True)
    plugins = [p for p in args.plugins.split(",") if p]
    recall: dict[str, Any] = {}
    if not args.no_recall:  # first: minutes, and the LLM cells after it cannot disturb it
        before_recall = run_recall(args.before_checkout, "before", args.work)
        after_recall = run_recall(ROOT, "after", args.work)
        recall = {
            "command": "python benchmarks/bench_recall.py " + " ".join(RECALL_ARGS),
            "before_commit": before_recall.get("git_commit"),
            "after_commit": after_recall.get("git_commit"),
            "rows": recall_rows(before_recall, after_recall),
        }
        print(recall_table(recall), flush=True)
    rows: list[dict[str, Any]] = []
    for cell in [c for c in args.cells.split(",") if c]:
        metric = CELLS[cell][1]
        for plugin in plugins:
            before = run_cell(args.before_checkout, "before", cell, plugin, args.work)
            after = run_cell(ROOT, "after", cell, plugin, args.work)
            b, a = per_question(before, metric), per_question(after, metric)
            shared = sorted(set(a) & set(b))
            rows.append(
                {
                    "cell": cell,
                    "plugin": plugin,
                    "metric": metric,
                    "params": " ".join(PARAMS.get((cell, plugin), [])),
                    "n": len(shared),
                    "before": round(sum(b[q] for q in shared) / max(len(shared), 1), 4),
                    "after": round(sum(a[q] for q in shared) / max(len(shared), 1), 4),
                    "difference": paired_interval([a[q] - b[q] for q in shared]).rounded(),
                    "model": after.get("model", ""),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    lines = {
        p: {"before": plugin_lines(args.before, f), "after": plugin_lines(head, f)}
        for p, f in PLUGINS.items()
        if p in plugins
    }
    models = sorted({row["model"] for row in rows if row["model"]})
    result = {
        "benchmark": "design-space",
        **provenance("bench_design_space.py", argv, model=", ".join(models), commit=head, dirty=dirty),
        "before_commit": _git("rev-parse", args.before).strip(),
        "lines": lines,
        "scores": rows,
        "recall": recall,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    return 0


def table(result: dict[str, Any]) -> str:
    out = [
        "| plugin | lines before | lines after | environment | n | before | after | after - before (95% CI) |",
        "|---|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in result["scores"]:
        lines = result["lines"].get(row["plugin"], {})
        d = row["difference"]
        out.append(
            f"| {row['plugin']} | {lines.get('before', '')} | {lines.get('after', '')} | {row['cell']} "
            f"({row['metric']}) | {row['n']} | {row['before']:.3f} | {row['after']:.3f} | "
            f"{d['mean']:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}] |"
        )
    if result.get("recall"):
        out += ["", recall_table(result["recall"])]
    return "\n".join(out)


def recall_table(recall: dict[str, Any]) -> str:
    out = [
        "| plugin | items | before p50 / p99 ms | after p50 / p99 ms | after / before p50 | after / before p99 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in recall["rows"]:
        out.append(
            f"| {row['plugin']} | {row['items']:,} | {row['before_p50_ms']:.2f} / {row['before_p99_ms']:.2f} | "
            f"{row['after_p50_ms']:.2f} / {row['after_p99_ms']:.2f} | {row['p50_ratio']} | {row['p99_ratio']} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
