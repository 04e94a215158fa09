"""Structural operators: children that differ in what the program is made of, each a valid program that runs
in the sandbox; the operator that made a child is recorded and the report says which operators paid off."""

from __future__ import annotations

import random
import re

import pytest
from test_sandbox import LIMITS, MeteredFakeLLM

from agentmem.errors import ConfigError
from agentmem_evolve import program as prog
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import RunConfig
from agentmem_evolve.operators import (
    OPERATORS,
    Compose,
    StructuralProposer,
    composed_modules,
    lift,
    read_design,
    set_design,
)
from agentmem_evolve.proposers import MergeProposer, MutationProposer, ParentView, ProposalFailed
from agentmem_evolve.report import operator_payoff, render_report
from agentmem_evolve.sandbox import validate_program
from tests.helpers import BagEmbedder

pytestmark = pytest.mark.timeout(300)


def seed_view(plugin: str = "episodic") -> ParentView:
    source, meta = prog.seed_source(plugin)
    return ParentView(id="seed", source=source, score=0.4, meta=meta, seed_source=source, seed_score=0.4)


def test_lifting_an_episodic_seed_keeps_its_hooks_template_and_parameters():
    parent = seed_view()
    edited = prog.set_defaults(parent.source, {**prog.read_defaults(parent.source), "top_k": 13, "recency_weight": 0.4})
    edited = prog.replace_function(
        edited, "def rewrite_query(self, text):\n    return text + ' prefer'\n", "rewrite_query"
    ).source
    lifted, base = lift(edited, parent.meta)
    assert base == "episodic" and "from agentmem.assembled import AssembledMemory as Base" in lifted
    assert read_design(lifted)["retriever"] == "recency"  # the parent blended recency in: so does its design
    assert prog.read_defaults(lifted)["top_k"] == 13
    assert prog.functions(lifted)["rewrite_query"] == prog.functions(edited)["rewrite_query"]
    assert prog.read_template(lifted) == prog.read_template(edited)
    assert lift(lifted, {"base_plugin": "assembled"}) == (lifted, None)  # already modules: left as it is


def test_a_program_no_operator_can_read_fails_in_one_line():
    with pytest.raises(ProposalFailed, match="based on semantic"):
        StructuralProposer().propose(seed_view("semantic"), random.Random(0))
    with pytest.raises(ValueError, match="unknown structural operator"):
        StructuralProposer(["teleport"])
    with pytest.raises(ConfigError, match="proposers.structural.*unknown structural operator"):
        RunConfig.from_dict(
            {
                "seeds": ["episodic"],
                "environment": {"name": "toolprefs"},
                "proposers": {"weights": {"structural": 1.0}, "structural": ["teleport"]},
            }
        )


def test_structural_children_are_deterministic_and_stay_within_the_design_space():
    parent = seed_view()
    first = StructuralProposer().propose(parent, random.Random(7))
    assert first.source == StructuralProposer().propose(parent, random.Random(7)).source
    rng, view, seen = random.Random(3), parent, set()
    for step in range(60):  # a chain of structural edits: every child is a program whose design reads back
        child = StructuralProposer().propose(view, rng)
        assert child.operator.startswith("structural:") and child.meta["structure"] in OPERATORS
        assert read_design(child.source) == child.meta["design"]
        seen.add(child.meta["structure"])
        view = ParentView(id=f"c{step}", source=child.source, score=0.4, meta=child.meta)
    assert seen == set(OPERATORS)
    # numeric mutation knows the knobs of every module of an assembled program
    mutated = MutationProposer().propose(view, random.Random(1))
    assert mutated.operator == "mutate" and read_design(mutated.source) == read_design(view.source)


def test_compose_offers_only_installed_plugins_and_can_drop_or_reweight():
    design = read_design(lift(seed_view().source, {"base_plugin": "episodic"})[0])
    assert {c.what for c in Compose(installed={"semantic"}).changes(design, {})} == {
        "composed +semantic at weight 0.5",
        "composed +semantic at weight 1",
    }
    composed = {**design, "compose": {"procedural": 0.5}}
    assert {c.what for c in Compose(installed=set()).changes(composed, {})} == {
        "dropped +procedural",
        "+procedural reweighted 0.5 -> 1",
    }
    with pytest.raises(ValueError, match="weight"):
        set_design(lift(seed_view().source, {"base_plugin": "episodic"})[0], {**design, "compose": {"semantic": 5.0}})


