"""A first, real evolution loop over declared parameters.

Generation 0 is the program's defaults (the seed). Each generation picks
parents by score-softmax, makes children by mutating one or two declared
parameters, scores every new child with the same machinery as
`agentmem eval` (real model, real environment), and keeps the best
``population`` (elitist). Candidates already scored are never scored twice.
Every evaluation is appended to ``archive.jsonl`` in the run directory.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path
from typing import Any, Callable

from pydantic import BaseModel, Field

from agentmem.evaluation import CachingEmbedder, EvalResult, make_environment, run_eval
from agentmem.registry import load_memory
from agentmem.toolkit import ChatModel
from agentmem_evolve.space import ParamSpace


class Candidate(BaseModel):
    """One memory configuration and how it scored."""

    id: int
    generation: int
    parent: int | None = None
    params: dict[str, Any]
    score: float
    tokens: int = 0
    seconds: float = 0.0
    metrics: dict[str, float] = Field(default_factory=dict)

    def key(self) -> str:
        return json.dumps(self.params, sort_keys=True)


class EvolutionResult(BaseModel):
    env: str
    memory: str
    metric: str
    best: Candidate
    seed: Candidate
    candidates: list[Candidate]
    final: dict[str, dict[str, float]] = Field(default_factory=dict)
    llm_calls: int = 0
    tokens: int = 0
    seconds: float = 0.0


def _softmax_pick(pool: list[Candidate], rng: random.Random, temperature: float) -> Candidate:
    best = max(c.score for c in pool)
    weights = [math.exp((c.score - best) / max(temperature, 1e-6)) for c in pool]
    return rng.choices(pool, weights=weights, k=1)[0]


def evolve(
    env: str,
    memory: str,
    *,
    llm: ChatModel,
    generations: int = 3,
    children: int = 3,
    population: int = 4,
    split: str = "train",
    limit: int | None = 20,
    final_split: str | None = None,
    data: str | None = None,
    seed: int = 0,
    temperature: float = 0.05,
    budget_tokens: int = 1024,
    run_dir: Path | None = None,
    on_candidate: Callable[[Candidate, Candidate], None] | None = None,
) -> EvolutionResult:
    """Evolve the declared parameters of ``memory`` on ``env``; return the archive and the best."""
    from agentmem.embeddings import default_embedder

    program = load_memory(memory)
    space = ParamSpace(program.Params)
    environment = make_environment(env, data=data, seed=seed)
    metric = environment.primary_metric
    embedder = CachingEmbedder(default_embedder())
    rng = random.Random(seed)
    archive_path = None
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
        archive_path = run_dir / "archive.jsonl"
    meter = getattr(llm, "meter", None)
    calls0 = meter.total().calls if meter else 0
    tokens0 = (meter.total().prompt_tokens + meter.total().completion_tokens) if meter else 0
    started = time.perf_counter()
    scored: dict[str, Candidate] = {}
    all_candidates: list[Candidate] = []

    def score(params: dict[str, Any], generation: int, parent: int | None, on_split: str = split) -> tuple[Candidate, EvalResult]:
        from agentmem.llm.context import call_context

        with call_context(candidate=str(len(all_candidates))):
            result = run_eval(
                environment, [memory], llm=llm, embedder=embedder, params={memory: params},
                split=on_split, limit=limit, budget_tokens=budget_tokens,  # type: ignore[arg-type]
            )
        cand = Candidate(
            id=len(all_candidates), generation=generation, parent=parent, params=params,
            score=round(result.primary(metric), 4), tokens=result.cost.tokens,
            seconds=result.cost.seconds, metrics=result.metrics,
        )
        return cand, result

    def record(cand: Candidate) -> None:
        all_candidates.append(cand)
        scored[cand.key()] = cand
        if archive_path is not None:
            with open(archive_path, "a") as handle:
                handle.write(cand.model_dump_json() + "\n")

    seed_cand, _ = score(space.default(), 0, None)
    record(seed_cand)
    if on_candidate:
        on_candidate(seed_cand, seed_cand)
    for generation in range(1, generations + 1):
        pool = sorted(scored.values(), key=lambda c: (-c.score, c.tokens))[:population]
        for _ in range(children):
            parent = _softmax_pick(pool, rng, temperature)
            child_params = parent.params
            for _attempt in range(20):  # find a configuration not scored yet
                child_params = space.mutate(parent.params, rng, changes=rng.choice([1, 1, 2]))
                if json.dumps(child_params, sort_keys=True) not in scored:
                    break
            else:
                continue
            cand, _ = score(child_params, generation, parent.id)
            record(cand)
            if on_candidate:
                best_now = max(scored.values(), key=lambda c: (c.score, -c.tokens))
                on_candidate(cand, best_now)
    best = max(scored.values(), key=lambda c: (c.score, -c.tokens))
    final: dict[str, dict[str, float]] = {}
    if final_split:
        for label, cand in (("seed", seed_cand), ("best", best)):
            result = run_eval(
                environment, [memory], llm=llm, embedder=embedder, params={memory: cand.params},
                split=final_split, limit=limit, budget_tokens=budget_tokens,  # type: ignore[arg-type]
            )
            final[label] = result.metrics
    total_calls = (meter.total().calls - calls0) if meter else 0
    total_tokens = ((meter.total().prompt_tokens + meter.total().completion_tokens) - tokens0) if meter else 0
    outcome = EvolutionResult(
        env=environment.name, memory=memory, metric=metric, best=best, seed=seed_cand,
        candidates=all_candidates, final=final, llm_calls=total_calls, tokens=total_tokens,
        seconds=round(time.perf_counter() - started, 1),
    )
    if run_dir is not None:
        (run_dir / "result.json").write_text(outcome.model_dump_json(indent=2))
    return outcome
