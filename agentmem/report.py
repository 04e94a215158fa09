"""Reports of evaluation grids: Markdown for a terminal or a pull request, HTML for a browser.

The HTML page is self-contained (inline CSS and SVG, no script, no network),
so it can be mailed, attached to CI artefacts or opened offline. Its plots:
the primary score of each memory configuration per environment, and score
against cost (tokens per question), the trade-off one picks a memory by.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

import jinja2

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.grid import GridResult

__all__ = ["bar_chart", "grid_html", "grid_markdown", "scatter_chart"]

_PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]


def _env() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("agentmem", "templates/report"),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def bar_chart(labels: list[str], values: list[float], *, title: str, fmt: str = "{:.3f}", width: int = 560) -> str:
    """A horizontal bar chart as an SVG string (values >= 0)."""
    bar_h, gap, left, right = 22, 8, 170, 70
    height = 30 + len(labels) * (bar_h + gap)
    top = max(values, default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values)):
        y = 26 + i * (bar_h + gap)
        w = max(1.0, (width - left - right) * max(value, 0.0) / top)
        parts.append(f'<text x="{left - 6}" y="{y + 15}" font-size="12" text-anchor="end">{escape(label)}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{_PALETTE[i % len(_PALETTE)]}"/>')
        parts.append(f'<text x="{left + w + 4:.1f}" y="{y + 15}" font-size="12">{escape(fmt.format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(points: list[tuple[str, float, float]], *, title: str, x_label: str, y_label: str,
                  width: int = 560, height: int = 300) -> str:
    """Labelled points ``(label, x, y)`` as an SVG scatter plot (x: cost, y: score)."""
    left, right, top_pad, bottom = 56, 20, 30, 42
    xs = [p[1] for p in points] or [0.0]
    ys = [p[2] for p in points] or [0.0]
    x_max = max(xs) * 1.1 or 1.0
    y_max = max(max(ys) * 1.1, 0.05)
    plot_w, plot_h = width - left - right, height - top_pad - bottom

    def sx(x: float) -> float:
        return left + plot_w * x / x_max

    def sy(y: float) -> float:
        return top_pad + plot_h * (1 - y / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top_pad + plot_h}" x2="{left + plot_w}" y2="{top_pad + plot_h}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top_pad}" x2="{left}" y2="{top_pad + plot_h}" stroke="#444"/>',
        f'<text x="{left + plot_w / 2}" y="{height - 8}" font-size="12" text-anchor="middle">{escape(x_label)}</text>',
        f'<text x="14" y="{top_pad + plot_h / 2}" font-size="12" text-anchor="middle" '
        f'transform="rotate(-90 14 {top_pad + plot_h / 2})">{escape(y_label)}</text>',
    ]
    for frac in (0.0, 0.5, 1.0):
        parts.append(f'<text x="{left - 4}" y="{sy(y_max * frac) + 4:.1f}" font-size="10" text-anchor="end">{y_max * frac:.2f}</text>')
        parts.append(f'<text x="{sx(x_max * frac):.1f}" y="{top_pad + plot_h + 14}" font-size="10" text-anchor="middle">{x_max * frac:.0f}</text>')
    for i, (label, x, y) in enumerate(points):
        color = _PALETTE[i % len(_PALETTE)]
        parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{color}"/>')
        parts.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}" font-size="11">{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _by_env(table: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in table:
        out.setdefault(row["env"], []).append(row)
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    fixed = ["memory", "score"]
    cost = ["tokens_per_question", "llm_calls", "cache_hits", "seconds", "failed_extractions", "fallbacks"]
    metrics = [k for r in rows for k in r if k not in (*fixed, *cost, "env", "primary_metric", "questions",
                                                       "prompt_tokens", "completion_tokens")]
    seen: list[str] = []
    for m in metrics:
        if m not in seen:
            seen.append(m)
    return [*fixed, *seen, "questions", *cost]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def grid_markdown(grid: "GridResult", table: list[dict[str, Any]]) -> str:
    """The grid as Markdown tables, one per environment."""
    sections = []
    for env, rows in _by_env(table).items():
        cols = _columns(rows)
        primary = rows[0]["primary_metric"]
        sections.append({
            "env": env, "primary": primary,
            "header": "| " + " | ".join("score (" + primary + ")" if c == "score" else c for c in cols) + " |",
            "rule": "|" + "|".join("---" if c == "memory" else "---:" for c in cols) + "|",
            "lines": ["| " + " | ".join(_cell(r.get(c, "")) for c in cols) + " |" for r in rows],
        })
    return _env().get_template("grid.md.j2").render(grid=grid, sections=sections).strip() + "\n"


def grid_html(grid: "GridResult", table: list[dict[str, Any]]) -> str:
    """The grid as one self-contained HTML page: tables and SVG plots per environment."""
    sections = []
    for env, rows in _by_env(table).items():
        cols = _columns(rows)
        primary = rows[0]["primary_metric"]
        labels = [r["memory"] for r in rows]
        sections.append({
            "env": env, "primary": primary, "columns": cols,
            "rows": [[_cell(r.get(c, "")) for c in cols] for r in rows],
            "score_svg": bar_chart(labels, [float(r["score"]) for r in rows], title=f"{env}: {primary}"),
            "cost_svg": scatter_chart(
                [(r["memory"], float(r["tokens_per_question"]), float(r["score"])) for r in rows],
                title=f"{env}: {primary} against cost", x_label="tokens per question", y_label=primary,
            ),
            "time_svg": bar_chart(labels, [float(r["seconds"]) for r in rows], title=f"{env}: wall time (s)", fmt="{:.0f}"),
        })
    return _env().get_template("grid.html.j2").render(grid=grid, sections=sections)