def test_structural_children_merge_and_swap_module_choices():
    seed = seed_view()
    children = {}
    for name, want in (("swap-retriever", "retriever hybrid -> lexical"), ("add-manager", "added manager supersede")):
        child = next(
            c
            for c in (StructuralProposer([name]).propose(seed, random.Random(i)) for i in range(40))
            if c.meta["change"] == want
        )
        children[name] = ParentView(
            id=name,
            source=child.source,
            score=0.5 if name == "swap-retriever" else 0.45,
            meta=child.meta,
            seed_source=seed.source,
        )
    merged = MergeProposer().propose(children["swap-retriever"], children["add-manager"], random.Random(0))
    design = read_design(merged.source)
    assert design["retriever"] == "lexical" and design["managers"] == ["supersede", "consolidate"]
    assert merged.meta["taken"] == ["design:managers"]
    swapped = MutationProposer(swap_probability=1.0).propose(
        children["swap-retriever"], random.Random(0), [children["add-manager"]]
    )
    assert swapped.operator == "swap" and read_design(swapped.source) != read_design(children["swap-retriever"].source)
    assert read_design(seed.source.replace("DEFAULTS =", "DESIGN = {'retriever': 'psychic'}\nDEFAULTS =")) is None


def test_an_exported_program_depends_on_the_plugins_it_composes():
    from agentmem_evolve.export import _extra_dependencies

    lifted, _ = lift(seed_view().source, {"base_plugin": "episodic"})
    composed = set_design(lifted, {**read_design(lifted), "compose": {"semantic": 0.5}})
    assert composed_modules(lifted) == set() and composed_modules(composed) == {"agentmem_semantic"}
    assert "agentmem-semantic" in _extra_dependencies(composed_modules(composed), "evolved_memory")


OPERATOR_CHANGES = {  # one change of each operator, on the lifted episodic seed
    "swap-retriever": "retriever hybrid -> lexical",
    "add-manager": "added manager supersede",
    "remove-manager": "removed manager consolidate",
    "neighbours": "widened each hit with 1 neighbour(s) on each side",
    "compose": "composed +semantic at weight 0.5",
    "encode": "encode turn -> fact",
    "own-turns": "stopped storing the agent's own replies",
    "dates": "stopped showing dates",
    "order": "showed memories best match last (was oldest first)",
    "style": "showed memories as notes (was transcript)",
    "top-k": "recalled 4 items (was 8)",
    "usage": "usage text description -> directive",
}


@pytest.mark.parametrize("name", list(OPERATOR_CHANGES))
def test_each_structural_operator_makes_a_valid_program_that_runs_in_the_sandbox(name):
    parent = seed_view()
    child = next(
        c
        for c in (StructuralProposer([name]).propose(parent, random.Random(i)) for i in range(40))
        if c.meta["change"] == OPERATOR_CHANGES[name]
    )
    assert child.operator == f"structural:{name}"
    report = validate_program(child.source, llm=MeteredFakeLLM(), embedder=BagEmbedder(), limits=LIMITS)
    assert report.ok, f"{name}: {report.stage}: {report.error}\n{report.traceback}"


def test_without_dates_the_usage_template_no_longer_promises_them():
    child = StructuralProposer(["dates"]).propose(seed_view(), random.Random(0))
    assert read_design(child.source)["dates"] is False
    assert "starts with its date" in prog.read_template(seed_view().source)
    assert "starts with its date" not in prog.read_template(child.source)
    back = StructuralProposer(["dates"]).propose(
        ParentView(id="c", source=child.source, score=0.4, meta=child.meta), random.Random(0)
    )
    assert read_design(back.source)["dates"] is True and back.meta["change"] == "showed dates again"


