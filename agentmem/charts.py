"""Static SVG charts for agentmem's HTML reports: one engine for the evaluation grid and the evolution run.

Both reports are single self-contained pages (no script, no network, readable
offline years later), so a chart is a plain SVG string inlined in the page.
Two chart kinds cover them: horizontal bars with optional 95% error bars (a
grid's score and time per configuration) and a scatter on linear or log axes
with optional lines through data points (a grid's score against cost; a run's
score over time and its quality/cost frontier).

Every chart sizes itself to its text: the label column is as wide as the
longest (wrapped) label, the margins hold the tick and value labels, and the
chart widens rather than cut a title, so no label is clipped by the viewBox.
Text width is estimated from per-character advance widths of DejaVu Sans (the
widest of the common sans-serif faces a browser falls back to), so the
estimate is an upper bound for the faces a report is likely shown in.

Why not a charting library (measured on this 2-core machine while it was
loaded, in a scratch environment, not a dependency): matplotlib 3.11 took 7-10 s
to import, 0.4-0.5 s to render a three-bar chart with error bars, and wrote a
23 kB SVG with every letter drawn as a path (no ``<text>``, so the page's CSS,
text search and screen readers do not reach it), for 138 MB installed with
numpy, fontTools and pillow; pygal 3.1 imports in 0.5 s but puts two
``<script>`` elements in every chart, one loading its tooltips from a remote
URL. The reports need two chart kinds of a dozen SVG elements each, styled by
the page's CSS, so the engine is kept here: small and in one place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

__all__ = [
    "PALETTE",
    "Axis",
    "Line",
    "Point",
    "bar_chart",
    "scatter_chart",
    "chart_texts",
    "text_width",
    "wrap_label",
]

PALETTE = ["#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac"]
FONT_PX = 11  # tick, point and value labels
LABEL_PX = 12  # bar labels
TITLE_PX = 13  # chart titles (bold)
LINE_GAP = 3  # between the lines of a wrapped label
WRAP_CHARS = 26  # a bar label longer than this wraps (at '+', '/', '-', '_' or a space where it can)

# Advance widths in em of printable ASCII: the larger of DejaVu Sans and DejaVu Sans Bold, rounded up
# (read from the fonts' hmtx tables). DejaVu Sans is the widest of the common sans-serif faces, so a
# width estimated from it is an upper bound for what a browser draws; other characters count as 1 em.
_ASCII = " !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~"
_EM = (
    0.35,
    0.46,
    0.53,
    0.84,
    0.7,
    1.01,
    0.88,
    0.31,
    0.46,
    0.46,
    0.53,
    0.84,
    0.38,
    0.42,
    0.38,
    0.37,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.7,
    0.4,
    0.4,
    0.84,
    0.84,
    0.84,
    0.59,
    1,
    0.78,
    0.77,
    0.74,
    0.84,
    0.69,
    0.69,
    0.83,
    0.84,
    0.38,
    0.38,
    0.78,
    0.64,
    1,
    0.84,
    0.86,
    0.74,
    0.86,
    0.78,
    0.73,
    0.69,
    0.82,
    0.78,
    1.11,
    0.78,
    0.73,
    0.73,
    0.46,
    0.37,
    0.46,
    0.84,
    0.5,
    0.5,
    0.68,
    0.72,
    0.6,
    0.72,
    0.68,
    0.44,
    0.72,
    0.72,
    0.35,
    0.35,
    0.67,
    0.35,
    1.05,
    0.72,
    0.69,
    0.72,
    0.72,
    0.5,
    0.6,
    0.48,
    0.72,
    0.66,
    0.93,
    0.65,
    0.66,
    0.59,
    0.72,
    0.37,
    0.72,
    0.84,
)
_WIDTHS = dict(zip(_ASCII, _EM, strict=True))


def text_width(text: str, size: float = FONT_PX) -> float:
    """An upper estimate of ``text``'s rendered width in pixels at font size ``size`` (regular or bold)."""
    return sum(_WIDTHS.get(ch, 1.0) for ch in text) * size


def wrap_label(text: str, max_chars: int = WRAP_CHARS) -> list[str]:
    """``text`` in lines of at most ``max_chars``, broken after '+', '/', '-', '_' or at a space where possible.

    A configuration name like ``episodic+semantic+procedural`` is read in its
    parts, so breaking after a ``+`` keeps each part whole; a part longer than
    a line is cut where it must be.
    """
    if len(text) <= max_chars:
        return [text]
    lines: list[str] = []
    rest = text
    while len(rest) > max_chars:
        window = rest[: max_chars + 1]
        cut = max((window.rfind(sep) + 1 for sep in "+/-_"), default=0)
        space = window.rfind(" ")
        if space > 0 and space + 1 >= cut:
            lines.append(rest[:space])
            rest = rest[space + 1 :]
            continue
        if cut <= 0 or cut > max_chars:
            cut = max_chars
        lines.append(rest[:cut])
        rest = rest[cut:]
    if rest:
        lines.append(rest)
    return lines


