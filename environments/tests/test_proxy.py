"""The LLM-free proxy of the environments that know each question's grounding, on hand-made recalls.

No model is involved: a :class:`~agentmem.types.Recall` is built by hand from
the environment's own turns, and the proxy must say what it recalled of the
grounding (and, for toolprefs, whether a corrected preference lost to its
stale value). The recall-only run proves the first cascade stage asks no LLM.
"""

from __future__ import annotations

from typing import Any

import pytest

from agentmem.environment import ProxyScoring, proxy_metrics, supports_proxy
from agentmem.registry import load_environment
from agentmem.types import Recall, RecallItem
from agentmem_environments.bfcl import BFCLMemoryEnvironment
from agentmem_environments.locomo import LocomoEnvironment
from agentmem_environments.locomo.demo import DEMO_PATH
from agentmem_environments.toolprefs import PROXY_BETA, ToolPrefsEnvironment, f_beta
from tests.helpers import BagEmbedder


def _event_ids(task: Any) -> dict[str, str]:
    """dia_id -> event id, the way memories point at turns."""
    return {e.metadata["dia_id"]: e.id for s in task.sessions for e in s.events if "dia_id" in e.metadata}


def _items(task: Any, dia_ids: list[str]) -> list[RecallItem]:
    ids = _event_ids(task)
    return [RecallItem(content=f"turn {d}", event_ids=[ids[d]], tokens=3) for d in dia_ids]


def test_the_environments_that_know_the_grounding_declare_the_capability():
    for name in ("locomo", "toolprefs", "bfcl-memory"):
        assert supports_proxy(load_environment(name)), name
    for name in ("arc", "longmemeval"):
        assert not supports_proxy(load_environment(name)), name
    assert issubclass(LocomoEnvironment, ProxyScoring) and supports_proxy(LocomoEnvironment(data=str(DEMO_PATH)))


def test_locomo_proxy_is_the_evidence_memory_recalled():
    env = LocomoEnvironment(data=str(DEMO_PATH))
    task = env.tasks("all")[0]
    question = next(q for q in task.questions if len(q.evidence) >= 1)
    evidence = list(question.evidence)
    assert env.proxy_score(task, question, Recall()).score == 0.0
    full = env.proxy_score(task, question, Recall(items=_items(task, evidence)))
    assert full.score == 1.0 and full.evidence == 1.0
    other = next(d for d in _event_ids(task) if d not in evidence)
    assert env.proxy_score(task, question, Recall(items=_items(task, [other]))).score == 0.0
    no_evidence = question.model_copy(update={"evidence": []})
    assert env.proxy_score(task, no_evidence, Recall(items=_items(task, evidence))) is None


def _corrected_question(env: ToolPrefsEnvironment) -> tuple[Any, Any]:
    for task in env.tasks("all"):
        for q in task.questions:
            if q.metadata.get("stale") and not q.metadata.get("state_task"):
                return task, q
    raise AssertionError("no request needs a corrected preference")


def test_toolprefs_proxy_wants_the_current_preference_and_not_the_stale_one_first():
    env = ToolPrefsEnvironment(users=4, corrections=3)
    task, question = _corrected_question(env)
    grounding = question.metadata["grounding"]
    stale_of = question.metadata["stale_grounding"]
    slot = next(iter(stale_of))
    stale = stale_of[slot]
    others = [d for p, d in grounding.items() if p != slot]
    everything = list(dict.fromkeys(grounding.values()))

    assert env.proxy_score(task, question, Recall()).score == 0.0
    right = env.proxy_score(task, question, Recall(items=_items(task, everything)))
    assert right.score == 1.0 and not right.stale
    n = len(everything)
    # the stale statement recalled after its correction costs only focus: one line of n + 1 grounds nothing
    after = env.proxy_score(task, question, Recall(items=_items(task, everything + [stale])))
    assert not after.stale and after.score == pytest.approx(f_beta(1.0, n / (n + 1), PROXY_BETA)) and after.score < 1
    # ahead of it, the corrected preference earns nothing and the verdict says stale
    ahead = env.proxy_score(task, question, Recall(items=_items(task, [stale] + everything)))
    assert ahead.stale and ahead.score == pytest.approx(f_beta((n - 1) / n, n / (n + 1), PROXY_BETA))
    assert ahead.score < after.score and ahead.evidence == 1.0
    # the stale one instead of the correction
    instead = env.proxy_score(task, question, Recall(items=_items(task, [stale] + list(dict.fromkeys(others)))))
    assert instead.stale and instead.score < 1.0


