"""The committed summary of one evolution run: what docs/evolution.md quotes, from a run directory.

A run directory (``runs/evolve-toolprefs``) holds the archive, which is
large and machine-specific; what the project commits is this summary of it
(issue 15, part 6), written to ``OUT_DIR`` (``benchmarks/results/evolve/<env>/``):

* ``status.json``: `agentmem evolve status`'s summary (every program's
  scores with n and 95% interval, the best against every seed on test as a
  paired difference, the proxy-vs-LLM rank correlation, the spend), plus the
  children funnel, every paired verdict on a child (``judgements``: against
  whom, the difference with its interval, wins and losses, why it did or did
  not replace), every evaluation's aggregate metrics (``metrics``: what the
  environment reports beside the score, such as evidence recall), every
  LLM-scored evaluation's questions and wall seconds (``timings``: the
  measured speed a committed config's estimate is sized at) and the
  provenance header of every benchmark result;
* ``report.md``: the report's tables in Markdown: the run, the funnel
  (proposed / valid / screened out by the proxy / scored with the LLM), the
  best against the seeds on test, every program's scores, which operators
  paid off, and the best's lineage;
* ``best.diff``: the best program's unified diff against its seed (source,
  then parameter values);
* ``config.toml``: the run's own copy of its config.

Usage (from the repository root)::

    python benchmarks/evolve/summarize.py runs/evolve-toolprefs benchmarks/results/evolve/toolprefs
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/provenance.py
from provenance import provenance  # the shared result header

STAGES = ("proxy", "screen", "select", "test")


def funnel(archive: Any) -> dict[str, int]:
    """How many children were proposed, came out valid, were cut by the proxy, and were scored with the LLM."""
    from agentmem_evolve.proxy import REJECTED_STATE

    made: list[str | None] = []
    iteration = 0
    while True:
        proposals = archive.get_state(f"iteration_{iteration}_proposals", None)
        if proposals is None:
            break
        made += list(proposals)
        iteration += 1
    children = [p for p in archive.programs() if p.operator != "seed"]
    llm_scored = {e.program_id for e in archive.evaluations() if e.stage in ("screen", "select", "test")}
    selected = {e.program_id for e in archive.evaluations(stage="select")}
    return {
        "proposed": len(made),
        "failed_proposals": sum(1 for m in made if m is None),
        "valid": sum(1 for p in children if p.status == "valid"),
        "invalid": sum(1 for p in children if p.status == "invalid"),
        "screened_out_by_proxy": len(archive.get_state(REJECTED_STATE, []) or []),
        "scored_with_llm": sum(1 for p in children if p.id in llm_scored),
        "reached_select": sum(1 for p in children if p.id in selected),
    }


def judgements(archive: Any) -> list[dict[str, Any]]:
    """Every paired verdict the controller reached on a child (the archive's ``judged`` events), oldest first."""
    return [e.payload for e in archive.events(kind="judged")]


def stage_metrics(archive: Any) -> dict[str, dict[str, dict[str, float]]]:
    """Each program's aggregate metrics per stage (its latest successful evaluation there)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rec in archive.evaluations(status="ok"):
        out.setdefault(rec.program_id, {})[rec.stage] = {k: round(v, 4) for k, v in rec.metrics.items()}
    return out


def stage_timings(archive: Any) -> dict[str, dict[str, dict[str, float]]]:
    """Each program's LLM-scored evaluations per stage: questions, wall seconds, seconds per question, cache hits.

    The speed a committed config's worst-case estimate is sized at
    (``budget.seconds_per_question``) is read from here: the slowest
    LLM-scored evaluation of a run with no cache hits is the task model's
    speed on that machine with nothing else running.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for rec in archive.evaluations(status="ok"):
        seconds, questions = rec.cost.get("seconds"), rec.cost.get("questions")
        if rec.stage == "proxy" or not seconds or not questions:
            continue
        out.setdefault(rec.program_id, {})[rec.stage] = {
            "questions": int(questions),
            "seconds": round(float(seconds), 1),
            "seconds_per_question": round(float(seconds) / float(questions), 2),
            "cache_hits": int(rec.cost.get("cache_hits", 0)),
        }
    return out


def best_diff(archive: Any) -> tuple[str, dict[str, Any] | None]:
    """The best program's diff against its seed, as text, and which two programs it compares (None: no best)."""
    from agentmem_evolve.evidence import incumbent, seed_of
    from agentmem_evolve.report import _diff

    best = incumbent(archive) or archive.best("screen")
    if best is None:
        return "", None
    seed = seed_of(archive, best[0].id)
    if seed is None:
        return "", None
    lines = [line["text"] for line in _diff(seed, best[0])]
    return ("\n".join(lines) + "\n" if lines else ""), {"seed": seed.id, "best": best[0].id}


def _cell(interval: dict[str, Any] | None) -> str:
    if not interval:
        return "-"
    return f"{interval['mean']:.3f} [{interval['low']:.3f}, {interval['high']:.3f}] n={interval['n']}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return out


def report_markdown(archive: Any, info: dict[str, Any], counts: dict[str, int], config: Any) -> str:
    """The report's tables as Markdown (what docs/evolution.md quotes)."""
    from agentmem_evolve.evidence import intervals
    from agentmem_evolve.report import operator_payoff

    spend = info["spend"]
    lines = [f"# Evolution run: {config.environment.name if config else '?'}", ""]
    if config is not None:
        env = config.environment
        lines += [
            f"- seeds: {', '.join(config.seeds)}; task model `{config.models.task}`, mutation model "
            f"`{config.models.mutation}`",
            f"- splits: screen {env.screen_split} ({env.minibatch} questions), select {env.select_split} "
            f"({env.validation_limit or 'all'}), test {env.test_split} ({env.test_limit or 'all'})",
        ]
    lines += [
        f"- iterations: {info['iteration']}; wall time {spend['seconds']:,.0f} s",
        f"- LLM calls {spend['llm_calls']:,}, tokens {spend['tokens']:,} (evaluations {spend['evaluation_tokens']:,}, "
        f"proposals and repairs {spend['controller_tokens']:,})",
        "",
        "## Children",
        "",
        *_table(
            [
                "proposed",
                "failed proposals",
                "valid",
                "invalid",
                "screened out by the proxy",
                "scored with the LLM",
                "reached the select split",
            ],
            [
                [
                    counts[k]
                    for k in (
                        "proposed",
                        "failed_proposals",
                        "valid",
                        "invalid",
                        "screened_out_by_proxy",
                        "scored_with_llm",
                        "reached_select",
                    )
                ]
            ],
        ),
        "",
    ]
    proxy = info.get("proxy")
    if proxy:
        corr = proxy["rank_correlation"]
        lines += [
            "## Proxy against the LLM score (Spearman over programs scored on both)",
            "",
            *_table(
                ["stage", "programs", "rank correlation"],
                [
                    [stage, corr[stage]["n"], corr[stage]["spearman"] if corr[stage]["spearman"] is not None else "-"]
                    for stage in ("screen", "select")
                ],
            ),
            "",
        ]
    test = info.get("test")
    best = info.get("best")
    lines += ["## The best against the seeds on the test split", ""]
    if test and best:
        lines += [
            f"Best: `{best['id']}` ({best['operator']}, generation {best['generation']}). "
            f"Verdict: **{test['verdict']}**: {test['message']}.",
            "",
        ]
        rows = [
            [
                c["name"],
                c["seed"],
                "yes" if c["own_seed"] else "no",
                f"{c['mean']:+.3f}",
                f"[{c['low']:+.3f}, {c['high']:+.3f}]",
                c["n"],
                f"{c['wins']} / {c['losses']} / {c['ties']}",
                c["sign_p"],
            ]
            for c in test["vs_seeds"]
        ]
        lines += (
            _table(
                ["seed", "id", "own seed", "best - seed", "95% interval", "n", "better / worse / tie", "sign p"], rows
            )
            if rows
            else ["Not scored on test."]
        )
    else:
        lines += ["No best program (no program was scored)."]
    lines += ["", "## Programs (mean [95% interval] n)", ""]
    spans = {stage: intervals(archive, stage) for stage in STAGES}
    rows = []
    for p in archive.programs():
        cells = [_cell(spans[s][p.id].rounded()) if p.id in spans[s] else "-" for s in STAGES]
        what = (p.error or "") if p.status == "invalid" else str(p.meta.get("rationale") or "")
        rows.append([p.id, p.operator, p.generation, p.status, *cells, what[:120]])
    lines += _table(["id", "operator", "gen", "status", *STAGES, "what"], rows)
    lines += ["", "## Which operators paid off", ""]
    lines += _table(
        ["operator", "children", "valid", "scored", "improved", "replaced", "best gain", "failed"],
        [
            [
                r["operator"],
                r["children"],
                r["valid"],
                r["scored"],
                r["improved"],
                r["replaced"],
                f"{r['best_gain']:+.3f}" if r["best_gain"] is not None else "-",
                r["failed"],
            ]
            for r in operator_payoff(archive)
        ],
    )
    if best:
        lines += ["", "## Lineage of the best", ""]
        lines += [
            f"- `{p.id}` {p.operator}: {p.meta.get('rationale') or p.meta.get('seed') or ''}"
            for p in archive.lineage(best["id"])
        ]
    return "\n".join(lines) + "\n"


def summarize(run_dir: Path, out_dir: Path, argv: list[str] | None = None) -> dict[str, Path]:
    """Write status.json, report.md, best.diff and config.toml of ``run_dir`` into ``out_dir``; return their paths."""
    from agentmem.errors import ConfigError
    from agentmem_evolve.archive import ARCHIVE_FILE, Archive
    from agentmem_evolve.config import RunConfig
    from agentmem_evolve.controller import CONFIG_FILE
    from agentmem_evolve.report import summary

    if not (run_dir / ARCHIVE_FILE).is_file():
        raise ConfigError(f"{run_dir} is not an evolution run (no {ARCHIVE_FILE}); give a run directory")
    config = RunConfig.load(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else None
    out_dir.mkdir(parents=True, exist_ok=True)
    with Archive(run_dir) as archive:
        info = summary(archive)
        counts = funnel(archive)
        verdicts = judgements(archive)
        metrics = stage_metrics(archive)
        timings = stage_timings(archive)
        diff, compared = best_diff(archive)
        markdown = report_markdown(archive, info, counts, config)
    model = config.models.task if config is not None else None
    status = {
        **provenance("evolve/summarize.py", argv, model=model),
        **info,
        "funnel": counts,
        "judgements": verdicts,
        "metrics": metrics,
        "timings": timings,
        "diff": compared,
    }
    status["run_dir"] = run_dir.name  # the machine's path says nothing to a reader of the committed file
    paths = {
        "status": out_dir / "status.json",
        "report": out_dir / "report.md",
        "diff": out_dir / "best.diff",
    }
    paths["status"].write_text(json.dumps(status, indent=2, default=str) + "\n", encoding="utf-8")
    paths["report"].write_text(markdown, encoding="utf-8")
    paths["diff"].write_text(diff, encoding="utf-8")
    if (run_dir / CONFIG_FILE).is_file():
        paths["config"] = out_dir / "config.toml"
        shutil.copyfile(run_dir / CONFIG_FILE, paths["config"])
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="the run directory (agentmem evolve run --run-dir ...)")
    parser.add_argument("out_dir", type=Path, help="where the summary goes, e.g. benchmarks/results/evolve/toolprefs")
    args = parser.parse_args(argv)
    from agentmem.errors import ConfigError

    try:
        paths = summarize(args.run_dir, args.out_dir, argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths.values():
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
