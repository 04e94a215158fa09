"""bfcl-memory: BFCL v4's memory category, with its data and its own checker from ``bfcl-eval``.

The Berkeley Function Calling Leaderboard (v4) tests memory with five
simulated users ("scenarios": customer, finance, healthcare, notetaker,
student; 155 questions). For each, BFCL first plays a set of prerequisite
conversations (only the user's messages; the model answers and may write to
a memory it operates through tools: a key-value store, a vector store, or a
recursive summary), then asks questions that only that memory can answer
("How old am I?") and accepts the final answer when one of the ground-truth
strings occurs in it (``agentic_checker``, see :mod:`.checker`).

Here agentmem's memory plugin takes the place of BFCL's three tool-driven
memory backends, so there is no backend knob: a task is one scenario, its
prerequisite conversations are sessions the agent's memory observes turn by
turn (speaker ``user``; each conversation ends with
:meth:`~agentmem.environment.AgentLike.end_session`), then its questions are
put to :meth:`answer` and scored by BFCL's own checker.

Metrics per question: ``accuracy`` (BFCL's checker on the answer; the
primary metric). LLM-free proxies: ``answer_recall`` (BFCL's checker on what
memory recalled: did the context hold a ground-truth string at all; only for
the 138 of 155 questions whose source turn holds one verbatim, the others
need a conversion such as "3 pm" to "03:00 PM" or a count) and
``evidence_recall`` (did recall bring back the turn that BFCL quotes as the
answer's source, by ``dia_id``; every question has one). ``aggregate`` breaks accuracy down by
scenario.

Splits are by scenario, fixed by the seed (three train, one validation, one
test; seed 0 gives train = healthcare, finance, customer; validation =
student; test = notetaker). ``limit`` caps the number of questions.

Knobs (constructor arguments, or ``agentmem eval --data "bfcl_dir=/path"``;
``--data`` may also be just the path of a bfcl-eval install): see
:class:`Options`. Where the package comes from: see :mod:`.install`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agentmem.environment import (
    AgentLike,
    ProxyScore,
    ProxyScoring,
    Question,
    QuestionResult,
    Task,
    TaskResult,
    TaskSetEnvironment,
    check_top_k,
    parse_knobs,
    proxy_metrics,
)
from agentmem.types import Episode, Recall
from agentmem_environments.bfcl.checker import Checker, bfcl_correct, load_checker
from agentmem_environments.bfcl.install import BFCL_VERSION, ENV_DIR, BFCLInstallError, ensure_bfcl, find_bfcl
from agentmem_environments.bfcl.loader import load_tasks
from agentmem_environments.locomo import split_ids
from agentmem_environments.toolprefs.scoring import evidence_recall, recalled_dia_ids, turn_ids

__all__ = [
    "BFCLMemoryEnvironment",
    "Options",
    "BFCL_VERSION",
    "ENV_DIR",
    "BFCLInstallError",
    "ensure_bfcl",
    "find_bfcl",
]

log = logging.getLogger(__name__)

_RECALLED_TEXT_CHARS = 2000


class Options(BaseModel):
    """The environment's knobs."""

    bfcl_dir: str | None = Field(
        None,
        description=f"a bfcl-eval install (pip --target folder), its bfcl_eval package, or a gorilla checkout; "
        f"default: ${ENV_DIR}, an importable bfcl_eval, else the cached install",
    )
    install: bool = Field(True, description="install bfcl-eval (no dependencies) into the cache when it is not found")


