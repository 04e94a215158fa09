"""Diagnosed reflection: failures classified without an LLM, and the prompt aimed at the largest class."""

from __future__ import annotations

import random
from typing import Any

from agentmem.environment import QuestionResult
from agentmem_evolve import program as prog
from agentmem_evolve.diagnosis import Diagnosis, classify, counts_from_metrics, diagnose, prompt_view
from agentmem_evolve.evaluator import pick_traces
from agentmem_evolve.proposers import ParentView, ReflectiveProposer, TaskInfo


def result(
    qid: str, score: float, *, reference: str = "aisle", prediction: str = "window", **facts: float
) -> QuestionResult:
    return QuestionResult(
        question_id=qid,
        category="travel",
        question=f"request {qid}",
        reference=reference,
        prediction=prediction,
        metrics={"param_accuracy": score, **facts},
        recalled=f"recalled for {qid}",
    )


def test_each_class_on_hand_made_failures():
    assert classify({"proxy/evidence": 0.0, "recall/omitted": 0.0}, "aisle", "window", 0.0) == "not_recalled"
    assert classify({"proxy/evidence": 0.5, "recall/omitted": 4.0}, "aisle", "window", 0.0) == "cut_by_budget"
    assert classify({"proxy/evidence": 1.0, "proxy/stale": 1.0}, "aisle", "window", 0.0) == "stale_recalled"
    assert classify({"proxy/evidence": 1.0, "proxy/stale": 0.0}, "aisle", "window", 0.0) == "answer_wrong"
    assert classify({"proxy/evidence": 1.0}, "aisle", "(no call: the model gave no JSON)", 0.0) == "wrong_form"
    assert classify({"proxy/evidence": 1.0}, "Rex", "My dog is called Rex, I think", 0.5) == "wrong_form"
    assert classify({"proxy/evidence": 1.0, "tool_match": 0.0}, "book_flight(seat='aisle')", "x", 0.0) == "wrong_form"
    # bfcl-style: the answer itself in the recall decides, not the evidence turns
    assert classify({"proxy/answer_in_recall": 0.0, "proxy/evidence": 1.0}, "Rex", "Max", 0.0) == "not_recalled"
    assert classify({"proxy/answer_in_recall": 1.0}, "Rex", "Max", 0.0) == "answer_wrong"
    # no grounding known, and successes are no failures
    assert classify({}, "Rex", "Max", 0.0) == "unclassified"
    assert classify({"proxy/evidence": 0.0}, "Rex", "Rex", 1.0) is None


def test_diagnose_counts_every_failure_and_keeps_two_examples_per_class():
    questions = [
        result("a", 0.0, **{"proxy/evidence": 1.0, "proxy/stale": 1.0}),
        result("b", 0.0, **{"proxy/evidence": 1.0, "proxy/stale": 1.0}),
        result("c", 0.5, **{"proxy/evidence": 1.0, "proxy/stale": 1.0}),
        result("d", 0.0, **{"proxy/evidence": 0.0, "recall/omitted": 0.0}),
        result("e", 1.0, **{"proxy/evidence": 1.0}),
    ]
    diagnosis = diagnose(questions, "param_accuracy")
    assert diagnosis.counts == {"stale_recalled": 3, "not_recalled": 1}
    assert diagnosis.largest == "stale_recalled"
    assert [t["question"] for t in diagnosis.examples["stale_recalled"]] == ["request a", "request b"]
    assert diagnosis.metrics() == {"diagnosis/stale_recalled": 3.0, "diagnosis/not_recalled": 1.0}
    assert counts_from_metrics([diagnosis.metrics(), {"diagnosis/not_recalled": 2.0, "f1": 0.3}]) == {
        "stale_recalled": 3,
        "not_recalled": 3,
    }
    traces = pick_traces(questions, "param_accuracy", 5, diagnosis=diagnosis)
    assert [t["diagnosis"] for t in traces[:2]] == ["stale_recalled", "stale_recalled"]
    assert len({t["question"] for t in traces}) == len(traces)
    assert Diagnosis(counts={"unclassified": 4}).largest == "unclassified"


class Recording:
    """Stands in for the mutation model: keeps the prompt, answers with a valid hook."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        self.messages = list(messages)
        return (
            "```python\ndef after_recall(self, query, recall):\n    recall.items = "
            "list(reversed(recall.items))\n    return recall\n```"
        )


def test_the_reflective_prompt_shows_the_counts_and_two_cases_of_the_largest_class():
    source, meta = prog.seed_source("episodic")
    traces = [
        {
            "question": "Book a flight to Oslo",
            "reference": "seat=aisle",
            "prediction": "seat=window",
            "recalled": "I like window seats",
            "score": 0.0,
            "category": "travel",
            "diagnosis": "stale_recalled",
        },
        {
            "question": "Order me dinner",
            "reference": "diet=vegan",
            "prediction": "diet=vegetarian",
            "recalled": "I am vegetarian",
            "score": 0.0,
            "category": "food",
            "diagnosis": "stale_recalled",
        },
        {
            "question": "Set the heating",
            "reference": "temp=21",
            "prediction": "temp=18",
            "recalled": "",
            "score": 0.0,
            "category": "home",
            "diagnosis": "not_recalled",
        },
    ]
    parent = ParentView(
        id="p1",
        source=source,
        score=0.4,
        meta=meta,
        traces=traces,
        diagnosis={"stale_recalled": 7, "not_recalled": 2, "cut_by_budget": 1},
    )
    view = prompt_view(parent.diagnosis, parent.traces)
    assert view is not None and view["largest"] == "stale_recalled" and len(view["examples"]) == 2
    for target in ("after_recall", "usage"):
        model = Recording()
        proposer = ReflectiveProposer(
            model, TaskInfo(env="toolprefs", description="preferences", metric="param_accuracy")
        )
        if target == "usage":
            model.complete = lambda messages, _model=model, **kw: (
                _model.messages.extend(messages)  # type: ignore[method-assign]
                or "```text\nThe latest statement wins.\n{{ context }}\n```"
            )
        proposal = proposer.propose(parent, random.Random(0), target=target)
        prompt = model.messages[1]["content"]
        assert "an outdated (corrected) value was recalled ahead of the current one: 7" in prompt
        assert "the needed memory was not recalled: 2" in prompt
        assert "the needed memory was found but cut by the token budget: 1" in prompt
        assert "Book a flight to Oslo" in prompt and "Order me dinner" in prompt
        assert "Set the heating" not in prompt  # only cases of the largest class are shown
        assert "Aim the change at the largest class" in prompt and "prefer the newest" in prompt
        assert proposal.meta["aimed_at"] == "stale_recalled"


def test_without_a_diagnosis_the_prompt_shows_plain_failures():
    source, meta = prog.seed_source("episodic")
    traces = [
        {
            "question": "Set the heating",
            "reference": "temp=21",
            "prediction": "temp=18",
            "recalled": "",
            "score": 0.0,
            "category": "home",
        }
    ]
    model = Recording()
    proposer = ReflectiveProposer(model, TaskInfo(env="arc", description="puzzles", metric="accuracy"))
    proposer.propose(
        ParentView(id="p", source=source, score=0.1, meta=meta, traces=traces), random.Random(0), target="after_recall"
    )
    prompt = model.messages[1]["content"]
    assert "Cases the agent got wrong" in prompt and "Set the heating" in prompt and "largest class" not in prompt
