"""The HTML report and the status summary, from a small constructed run."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import RunConfig
from agentmem_evolve.report import render_report, seed_of, summary

SEED_SRC = '''class Notes(MemoryProgram):
    """Keeps notes."""
    name = "notes"
    def recall(self, query):
        return top(self.items, k=4)
'''
CHILD_SRC = SEED_SRC.replace("k=4", "k=8") + "    # recall more when the question mentions <dates> & times\n"
MERGED_SRC = CHILD_SRC + "    def reflect(self, episode):\n        self.items = self.items[-100:]\n"


def evaluation(pid, stage, score, tokens, key=None, **kw):
    return EvaluationRecord(
        program_id=pid,
        stage=stage,
        split={"screen": "train", "select": "validation", "test": "test"}[stage],
        key=key or f"{stage}:k",
        score=score,
        metrics={"f1": score},
        per_instance={"q1": score, "q2": score},
        cost={"llm_calls": 3, "prompt_tokens": tokens, "completion_tokens": 10, "seconds": 1.5},
        **kw,
    )


@pytest.fixture
def run(tmp_path):
    run_dir = tmp_path / "run"
    RunConfig.model_validate({"seeds": ["notes"], "environment": {"name": "toolprefs"}}).write(run_dir / "config.toml")
    archive = Archive(run_dir)
    seed = ProgramRecord(source=SEED_SRC, status="valid", meta={"seed": "notes"})
    other = ProgramRecord(source="class Other: pass\n", status="valid", meta={"seed": "other"})
    child = ProgramRecord(
        source=CHILD_SRC,
        parents=[seed.id],
        operator="reflective",
        generation=1,
        status="valid",
        meta={"rationale": "recall more items for temporal questions"},
    )
    broken = ProgramRecord(
        source="def (:\n",
        parents=[seed.id],
        operator="mutate",
        generation=1,
        status="invalid",
        error="SyntaxError: invalid syntax (line 1)",
    )
    merged = ProgramRecord(
        source=MERGED_SRC, parents=[child.id, other.id], operator="merge", generation=2, status="valid"
    )
    for p in (seed, other, child, broken, merged):
        archive.add_program(p)
    archive.record_evaluation(evaluation(seed.id, "select", 0.40, 200))
    archive.record_evaluation(evaluation(other.id, "select", 0.20, 20))
    archive.record_evaluation(evaluation(child.id, "screen", 0.50, 400))
    archive.record_evaluation(evaluation(child.id, "select", 0.55, 400))
    archive.record_evaluation(
        evaluation(merged.id, "screen", 0.10, 100, status="failed", reason="timed out after 60 s")
    )
    archive.record_evaluation(evaluation(child.id, "test", 0.52, 400))
    archive.set_state("iteration", 2)
    archive.log_event("iteration", n=2, note="<b>not markup</b>")
    yield archive, {"seed": seed, "other": other, "child": child, "broken": broken, "merged": merged}
    archive.close()


def test_summary_says_where_the_run_stands(run):
    archive, p = run
    info = summary(archive)
    assert info["iteration"] == 2
    assert info["programs"] == {"total": 5, "valid": 4, "invalid": 1, "pending": 0}
    assert info["evaluations"]["select"] == {"ok": 3, "failed": 0}
    assert info["evaluations"]["screen"] == {"ok": 1, "failed": 1}
    best = info["best"]
    assert best["id"] == p["child"].id and best["scores"] == {"screen": 0.5, "select": 0.55, "test": 0.52}
    assert best["tokens_per_question"] == 205.0
    # cheap "other", mid seed, best child: all on the quality/cost frontier, cheapest first
    assert info["frontier"] == [p["other"].id, p["seed"].id, p["child"].id]
    assert info["spend"]["llm_calls"] == 18 and info["spend"]["tokens"] == 200 + 20 + 400 * 3 + 100 + 60
    assert info["spend"]["seconds"] == 9.0  # no run time saved yet: the evaluations' seconds
    archive.set_state("controller_spend", {"llm_calls": 2, "tokens": 500})  # proposals and repairs
    archive.set_state("elapsed", 123.44)
    spend = summary(archive)["spend"]
    assert (spend["llm_calls"], spend["tokens"], spend["seconds"]) == (20, 1580 + 500, 123.4)
    assert (spend["evaluation_llm_calls"], spend["controller_tokens"]) == (18, 500)
    assert seed_of(archive, p["merged"].id).id == p["seed"].id


class _Collector(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.urls, self.ids = [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        for k, v in attrs:
            if k == "id":
                self.ids.add(v)
            if k in ("href", "src", "xlink:href") and v:
                self.urls.append(v)


def test_report_is_self_contained_with_plots_lineage_table_and_diff(run, tmp_path):
    archive, p = run
    out = render_report(archive, tmp_path / "out")
    assert out == tmp_path / "out" / "report.html"
    html = out.read_text()
    parser = _Collector()
    parser.feed(html)
    # self-contained: no scripts, no stylesheets or images from anywhere, no URLs at all
    assert "script" not in parser.tags and "link" not in parser.tags and "img" not in parser.tags
    assert parser.urls == [] and not re.search(r"https?://|//cdn|@import", html)
    assert {"score-plot", "pareto-plot", "lineage", "programs", "diff"} <= parser.ids
    # score plot: seed, other, child on the select split; merged's only evaluation failed, so it is not plotted
    score_svg = html[html.index('id="score-plot"') : html.index("</svg>", html.index('id="score-plot"'))]
    assert score_svg.count('<circle class="select"') == 3 and 'class="bestline"' in score_svg
    pareto_svg = html[html.index('id="pareto-plot"') : html.index("</svg>", html.index('id="pareto-plot"'))]
    assert pareto_svg.count('<circle class="front"') == 3 and 'class="frontline"' in pareto_svg
    # the lineage tree nests the merge under its first parent and names the second
    tree = html[html.index('id="lineage"') : html.index("</ul>", html.index('id="lineage"'))]
    assert tree.index(p["seed"].id) < tree.index(p["child"].id) < tree.index(p["merged"].id)
    assert f"also from {p['other'].id}" in html
    # the table: every program, with the reason an invalid or failed one did not count
    assert "SyntaxError: invalid syntax (line 1)" in html and "timed out after 60 s" in html
    assert "recall more items for temporal questions" in html
    # the diff of the best (child) against its seed, escaped and coloured
    diff = html[html.index('id="diff"') :]
    assert '<span class="d-del">-        return top(self.items, k=4)</span>' in diff
    assert '<span class="d-add">+        return top(self.items, k=8)</span>' in diff
    assert "&lt;dates&gt; &amp; times" in diff and "<dates>" not in html
    assert "&lt;b&gt;not markup" in html
    assert "toolprefs" in html  # the config summary


def test_report_of_an_empty_run_renders(tmp_path):
    with Archive(tmp_path / "empty") as archive:
        out = render_report(archive)
        assert out == tmp_path / "empty" / "report.html"
        html = out.read_text()
        assert "no program has been scored yet" in html and "no config.toml" in html
        assert summary(archive)["best"] is None