def test_toolprefs_proxy_prefers_the_same_grounding_among_fewer_other_lines():
    env = ToolPrefsEnvironment(users=4, corrections=3)
    task, question = _corrected_question(env)
    grounding = list(dict.fromkeys(question.metadata["grounding"].values()))
    stale = set(question.metadata["stale_grounding"].values())
    others = [d for d in _event_ids(task) if d not in grounding and d not in stale]
    scores = [
        env.proxy_score(task, question, Recall(items=_items(task, grounding + others[:k]))).score for k in (0, 2, 6, 14)
    ]
    assert scores[0] == 1.0 and scores == sorted(scores, reverse=True) and scores[-1] < 0.5
    # focus never makes up for grounding not found: half the grounding alone scores below all of it among 2 others
    assert len(grounding) > 1
    half = env.proxy_score(task, question, Recall(items=_items(task, grounding[: len(grounding) // 2])))
    assert half.score < scores[1]
    assert f_beta(0.0, 1.0, PROXY_BETA) == 0.0 == f_beta(1.0, 0.0, PROXY_BETA)


def test_toolprefs_metrics_carry_the_proxy_facts_for_diagnosis():
    env = ToolPrefsEnvironment(users=4, corrections=3)
    task, question = _corrected_question(env)
    stale = next(iter(question.metadata["stale_grounding"].values()))
    recall = Recall(items=_items(task, [stale]), omitted=2)
    metrics = proxy_metrics(env.proxy_score(task, question, recall), recall)
    assert metrics["proxy"] == 0.0 and metrics["proxy/stale"] == 1.0 and metrics["recall/omitted"] == 2.0


def test_bfcl_proxy_is_the_answer_present_in_the_recall():
    env = BFCLMemoryEnvironment.__new__(BFCLMemoryEnvironment)  # no bfcl-eval install needed: the checker is stood in
    env._checker = lambda response, truth: {"valid": any(t.lower() in response.lower() for t in truth)}  # type: ignore[attr-defined]
    from agentmem.environment import Question, Session, Task
    from agentmem.types import Event

    events = [
        Event(id="e1", content="My dog is called Rex.", metadata={"dia_id": "D1:1"}),
        Event(id="e2", content="The weather is nice.", metadata={"dia_id": "D1:2"}),
    ]
    task = Task(id="t", sessions=[Session(id="s", events=events)])
    question = Question(
        id="q",
        text="What is my dog called?",
        answer="Rex",
        evidence=["D1:1"],
        metadata={"ground_truth": ["Rex"], "answer_in_source": True},
    )
    hit = env.proxy_score(task, question, Recall(items=[RecallItem(content="My dog is called Rex.", event_ids=["e1"])]))
    assert hit.score == 1.0 and hit.answer_in_recall and hit.evidence == 1.0
    miss = env.proxy_score(task, question, Recall(items=[RecallItem(content="The weather is nice.", event_ids=["e2"])]))
    assert miss.score == 0.0 and miss.answer_in_recall is False and miss.evidence == 0.0
    unknown = question.model_copy(update={"metadata": {"ground_truth": ["Rex"], "answer_in_source": False}})
    assert env.proxy_score(task, unknown, Recall()) is None


class NeverCalled:
    """A model that fails the test if anything asks it."""

    model = "never"

    def __init__(self) -> None:
        self.calls = 0

    def complete(self, *a: Any, **kw: Any) -> str:
        self.calls += 1
        raise AssertionError("the recall-only run called the LLM")

    def structured(self, *a: Any, **kw: Any) -> Any:
        self.calls += 1
        raise AssertionError("the recall-only run called the LLM")

    def call_tool(self, *a: Any, **kw: Any) -> Any:
        self.calls += 1
        raise AssertionError("the recall-only run called the LLM")


def test_a_recall_only_run_scores_the_proxy_without_any_llm_call(tmp_path):
    from agentmem.evaluation import run_eval

    llm = NeverCalled()
    env = ToolPrefsEnvironment(users=4)
    result = run_eval(
        env, ["episodic"], llm=llm, embedder=BagEmbedder(), split="train", limit=4, recall_only=True, workdir=tmp_path
    )
    questions = [q for t in result.tasks for q in t.questions]
    assert llm.calls == 0 and len(questions) == 4
    assert all("proxy" in q.metrics and "recall/omitted" in q.metrics for q in questions)
    assert any(q.metrics["proxy"] > 0 for q in questions)  # episodic recalls some of the grounding
    assert all(q.prediction.startswith("(no call") for q in questions)


def test_in_a_recall_only_run_memory_sees_sessions_and_queries_but_no_answer_or_grounding(tmp_path):
    """What the proxy needs stays with the environment: memory gets events and query texts, nothing else."""
    from typing import ClassVar

    from agentmem.evaluation import run_eval
    from agentmem.memory import MemoryProgram
    from agentmem.toolkit import Toolkit
    from agentmem.types import Query

    seen: list[str] = []

    class Recorder(MemoryProgram):
        name: ClassVar[str] = "recorder"

        def observe(self, event: Any) -> None:
            seen.append(event.model_dump_json())

        def recall(self, query: Query) -> Recall:
            seen.append(query.model_dump_json())
            return Recall()

    def factory(scope, stores, llm, embedder, params):
        return [Recorder(Toolkit(scope=scope, stores=stores, embedder=embedder, namespace="recorder"))]

    env = ToolPrefsEnvironment(users=4, corrections=3)
    llm = NeverCalled()
    result = run_eval(
        env,
        ["recorder"],
        llm=llm,
        embedder=BagEmbedder(),
        split="train",
        limit=6,
        recall_only=True,
        memory_factory=factory,
        workdir=tmp_path,
    )
    assert llm.calls == 0 and all(q.metrics["proxy"] == 0.0 for t in result.tasks for q in t.questions)
    text = "\n".join(seen)
    tasks = {t.id: t for t in env.tasks("train", limit=6)}
    for task_result in result.tasks:
        for q in tasks[task_result.task_id].questions:
            assert q.answer not in text  # the expected call, as the environment renders it
            assert '"grounding"' not in text and '"stale_grounding"' not in text and '"memory_params"' not in text