class BFCLMemoryEnvironment(TaskSetEnvironment, ProxyScoring):
    """BFCL v4 memory: prerequisite conversations fill memory, then questions scored by BFCL's agentic checker."""

    name: ClassVar[str] = "bfcl-memory"
    description: ClassVar[str] = (
        "bfcl-memory: BFCL v4's memory category (5 simulated users, 155 questions; accuracy by BFCL's own "
        "checker; answer and evidence recall); data from the bfcl-eval package, installed without dependencies"
    )
    primary_metric: ClassVar[str] = "accuracy"

    def __init__(
        self, data: str | Path | None = None, *, seed: int = 0, top_k: int | None = None, **knobs: Any
    ) -> None:
        self.top_k = check_top_k("bfcl-memory", top_k)
        if data not in (None, "") and Path(str(data)).expanduser().is_dir():
            data, knobs = None, {"bfcl_dir": str(data), **knobs}  # --data may be just the install's path
        self.options = parse_knobs("bfcl-memory", Options, data, knobs)
        self.seed = int(seed)
        self._root: Path | None = None
        self._found = ""
        self._tasks: list[Task] | None = None
        self._splits: dict[str, list[str]] = {}
        self._checker: Checker | None = None

    # ------------------------------------------------------------------ data

    @property
    def root(self) -> Path:
        """The folder holding ``bfcl_eval/`` (found, or installed on first use)."""
        if self._root is None:
            self._root, self._found = find_bfcl(self.options.bfcl_dir, install=self.options.install)
        return self._root

    @property
    def checker(self) -> Checker:
        """BFCL's ``agentic_checker``, imported from :attr:`root`."""
        if self._checker is None:
            self._checker = load_checker(self.root)
        return self._checker

    def _load(self) -> list[Task]:
        if self._tasks is None:
            tasks = load_tasks(self.root)
            checker = self.checker  # a broken install fails here, before any model call
            for task in tasks:
                turns = {e.metadata["dia_id"]: e.content for s in task.sessions for e in s.events}
                for q in task.questions:
                    source = " ".join(turns[d] for d in q.evidence if d in turns)
                    q.metadata["answer_in_source"] = (
                        bool(source) and bfcl_correct(checker, source, q.metadata["ground_truth"]) == 1.0
                    )
            self._splits = split_ids([t.id for t in tasks], self.seed)
            self._tasks = tasks
        return self._tasks

    @property
    def source(self) -> str:
        """Where the data came from: the install folder and how it was found."""
        self._load()
        return f"bfcl-eval at {self.root} ({self._found})"

    # ------------------------------------------------------------------ protocol

    def run_task(self, task: Task, agent: AgentLike) -> TaskResult:
        checker = self.checker
        started = time.perf_counter()
        for session in task.sessions:
            for event in session.events:
                agent.observe(event)
            topic = session.events[0].metadata.get("topic") if session.events else None
            agent.end_session(Episode(id=session.id, task=task.id, events=session.events, metadata={"topic": topic}))
        turns = turn_ids(task)
        results: list[QuestionResult] = []
        for question in task.questions:
            answer = agent.answer(question.text, context={"category": question.category})
            truth = list(question.metadata.get("ground_truth") or [question.answer])
            recalled_text = answer.recall.text()
            items = answer.recall.items if self.top_k is None else answer.recall.items[: self.top_k]
            metrics: dict[str, float] = {"accuracy": bfcl_correct(checker, answer.text, truth)}
            if question.metadata.get("answer_in_source"):
                metrics["answer_recall"] = bfcl_correct(checker, recalled_text, truth)
            er = evidence_recall(recalled_dia_ids(items, turns), question.evidence)
            if er is not None:
                metrics["evidence_recall"] = er
            metrics.update(proxy_metrics(self.proxy_score(task, question, answer.recall, turns), answer.recall))
            results.append(
                QuestionResult(
                    question_id=question.id,
                    category=question.category,
                    question=question.text,
                    reference=" | ".join(truth),
                    prediction=answer.text,
                    metrics=metrics,
                    recalled=recalled_text[:_RECALLED_TEXT_CHARS],
                )
            )
            log.debug("%s %r -> %r %s", question.id, truth, answer.text, metrics)
        return TaskResult(task_id=task.id, questions=results, seconds=round(time.perf_counter() - started, 3))

    def proxy_score(
        self, task: Task, question: Question, recall: Recall, turns: dict[str, str] | None = None
    ) -> ProxyScore | None:
        """Whether the answer is in what memory recalled, by BFCL's own checker (``None`` where the source lacks it)."""
        if not question.metadata.get("answer_in_source"):
            return None
        truth = list(question.metadata.get("ground_truth") or [question.answer])
        found = bfcl_correct(self.checker, recall.text(), truth) == 1.0
        er = evidence_recall(
            recalled_dia_ids(recall.items, turns if turns is not None else turn_ids(task)), question.evidence
        )
        return ProxyScore(score=float(found), evidence=er, answer_in_recall=found)

    def aggregate(self, results: list[TaskResult]) -> dict[str, float]:
        questions = [q for r in results for q in r.questions]
        out: dict[str, float] = {"questions": float(len(questions))}
        if not questions:
            return out
        out["accuracy"] = _mean(q.metrics.get("accuracy", 0.0) for q in questions)
        for key in ("answer_recall", "evidence_recall"):
            values = [q.metrics[key] for q in questions if key in q.metrics]
            if values:
                out[key] = _mean(values)
        for scenario in dict.fromkeys(q.category for q in questions):
            group = [q for q in questions if q.category == scenario]
            out[f"accuracy/{scenario}"] = _mean(q.metrics.get("accuracy", 0.0) for q in group)
            out[f"n/{scenario}"] = float(len(group))
        return out


def _mean(values: Any) -> float:
    items = list(values)
    return float(sum(items) / len(items)) if items else 0.0