def _fmt(v: float) -> str:
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v - round(v)) < 1e-9:
        return str(int(round(v)))
    return f"{v:.3g}"


def _nice_step(raw: float) -> float:
    if raw <= 0:
        return 1.0
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


class Axis:
    """A linear or log axis from data values to pixels, with a few round tick labels.

    ``log`` is honoured only when every value is positive and they span more
    than a factor of 20 (otherwise a log scale hides more than it shows).
    """

    def __init__(
        self, values: Sequence[float], lo_px: float, hi_px: float, *, log: bool = False, pad: float = 0.05
    ) -> None:
        self.log = bool(log and values and min(values) > 0 and max(values) / min(values) > 20)
        vals = [self._t(v) for v in values] or [0.0, 1.0]
        lo, hi = min(vals), max(vals)
        if hi - lo < 1e-9:
            lo, hi = lo - 0.5, hi + 0.5
        span = hi - lo
        self.lo, self.hi = lo - pad * span, hi + pad * span
        self.lo_px, self.hi_px = lo_px, hi_px

    def _t(self, v: float) -> float:
        return math.log10(v) if self.log else v

    def __call__(self, v: float) -> float:
        t = self._t(v) if (not self.log or v > 0) else self.lo
        return round(self.lo_px + (t - self.lo) / (self.hi - self.lo) * (self.hi_px - self.lo_px), 1)

    def ticks(self, n: int = 5) -> list[tuple[float, str]]:
        """``(pixel, label)`` of round values inside the axis."""
        if self.log:
            decades = range(math.floor(self.lo), math.ceil(self.hi) + 1)
            mults = (1, 2, 5) if self.hi - self.lo < 3 else (1,)  # few decades: 1-2-5 ticks
            out = [
                (self(m * 10.0**e), _fmt(m * 10.0**e))
                for e in decades
                for m in mults
                if self.lo <= math.log10(m * 10.0**e) <= self.hi
            ]
            return out or [(self(10.0**self.lo), _fmt(10.0**self.lo))]
        step = _nice_step((self.hi - self.lo) / max(1, n))
        out, v = [], math.ceil(self.lo / step) * step
        while v <= self.hi + 1e-12:
            out.append((self(v), _fmt(0.0 if abs(v) < step * 1e-9 else v)))
            v += step
        return out


@dataclass
class Point:
    """A scatter point: ``cls`` for the page's CSS, ``color`` as a fill of its own, ``label`` drawn beside it."""

    x: float
    y: float
    cls: str = "point"
    color: str | None = None
    title: str = ""
    label: str = ""
    r: float = 4.0


@dataclass
class Line:
    """A polyline through data points (drawn in order), e.g. a best-so-far line or a frontier's staircase."""

    xy: list[tuple[float, float]] = field(default_factory=list)
    cls: str = "line"
    color: str = "#16a34a"


def _open(width: float, height: float, title: str, chart_id: str | None) -> str:
    ident = f' id="{escape(chart_id)}"' if chart_id else ""
    # no xmlns: the charts are inline in HTML, whose parser puts <svg> in the SVG namespace itself (and a report
    # holds no URL at all)
    return (
        f'<svg{ident} width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{escape(title)}" '
        f'font-family="DejaVu Sans, Verdana, sans-serif">'
    )


def _title(title: str) -> str:
    return (
        f'<text class="title" x="4" y="{TITLE_PX + 3}" font-size="{TITLE_PX}" font-weight="bold">{escape(title)}</text>'
    )