def test_the_order_operator_reorders_recall_and_says_so_in_the_usage_template():
    children = {
        read_design(c.source)["order"]: c
        for c in (StructuralProposer(["order"]).propose(seed_view(), random.Random(i)) for i in range(20))
    }
    assert set(children) == {"best-first", "best-last"}  # never the parent's own order
    assert "oldest first" in prog.read_template(seed_view().source)
    for order, phrase in (("best-first", "best match first"), ("best-last", "best match last")):
        usage = prog.read_template(children[order].source)
        assert phrase in usage and "oldest first" not in usage
    back = StructuralProposer(["order"]).propose(
        ParentView(id="c", source=children["best-last"].source, score=0.4, meta=children["best-last"].meta),
        random.Random(0),
    )
    assert read_design(back.source)["order"] in {"time", "best-first"}


def test_the_usage_operator_switches_the_template_between_description_and_directive_and_nothing_else():
    parent = seed_view()
    lifted, _ = lift(parent.source, parent.meta)
    child = StructuralProposer(["usage"]).propose(parent, random.Random(0))
    usage = prog.read_template(child.source)
    assert usage.startswith("What the user told you before (oldest first; when two lines disagree, the later one")
    assert "use the value the user stated here, word for word, not a default." in usage
    assert "{{ context }}" in usage and "did not fit" in usage  # the template's other lines are kept
    # recall is untouched: same design, same knobs; only the template differs from the lifted parent
    assert read_design(child.source) == read_design(lifted)
    assert prog.read_defaults(child.source) == prog.read_defaults(lifted)
    assert child.source == prog.set_template(lifted, usage)
    back = StructuralProposer(["usage"]).propose(
        ParentView(id="c", source=child.source, score=0.4, meta=child.meta), random.Random(0)
    )
    assert back.meta["change"] == "usage text directive -> description"
    assert prog.read_template(back.source) == prog.read_template(lifted)
    # a description written back follows the design: no date promise without dates
    undated = StructuralProposer(["dates"]).propose(parent, random.Random(0))
    directed = StructuralProposer(["usage"]).propose(
        ParentView(id="d", source=undated.source, score=0.4, meta=undated.meta), random.Random(0)
    )
    described = StructuralProposer(["usage"]).propose(
        ParentView(id="e", source=directed.source, score=0.4, meta=directed.meta), random.Random(0)
    )
    assert prog.read_template(described.source).startswith("Excerpts from earlier conversations, oldest first.\n")
    # in best-match order "the later line is right" would send the agent to the wrong line: not said
    ranked = set_design(lifted, {**read_design(lifted), "order": "best-first"})
    ranked = prog.set_template(ranked, prog.read_template(lifted).replace("oldest first", "best match first"))
    directive = prog.read_template(
        StructuralProposer(["usage"])
        .propose(ParentView(id="f", source=ranked, score=0.4, meta={}), random.Random(0))
        .source
    )
    assert directive.startswith("What the user told you before (best match first). For every parameter")
    # a template a reflective rewrite put in other words is left alone: no usage change applies
    reworded = prog.set_template(lifted, "Notes:\n{{ context }}")
    with pytest.raises(ProposalFailed, match="no structural change applies"):
        StructuralProposer(["usage"]).propose(ParentView(id="r", source=reworded, score=0.4, meta={}), random.Random(0))


def back_to(child):
    """``child`` as the parent of the next proposal."""
    return ParentView(id="c", source=child.source, score=0.4, meta=child.meta)


