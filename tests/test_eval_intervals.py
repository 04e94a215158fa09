"""Scores with their n and 95% interval (`agentmem eval`), and grids compared pairwise on shared questions.

Unit tests with fixed per-question scores: the numbers must be exactly what
agentmem.stats computes (the module evolution's selection uses), and a
pairwise comparison must use only the questions both configurations answered.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from typing import Any

import pytest

from agentmem.environment import QuestionResult, TaskResult
from agentmem.evaluation import Cost, EvalResult, metric_intervals, question_scores
from agentmem.grid import GridResult, pairwise, rows, write_outputs
from agentmem.stats import mean_interval, paired_difference

NS = ""  # the charts are inline HTML SVG, without an xmlns
LONG = "episodic+semantic+procedural+hierarchical+full-context"


def _tasks(scores: dict[str, list[float]], *, categories: list[str] | None = None) -> list[TaskResult]:
    """Tasks (by id) holding questions q0, q1, ... with the given f1; categories cycle over the questions."""
    out = []
    for task_id, values in scores.items():
        questions = [
            QuestionResult(
                question_id=f"q{i}",
                category=(categories or ["1"])[i % len(categories or ["1"])],
                question="?",
                reference="r",
                prediction="p",
                metrics={"f1": v},
            )
            for i, v in enumerate(values)
        ]
        out.append(TaskResult(task_id=task_id, questions=questions))
    return out


def _result(memory: str, scores: dict[str, list[float]], **kw: Any) -> EvalResult:
    tasks = _tasks(scores, **kw)
    values = [q.metrics["f1"] for t in tasks for q in t.questions]
    metrics = {"questions": float(len(values)), "f1": sum(values) / len(values)}
    return EvalResult(
        env="locomo",
        memory=memory.split("+"),
        split="all",
        limit=None,
        model="scripted",
        metrics=metrics,
        cost=Cost(prompt_tokens=100 * len(values), seconds=3.0),
        questions=len(values),
        started_at="2025-01-01T00:00:00+00:00",
        tasks=tasks,
        intervals=metric_intervals(tasks, metrics),
    )


A = {"t1": [1.0, 0.0, 1.0, 0.5, 0.25, 1.0], "t2": [0.0, 1.0, 0.75]}


def test_each_mean_metric_gets_the_interval_stats_computes():
    tasks = _tasks(A, categories=["1", "2"])
    values = [v for vs in A.values() for v in vs]
    cat2 = [v for vs in A.values() for i, v in enumerate(vs) if i % 2 == 1]
    metrics = {
        "questions": 9.0,
        "f1": sum(values) / 9,
        "f1/cat2": sum(cat2) / len(cat2),
        "n/cat2": float(len(cat2)),
        "f1/by_hand": 0.123,
    }
    got = metric_intervals(tasks, metrics)
    expected = mean_interval(values)
    assert got["f1"].model_dump() == {**expected.rounded(), "level": 0.95}
    assert got["f1"].n == 9
    # a category's metric is resampled within that category's questions
    assert got["f1/cat2"].model_dump() == {**mean_interval(cat2).rounded(), "level": 0.95} and got["f1/cat2"].n == 4
    # counts and numbers that are not a mean of these questions get no interval
    assert set(got) == {"f1", "f1/cat2"}


def test_a_rate_is_matched_with_its_per_question_values():
    """textworld's ``success_rate`` is the mean of each question's ``success``: it gets that interval."""
    tasks = _tasks(A)
    for t in tasks:
        for q in t.questions:
            q.metrics["success"] = float(q.metrics["f1"] == 1.0)
    success = [float(v == 1.0) for vs in A.values() for v in vs]
    got = metric_intervals(tasks, {"success_rate": sum(success) / 9, "stale_rate": 0.5})
    assert got["success_rate"].model_dump() == {**mean_interval(success).rounded(), "level": 0.95}
    assert "stale_rate" not in got  # no per-question values behind it


def test_an_old_result_file_without_intervals_still_gives_them():
    result = _result("episodic", A)
    old = json.loads(result.model_dump_json())
    del old["intervals"]
    reread = EvalResult.model_validate(old)
    assert reread.intervals == {}
    assert reread.interval("f1") == result.intervals["f1"]
    assert reread.interval("not-a-metric") is None


def test_the_result_file_keeps_its_keys_and_adds_intervals():
    data = json.loads(_result("episodic", A).model_dump_json())
    assert {"env", "memory", "metrics", "cost", "questions", "tasks"} <= set(data)
    assert data["metrics"]["f1"] == pytest.approx(sum(sum(v) for v in A.values()) / 9)
    assert set(data["intervals"]["f1"]) == {"mean", "low", "high", "n", "level"}


def test_pairwise_uses_only_the_questions_both_answered():
    # b answered t1's first four questions and a task a never saw: only t1/q0..q3 are shared
    a = _result("episodic", A)
    b = _result(LONG, {"t1": [0.0, 0.0, 1.0, 0.0], "t9": [1.0, 1.0]})
    grid = GridResult(split="all", limit=None, model="scripted", cells=[a, b])
    (pair,) = pairwise(grid)
    expected = paired_difference(question_scores(a.tasks, "f1"), question_scores(b.tasks, "f1"))
    assert pair["n"] == 4 == expected.n
    assert pair["mean"] == round(expected.mean, 4) and pair["low"] == round(expected.low, 4)
    assert (pair["wins"], pair["losses"], pair["ties"]) == (2, 0, 2)
    assert pair["a"] == "episodic" and pair["b"] == LONG and pair["metric"] == "f1"
    assert pair["mean"] == pytest.approx((1.0 + 0.0 + 0.0 + 0.5) / 4)


def test_grid_rows_and_outputs_carry_intervals_and_the_pairwise_table(tmp_path):
    a = _result("episodic", A)
    b = _result(LONG, {"t1": [0.0, 0.0, 1.0, 0.0], "t2": [0.0, 0.0, 0.0]})
    grid = GridResult(split="all", limit=None, model="scripted", cells=[a, b])
    table = rows(grid)
    assert table[0]["score_low"] == a.intervals["f1"].low and table[0]["score_high"] == a.intervals["f1"].high
    assert table[0]["score_n"] == 9 and table[0]["score"] == round(a.metrics["f1"], 4)
    paths = write_outputs(grid, tmp_path)
    summary = json.loads(paths["json"].read_text())
    assert {"split", "limit", "model", "rows", "cells", "pairwise"} <= set(summary)  # old keys kept
    assert summary["pairwise"][0]["n"] == 7  # t1/q0..q3 and t2/q0..q2: the questions b answered
    md = paths["markdown"].read_text()
    assert "Pairwise on shared questions" in md and f"| episodic | {LONG} | 7 |" in md
    assert f"[{a.intervals['f1'].low:.3f}, {a.intervals['f1'].high:.3f}]" in md

    html = paths["html"].read_text()
    assert html.count("<svg") == 3 and "Pairwise on shared questions" in html
    score_svg = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    root = ET.fromstring(score_svg)
    assert len(root.findall(f"{NS}g[@class='errorbar']")) == 2  # one error bar per configuration
    from tests.test_charts import assert_texts_inside

    for start in range(3):  # every chart: each label inside its viewBox, the long name included
        i = -1
        for _ in range(start + 1):
            i = html.index("<svg", i + 1)
        svg = html[i : html.index("</svg>", i) + len("</svg>")]
        assert_texts_inside(svg)
    assert "hierarchical" in score_svg and "full-context" in score_svg


def test_eval_console_table_shows_interval_and_n(monkeypatch):
    from rich.console import Console

    import agentmem.cli.main as cli

    console = Console(record=True, width=160)
    monkeypatch.setattr(cli, "console", console)
    result = _result("episodic", A)
    cli.print_result(result)
    text = console.export_text()
    f1 = result.intervals["f1"]
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("│ f1") or " f1 " in ln)
    assert f"[{f1.low:.3f}, {f1.high:.3f}]" in line and " 9 " in line
    assert "95% interval" in text


def test_numbers_that_are_not_means_over_questions_say_so(tmp_path, monkeypatch):
    """No blank where an interval would be: the report and `agentmem eval` say why there is none."""
    from rich.console import Console

    import agentmem.cli.main as cli
    from agentmem.report import NO_INTERVAL

    a = _result("episodic", A)
    a.metrics["f1"] = 0.123  # a score that is not the mean of the questions' f1 (e.g. an average of averages)
    a.metrics["f1/by_hand"] = 0.5
    a.intervals = {}
    grid = GridResult(split="all", limit=None, model="scripted", cells=[a])
    assert rows(grid)[0]["score_low"] is None
    md = write_outputs(grid, tmp_path)["markdown"].read_text()
    assert f"| {NO_INTERVAL} |" in md
    assert "tokens_per_question" in md and "totals or ratios over a whole run" in md

    console = Console(record=True, width=200)
    monkeypatch.setattr(cli, "console", console)
    cli.print_result(a)
    lines = console.export_text().splitlines()
    assert NO_INTERVAL in next(ln for ln in lines if "f1/by_hand" in ln)
    assert "none (a count)" in next(ln for ln in lines if "questions" in ln and "│" in ln)
