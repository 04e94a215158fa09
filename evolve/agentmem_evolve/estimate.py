"""What a run config will cost before it runs: the questions of each stage and a worst-case wall time.

A run on a CPU is dominated by the task model answering questions, one
after another (``concurrency = 1`` on a 2-core machine). Given the seconds
one question takes, the cost of a run follows from its config: the seeds are
scored on the minibatch and the select split, each iteration sends at most
``ceil(children * proxy_keep)`` children past the LLM-free proxy stage (and
one more that the proxy cannot tell from its parent) to
the minibatch and the select split, and at the end the best and every seed
answer the test split. The wall-clock budget is checked between steps, so a
run can overrun ``max_wall_seconds`` by the one step it had started (a
select-split evaluation) and then always pays the test stage.

The numbers are an upper bound under the assumptions said in
:class:`CostEstimate` (every child past the proxy promoted, no LLM cache
hits), not a forecast: `agentmem evolve run --check-config` prints them so
that a run's size can be checked against the hours it has, and
``benchmarks/evolve/*.toml`` are held to 2 hours by a test.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, Field

from agentmem_evolve.proxy import UNSEEN_PLACES

__all__ = [
    "MUTATION_SECONDS",
    "PROXY_SECONDS",
    "SECONDS_PER_QUESTION",
    "CostEstimate",
    "estimate_cost",
    "stage_questions",
]

#: seconds the 0.5B task model takes per question on this project's 2-core machine, rounded up from the
#: measured 8.7 s per toolprefs request (436 s of agent.act for 50 requests) and 8.1 s per LoCoMo question
#: (325 s for 40): benchmarks/results/agent-placement/*-memory-in-message.json, with other work on the cores
SECONDS_PER_QUESTION = 9.0
#: seconds one proxy-stage evaluation (sandbox start, ingestion with cached embeddings, recall, no LLM) is
#: assumed to take: a guess, about the cost of re-ingesting one LoCoMo conversation
#: (benchmarks/results/ingest.json: 0.5 s with cached vectors, 10 s without) plus worker start-up and a few
#: hundred recalls
PROXY_SECONDS = 60.0
#: seconds one reflective proposal by the 1.5B mutation model is assumed to take, repairs included (a guess)
MUTATION_SECONDS = 240.0


class CostEstimate(BaseModel):
    """A run's size and its worst-case wall time, in seconds, with one task model answering sequentially.

    Worst case: every child that passes the proxy stage is promoted to the
    select split, no answer comes from the LLM cache, and each reflective
    proposal takes ``mutation_seconds``. Structural, mutate and merge
    proposals cost no model time.
    """

    questions: dict[str, int] = Field(description="questions per stage: proxy (no LLM), screen, select, test")
    seeds: int
    proxy: bool = Field(description="whether the run has the LLM-free proxy stage")
    children_per_iteration: int
    children_past_proxy: int = Field(description="children per iteration that reach the LLM-scored stages")
    seconds_per_question: float
    seeds_seconds: float = Field(description="the seeds: proxy, minibatch and select split")
    iteration_seconds: float = Field(description="one iteration: proposals, proxy stage, minibatch, select split")
    longest_step_seconds: float = Field(description="the select-split step the wall budget cannot interrupt")
    test_seconds: float = Field(description="the best and every seed on the test split")
    iterations: int = Field(description="the iterations the run can start (budget.iterations, or fewer by wall time)")
    bound: str = Field(description="what stops the search first: 'iterations' or 'max_wall_seconds'")
    total_seconds: float = Field(description="worst-case wall time of the whole run")

    def lines(self) -> list[tuple[str, str]]:
        """(what, value) rows for a table."""

        def hours(s: float) -> str:
            return f"{s:,.0f} s ({s / 3600:.2f} h)"

        q = self.questions
        return [
            ("questions", f"proxy {q['proxy']} (no LLM), screen {q['screen']}, select {q['select']}, test {q['test']}"),
            ("seconds per question (assumed)", f"{self.seconds_per_question:g}"),
            ("children per iteration", f"{self.children_per_iteration}, {self.children_past_proxy} past the proxy"),
            ("seeds (proxy, screen, select)", hours(self.seeds_seconds)),
            ("one iteration, worst case", hours(self.iteration_seconds)),
            ("iterations started", f"{self.iterations} (bound: {self.bound})"),
            ("step the wall budget cannot interrupt", hours(self.longest_step_seconds)),
            ("test stage (best and seeds)", hours(self.test_seconds)),
            ("whole run, worst case", hours(self.total_seconds)),
        ]


def stage_questions(config: Any) -> dict[str, int]:
    """The questions each stage of ``config`` scores, counted from the environment's splits (no LLM, no run).

    The test split of a generated environment is drawn from a held-out seed
    when the run starts; it holds as many users as the usual test split, so
    the usual one is counted.
    """
    from agentmem_evolve.evaluator import make_env

    env = config.environment
    environment = make_env(env.name, env.data, env.options, config.seed)

    def count(split: str, limit: int | None) -> int:
        return sum(len(t.questions) for t in environment.tasks(split, limit))

    return {
        "proxy": count(env.screen_split, config.cascade.proxy_questions),
        "screen": count(env.screen_split, env.minibatch),
        "select": count(env.select_split, env.validation_limit),
        "test": count(env.test_split, env.test_limit),
    }


def _has_proxy(config: Any) -> bool:
    if not config.cascade.proxy:
        return False
    from agentmem.environment import supports_proxy
    from agentmem.registry import load_environment

    return supports_proxy(load_environment(config.environment.name))


def estimate_cost(
    config: Any,
    questions: dict[str, int] | None = None,
    *,
    seconds_per_question: float | None = None,
    proxy_seconds: float = PROXY_SECONDS,
    mutation_seconds: float = MUTATION_SECONDS,
    proxy: bool | None = None,
) -> CostEstimate:
    """The worst-case cost of running ``config`` (a :class:`~agentmem_evolve.config.RunConfig`).

    ``questions`` (per stage) defaults to :func:`stage_questions`; ``proxy``
    to whether the config asks for the proxy stage and the environment has one.
    """
    q = questions if questions is not None else stage_questions(config)
    has_proxy = _has_proxy(config) if proxy is None else proxy
    # the caller's speed, else the one the config was sized at, else the project's measured default
    spq = seconds_per_question or getattr(config.budget, "seconds_per_question", None) or SECONDS_PER_QUESTION
    seeds = len(config.seeds)
    k = config.proposers.children_per_iteration
    # the best fraction, and the child the proxy could not tell from its parent (proxy.UNSEEN_PLACES)
    past = min(k, max(1, math.ceil(k * config.cascade.proxy_keep)) + UNSEEN_PLACES) if has_proxy else k
    weights = config.proposers.weights
    reflective_share = weights.get("reflective", 0.0) / sum(weights.values())
    proxy_each = proxy_seconds if has_proxy else 0.0

    seeds_seconds = seeds * (proxy_each + (q["screen"] + q["select"]) * spq)
    longest = past * q["select"] * spq
    iteration = (
        k * reflective_share * mutation_seconds
        + k * proxy_each
        + past * q["screen"] * spq
        + q["screen"] * spq  # a parent scored on the minibatch for the first time
        + longest
    )
    test = (seeds + 1) * q["test"] * spq
    budget = config.budget
    iterations, bound = budget.iterations, "iterations"
    search = seeds_seconds + iterations * iteration
    wall = budget.max_wall_seconds
    if wall is not None and iteration > 0:
        # an iteration starts while the elapsed time is under the budget; the step in flight then finishes
        started = max(0, math.ceil((wall - seeds_seconds) / iteration))
        if started < iterations:
            iterations, bound = started, "max_wall_seconds"
            search = min(seeds_seconds + started * iteration, max(wall, seeds_seconds) + longest)
    return CostEstimate(
        questions=q,
        seeds=seeds,
        proxy=has_proxy,
        children_per_iteration=k,
        children_past_proxy=past,
        seconds_per_question=spq,
        seeds_seconds=round(seeds_seconds, 1),
        iteration_seconds=round(iteration, 1),
        longest_step_seconds=round(longest, 1),
        test_seconds=round(test, 1),
        iterations=iterations,
        bound=bound,
        total_seconds=round(search + test, 1),
    )