def bar_chart(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    intervals: Sequence[tuple[float, float] | None] | None = None,
    fmt: str = "{:.3f}",
    plot_width: int = 320,
    chart_id: str | None = None,
) -> str:
    """Horizontal bars (values >= 0), one per label, with a 95% error bar where ``intervals`` gives one.

    Long labels wrap (:func:`wrap_label`) and the label column widens to the
    longest line; the value printed after each bar (``fmt``, plus the
    interval when there is one) sits past the bar's error bar.
    """
    if intervals is not None and len(intervals) != len(values):
        raise ValueError(f"{len(intervals)} intervals for {len(values)} bars: give one (or None) per bar")
    spans = list(intervals) if intervals is not None else [None] * len(values)
    wrapped = [wrap_label(label) for label in labels]
    line_h = LABEL_PX + LINE_GAP
    heights = [max(20.0, len(lines) * line_h + 4) for lines in wrapped]
    left = max([text_width(line, LABEL_PX) for lines in wrapped for line in lines] or [0.0]) + 12
    texts = []
    for value, span in zip(values, spans):
        text = fmt.format(value)
        if span is not None:
            text += f" [{fmt.format(span[0])}, {fmt.format(span[1])}]"
        texts.append(text)
    right = max([text_width(t, FONT_PX) for t in texts] or [0.0]) + 10
    top_value = max([max(v, 0.0) for v in values] + [max(s[1], 0.0) for s in spans if s is not None] + [0.0]) or 1.0
    width = max(left + plot_width + right, text_width(title, TITLE_PX) + 8)
    top = TITLE_PX + 12
    height = top + sum(h + 8 for h in heights) + 4

    def px(v: float) -> float:
        return left + plot_width * max(v, 0.0) / top_value

    parts = [_open(width, height, title, chart_id), _title(title)]
    y = float(top)
    for i, (lines, value, span, text, h) in enumerate(zip(wrapped, values, spans, texts, heights)):
        mid = y + h / 2
        first = mid - (len(lines) - 1) * line_h / 2 + LABEL_PX / 2 - 2  # baseline of the first line
        tspans = "".join(
            f'<tspan x="{left - 6:g}" y="{first + k * line_h:.1f}">{escape(line)}</tspan>'
            for k, line in enumerate(lines)
        )
        parts.append(f'<text class="label" font-size="{LABEL_PX}" text-anchor="end">{tspans}</text>')
        parts.append(
            f'<rect class="bar" x="{left:g}" y="{y:.1f}" width="{max(1.0, px(value) - left):.1f}" '
            f'height="{h:.1f}" fill="{PALETTE[i % len(PALETTE)]}"/>'
        )
        end = px(value)
        if span is not None:
            lo, hi = px(span[0]), px(span[1])
            cap = min(6.0, h / 3)
            parts.append(
                f'<g class="errorbar" stroke="#222" stroke-width="1.2">'
                f'<line x1="{lo:.1f}" y1="{mid:.1f}" x2="{hi:.1f}" y2="{mid:.1f}"/>'
                f'<line x1="{lo:.1f}" y1="{mid - cap:.1f}" x2="{lo:.1f}" y2="{mid + cap:.1f}"/>'
                f'<line x1="{hi:.1f}" y1="{mid - cap:.1f}" x2="{hi:.1f}" y2="{mid + cap:.1f}"/></g>'
            )
            end = max(end, hi)
        parts.append(
            f'<text class="value" x="{end + 4:.1f}" y="{mid + FONT_PX / 2 - 1:.1f}" '
            f'font-size="{FONT_PX}">{escape(text)}</text>'
        )
        y += h + 8
    parts.append("</svg>")
    return "".join(parts)


