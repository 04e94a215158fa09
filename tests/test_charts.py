"""agentmem.charts: the one SVG engine of the grid and evolution reports (error bars, labels never clipped)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from agentmem.charts import Line, Point, bar_chart, chart_texts, scatter_chart, text_width, wrap_label

NS = ""  # the charts are inline HTML SVG, without an xmlns
LONG = "episodic+semantic+procedural+hierarchical+/tmp/programs/a_very_long_evolved_program_name.py"


def _viewbox(svg: str) -> tuple[float, float]:
    root = ET.fromstring(svg)
    x0, y0, w, h = (float(v) for v in root.get("viewBox", "").split())
    assert (x0, y0) == (0, 0) and float(root.get("width")) == w and float(root.get("height")) == h
    return w, h


def assert_texts_inside(svg: str) -> None:
    """Every label's estimated box (an upper bound of its rendered width) lies inside the viewBox."""
    w, h = _viewbox(svg)
    for t in chart_texts(svg):
        if t["rotated"]:  # the y-axis title, turned on its point: its height is the text's width
            extent = text_width(t["text"], t["size"])
            assert t["y"] - extent / 2 >= 0 and t["y"] + extent / 2 <= h, t
            assert t["x"] - t["size"] >= 0, t
            continue
        width = text_width(t["text"], t["size"])
        left = {"start": t["x"], "middle": t["x"] - width / 2, "end": t["x"] - width}[t["anchor"]]
        assert left >= 0 and left + width <= w, t
        assert t["y"] - t["size"] >= 0 and t["y"] <= h, t


def test_bars_carry_error_bars_at_their_interval():
    svg = bar_chart(
        ["none", "episodic", "episodic+semantic"],
        [0.2, 0.4, 0.5],
        title="locomo: f1 (95% interval)",
        intervals=[(0.1, 0.3), (0.3, 0.5), None],
    )
    root = ET.fromstring(svg)
    bars = root.findall(f"{NS}g[@class='errorbar']")
    assert len(bars) == 2  # the third bar has no interval
    (whisker, *caps) = bars[0].findall(f"{NS}line")
    assert len(caps) == 2
    rects = root.findall(f"{NS}rect[@class='bar']")
    left = float(rects[0].get("x"))
    scale = (float(rects[2].get("width"))) / 0.5  # pixels per unit, from the 0.5 bar
    assert float(whisker.get("x1")) == pytest.approx(left + 0.1 * scale, abs=0.2)
    assert float(whisker.get("x2")) == pytest.approx(left + 0.3 * scale, abs=0.2)
    assert "0.200 [0.100, 0.300]" in svg  # the value label says the interval too
    assert_texts_inside(svg)


def test_long_configuration_names_wrap_and_stay_inside_the_chart():
    labels = ["none", LONG, "W" * 60]
    svg = bar_chart(
        labels,
        [0.1, 0.9, 0.5],
        title="a title much longer than the chart would otherwise be " * 3,
        intervals=[(0.0, 0.2), (0.8, 1.0), (0.4, 0.6)],
    )
    assert_texts_inside(svg)
    texts = [t["text"] for t in chart_texts(svg)]
    assert "".join(wrap_label(LONG)) == LONG and len(wrap_label(LONG)) > 1
    for line in wrap_label(LONG):
        assert line in texts  # every part of the name is drawn: nothing cut off
    assert "".join(wrap_label("W" * 60)) == "W" * 60


def test_wrapping_breaks_after_plus_where_it_can():
    assert wrap_label("episodic+semantic+procedural", 20) == ["episodic+semantic+", "procedural"]
    assert wrap_label("short") == ["short"]
    assert all(len(line) <= 10 for line in wrap_label("x" * 35, 10))


def test_scatter_labels_near_the_edges_stay_inside():
    points = [
        Point(x=0, y=0, label=LONG),
        Point(x=1000, y=1.0, label="full-context+semantic"),
        Point(x=500, y=0.5, label="episodic", cls="front"),
    ]
    svg = scatter_chart(
        points,
        title="locomo: f1 against cost",
        x_label="tokens per question",
        y_label="f1",
        lines=[Line(xy=[(0, 0), (500, 0.5)], cls="frontline")],
        x_include=[0.0],
        width=420,
    )
    assert_texts_inside(svg)
    root = ET.fromstring(svg)
    assert len(root.findall(f"{NS}circle")) == 3 and root.find(f"{NS}path[@class='frontline']") is not None


def test_a_log_axis_only_where_the_data_span_it():
    wide = [Point(x=x, y=0.1 * i) for i, x in enumerate((10, 100, 10_000))]
    svg = scatter_chart(wide, title="t", x_label="tokens", y_label="score", log_x=True)
    assert ">10,000<" in svg and ">1,000<" in svg  # decade ticks
    assert_texts_inside(svg)
    narrow = [Point(x=x, y=0.5) for x in (100, 120)]
    assert_texts_inside(scatter_chart(narrow, title="t", x_label="tokens", y_label="score", log_x=True))


def test_text_is_escaped():
    svg = bar_chart(["<script>alert(1)</script>"], [0.5], title="a & b")
    assert "<script" not in svg and "&lt;script&gt;" in svg and "a &amp; b" in svg
    ET.fromstring(svg)  # well-formed


def test_width_estimate_is_an_upper_bound_of_dejavu_sans():
    """The per-character table is read from DejaVu Sans and its bold face; check it against the fonts where present."""
    fonts = [Path("/usr/share/fonts/truetype/dejavu") / n for n in ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")]
    if not all(f.is_file() for f in fonts):
        pytest.skip("DejaVu Sans is not installed on this machine (fonts-dejavu-core)")
    ttlib = pytest.importorskip("fontTools.ttLib", reason="fontTools is not installed (it reads the font's widths)")
    for path in fonts:
        font = ttlib.TTFont(str(path))
        cmap, hmtx, upm = font.getBestCmap(), font["hmtx"], font["head"].unitsPerEm
        for code in range(32, 127):
            actual = hmtx[cmap[code]][0] / upm
            assert text_width(chr(code), 1.0) >= actual, (path.name, chr(code))
