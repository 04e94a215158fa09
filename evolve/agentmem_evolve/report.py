"""What a run found, for people: a one-file HTML report and a summary dict.

The report is a single self-contained HTML page (inline SVG, inline CSS, no
scripts, no external URLs) so that it can be mailed, attached to a paper's
supplementary material, or opened on an offline machine years later. It reads
only the archive (and ``run_dir/config.toml``), so it can be rendered while a
run is still going, or after it crashed.
"""

from __future__ import annotations

import difflib
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypedDict

import jinja2

from agentmem.charts import Axis, Line, Point, scatter_chart
from agentmem.stats import Interval
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.evidence import compare_with_seeds, incumbent, intervals, seed_of, seed_verdict
from agentmem_evolve.proxy import proxy_summary
from agentmem_evolve.selection import Scored, pareto_frontier

__all__ = ["operator_payoff", "render_report", "summary", "seed_of"]

STAGES = ("screen", "select", "test")
REPORT_FILE = "report.html"


# -- summary ---------------------------------------------------------------------------
def summary(archive: Archive) -> dict[str, Any]:
    """Where a run stands: what `agentmem evolve status` prints and the report's header shows.

    ``spend`` adds the cost of every recorded evaluation to the controller's
    own LLM use (proposals, repairs; state ``controller_spend``); ``seconds``
    is the run's wall time (state ``elapsed``) when the controller saved it.
    """
    programs = archive.programs()
    by_status = {"valid": 0, "invalid": 0, "pending": 0}
    for p in programs:
        by_status[p.status] = by_status.get(p.status, 0) + 1
    evaluations = archive.evaluations()
    by_stage: dict[str, dict[str, int]] = {stage: {"ok": 0, "failed": 0} for stage in STAGES}
    for e in evaluations:
        by_stage.setdefault(e.stage, {"ok": 0, "failed": 0})[e.status] += 1
    spend = _spend(archive, evaluations)
    best_stage, best = "select", incumbent(archive)
    if best is None:
        best_stage, best = "screen", archive.best("screen")
    by_stage_interval = {stage: intervals(archive, stage) for stage in STAGES}
    best_info = None
    test = None
    if best is not None:
        prog, ev = best
        scores = _stage_scores(archive)
        best_info = {
            "id": prog.id,
            "operator": prog.operator,
            "generation": prog.generation,
            "stage": best_stage,
            "score": ev.score,
            "scores": {stage: scores.get(stage, {}).get(prog.id) for stage in STAGES},
            "intervals": {stage: _rounded(by_stage_interval[stage].get(prog.id)) for stage in STAGES},
            "tokens_per_question": round(ev.program_tokens / ev.questions, 1),
            "metrics": ev.metrics,
        }
        verdict = seed_verdict(archive, prog.id)
        test = {
            "best": prog.id,
            "verdict": verdict.status,
            "flagged": verdict.flagged,
            "message": verdict.message,
            "vs_seeds": [
                {"seed": c.seed, "name": c.seed_name, "own_seed": c.own_seed, **_paired(c.difference)}
                for c in compare_with_seeds(archive, prog.id)
            ],
        }
    pool = archive.scored("select") or archive.scored("screen")
    return {
        "run_dir": str(archive.run_dir),
        "iteration": archive.get_state("iteration", 0),
        "programs": {"total": len(programs), **by_status},
        "evaluations": by_stage,
        "best": best_info,
        "test": test,
        "scores": [
            {
                "id": p.id,
                "operator": p.operator,
                "generation": p.generation,
                **{stage: _rounded(by_stage_interval[stage].get(p.id)) for stage in STAGES},
            }
            for p in programs
            if any(p.id in by_stage_interval[stage] for stage in STAGES)
        ],
        "frontier": [s.program_id for s in pareto_frontier(pool)],
        "spend": spend,
        "sandbox": archive.get_state("sandbox", None),
        "proxy": proxy_summary(archive),
    }


def _rounded(interval: Interval | None) -> dict[str, float | int] | None:
    """A score as status prints it: mean, its 95% interval over the questions, and n."""
    return None if interval is None else interval.rounded()


def _paired(d: Any) -> dict[str, Any]:
    return {
        **d.rounded(),
        "wins": d.wins,
        "losses": d.losses,
        "ties": d.ties,
        "sign_p": float(f"{d.sign_p:.3g}"),
        "better": d.low > 0,
        "worse": d.high < 0,
    }


