"""Selection on evidence (issue 15): paired verdicts on synthetic per-question scores whose truth is known.

A child replaces its parent or the run's best only when it is better with
confidence on the questions both answered; a tie goes to the cheaper; the
best is compared with every seed on test, and one that does not beat its
own seed is flagged in status, the report and export (which refuses it
without --force).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import SPLIT_DEFAULTS, RunConfig
from agentmem_evolve.evidence import (
    CHAMPION_STATE,
    compare_with_seeds,
    incumbent,
    judge_new,
    replaced,
    seed_verdict,
)
from agentmem_evolve.report import render_report, summary
from agentmem_evolve.selection import Scored, judge

SEED_SRC = "class Notes(MemoryProgram):\n    name = 'notes'\n"
SELECTION = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "toolprefs"}}).selection


def answers(rng: random.Random, n: int, p: float, prefix: str = "u") -> dict[str, float]:
    return {f"{prefix}{i // 5}/q{i % 5}": float(rng.random() < p) for i in range(n)}


def changed(rng: random.Random, base: dict[str, float], fix: float, break_: float) -> dict[str, float]:
    """The same answers, each wrong one fixed with probability ``fix``, each right one broken with ``break_``."""
    return {
        q: ((1.0 if rng.random() < fix else 0.0) if v == 0.0 else (0.0 if rng.random() < break_ else 1.0))
        for q, v in base.items()
    }


def scored(pid: str, per_instance: dict[str, float], tokens: float = 100.0) -> Scored:
    return Scored(
        program_id=pid, score=sum(per_instance.values()) / len(per_instance), tokens=tokens, per_instance=per_instance
    )


# -- the verdict --------------------------------------------------------------------------------
def test_a_real_gain_replaces_and_a_noise_gain_does_not():
    rng = random.Random(0)
    parent = answers(rng, 190, 0.5)
    real = judge(scored("child", changed(rng, parent, fix=0.3, break_=0.05)), scored("parent", parent))
    assert real.replaces and real.reason == "better" and real.difference.low > 0
    for seed in range(100):  # a child that only re-rolls answers, picked because its mean came out higher
        rng = random.Random(seed)
        noisy = changed(rng, parent, fix=0.1, break_=0.1)
        if sum(noisy.values()) - sum(parent.values()) >= 4:
            break
    child = scored("child", noisy)
    assert child.score > scored("parent", parent).score  # the means alone would take it
    verdict = judge(child, scored("parent", parent))
    assert not verdict.replaces and verdict.reason == "not cheaper"
    assert verdict.difference.low < 0 < verdict.difference.high


def test_ties_go_to_the_cheaper_program():
    rng = random.Random(1)
    parent = answers(rng, 100, 0.5)
    same = dict(parent)
    cheaper = judge(scored("child", same, tokens=80), scored("parent", parent, tokens=100))
    assert cheaper.replaces and cheaper.reason == "cheaper"
    # a few tokens fewer is noise in the count, not a cheaper program (tie_cost_margin 5%)
    barely = judge(scored("child", same, tokens=97), scored("parent", parent, tokens=100))
    assert not barely.replaces and barely.reason == "not cheaper"
    dearer = judge(scored("child", same, tokens=150), scored("parent", parent, tokens=100))
    assert not dearer.replaces
    # a cheap child that is worse with confidence never wins on cost
    worse = judge(scored("child", changed(rng, parent, fix=0.0, break_=0.4), tokens=10), scored("parent", parent))
    assert not worse.replaces and worse.reason == "worse"


def test_a_cheaper_tie_that_may_be_much_worse_does_not_replace():
    """Non-inferiority: 'not worse with confidence' is not enough when the interval admits a large loss."""
    rng = random.Random(4)
    parent = answers(rng, 100, 0.5)
    for seed in range(200):  # a child a little worse on the mean, not worse with confidence, its interval wide
        child = changed(random.Random(seed), parent, fix=0.12, break_=0.16)
        verdict = judge(scored("child", child, tokens=80), scored("parent", parent, tokens=100))
        if verdict.difference.mean < 0 and verdict.difference.high > 0 and verdict.difference.low < -0.05:
            break
    assert not verdict.replaces and verdict.reason == "maybe worse"
    assert "maybe worse" in verdict.text()
    off = judge(scored("child", child, tokens=80), scored("parent", parent, tokens=100), tie_margin=None)
    assert off.replaces and off.reason == "cheaper"  # the rule before the margin
    loose = judge(scored("child", child, tokens=80), scored("parent", parent, tokens=100), tie_margin=0.5)
    assert loose.replaces and loose.reason == "cheaper"
    cfg = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "toolprefs"}})
    assert cfg.selection.tie_margin == 0.05


def test_the_level_and_the_test_are_the_run_s_choice():
    rng = random.Random(2)
    parent = answers(rng, 60, 0.5)
    child = changed(rng, parent, fix=0.25, break_=0.08)
    strict = judge(scored("c", child), scored("p", parent), level=0.999, method="both")
    loose = judge(scored("c", child), scored("p", parent), level=0.6, method="bootstrap")
    assert loose.replaces and loose.reason == "better"
    assert strict.reason != "better"
    cfg = RunConfig.model_validate(
        {
            "seeds": ["x"],
            "environment": {"name": "toolprefs"},
            "selection": {"confidence": 0.9, "paired_test": "sign", "tie_cost_margin": 0.2},
        }
    )
    assert (cfg.selection.confidence, cfg.selection.paired_test, cfg.selection.tie_cost_margin) == (0.9, "sign", 0.2)


def test_questions_only_one_program_answered_are_not_evidence():
    verdict = judge(scored("c", {"a": 1.0, "b": 1.0}, tokens=1), scored("p", {"x": 0.0, "y": 0.0}))
    assert not verdict.replaces and verdict.reason == "no shared questions" and verdict.difference.n == 0


# -- the run's incumbent ------------------------------------------------------------------------
def _add(
    archive: Archive,
    source: str,
    per_instance: dict[str, float],
    *,
    parents=(),
    operator="seed",
    stage="select",
    key="select:k",
    tokens=100.0,
    meta=None,
) -> ProgramRecord:
    rec = ProgramRecord(
        source=source,
        parents=list(parents),
        operator=operator,
        generation=1 if parents else 0,
        status="valid",
        meta=meta or ({"seed": source.split()[1]} if operator == "seed" else {}),
    )
    archive.add_program(rec)
    score_of(archive, rec, per_instance, stage=stage, key=key, tokens=tokens)
    return rec


def score_of(
    archive: Archive, rec: ProgramRecord, per_instance: dict[str, float], *, stage: str, key: str, tokens: float = 100.0
) -> None:
    n = len(per_instance)
    archive.record_evaluation(
        EvaluationRecord(
            program_id=rec.id,
            stage=stage,
            split={"screen": "train", "select": "validation", "test": "test"}[stage],
            key=key,
            score=sum(per_instance.values()) / n,
            per_instance=per_instance,
            cost={"prompt_tokens": tokens * n, "completion_tokens": 0, "llm_calls": n},
        )
    )


def test_the_incumbent_changes_only_on_evidence_and_replaced_parents_leave_the_pool(tmp_path):
    rng = random.Random(5)
    with Archive(tmp_path / "run") as archive:
        base = answers(rng, 190, 0.5)
        seed = _add(archive, "seed episodic", base)
        judge_new(archive, "select:k", SELECTION)
        assert incumbent(archive, "select:k")[0].id == seed.id

        # a child whose higher mean is noise (4 more right answers of 190, re-rolled): the mean's best, not the run's
        for s in range(200):
            noisy = changed(random.Random(s), base, fix=0.1, break_=0.1)
            if sum(noisy.values()) - sum(base.values()) >= 4:
                break
        lucky = _add(archive, "child lucky", noisy, parents=[seed.id], operator="mutate")
        verdicts = judge_new(archive, "select:k", SELECTION)
        assert [v.reason for v in verdicts] == ["not cheaper"]  # judged once: its parent is the incumbent
        assert archive.best("select", "select:k")[0].id == lucky.id  # what selection on means would have returned
        assert incumbent(archive, "select:k")[0].id == seed.id
        assert replaced(archive) == set()

        # a child with a real gain replaces its parent and becomes the best
        good = _add(
            archive, "child good", changed(rng, base, fix=0.35, break_=0.03), parents=[seed.id], operator="mutate"
        )
        judge_new(archive, "select:k", SELECTION)
        assert incumbent(archive, "select:k")[0].id == good.id
        assert replaced(archive) == {seed.id}

        # a grandchild as good as its parent and a third cheaper wins the tie
        lean = _add(
            archive,
            "child lean",
            archive.evaluation(good.id, "select", "select:k").per_instance,
            parents=[good.id],
            operator="mutate",
            tokens=60.0,
        )
        judge_new(archive, "select:k", SELECTION)
        assert incumbent(archive, "select:k")[0].id == lean.id
        assert replaced(archive) == {seed.id, good.id}

        state = (archive.get_state("judged"), archive.get_state(CHAMPION_STATE), archive.get_state("replaced"))
        assert judge_new(archive, "select:k", SELECTION) == []  # judged once: a resumed run decides nothing again
        assert (archive.get_state("judged"), archive.get_state(CHAMPION_STATE), archive.get_state("replaced")) == state


def test_the_controller_draws_parents_only_from_programs_no_child_replaced(tmp_path):
    from agentmem_evolve.controller import Controller
    from agentmem_evolve.display import _describe
    from agentmem_evolve.executor import InlineExecutor

    cfg = RunConfig.from_dict(
        {"seeds": ["episodic"], "environment": {"name": "toolprefs", "validation_limit": 4, "test_limit": 3}}
    )
    events: list[tuple[str, dict]] = []
    ctl = Controller.create(
        tmp_path / "run", cfg, executor=InlineExecutor(), on_event=lambda k, p: events.append((k, p))
    )
    try:
        key = ctl._keys["select"]
        rng = random.Random(9)
        base = answers(rng, 190, 0.5)
        seed = _add(ctl.archive, "seed episodic", base, key=key)
        other = _add(ctl.archive, "seed rag", answers(rng, 190, 0.3), key=key)
        good = _add(
            ctl.archive,
            "child good",
            changed(rng, base, fix=0.35, break_=0.03),
            parents=[seed.id],
            operator="mutate",
            key=key,
        )
        pool = {s.program_id for s in ctl._parent_pool()}  # judges what was not judged yet, then filters
        assert pool == {other.id, good.id}
        assert ctl._best_summary()["id"] == good.id
        lines = [_describe(k, p) for k, p in events if k == "judged"]
        assert any("replaces[/] its parent" in ln and "n=190" in ln for ln in lines), lines
    finally:
        ctl.close()


def test_judging_emits_one_event_per_comparison(tmp_path):
    rng = random.Random(6)
    events: list[tuple[str, dict]] = []
    with Archive(tmp_path / "run") as archive:
        base = answers(rng, 50, 0.5)
        a = _add(archive, "seed a", base)
        _add(archive, "seed b", base, tokens=50.0)  # a second seed: as good, half the tokens
        judge_new(archive, "select:k", SELECTION, emit=lambda kind, **p: events.append((kind, p)))
        assert [(k, p["against"], p["reason"], p["replaces"]) for k, p in events] == [
            ("judged", "best", "cheaper", True)
        ]
        assert events[0][1]["incumbent"] == a.id and events[0][1]["difference"]["n"] == 50


# -- on test: the best against every seed ---------------------------------------------------------
@pytest.fixture
def finished(tmp_path):
    """A finished run whose best won on validation and lost to its seed on test (the issue's story)."""
    rng = random.Random(7)
    run_dir = tmp_path / "run"
    RunConfig.model_validate({"seeds": ["episodic", "rag"], "environment": {"name": "toolprefs"}}).write(
        run_dir / "config.toml"
    )
    archive = Archive(run_dir)
    base = answers(rng, 190, 0.5)
    seed = _add(archive, "seed episodic", base)
    other = _add(archive, "seed rag", answers(rng, 190, 0.3))
    child = _add(
        archive, "child best", changed(rng, base, fix=0.35, break_=0.03), parents=[seed.id], operator="reflective"
    )
    judge_new(archive, "select:k", SELECTION)
    assert incumbent(archive)[0].id == child.id
    test_base = answers(rng, 190, 0.55, prefix="heldout-u")
    score_of(archive, seed, test_base, stage="test", key="test:k")
    score_of(archive, other, answers(rng, 190, 0.15, prefix="heldout-u"), stage="test", key="test:k")
    score_of(archive, child, changed(rng, test_base, fix=0.05, break_=0.3), stage="test", key="test:k")
    yield archive, {"seed": seed, "other": other, "child": child}, test_base
    archive.close()


def test_a_best_that_lost_to_its_seed_on_test_is_flagged(finished):
    archive, p, _ = finished
    comparisons = {c.seed_name: c for c in compare_with_seeds(archive, p["child"].id)}
    assert set(comparisons) == {"episodic", "rag"}
    assert comparisons["episodic"].own_seed and not comparisons["rag"].own_seed
    assert comparisons["episodic"].difference.high < 0 and comparisons["episodic"].difference.n == 190
    assert comparisons["rag"].difference.low > 0  # it still beats the other seed
    verdict = seed_verdict(archive, p["child"].id)
    assert verdict.status == "worse" and verdict.flagged
    assert "is worse than its seed 'episodic' on test" in verdict.message and "n=190" in verdict.message


def test_the_verdict_for_a_better_best_a_seed_and_an_untested_program(finished):
    archive, p, test_base = finished
    score_of(
        archive, p["child"], changed(random.Random(8), test_base, fix=0.4, break_=0.02), stage="test", key="test:k"
    )
    verdict = seed_verdict(archive, p["child"].id)
    assert verdict.status == "better" and not verdict.flagged and "beats its seed" in verdict.message
    assert seed_verdict(archive, p["seed"].id).status == "is seed"
    untested = _add(archive, "child untested", {"u0/q0": 1.0}, parents=[p["child"].id], operator="mutate")
    assert seed_verdict(archive, untested.id).status == "untested"


def test_status_and_the_report_show_n_intervals_and_the_flag(finished, tmp_path):
    archive, p, _ = finished
    info = summary(archive)
    best = info["best"]
    assert best["id"] == p["child"].id
    select = best["intervals"]["select"]
    assert select["n"] == 190 and select["low"] < best["scores"]["select"] < select["high"]
    assert best["intervals"]["test"]["n"] == 190
    rows = {r["id"]: r for r in info["scores"]}
    assert set(rows) == {p["seed"].id, p["other"].id, p["child"].id}
    assert rows[p["other"].id]["select"]["n"] == 190 and rows[p["other"].id]["screen"] is None
    test = info["test"]
    assert test["verdict"] == "worse" and test["flagged"] and "worse than its seed" in test["message"]
    own = next(c for c in test["vs_seeds"] if c["own_seed"])
    assert own["worse"] and own["n"] == 190 and own["high"] < 0
    json.dumps(info)  # status prints it as JSON

    html = render_report(archive, tmp_path / "report.html").read_text()
    assert 'id="test-comparison"' in html and 'id="test-verdict"' in html
    assert "worse than its seed" in html and "n=190" in html
    assert f"{select['low']:.3f}" in html  # the select interval of the best, in the programs table and summary


def _cli(*args: str):
    from agentmem_evolve.cli import evolve_app

    return CliRunner().invoke(evolve_app, list(args), catch_exceptions=False)


def test_status_prints_the_flag_on_stderr_and_json_on_stdout(finished):
    archive, p, _ = finished
    result = _cli("status", str(archive.run_dir))
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["test"]["flagged"] and info["scores"]
    assert "warning" in result.stderr and "worse than its seed" in result.stderr and "--force" in result.stderr


def test_the_end_of_run_table_shows_intervals_and_the_flag(finished, capsys):
    from agentmem_evolve.cli import _print_result

    archive, p, _ = finished
    _print_result(archive.run_dir, {"best": {"id": p["child"].id}, "stopped": "iterations", "spend": {}})
    out = capsys.readouterr()
    assert "n=190" in out.out and "worse than its seed" in out.err


def test_export_refuses_a_best_that_lost_to_its_seed_unless_forced(finished, tmp_path, monkeypatch):
    archive, p, _ = finished
    out = tmp_path / "pkg"
    refused = _cli("export", str(archive.run_dir), "--name", "evolved-notes", "--out", str(out))
    assert refused.exit_code == 2
    lines = [ln for ln in refused.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "worse than its seed 'episodic'" in lines[0] and "--force" in lines[0]
    assert "Traceback" not in refused.output and not out.exists()
    # with --force it goes through to the exporter (stubbed here: the constructed programs are not real modules)
    seen = {}

    def fake_export(arch, program, target, name):
        seen.update(program=program, name=name)
        Path(target).mkdir(parents=True)
        return Path(target)

    monkeypatch.setattr("agentmem_evolve.export.export_program", fake_export)
    forced = _cli("export", str(archive.run_dir), "--name", "evolved-notes", "--out", str(out), "--force")
    assert forced.exit_code == 0, forced.output
    assert seen == {"program": p["child"].id, "name": "evolved-notes"}


# -- split sizes ---------------------------------------------------------------------------------
def test_default_splits_are_sized_to_see_a_gain_of_five_points():
    from agentmem.stats import half_width

    prefs = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "toolprefs"}}).environment
    assert prefs.validation_limit is None and prefs.test_limit is None and prefs.options == {"users": 152}
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    env = ToolPrefsEnvironment(**prefs.options)
    sizes = {split: sum(len(t.questions) for t in env.tasks(split)) for split in ("validation", "test")}
    assert sizes == {"validation": 190, "test": 190}
    assert half_width(0.35, sizes["validation"]) <= 0.05  # the assumption docs/evolution.md states
    locomo = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "locomo"}}).environment
    assert locomo.validation_limit is None and locomo.test_limit is None  # whole conversations
    other = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "longmemeval"}}).environment
    assert other.validation_limit == other.test_limit == 200
    # what a config gives is kept; a config that sizes both splits (every saved run from before) gets no new knobs
    given = RunConfig.model_validate(
        {"seeds": ["x"], "environment": {"name": "toolprefs", "validation_limit": 12, "test_limit": 20}}
    ).environment
    assert (given.validation_limit, given.test_limit, given.options) == (12, 20, {})
    mine = RunConfig.model_validate({"seeds": ["x"], "environment": {"name": "toolprefs", "options": {"users": 60}}})
    assert mine.environment.options == {"users": 60}
    assert RunConfig.from_dict(json.loads(json.dumps(mine.model_dump(mode="json", exclude_none=True)))) == mine
    assert set(SPLIT_DEFAULTS) == {"toolprefs", "locomo"}


def test_the_operator_table_counts_paired_replacements_apart_from_mean_gains(tmp_path):
    from agentmem_evolve.report import operator_payoff

    rng = random.Random(10)
    with Archive(tmp_path / "run") as archive:
        base = answers(rng, 190, 0.5)
        seed = _add(archive, "seed episodic", base)
        for s in range(200):  # a re-roll whose mean came out higher: improved, but replaces nothing
            noisy = changed(random.Random(s), base, fix=0.1, break_=0.1)
            if sum(noisy.values()) - sum(base.values()) >= 4:
                break
        _add(archive, "child lucky", noisy, parents=[seed.id], operator="structural:swap-retriever")
        _add(archive, "child good", changed(rng, base, fix=0.35, break_=0.03), parents=[seed.id], operator="mutate")
        judge_new(archive, "select:k", SELECTION)
        table = {r["operator"]: r for r in operator_payoff(archive)}
        assert (table["structural:swap-retriever"]["improved"], table["structural:swap-retriever"]["replaced"]) == (
            1,
            0,
        )
        assert (table["mutate"]["improved"], table["mutate"]["replaced"]) == (1, 1)
