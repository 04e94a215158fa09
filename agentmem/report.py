"""Reports of evaluation grids: Markdown for a terminal or a pull request, HTML for a browser.

The HTML page is self-contained (inline CSS and SVG, no script, no network),
so it can be mailed, attached to CI artefacts or opened offline. Its plots:
the primary score of each memory configuration per environment, and score
against cost (tokens per question), the trade-off one picks a memory by.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.grid import GridResult

from agentmem.charts import PALETTE, Point, bar_chart, scatter_chart

__all__ = ["bar_chart", "grid_html", "grid_markdown", "scatter_chart"]  # the charts: agentmem.charts


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agentmem", "templates/report"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _by_env(table: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in table:
        out.setdefault(row["env"], []).append(row)
    return out


_INTERVAL_KEYS = ("score_low", "score_high")
NO_INTERVAL = "no interval (not a mean over questions)"
#: what the table's columns other than the score are, said once under each table (they carry no interval)
NOT_MEANS = (
    "tokens_per_question, llm_calls, cache_hits, seconds, failed_extractions and fallbacks are totals or "
    "ratios over a whole run: " + NO_INTERVAL + ". The other metrics' intervals, for those that are means over "
    "questions, are in each cell's result file."
)


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    fixed = ["memory", "score", "95% interval", "score_n"]
    cost = ["tokens_per_question", "llm_calls", "cache_hits", "seconds", "failed_extractions", "fallbacks"]
    metrics = [
        k
        for r in rows
        for k in r
        if k
        not in (
            *fixed,
            *cost,
            *_INTERVAL_KEYS,
            "env",
            "primary_metric",
            "questions",
            "prompt_tokens",
            "completion_tokens",
        )
    ]
    seen: list[str] = []
    for m in metrics:
        if m not in seen:
            seen.append(m)
    return [*fixed, *seen, "questions", *cost]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def _value(row: dict[str, Any], column: str) -> str:
    if column == "95% interval":
        low, high = row.get("score_low"), row.get("score_high")
        return NO_INTERVAL if low is None or high is None else f"[{low:.3f}, {high:.3f}]"
    return _cell(row.get(column, ""))


def _header(column: str, primary: str) -> str:
    return {"score": f"score ({primary})", "score_n": "n"}.get(column, column)


def _interval(row: dict[str, Any]) -> tuple[float, float] | None:
    low, high = row.get("score_low"), row.get("score_high")
    return None if low is None or high is None else (float(low), float(high))


def _origin(grid: GridResult) -> dict[str, Any] | None:
    """Where the grid came from, as display strings: its command, agentmem and its commit, the date, the machine,
    and the resumed cells an earlier run made with other code.
    """
    if grid.provenance is None:
        return None
    here = grid.provenance.git_commit, grid.provenance.git_dirty
    others = []
    for r in grid.cells:
        made = r.provenance
        if made is not None and made is not grid.provenance and (made.git_commit, made.git_dirty) != here:
            label = "+".join(r.memory) or "none"
            others.append(f"{r.env} / {label}: {made.short()}")
    return {"command": grid.provenance.command, "short": grid.provenance.short(), "other_code": others}


def _pairs(pairs: list[dict[str, Any]] | None, env: str) -> list[dict[str, str]]:
    """The pairwise comparisons of one environment as display strings."""
    out = []
    for p in pairs or []:
        if p["env"] != env:
            continue
        if p["n"] == 0:
            verdict = "no shared questions"
        elif p["better"]:
            verdict = f"{p['a']} better"
        elif p["worse"]:
            verdict = f"{p['b']} better"
        else:
            verdict = "no difference shown"
        out.append(
            {
                "a": p["a"],
                "b": p["b"],
                "n": str(p["n"]),
                "difference": f"{p['mean']:+.3f}",
                "interval": f"[{p['low']:+.3f}, {p['high']:+.3f}]" if p["n"] else "-",
                "record": f"{p['wins']} / {p['losses']} / {p['ties']}",
                "sign_p": f"{p['sign_p']:.3g}",
                "verdict": verdict,
            }
        )
    return out


def grid_markdown(grid: GridResult, table: list[dict[str, Any]], pairs: list[dict[str, Any]] | None = None) -> str:
    """The grid as Markdown tables, one per environment, each followed by its pairwise comparisons."""
    sections = []
    for env, rows in _by_env(table).items():
        cols = _columns(rows)
        primary = rows[0]["primary_metric"]
        sections.append(
            {
                "env": env,
                "primary": primary,
                "header": "| " + " | ".join(_header(c, primary) for c in cols) + " |",
                "rule": "|" + "|".join("---" if c == "memory" else "---:" for c in cols) + "|",
                "lines": ["| " + " | ".join(_value(r, c) for c in cols) + " |" for r in rows],
                "pairs": _pairs(pairs, env),
            }
        )
    return (
        _env()
        .get_template("grid.md.j2")
        .render(grid=grid, sections=sections, origin=_origin(grid), not_means=NOT_MEANS)
        .strip()
        + "\n"
    )


def grid_html(grid: GridResult, table: list[dict[str, Any]], pairs: list[dict[str, Any]] | None = None) -> str:
    """The grid as one self-contained HTML page: tables, pairwise comparisons and SVG plots per environment."""
    sections = []
    for env, rows in _by_env(table).items():
        cols = _columns(rows)
        primary = rows[0]["primary_metric"]
        labels = [r["memory"] for r in rows]
        sections.append(
            {
                "env": env,
                "primary": primary,
                "columns": [_header(c, primary) for c in cols],
                "rows": [[_value(r, c) for c in cols] for r in rows],
                "pairs": _pairs(pairs, env),
                "score_svg": bar_chart(
                    labels,
                    [float(r["score"]) for r in rows],
                    title=f"{env}: {primary} (95% interval)",
                    intervals=[_interval(r) for r in rows],
                ),
                "cost_svg": scatter_chart(
                    [
                        Point(
                            x=float(r["tokens_per_question"]),
                            y=float(r["score"]),
                            color=PALETTE[i % len(PALETTE)],
                            label=r["memory"],
                            r=5,
                            title=f"{r['memory']}: {primary} {float(r['score']):.3f}, "
                            f"{float(r['tokens_per_question']):.0f} tokens per question",
                        )
                        for i, r in enumerate(rows)
                    ],
                    title=f"{env}: {primary} against cost",
                    x_label="tokens per question",
                    y_label=primary,
                    x_include=[0.0],
                    y_include=[0.0],
                    width=560,
                ),
                "time_svg": bar_chart(
                    labels, [float(r["seconds"]) for r in rows], title=f"{env}: wall time (s)", fmt="{:.0f}"
                ),
            }
        )
    return (
        _env()
        .get_template("grid.html.j2")
        .render(grid=grid, sections=sections, origin=_origin(grid), not_means=NOT_MEANS)
    )