def _spend(archive: Archive, evaluations: list[EvaluationRecord]) -> dict[str, Any]:
    """Evaluation costs summed, plus the controller's own LLM use (state ``controller_spend``) and run time."""
    ev = {"llm_calls": 0.0, "prompt_tokens": 0.0, "completion_tokens": 0.0, "tokens": 0.0, "seconds": 0.0}
    for e in evaluations:
        for k in ("llm_calls", "prompt_tokens", "completion_tokens", "seconds"):
            ev[k] += float(e.cost.get(k, 0.0) or 0.0)
        ev["tokens"] += e.tokens
    own = archive.get_state("controller_spend") or {}
    own_calls, own_tokens = int(own.get("llm_calls", 0) or 0), int(own.get("tokens", 0) or 0)
    elapsed = archive.get_state("elapsed")
    return {
        "llm_calls": int(ev["llm_calls"]) + own_calls,
        "tokens": int(ev["tokens"]) + own_tokens,
        "seconds": round(float(elapsed), 1) if elapsed is not None else round(ev["seconds"], 1),
        "evaluation_llm_calls": int(ev["llm_calls"]),
        "evaluation_tokens": int(ev["tokens"]),
        "prompt_tokens": int(ev["prompt_tokens"]),
        "completion_tokens": int(ev["completion_tokens"]),
        "evaluation_seconds": round(ev["seconds"], 1),
        "controller_llm_calls": own_calls,
        "controller_tokens": own_tokens,
    }


def _stage_scores(archive: Archive) -> dict[str, dict[str, float]]:
    return {stage: {s.program_id: s.score for s in archive.scored(stage)} for stage in STAGES}


# -- plots (drawn by agentmem.charts, the one SVG engine of agentmem's reports) ---------
W, H = 640, 300


def _score_plot(programs: list[ProgramRecord], scores: dict[str, dict[str, float]]) -> str | None:
    """Each evaluated program by creation order; filled = select score, hollow = screen only; best-so-far line."""
    pts = []
    for i, p in enumerate(programs):
        if p.id in scores["select"]:
            pts.append((i, scores["select"][p.id], "select", p))
        elif p.id in scores["screen"]:
            pts.append((i, scores["screen"][p.id], "screen", p))
    if not pts:
        return None
    points = [
        Point(x=float(i), y=v, cls=stage, title=f"{p.id} ({p.operator}, gen {p.generation}): {stage} {v:.3f}")
        for i, v, stage, p in pts
    ]
    best_line: list[tuple[float, float]] = []
    best = -math.inf
    for i, v, stage, _p in pts:
        if stage != "select":
            continue
        if v > best:
            if best_line:
                best_line.append((float(i), best))  # the step: flat until this program, then up
            best = v
        best_line.append((float(i), best))
    if best_line:
        best_line.append((float(pts[-1][0]), best))
    return scatter_chart(
        points,
        title="score of each program in creation order",
        x_label="program (creation order)",
        y_label="score",
        lines=[Line(xy=best_line, cls="bestline")] if best_line else [],
        x_include=[0.0],
        width=W,
        height=H,
        chart_id="score-plot",
        show_title=False,
    )  # an SVG string built with every text escaped (agentmem.charts); the template inserts it as it is


def _pareto_plot(pool: list[Scored], front: list[Scored]) -> str | None:
    """Score against tokens per question; the frontier highlighted and joined by a staircase."""
    if not pool:
        return None
    on_front = {s.program_id for s in front}
    points = [
        Point(
            x=max(s.tokens, 0.0),
            y=s.score,
            cls="front" if s.program_id in on_front else "dominated",
            r=5 if s.program_id in on_front else 3.5,
            title=f"{s.program_id}: score {s.score:.3f}, {s.tokens:.0f} tokens/question",
            label=s.program_id[:6] if s.program_id in on_front else "",
        )
        for s in pool
    ]
    stairs: list[tuple[float, float]] = []
    for i, s in enumerate(front):
        if i > 0:
            stairs.append((s.tokens, front[i - 1].score))
        stairs.append((s.tokens, s.score))
    log = Axis([max(s.tokens, 0.0) for s in pool], 0, 1, log=True).log  # whether the data allow a log axis
    return scatter_chart(
        points,
        title="score against tokens per question",
        y_label="score",
        x_label="tokens per question" + (" (log scale)" if log else ""),
        lines=[Line(xy=stairs, cls="frontline", color="#dc2626")],
        log_x=True,
        width=W,
        height=H,
        chart_id="pareto-plot",
        show_title=False,
    )


# -- lineage, table, diff --------------------------------------------------------------
class _LineageNode(TypedDict):
    """One program in the lineage tree the report's template draws."""

    id: str
    operator: str
    generation: int
    status: Literal["valid", "invalid", "pending"]
    score: float | None
    stage: Literal["select", "screen"] | None
    also: list[str]
    children: list[_LineageNode]
    seed: str