def test_style_and_top_k_change_only_how_memories_are_shown_and_how_many():
    parent = seed_view()
    lifted, _ = lift(parent.source, parent.meta)
    noted = StructuralProposer(["style"]).propose(parent, random.Random(0))
    assert read_design(noted.source) == {**read_design(lifted), "style": "notes"}
    assert prog.read_defaults(noted.source) == prog.read_defaults(lifted)  # recall untouched
    # notes drop the user's name, so the description line names the user; nothing else in the template changes
    line = "Excerpts from earlier conversations, oldest first; each line starts with its date."
    noted_line = "What the user told you, oldest first; each line starts with its date:"
    assert prog.read_template(noted.source) == prog.read_template(lifted).replace(line, noted_line)
    back = StructuralProposer(["style"]).propose(
        ParentView(id="n", source=noted.source, score=0.4, meta=noted.meta), random.Random(0)
    )
    assert read_design(back.source)["style"] == "transcript" and prog.read_template(back.source) == prog.read_template(
        lifted
    )
    # the dates and usage operators still find the notes line: undated it is the measured "..., oldest first:"
    undated = next(
        c
        for c in (StructuralProposer(["dates"]).propose(back_to(noted), random.Random(i)) for i in range(5))
        if c.meta["change"] == "stopped showing dates"
    )
    assert "What the user told you, oldest first:\n" in prog.read_template(undated.source)
    directed = StructuralProposer(["usage"]).propose(back_to(undated), random.Random(0))
    assert "What the user told you before (oldest first;" in prog.read_template(directed.source)
    described = StructuralProposer(["usage"]).propose(back_to(directed), random.Random(0))
    assert prog.read_template(described.source) == prog.read_template(undated.source)  # notes: the notes line back
    # a directive is not the style's to rewrite
    restyled = StructuralProposer(["style"]).propose(back_to(directed), random.Random(0))
    assert prog.read_template(restyled.source) == prog.read_template(directed.source)
    sizes = {
        prog.read_defaults(c.source)["top_k"]: c.meta["change"]
        for c in (StructuralProposer(["top-k"]).propose(parent, random.Random(i)) for i in range(20))
    }
    assert sizes == {4: "recalled 4 items (was 8)", 16: "recalled 16 items (was 8)"}
    smallest = prog.set_defaults(lifted, {**prog.read_defaults(lifted), "top_k": 2})
    only = StructuralProposer(["top-k"]).propose(
        ParentView(id="s", source=smallest, score=0.4, meta={}), random.Random(0)
    )
    assert only.meta["change"] == "recalled 4 items (was 2)"  # never below 2
    assert read_design(only.source) == read_design(lifted)


def test_a_structural_child_can_combine_several_operators_and_stays_a_valid_program():
    parent, toolprefs_ops = seed_view(), ["add-manager", "encode", "own-turns", "dates"]
    children = [StructuralProposer(toolprefs_ops, steps=4).propose(parent, random.Random(i)) for i in range(200)]
    for child in children:  # each operator at most once, each named in the label, the design reads back
        used = child.meta["structure"].split("+")
        assert child.operator == f"structural:{child.meta['structure']}" and len(set(used)) == len(used) <= 4
        assert read_design(child.source) == child.meta["design"] and child.meta["change"].count(";") == len(used) - 1
    assert {len(c.meta["structure"].split("+")) for c in children} == {1, 2, 3, 4}
    # the four changes that toolprefs' episodic seed needs are one child away, not four iterations
    combined = next(
        c
        for c in children
        if c.meta["design"]["encode"] == "fact"
        and "correct" in c.meta["design"]["managers"]
        and c.meta["design"]["own_turns"] is False
        and c.meta["design"]["dates"] is False
    )
    assert "starts with its date" not in prog.read_template(combined.source)
    report = validate_program(combined.source, llm=MeteredFakeLLM(), embedder=BagEmbedder(), limits=LIMITS)
    assert report.ok, f"{report.stage}: {report.error}\n{report.traceback}"
    # one step (the default) is the single-operator child of before, draw for draw
    assert StructuralProposer().propose(parent, random.Random(5)).source == (
        StructuralProposer(steps=1).propose(parent, random.Random(5)).source
    )
    with pytest.raises(ValueError, match="at least 1"):
        StructuralProposer(steps=0)
    # a raised minimum: every child applies at least that many operators (here 3 or 4 of the four)
    four = ["style", "top-k", "dates", "own-turns"]
    raised = [StructuralProposer(four, steps=4, min_steps=3).propose(parent, random.Random(i)) for i in range(12)]
    assert {len(c.meta["structure"].split("+")) for c in raised} == {3, 4}
    with pytest.raises(ValueError, match="min_steps must be between 1 and steps"):
        StructuralProposer(four, steps=2, min_steps=3)
    with pytest.raises(ConfigError, match="structural_min_steps"):
        RunConfig.from_dict(
            {
                "seeds": ["episodic"],
                "environment": {"name": "toolprefs"},
                "proposers": {"structural_steps": 2, "structural_min_steps": 3},
            }
        )
    with pytest.raises(ConfigError, match="structural_steps"):
        RunConfig.from_dict(
            {
                "seeds": ["episodic"],
                "environment": {"name": "toolprefs"},
                "proposers": {"structural_steps": len(OPERATORS) + 1},
            }
        )
    # the config's bound is the number of operators there are (each applied at most once a child)
    RunConfig.from_dict(
        {"seeds": ["episodic"], "environment": {"name": "toolprefs"}, "proposers": {"structural_steps": len(OPERATORS)}}
    )