def scatter_chart(
    points: Sequence[Point],
    *,
    title: str,
    x_label: str,
    y_label: str,
    lines: Sequence[Line] = (),
    log_x: bool = False,
    x_include: Sequence[float] = (),
    y_include: Sequence[float] = (),
    width: int = 640,
    height: int = 300,
    chart_id: str | None = None,
    show_title: bool = True,
) -> str:
    """Points (and lines through data points) on linear axes, or a log x axis where ``log_x`` and the data allow.

    ``x_include`` / ``y_include`` are values the axes must reach (e.g. 0).
    A point's label goes to its right, or to its left where it would leave
    the chart; margins grow to hold the tick labels.
    """
    xs = [p.x for p in points] + [x for ln in lines for x, _ in ln.xy] + list(x_include)
    ys = [p.y for p in points] + [y for ln in lines for _, y in ln.xy] + list(y_include)
    top = (TITLE_PX + 14) if show_title else 12
    bottom = 40
    # the y tick labels need the left margin; ticks depend on the axis only, not on pixels, so measure first
    probe_y = Axis(ys, 1.0, 0.0)
    left = max([text_width(label) for _, label in probe_y.ticks()] + [0.0]) + 30  # + the rotated axis title
    probe_x = Axis(xs, 0.0, 1.0, log=log_x)
    x_ticks = probe_x.ticks()
    right = max(16.0, text_width(x_ticks[-1][1]) / 2 + 4) if x_ticks else 16.0
    label_w = max([text_width(line) for p in points if p.label for line in wrap_label(p.label)] + [0.0])
    width = int(math.ceil(max(width, text_width(title, TITLE_PX) + 8 if show_title else 0, label_w + 4)))
    x = Axis(xs, left, width - right, log=log_x)
    y = Axis(ys, height - bottom, top)
    plot_right, plot_bottom = width - right, height - bottom
    parts = [_open(width, height, title, chart_id)]
    if show_title:
        parts.append(_title(title))
    for pos, label in y.ticks():
        parts.append(
            f'<line class="grid" x1="{left:g}" x2="{plot_right:g}" y1="{pos}" y2="{pos}" stroke="#eef0f4"/>'
            f'<text x="{left - 6:g}" y="{pos + 4}" font-size="{FONT_PX}" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    for pos, label in x.ticks():
        parts.append(
            f'<text x="{pos}" y="{plot_bottom + 16:g}" font-size="{FONT_PX}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{left:g}" x2="{plot_right:g}" y1="{plot_bottom:g}" y2="{plot_bottom:g}" '
        f'stroke="#9ca3af"/>'
    )
    parts.append(f'<line class="axis" x1="{left:g}" x2="{left:g}" y1="{top:g}" y2="{plot_bottom:g}" stroke="#9ca3af"/>')
    for ln in lines:
        if ln.xy:
            d = " ".join(("M" if k == 0 else "L") + f"{x(a)},{y(b)}" for k, (a, b) in enumerate(ln.xy))
            parts.append(
                f'<path class="{escape(ln.cls)}" d="{d}" fill="none" stroke="{escape(ln.color)}" stroke-width="1.5"/>'
            )
    placed: list[tuple[float, float, float, float]] = []  # label boxes drawn so far: (x0, y0, x1, y1)
    for p in points:
        cx, cy = x(p.x), y(p.y)
        fill = f' fill="{escape(p.color)}"' if p.color else ""
        tip = f"<title>{escape(p.title)}</title>" if p.title else ""
        parts.append(f'<circle class="{escape(p.cls)}" cx="{cx}" cy="{cy}" r="{p.r:g}"{fill}>{tip}</circle>')
        if p.label:
            parts.append(_point_label(p, cx, cy, width, height, placed))
    parts.append(
        f'<text x="{(left + plot_right) / 2:.1f}" y="{height - 6:g}" font-size="{FONT_PX}" '
        f'text-anchor="middle">{escape(x_label)}</text>'
    )
    mid = (top + plot_bottom) / 2
    parts.append(
        f'<text x="12" y="{mid:.1f}" font-size="{FONT_PX}" transform="rotate(-90 12 {mid:.1f})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def _point_label(
    p: Point, cx: float, cy: float, width: float, height: float, placed: list[tuple[float, float, float, float]]
) -> str:
    """``p``'s label beside its point: right of it (left where it would leave the chart), above it, or below,
    or further up or down where it would overlap a label already drawn (two configurations with the same
    score and cost share a point)."""
    wrapped = wrap_label(p.label)
    w = max(text_width(line) for line in wrapped)
    anchor, tx = ("start", cx + p.r + 3) if cx + p.r + 3 + w <= width - 2 else ("end", cx - p.r - 3)
    if anchor == "end" and tx - w < 2:  # too wide for either side: start at the left edge
        anchor, tx = "start", 2.0
    x0 = tx if anchor == "start" else tx - w
    line_h = FONT_PX + LINE_GAP
    block = (len(wrapped) - 1) * line_h + FONT_PX  # from the first line's top to the last baseline
    above = cy - 6 - (len(wrapped) - 1) * line_h  # the first baseline when the lines end just above the point
    below = cy + FONT_PX + 6
    candidates = [above, below] + [c for k in range(1, 12) for c in (above - k * line_h, below + k * line_h)]
    inside = [c for c in candidates if c - FONT_PX >= 0 and c - FONT_PX + block <= height]

    def clear(c: float) -> bool:
        top = c - FONT_PX
        return not any(x0 < b[2] and b[0] < x0 + w and top < b[3] and b[1] < top + block for b in placed)

    first = next((c for c in inside if clear(c)), inside[0] if inside else below)
    placed.append((x0, first - FONT_PX, x0 + w, first - FONT_PX + block))
    tspans = "".join(
        f'<tspan x="{tx:.1f}" y="{first + k * line_h:.1f}">{escape(line)}</tspan>' for k, line in enumerate(wrapped)
    )
    return f'<text class="point-label" font-size="{FONT_PX}" text-anchor="{anchor}">{tspans}</text>'


def chart_texts(svg: str) -> list[dict[str, Any]]:
    """Each ``<text>`` of a chart made here with its position, anchor, size and lines (for tests and checks)."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    out = []
    for node in root.iter(f"{ns}text"):
        size = float(node.get("font-size", FONT_PX))
        anchor = node.get("text-anchor", "start")
        spans = list(node.iter(f"{ns}tspan"))
        items = [(float(s.get("x", 0)), float(s.get("y", 0)), s.text or "") for s in spans] or [
            (float(node.get("x", 0)), float(node.get("y", 0)), node.text or "")
        ]
        for tx, ty, text in items:
            out.append(
                {
                    "x": tx,
                    "y": ty,
                    "text": text,
                    "size": size,
                    "anchor": anchor,
                    "rotated": node.get("transform") is not None,
                }
            )
    return out