def _tree(programs: list[ProgramRecord], scores: dict[str, dict[str, float]]) -> list[_LineageNode]:
    """Nested nodes: each program under its first parent; other parents named on the node."""
    ids = {p.id for p in programs}
    nodes: dict[str, _LineageNode] = {
        p.id: {
            "id": p.id,
            "operator": p.operator,
            "generation": p.generation,
            "status": p.status,
            "score": scores["select"].get(p.id, scores["screen"].get(p.id)),
            "stage": "select" if p.id in scores["select"] else ("screen" if p.id in scores["screen"] else None),
            "also": [q for q in p.parents[1:]],
            "children": [],
            "seed": p.meta.get("seed") or p.meta.get("plugin") or "",
        }
        for p in programs
    }
    roots: list[_LineageNode] = []
    for p in programs:
        parent = next((q for q in p.parents if q in ids), None)
        (nodes[parent]["children"] if parent else roots).append(nodes[p.id])
    return roots


def _rows(archive: Archive, programs: list[ProgramRecord], scores: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    by_stage = {stage: intervals(archive, stage) for stage in STAGES}
    evals: dict[str, list[EvaluationRecord]] = {}
    for e in archive.evaluations():
        evals.setdefault(e.program_id, []).append(e)
    rows = []
    for p in programs:
        mine = evals.get(p.id, [])
        failed = [e for e in mine if e.status == "failed"]
        answered = [e for e in mine if e.status == "ok" and e.stage != "proxy"]  # the proxy asks no LLM
        tokens = sum(e.program_tokens for e in answered)
        questions = sum(e.questions for e in answered)
        problem = (
            p.error
            if p.status == "invalid"
            else ("; ".join(f"{e.stage}: {e.reason or 'failed'}" for e in failed) if failed else "")
        )
        rows.append(
            {
                "id": p.id,
                "operator": p.operator,
                "generation": p.generation,
                "island": p.island,
                "parents": p.parents,
                "status": p.status,
                "scores": {stage: scores[stage].get(p.id) for stage in STAGES},
                "intervals": {stage: by_stage[stage].get(p.id) for stage in STAGES},
                "tokens_per_question": (tokens / questions) if questions else None,
                "calls": int(sum(float(e.cost.get("llm_calls", 0) or 0) for e in mine)),
                "seconds": sum(float(e.cost.get("seconds", 0) or 0) for e in mine),
                "problem": problem or "",
                "rationale": str(p.meta.get("rationale") or p.meta.get("summary") or "")[:300],
            }
        )
    return rows


def operator_payoff(archive: Archive) -> list[dict[str, Any]]:
    """Per operator that made children: how many it made, how many were valid, scored, and improved on their parent.

    A child *improved* when it scored higher than its first parent on the same
    stage (select where both have a select score, else screen): a mean that may
    be noise. It *replaced* its parent when the run's paired verdict
    (:mod:`agentmem_evolve.evidence`) said so: better with confidence on the
    questions both answered, or as good and cheaper. Proposals that
    failed before any program came out are counted under the proposer kind
    (``failed``); a failed proposal that left a program is also an invalid child.
    """
    scores = _stage_scores(archive)
    table: dict[str, dict[str, Any]] = {}

    def row(name: str) -> dict[str, Any]:
        return table.setdefault(
            name,
            {
                "operator": name,
                "children": 0,
                "valid": 0,
                "scored": 0,
                "improved": 0,
                "replaced": 0,
                "best_gain": None,
                "failed": 0,
            },
        )

    judged = archive.get_state("judged", {}) or {}

    for p in archive.programs():
        if p.operator == "seed":
            continue
        r = row(p.operator)
        r["children"] += 1
        r["valid"] += p.status == "valid"
        parent = p.parents[0] if p.parents else None
        stage = next((s for s in ("select", "screen") if p.id in scores[s]), None)
        if stage is None:
            continue
        r["scored"] += 1
        r["replaced"] += any(
            v.get("replaces") and v.get("incumbent") == parent for v in (judged.get(p.id) or {}).get("parents", [])
        )
        shared = next((s for s in ("select", "screen") if p.id in scores[s] and parent in scores[s]), None)
        if shared is not None and parent is not None:
            gain = scores[shared][p.id] - scores[shared][parent]
            r["improved"] += gain > 0
            r["best_gain"] = gain if r["best_gain"] is None else max(r["best_gain"], gain)
    for event in archive.events(kind="proposal_failed"):
        row(str(event.payload.get("operator", "?")))["failed"] += 1
    return sorted(table.values(), key=lambda r: (-r["improved"], -r["valid"], r["operator"]))


def _diff(old: ProgramRecord, new: ProgramRecord) -> list[dict[str, str]]:
    """The unified diff (source, then parameter values) of ``new`` against ``old``, line by line with a kind."""
    lines = list(
        difflib.unified_diff(
            old.source.splitlines(),
            new.source.splitlines(),
            f"{old.id} (seed)",
            f"{new.id} (best)",
            lineterm="",
            n=3,
        )
    )
    if old.params != new.params:
        lines += list(
            difflib.unified_diff(
                json.dumps(old.params, indent=1, sort_keys=True).splitlines(),
                json.dumps(new.params, indent=1, sort_keys=True).splitlines(),
                f"{old.id} params",
                f"{new.id} params",
                lineterm="",
            )
        )
    out = []
    for line in lines:
        if line.startswith(("+++", "---")):
            kind = "file"
        elif line.startswith("@@"):
            kind = "hunk"
        elif line.startswith("+"):
            kind = "add"
        elif line.startswith("-"):
            kind = "del"
        else:
            kind = "ctx"
        out.append({"kind": kind, "text": line})
    return out


def _config(archive: Archive) -> dict[str, Any]:
    path = archive.run_dir / "config.toml"
    if not path.is_file():
        return {"text": None, "fields": {}}
    text = path.read_text(encoding="utf-8", errors="replace")
    fields: dict[str, Any] = {}
    try:
        from agentmem_evolve.config import RunConfig

        cfg = RunConfig.load(path)
        fields = {
            "environment": cfg.environment.name,
            "seeds": ", ".join(cfg.seeds),
            "splits": f"screen {cfg.environment.screen_split} ({cfg.environment.minibatch} q), "
            f"select {cfg.environment.select_split} ({cfg.environment.validation_limit or 'all'} q), "
            f"test {cfg.environment.test_split} ({cfg.environment.test_limit or 'all'} q)",
            "models": f"task {cfg.models.task}, mutation {cfg.models.mutation}",
            "selection": f"{cfg.selection.strategy}; a child replaces its parent or the best when better on shared "
            f"questions ({cfg.selection.paired_test}, {cfg.selection.confidence:.0%}), or as good and at least "
            f"{cfg.selection.tie_cost_margin:.0%} cheaper"
            + (
                f" and not worse by more than {cfg.selection.tie_margin:g}"
                if cfg.selection.tie_margin is not None
                else ""
            ),
            "budget": f"{cfg.budget.iterations} iterations"
            + (f", {cfg.budget.max_llm_tokens:,} tokens" if cfg.budget.max_llm_tokens else "")
            + (f", {cfg.budget.max_wall_seconds:.0f} s" if cfg.budget.max_wall_seconds else ""),
            "proposers": ", ".join(f"{k} {v:g}" for k, v in cfg.proposers.weights.items()),
        }
    except Exception as exc:  # a report must render even from a run with a broken config
        fields = {"config error": str(exc)}
    return {"text": text, "fields": fields}


def _short_json(value: Any, limit: int = 240) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _templates() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agentmem_evolve", "templates"),
        autoescape=True,  # program sources, errors and traces are untrusted text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(archive: Archive, out: Path | str | None = None) -> Path:
    """Write the HTML report (``out``, or ``out/report.html`` when ``out`` is a directory) and return its path."""
    out = Path(out) if out is not None else archive.run_dir / REPORT_FILE
    if out.is_dir() or (not out.suffix and not out.exists()):
        out = out / REPORT_FILE
    programs = archive.programs()
    scores = _stage_scores(archive)
    pool = archive.scored("select") or archive.scored("screen")
    front = pareto_frontier(pool)
    info = summary(archive)
    best = incumbent(archive) or archive.best("screen")
    diff = None
    if best is not None:
        seed = seed_of(archive, best[0].id)
        if seed is not None:
            diff = {"seed": seed.id, "best": best[0].id, "lines": _diff(seed, best[0]), "same": seed.id == best[0].id}
    lineage = [
        {"id": p.id, "operator": p.operator, "score": scores["select"].get(p.id)}
        for p in (archive.lineage(best[0].id) if best else [])
    ]
    html = (
        _templates()
        .get_template("report.html.j2")
        .render(
            title=f"agentmem evolve: {archive.run_dir.name}",
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            summary=info,
            config=_config(archive),
            score_plot=_score_plot(programs, scores),
            pareto_plot=_pareto_plot(pool, front),
            front_stage="select" if archive.scored("select") else "screen",
            tree=_tree(programs, scores),
            rows=_rows(archive, programs, scores),
            operators=operator_payoff(archive),
            diff=diff,
            lineage=lineage,
            events=[
                {"id": e.id, "time": e.ts.strftime("%H:%M:%S"), "kind": e.kind, "details": _short_json(e.payload)}
                for e in archive.events()[-40:]
            ],
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
