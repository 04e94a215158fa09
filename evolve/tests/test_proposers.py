"""Programs as source, and the three proposers (plumbing: a scripted model stands in for the LLM here;
the real-model runs are in test_evolve_run.py)."""

from __future__ import annotations

import random

import pytest

from agentmem_evolve import program as prog
from agentmem_evolve.proposers import (
    MergeProposer,
    MutationProposer,
    ParentView,
    ProposalFailed,
    ReflectiveProposer,
    TaskInfo,
)

TASK = TaskInfo(env="toolprefs", description="preferences ground tool calls", metric="param_accuracy")
TRACES = [
    {
        "question": "book a flight",
        "reference": "seat=aisle",
        "prediction": "seat=window",
        "recalled": "I like window seats",
        "score": 0.0,
    }
]


class ScriptedModel:
    """Answers each call with the next scripted reply and keeps the conversations it saw."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.seen: list[list[dict[str, str]]] = []

    def complete(self, messages, **kw):
        self.seen.append([dict(m) for m in messages])
        return self.replies.pop(0)


def seed_view() -> ParentView:
    source, meta = prog.seed_source("episodic")
    return ParentView(id="seed", source=source, score=0.4, meta=meta, traces=TRACES, seed_source=source, seed_score=0.4)


def test_seed_program_spells_out_what_evolution_edits():
    source, meta = prog.seed_source("episodic")
    assert meta["base_plugin"] == "episodic"
    assert set(prog.HOOKS) <= set(prog.functions(source))
    assert prog.read_defaults(source)["top_k"] == 8
    assert "{{ context }}" in prog.read_template(source)
    compile(source, "seed.py", "exec")


def test_splice_fixes_the_indentation_small_models_get_wrong():
    source, _ = prog.seed_source("episodic")
    reply = (
        "Here you go:\n```python\n    def after_recall(self, query, recall):\n"
        "            recall.items = [i for i in recall.items if i.score > 0.1]\n"
        "            if not recall.items:\n                return recall\n"
        "            return recall\ndef helper(self, x):\n  return x\n```\n"
    )
    splice = prog.replace_function(source, prog.extract_code(reply), "after_recall")
    assert splice.replaced == ["after_recall"] and splice.added == ["helper"]
    methods = prog.functions(splice.source)
    assert "i.score > 0.1" in methods["after_recall"]
    assert methods["helper"].startswith("def helper(self, x):")
    compile(splice.source, "child.py", "exec")


def test_splice_errors_are_one_line_for_the_repair_prompt():
    source, _ = prog.seed_source("episodic")
    with pytest.raises(ValueError, match="must be named `after_recall`"):
        prog.replace_function(source, "def something(self):\n    return 1", "after_recall")
    with pytest.raises(ValueError, match="syntax error"):
        prog.replace_function(source, "def after_recall(self, q, r)\n    return r", "after_recall")


def test_reflective_proposer_rewrites_one_hook_and_repairs_with_the_error():
    model = ScriptedModel(
        [
            "```python\ndef after_recall(self, query, recall)\n    return recall\n```",  # syntax error
            "```python\ndef after_recall(self, query, recall):\n    recall.items = recall.items[:3]\n    "
            "return recall\n```",
        ]
    )
    proposer = ReflectiveProposer(model, TASK)
    rng = random.Random(0)
    proposal = proposer.attempt(seed_view(), rng, [], attempts=2, target="after_recall")
    assert "recall.items[:3]" in prog.functions(proposal.source)["after_recall"]
    assert len(model.seen) == 2
    repair_turn = model.seen[1][-1]["content"]
    assert "syntax error" in repair_turn  # the repair shows the error: a new prompt, never a cached replay
    assert "seat=window" in model.seen[0][1]["content"]  # the failure transcript reached the prompt


def test_reflective_proposer_gives_up_after_the_repair_budget():
    bad = "```python\ndef wrong_name(self):\n    return 1\n```"
    proposer = ReflectiveProposer(ScriptedModel([bad, bad, bad]), TASK)
    with pytest.raises(ProposalFailed, match="after 3 tries"):
        proposer.attempt(seed_view(), random.Random(0), [], attempts=2, target="after_recall")


def test_validation_failures_feed_the_repair_loop():
    replies = [
        "```python\ndef rewrite_query(self, text):\n    return undefined_name\n```",
        "```python\ndef rewrite_query(self, text):\n    return text.lower()\n```",
    ]
    model = ScriptedModel(replies)

    def check(source):
        if "undefined_name" in source:
            return False, "smoke: NameError: name 'undefined_name' is not defined", "line 2 in rewrite_query"
        return True, "", ""

    proposal = ReflectiveProposer(model, TASK).attempt(
        seed_view(), random.Random(1), [], 2, check=check, target="rewrite_query"
    )
    assert "text.lower()" in proposal.source
    assert "NameError" in model.seen[1][-1]["content"]
    assert proposal.meta["repairs"] == 1


def test_template_target_must_keep_the_context():
    model = ScriptedModel(["```text\nNo context here\n```", "```text\nLatest statement wins.\n{{ context }}\n```"])
    proposal = ReflectiveProposer(model, TASK).attempt(seed_view(), random.Random(0), [], 2, target="usage")
    assert prog.read_template(proposal.source) == "Latest statement wins.\n{{ context }}"


def test_mutation_stays_in_bounds_and_changes_defaults_only():
    parent = seed_view()
    rng = random.Random(3)
    for _ in range(10):
        child = MutationProposer(swap_probability=0).propose(parent, rng)
        defaults = prog.read_defaults(child.source)
        assert 1 <= defaults["top_k"] <= 50
        assert defaults != prog.read_defaults(parent.source)
        assert prog.functions(child.source) == prog.functions(parent.source)


def test_swap_takes_a_component_from_another_program():
    parent = seed_view()
    donor_source = prog.replace_function(
        parent.source, "def rewrite_query(self, text):\n    return text + ' prefer'", "rewrite_query"
    ).source
    donor = ParentView(id="donor", source=donor_source, score=0.5, meta=parent.meta)
    child = MutationProposer(swap_probability=1.0).propose(parent, random.Random(0), [donor])
    assert child.operator == "swap" and child.parents == ["seed", "donor"]
    assert "prefer" in prog.functions(child.source)["rewrite_query"]


def test_merge_combines_the_changes_of_both_parents():
    seed = seed_view()
    a_src = prog.set_defaults(seed.source, {**prog.read_defaults(seed.source), "top_k": 4})
    b_src = prog.replace_function(
        seed.source, "def rewrite_query(self, text):\n    return text.lower()", "rewrite_query"
    ).source
    a = ParentView(id="a", source=a_src, score=0.6, meta=seed.meta, seed_source=seed.source)
    b = ParentView(id="b", source=b_src, score=0.5, meta=seed.meta, seed_source=seed.source)
    child = MergeProposer().propose(a, b, random.Random(0))
    assert prog.read_defaults(child.source)["top_k"] == 4
    assert "text.lower()" in prog.functions(child.source)["rewrite_query"]
    assert child.parents == ["a", "b"]


def test_a_wrong_attribute_gets_the_real_attribute_names_in_the_repair():
    from agentmem_evolve.proposers import attribute_hint

    hint = attribute_hint("smoke: error: observe raised AttributeError: 'Event' object has no attribute 'text'")
    assert "Event has no .text" in hint and ".content" in hint
    own = attribute_hint("smoke: error: observe raised AttributeError: 'Program' object has no attribute 'memory'")
    assert "no self.memory" in own and "self.params" in own
    fell_off = attribute_hint("smoke: error: recall raised AttributeError: 'NoneType' object has no attribute 'strip'")
    assert "every path of the method must return" in fell_off and "rewrite_query a str" in fell_off
    model = ScriptedModel(
        [
            "```python\ndef before_store(self, event):\n    return event if event.text else None\n```",
            "```python\ndef before_store(self, event):\n    return event if event.content else None\n```",
        ]
    )

    def check(source):
        if "event.text" in source:
            return False, "smoke: error: observe raised AttributeError: 'Event' object has no attribute 'text'", ""
        return True, "", ""

    proposal = ReflectiveProposer(model, TASK).attempt(
        seed_view(), random.Random(0), [], 2, check=check, target="before_store"
    )
    assert "event.content" in proposal.source
    assert ".content (the text)" in model.seen[1][-1]["content"]


def test_a_repair_that_brings_the_same_error_back_is_followed_by_a_fresh_conversation():
    """The 1.5B kept self.memory through three repairs: the third try forgets the anchoring conversation."""
    memory = "```python\ndef before_store(self, event):\n    return event if self.memory.asked(event) else None\n```"
    fixed = "```python\ndef before_store(self, event):\n    return None if event.content == 'Thanks!' else event\n```"
    model = ScriptedModel([memory, memory, fixed])
    error = "smoke: error: observe raised AttributeError: 'Program' object has no attribute 'memory'"

    def check(source):
        return ("self.memory" not in source, error if "self.memory" in source else "", "")

    proposal = ReflectiveProposer(model, TASK).attempt(
        seed_view(), random.Random(0), [], 2, check=check, target="before_store"
    )
    assert "Thanks!" in proposal.source and proposal.meta["repairs"] == 2
    assert len(model.seen[1]) == 4 and "no self.memory" in model.seen[1][-1]["content"]  # the first repair
    assert len(model.seen[2]) == 2  # then a fresh conversation: system prompt and the request only
    assert "no self.memory" in model.seen[2][0]["content"]  # which says a hook has no memory to look into


def test_only_the_asked_for_method_is_replaced():
    source, _ = prog.seed_source("episodic")
    reply = (
        "def __init__(self, toolkit):\n    pass\n\n"
        "def recall(self, query):\n    return None\n\n"
        "def after_recall(self, query, recall):\n    return recall\n\n"
        "def _newest_first(self, items):\n    return items[::-1]\n"
    )
    splice = prog.replace_function(source, reply, "after_recall")
    assert splice.replaced == ["after_recall"] and splice.added == ["_newest_first"]
    methods = prog.functions(splice.source)
    assert "DEFAULTS" in methods["__init__"] and "super().recall" in methods["recall"]
