"""The controller's loop, cascade, resume and budget (plumbing: real sandbox, real archive, a fake model).

The fake model answers a toolprefs request correctly only for the
parameter values that memory put into its prompt, so scores depend on the
memory program as they do with a real model; the real-model run is in
test_evolve_run.py.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agentmem.llm.meter import Meter
from agentmem.llm.tools import ToolCall
from agentmem_evolve.config import RunConfig
from agentmem_evolve.controller import Controller
from agentmem_evolve.executor import InlineExecutor
from tests.helpers import BagEmbedder, task_request

pytestmark = pytest.mark.timeout(600)
HELDOUT_SEED = 4242  # the tests' runs fix the held-out seed, so that the fake model knows the test requests


class MemoryBoundModel:
    """Fills each expected argument only if its value appears in the prompt (i.e. memory recalled it)."""

    model = "fake"

    def __init__(self, replies: list[str] | None = None) -> None:
        from agentmem_environments.toolprefs import ToolPrefsEnvironment

        envs = [ToolPrefsEnvironment(), ToolPrefsEnvironment(heldout_seed=HELDOUT_SEED)]
        self.expected = {q.text: q.metadata for env in envs for t in env.tasks("all") for q in t.questions}
        self.meter = Meter()
        self.replies = list(replies or [])

    def complete(self, messages: list[dict[str, Any]], *, caller: str | None = None, **kw: Any) -> str:
        self.meter.record(caller, 50, 10, 0.0)
        return self.replies.pop(0) if self.replies else "ok"

    def structured(self, messages, schema, *, caller=None):  # pragma: no cover - toolprefs + episodic never ask
        raise AssertionError("not expected")

    def call_tool(
        self, messages: list[dict[str, Any]], tools: list[Any], *, caller: str | None = None, **kw: Any
    ) -> ToolCall:
        self.meter.record(caller, 100, 20, 0.0)
        prompt = "\n".join(m["content"] for m in messages)  # memory, then "Request: ..." (task_act_user.j2)
        meta = self.expected[task_request(messages)]
        args = {k: (v if str(v).lower() in prompt.lower() else "unknown") for k, v in meta["arguments"].items()}
        return ToolCall(name=meta["tool"], arguments=args)


def config(**over: Any) -> RunConfig:
    data: dict[str, Any] = {
        "seeds": ["episodic"],
        "environment": {
            "name": "toolprefs",
            "minibatch": 3,
            "validation_limit": 4,
            "test_limit": 3,
            "heldout_seed": HELDOUT_SEED,
        },
        "budget": {"iterations": 2},
        "cascade": {"proxy_questions": 6},  # the LLM-free stage 0 on a few questions: plumbing, kept cheap
        "proposers": {"weights": {"mutate": 1.0, "merge": 0.5}, "children_per_iteration": 2},
        "sandbox": {"wall_seconds_per_op": 60},
    }
    for key, value in over.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return RunConfig.from_dict(data)


def controller(run_dir: Path, cfg: RunConfig, model: MemoryBoundModel, *, create: bool = True, **kw: Any) -> Controller:
    embedder = BagEmbedder()
    common = dict(
        executor=InlineExecutor(llm=model, embedder=embedder),
        task_llm=model,
        mutation_llm=model,
        embedder=embedder,
        **kw,
    )
    return Controller.create(run_dir, cfg, **common) if create else Controller.resume(run_dir, **common)


def keys(ctl: Controller) -> list[tuple[str, str, str]]:
    return [(e.program_id, e.stage, e.key) for e in ctl.archive.evaluations()]


def test_a_run_scores_seeds_makes_children_and_tests_the_best(tmp_path):
    model = MemoryBoundModel()
    ctl = controller(tmp_path / "run", config(), model)
    try:
        summary = ctl.run()
        programs = ctl.archive.programs()
        assert summary["iteration"] == 2 and summary["best"] is not None
        assert {p.operator for p in programs} >= {"seed", "mutate"}
        assert len(programs) >= 3
        stages = Counter(stage for _, stage, _ in keys(ctl))
        assert stages["screen"] >= 3 and stages["select"] >= 1 and stages["test"] >= 1
        best = summary["best"]["id"]
        assert ctl.archive.evaluation(best, "test", ctl._keys["test"]) is not None  # the held-out score of the best
        seed = next(p for p in programs if p.operator == "seed")
        assert ctl.archive.evaluation(seed.id, "test", ctl._keys["test"]) is not None
        assert len(keys(ctl)) == len(set(keys(ctl)))
        kinds = {e.kind for e in ctl.archive.events()}
        assert {"run_started", "iteration_started", "evaluated", "run_finished"} <= kinds
    finally:
        ctl.close()


def test_an_interrupted_run_resumes_without_losing_or_redoing_evaluations(tmp_path):
    run = tmp_path / "run"
    seen = {"evaluated": 0}

    def crash_after_three(kind: str, payload: dict[str, Any]) -> None:
        if kind == "evaluated":
            seen["evaluated"] += 1
            if seen["evaluated"] == 4:  # the seed's three (proxy, screen, select), then the first child's proxy
                raise KeyboardInterrupt

    ctl = controller(run, config(), MemoryBoundModel(), on_event=crash_after_three)
    with pytest.raises(KeyboardInterrupt):
        ctl.run()
    before = [(e.id, e.program_id, e.stage, e.key, e.score) for e in ctl.archive.evaluations()]
    ctl.close()
    assert len(before) == 4

    again = controller(run, config(), MemoryBoundModel(), create=False)
    try:
        summary = again.run()
        after = [(e.id, e.program_id, e.stage, e.key, e.score) for e in again.archive.evaluations()]
        assert after[:4] == before
        assert len(keys(again)) == len(set(keys(again)))
        assert summary["iteration"] == 2
    finally:
        again.close()


def test_a_spent_token_budget_stops_cleanly_and_still_scores_test(tmp_path):
    ctl = controller(tmp_path / "run", config(budget={"iterations": 5, "max_llm_tokens": 200}), MemoryBoundModel())
    try:
        summary = ctl.run()
        assert summary["stopped"].startswith("token budget reached")
        assert summary["iteration"] < 5
        assert any(e.stage == "test" for e in ctl.archive.evaluations())
        assert any(e.kind == "budget_exhausted" for e in ctl.archive.events())
    finally:
        ctl.close()


def test_reflective_children_are_validated_in_the_sandbox_and_repaired(tmp_path):
    crash = "```python\ndef rewrite_query(self, text):\n    return undefined_helper(text)\n```"
    fixed = "```python\ndef rewrite_query(self, text):\n    return text + ' prefer usually always'\n```"
    model = MemoryBoundModel(replies=[crash, fixed])
    cfg = config(
        budget={"iterations": 1},
        proposers={"weights": {"reflective": 1.0}, "children_per_iteration": 1, "repair_attempts": 2},
    )
    ctl = controller(tmp_path / "run", cfg, model)
    try:
        import agentmem_evolve.proposers as proposers

        original = proposers.ReflectiveProposer.targets
        proposers.ReflectiveProposer.targets = lambda self, source: ["rewrite_query"]  # type: ignore[method-assign]
        try:
            ctl.run()
        finally:
            proposers.ReflectiveProposer.targets = original  # type: ignore[method-assign]
        child = next(p for p in ctl.archive.programs() if p.operator == "reflective")
        assert child.status == "valid" and child.meta["repairs"] == 1
        assert "prefer usually always" in child.source
    finally:
        ctl.close()


def test_the_test_split_of_a_generated_environment_comes_from_a_secret_seed(tmp_path):
    """'secret' (the default) draws the held-out seed once, keeps it in the run, and only the test stage uses it."""
    cfg = RunConfig.from_dict({"seeds": ["episodic"], "environment": {"name": "toolprefs"}})
    assert cfg.environment.heldout_seed == "secret"
    model = MemoryBoundModel()
    first = controller(tmp_path / "a", cfg, model)
    drawn = first._heldout_seed
    assert isinstance(drawn, int) and drawn > 0
    assert "heldout_seed" not in first._stage_options("screen") and "heldout_seed" not in first._stage_options("select")
    assert first._stage_options("test")["heldout_seed"] == drawn
    # kept for a resume; another run draws another
    assert controller(tmp_path / "a", cfg, model, create=False)._heldout_seed == drawn
    assert controller(tmp_path / "b", cfg, model)._heldout_seed != drawn
    # the config file the run keeps does not hold it either (only the archive, which no candidate sees)
    assert str(drawn) not in (tmp_path / "a" / "config.toml").read_text()
    # environments without generated data keep their usual test split
    locomo = RunConfig.from_dict({"seeds": ["episodic"], "environment": {"name": "locomo"}})
    assert controller(tmp_path / "c", locomo, model)._heldout_seed is None


def test_a_run_without_a_jail_refuses_before_writing_anything_unless_told(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from agentmem_evolve import jail
    from agentmem_evolve.archive import Archive
    from agentmem_evolve.report import render_report, summary

    monkeypatch.setattr(jail, "_probed", {"bwrap": "bwrap is not installed", "unshare": "unshare is not installed"})
    run_dir = tmp_path / "run"
    from agentmem_evolve.cli import evolve_app

    refused = CliRunner().invoke(evolve_app, ["run", "--env", "toolprefs", "--run-dir", str(run_dir), "--quiet"])
    assert refused.exit_code == 2, refused.output
    assert "bubblewrap" in refused.output and "--allow-unjailed" in refused.output
    assert "Traceback" not in refused.output and not run_dir.exists()

    # told: the weaker mode runs, and status and the report say so
    cfg = config(sandbox={"allow_unjailed": True}, budget={"iterations": 0})
    ctl = controller(tmp_path / "weak", cfg, MemoryBoundModel())
    try:
        ctl.run()
    finally:
        ctl.close()
    with Archive(tmp_path / "weak") as archive:
        info = summary(archive)
        assert info["sandbox"]["jail"] == "none" and info["sandbox"]["weaker"] is True
        page = render_report(archive).read_text()
    assert "audit hook only (--allow-unjailed)" in page


def test_a_proposal_that_repeats_a_program_is_drawn_again_and_never_takes_two_places(tmp_path):
    # Only one structural change applies to the seed (dates off), so the second place of the iteration first
    # draws the same program again; it draws again (here: a numeric mutation or the same repeat, by the seed)
    # and the iteration never holds the same child twice.
    cfg = config(
        budget={"iterations": 1},
        proposers={
            "weights": {"structural": 1.0, "mutate": 0.3},
            "structural": ["dates"],
            "children_per_iteration": 3,
        },
    )
    ctl = controller(tmp_path / "run", cfg, MemoryBoundModel())
    try:
        ctl.run()
        events = list(ctl.archive.events())
        added = [e.payload["id"] for e in events if e.kind == "program_added" and e.payload["operator"] != "seed"]
        repeated = [e.payload for e in events if e.kind == "proposal_repeated"]
        assert len(added) == len(set(added))  # no program added twice
        assert repeated and all(r["id"] in added for r in repeated)  # each repeat was of a program already made
        assert any(e.payload["operator"] == "structural:dates" for e in events if e.kind == "program_added")
        screened = [e.payload["id"] for e in events if e.kind == "proxy_screened"]
        assert len(screened) == len(set(screened))  # one proxy verdict per child
        made = [m for m in ctl.archive.get_state("iteration_0_proposals", []) if m]
        assert len(made) == 3 and set(made) <= set(added)
    finally:
        ctl.close()
