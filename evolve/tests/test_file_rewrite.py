"""The whole-file rewrite mode (``[proposers] reflective_mode = "file"``), meant for strong mutation models.

The plumbing tests use a scripted model; the last test asks the real local
1.5B coder to rewrite the episodic seed as the engine loads it, through the
controller's own proposal path: the same prompt, the same sandbox validation
and the same repair loop a run uses.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from agentmem_evolve import program as prog
from agentmem_evolve.config import RunConfig
from agentmem_evolve.controller import Controller
from agentmem_evolve.executor import InlineExecutor
from agentmem_evolve.proposers import ParentView, ProposalFailed, rewritten_file

CODER = "local/qwen2.5-coder-1.5b"

#: Hand-made toolprefs failures, diagnosed as the engine diagnoses them: a corrected preference recalled
#: ahead of its correction (twice) and a preference never recalled.
TRACES: list[dict[str, Any]] = [
    {
        "question": "Book me a flight to Oslo next Friday.",
        "reference": "book_flight(destination='Oslo', seat='aisle')",
        "prediction": "book_flight(destination='Oslo', seat='window')",
        "recalled": "2024-03-02 user: I like window seats.\n2024-05-10 user: Actually, from now on I want aisle seats.",
        "score": 0.5,
        "category": "travel",
        "diagnosis": "stale_recalled",
    },
    {
        "question": "Order dinner for tonight.",
        "reference": "order_food(diet='vegan')",
        "prediction": "order_food(diet='vegetarian')",
        "recalled": "2024-01-04 user: I am vegetarian.\n2024-06-01 user: I went fully vegan last month.",
        "score": 0.0,
        "category": "food",
        "diagnosis": "stale_recalled",
    },
    {
        "question": "Set the heating in the living room.",
        "reference": "set_temperature(room='living room', celsius=21)",
        "prediction": "set_temperature(room='living room', celsius=18)",
        "recalled": "",
        "score": 0.0,
        "category": "home",
        "diagnosis": "not_recalled",
    },
]


def seed_parent() -> ParentView:
    """The episodic seed as the engine loads it, with a diagnosed reflective dataset."""
    source, meta = prog.seed_source("episodic")
    return ParentView(
        id="seed",
        source=source,
        score=0.4,
        meta=meta,
        traces=TRACES,
        seed_source=source,
        seed_score=0.4,
        diagnosis={"stale_recalled": 5, "not_recalled": 2},
    )


def file_mode_config(**models: str) -> RunConfig:
    return RunConfig.from_dict(
        {
            "seeds": ["episodic"],
            "environment": {"name": "toolprefs"},
            "models": models,
            "proposers": {"weights": {"reflective": 1.0}, "reflective_mode": "file", "repair_attempts": 2},
            "sandbox": {"wall_seconds_per_op": 60},
        }
    )


# --------------------------------------------------------------------------- plumbing


def test_a_whole_file_reply_gets_back_the_imports_and_tables_it_dropped_and_a_partial_one_is_spliced():
    source, _ = prog.seed_source("episodic")
    dropped = source.replace("from agentmem.types import Episode, Event, Query, Recall, RecallItem\n", "")
    child = rewritten_file(source, dropped.replace("        return text\n", "        return text + ' prefer'\n"))
    assert "from agentmem.types import Episode, Event, Query, Recall, RecallItem" in child
    assert "text + ' prefer'" in prog.functions(child)["rewrite_query"]
    compile(child, "child.py", "exec")
    # only the changed method came back: it goes into the parent's class
    partial = rewritten_file(source, "def rewrite_query(self, text):\n    return text.lower()\n")
    assert "text.lower()" in prog.functions(partial)["rewrite_query"] and prog.class_name(partial) == "Program"
    # what the local 1.5B wrote: the class and its methods, without the imports, DEFAULTS or TEMPLATES
    body = source[source.index("class Program(Base):") :]
    bare = "import datetime\n\n" + body.replace("        return text\n", "        return text.strip()\n")
    whole = rewritten_file(source, bare)
    compile(whole, "child.py", "exec")
    assert "DEFAULTS = {" in whole and "TEMPLATES = {" in whole and "import datetime" in whole
    assert whole.index("from agentmem_episodic import") < whole.index("DEFAULTS = {") < whole.index("class Program")
    assert prog.functions(whole)["rewrite_query"].endswith("return text.strip()")
    assert rewritten_file(source, source) == source  # nothing dropped, nothing added
    with pytest.raises(ValueError, match="defines no class"):
        rewritten_file(source, "x = 1\n")
    with pytest.raises(ValueError, match="does not parse"):
        rewritten_file(source, "class Program(Base)\n    pass\n")


class ScriptedCoder:
    """Stands in for the mutation model: answers with the next reply and keeps every conversation."""

    model = "scripted"

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.seen: list[list[dict[str, str]]] = []

    def complete(self, messages: list[dict[str, str]], **kw: Any) -> str:
        self.seen.append([dict(m) for m in messages])
        return self.replies.pop(0)


def test_file_mode_from_the_run_config_rewrites_the_whole_program_and_repairs_it(tmp_path: Path, embedder):
    """The run config's mode reaches the controller's proposer; the sandbox rejects a crashing file and the
    repair turn (the error appended to the same conversation) fixes it."""
    source, _ = prog.seed_source("episodic")
    crashing = source.replace("        return text\n", "        return undefined_helper(text)\n")
    fixed = source.replace("        return text\n", "        return text + ' latest preference'\n")
    coder = ScriptedCoder([f"```python\n{crashing}```", f"Here it is:\n```python\n{fixed}```"])
    ctl = Controller.create(
        tmp_path / "run",
        file_mode_config(),
        executor=InlineExecutor(),
        task_llm=coder,
        mutation_llm=coder,
        embedder=embedder,
    )
    try:
        proposal = ctl._propose("reflective", seed_parent(), [], random.Random(0))
    finally:
        ctl.close()
    assert proposal.target == "file" and proposal.meta["repairs"] == 1
    assert "text + ' latest preference'" in proposal.source
    first = coder.seen[0]
    assert "rewriting its whole Python file" in first[0]["content"] and "class `Program`" in first[0]["content"]
    assert source.strip() in first[1]["content"]  # the whole parent program is in the prompt
    assert "Book me a flight to Oslo" in first[1]["content"]  # and the diagnosed failures
    repair = coder.seen[1][-1]["content"]
    assert "undefined_helper" in repair and "Write the complete file again" in repair


# --------------------------------------------------------------------------- the real local 1.5B


@pytest.mark.llm
@pytest.mark.timeout(900)
def test_the_local_1_5b_rewrites_the_whole_seed_into_a_program_the_sandbox_accepts(
    tmp_path: Path, embedder, monkeypatch: pytest.MonkeyPatch
):
    """Issue 15: the whole-file mode is exercised with the local 1.5B coder, through the controller.

    The mode is for strong models. With the 1.5B, the whole path must work: the prompt, a whole-file
    reply, the dropped imports and tables put back, the sandbox validation a run applies before
    evaluating (import, interface, smoke run) and the repair turns. Its outcome is either a child that
    differs from its parent and passes that validation, or a clean one-line ProposalFailed naming the
    stage, after every repair turn; never a crash. (Measured: the 1.5B's rewrites of the episodic seed
    failed the smoke run on both runs of this test, with invented attributes; the replies are printed.)
    """
    cfg = file_mode_config(task=CODER, mutation=CODER)
    ctl = Controller.create(tmp_path / "run", cfg, executor=InlineExecutor(), embedder=embedder)
    parent = seed_parent()
    coder = ctl.mutation_llm
    replies: list[str] = []  # what the 1.5B wrote, printed
    ask = coder.complete

    def recording(messages: list[dict[str, str]], **kw: Any) -> str:
        replies.append(ask(messages, **kw))
        return replies[-1]

    monkeypatch.setattr(coder, "complete", recording)
    proposal = failure = None
    try:
        try:
            proposal = ctl._propose("reflective", parent, [], random.Random(0))
            ok, error, _ = ctl._check_source(proposal.source)  # checked again here, as a run validates records
        except ProposalFailed as exc:
            failure = exc
    finally:
        ctl.close()
    print("\n\n".join(f"--- reply {i + 1}:\n{r}" for i, r in enumerate(replies)))
    print(f"outcome: {'a valid child' if proposal is not None else f'rejected: {failure}'}")
    assert replies and all("class Program" in r for r in replies)  # each reply was a whole file
    if proposal is not None:
        assert ok, error
        assert proposal.target == "file" and proposal.operator == "reflective"
        assert proposal.source != parent.source and prog.class_name(proposal.source) == "Program"
        assert len(replies) == 1 + proposal.meta["repairs"] <= 1 + cfg.proposers.repair_attempts
    else:
        assert failure is not None and "\n" not in str(failure)
        tries = 1 + cfg.proposers.repair_attempts
        assert str(failure).endswith(f"(after {tries} tries)") and len(replies) == tries  # every repair turn used