def test_a_design_the_program_cannot_build_fails_validation_at_the_interface():
    lifted, _ = lift(seed_view().source, {"base_plugin": "episodic"})
    broken = lifted.replace("'retriever': 'hybrid'", "'retriever': 'psychic'")
    report = validate_program(broken, llm=MeteredFakeLLM(), embedder=BagEmbedder(), limits=LIMITS)
    assert not report.ok and report.stage == "interface" and "DESIGN: retriever: Input should be" in report.error


def evaluation(pid: str, stage: str, score: float) -> EvaluationRecord:
    return EvaluationRecord(
        program_id=pid,
        stage=stage,
        split="validation",
        key=f"{stage}:k",
        score=score,
        per_instance={"q1": score},
        cost={"llm_calls": 1, "seconds": 1.0},
    )


def test_the_report_shows_which_operators_paid_off(tmp_path):
    run_dir = tmp_path / "run"
    RunConfig.model_validate({"seeds": ["episodic"], "environment": {"name": "toolprefs"}}).write(
        run_dir / "config.toml"
    )
    archive = Archive(run_dir)
    seed = ProgramRecord(source="# seed\n", status="valid")
    better = ProgramRecord(source="# a\n", parents=[seed.id], operator="structural:swap-retriever", status="valid")
    worse = ProgramRecord(source="# b\n", parents=[seed.id], operator="structural:swap-retriever", status="valid")
    invalid = ProgramRecord(
        source="# c\n", parents=[seed.id], operator="structural:compose", status="invalid", error="boom"
    )
    screened = ProgramRecord(source="# d\n", parents=[seed.id], operator="structural:encode", status="valid")
    for p in (seed, better, worse, invalid, screened):
        archive.add_program(p)
    for pid, stage, score in (
        (seed.id, "select", 0.5),
        (seed.id, "screen", 0.4),
        (better.id, "select", 0.6),
        (worse.id, "select", 0.45),
        (screened.id, "screen", 0.3),
    ):
        archive.record_evaluation(evaluation(pid, stage, score))
    archive.log_event("proposal_failed", operator="structural", parent=seed.id, reason="no change applies")
    table = {r["operator"]: r for r in operator_payoff(archive)}
    assert table["structural:swap-retriever"] == {
        "operator": "structural:swap-retriever",
        "children": 2,
        "valid": 2,
        "scored": 2,
        "improved": 1,
        "replaced": 0,
        "best_gain": pytest.approx(0.1),
        "failed": 0,
    }
    assert table["structural:compose"]["valid"] == 0 and table["structural:encode"]["improved"] == 0
    assert table["structural"]["failed"] == 1
    html = render_report(archive).read_text()
    section = html.split('id="operators"')[1].split("</table>")[0]
    assert re.search(r"structural:swap-retriever</td><td class=\"num\">2</td>", section)
    archive.close()


@pytest.mark.timeout(900)
def test_a_run_with_the_structural_proposer_records_the_operator_on_each_child(tmp_path):
    from test_controller import MemoryBoundModel, config, controller

    cfg = config(
        proposers={
            "weights": {"structural": 1.0},
            "children_per_iteration": 2,
            "structural": ["swap-retriever", "encode"],
        },
        budget={"iterations": 1},
        environment={"minibatch": 1, "validation_limit": 1, "test_limit": 1},
    )
    ctl = controller(tmp_path / "run", cfg, MemoryBoundModel())
    try:
        ctl.run()
        children = [p for p in ctl.archive.programs() if p.operator != "seed"]
        assert children  # two proposals; two that made the same program are one child
        for child in children:
            assert child.operator in {"structural:swap-retriever", "structural:encode"}, child.operator
            assert child.status == "valid" and child.meta["lifted_from"] == "episodic" and read_design(child.source)
        rows = {r["operator"] for r in operator_payoff(ctl.archive)}
        assert rows == {c.operator for c in children}
    finally:
        ctl.close()
