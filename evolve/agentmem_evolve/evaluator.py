"""One evaluation of one candidate program: the unit of work executors run.

An :class:`EvalJob` is plain data (it pickles for a process pool and travels
to Ray workers); :func:`run_job` runs it in whatever process receives it.
That process is trusted - it runs the environment and the agent - while the
candidate's code runs in a sandboxed worker process of its own
(:mod:`agentmem_evolve.sandbox`), whose LLM and embedding calls come back
here, to the process that holds the model access.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentmem.environment import Split
from agentmem.types import DEFAULT_RECALL_BUDGET
from agentmem_evolve.proxy import PROMPT_DIGEST, prompt_digest

Stage = Literal["proxy", "screen", "select", "test"]

_EMBEDDER: Any = None
_LLMS: dict[tuple[str, str | None], Any] = {}


class EvalJob(BaseModel):
    """Everything needed to score one program on one slice of an environment."""

    program_id: str
    source: str
    stage: Stage
    env: str
    split: Split
    limit: int | None = None
    data: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    model: str = "local"
    api_base: str | None = None
    budget_tokens: int = DEFAULT_RECALL_BUDGET
    sandbox: dict[str, Any] = Field(default_factory=dict)
    max_traces: int = 5

    @property
    def recall_only(self) -> bool:
        """The proxy stage: ingest and recall only, scored by the environment's LLM-free proxy."""
        return self.stage == "proxy"

    def key(self) -> str:
        """Identifies the question set: two jobs with the same key score the same questions."""
        return slice_key(self.env, self.split, self.limit, self.data, self.options, self.seed)


def slice_key(env: str, split: str, limit: int | None, data: str | None, options: dict[str, Any], seed: int) -> str:
    raw = json.dumps([env, split, limit, data, options, seed], sort_keys=True, default=str)
    return f"{split}:{limit if limit is not None else 'all'}:" + hashlib.sha256(raw.encode()).hexdigest()[:10]


class EvalOutcome(BaseModel):
    """What one job produced; becomes an evaluation row in the archive."""

    program_id: str
    stage: Stage
    split: str
    key: str
    # "unavailable": the task model could not be reached, so the job has no result (never recorded; the run stops)
    status: Literal["ok", "failed", "unavailable"] = "ok"
    reason: str | None = None
    failure_kind: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    score: float = 0.0
    per_instance: dict[str, float] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)
    traces: list[dict[str, Any]] = Field(default_factory=list)
    descriptors: dict[str, float] = Field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""


def _shared_embedder() -> Any:
    global _EMBEDDER
    if _EMBEDDER is None:
        from agentmem.embedding_cache import shared_embedder

        _EMBEDDER = shared_embedder()  # memo + the user's on-disk store, shared with every process and run
    return _EMBEDDER


def _llm(model: str, api_base: str | None) -> Any:
    key = (model, api_base)
    if key not in _LLMS:
        from agentmem.llm import LLM

        _LLMS[key] = LLM.from_settings(model, api_base)
    return _LLMS[key]


def make_env(name: str, data: str | None, options: dict[str, Any], seed: int) -> Any:
    """The environment with its knobs (``options``) passed as keyword arguments."""
    from agentmem.evaluation import make_environment
    from agentmem.registry import load_environment

    if not options:
        return make_environment(name, data=data, seed=seed)
    cls = load_environment(name)
    kwargs: dict[str, Any] = {"seed": seed, **options}
    if data is not None:
        kwargs["data"] = data
    return cls(**kwargs)


def _now() -> str:
    from datetime import datetime

    return datetime.now(UTC).isoformat(timespec="seconds")


def run_job(job: EvalJob, *, llm: Any = None, embedder: Any = None) -> EvalOutcome:
    """Score ``job.source`` on its slice; a failing candidate is an outcome, never an exception.

    So is an outage of the task model, with the status "unavailable": the
    controller records no evaluation for it and stops the run resumably.
    """
    from agentmem.errors import LLMUnavailable
    from agentmem.evaluation import run_eval
    from agentmem_evolve.sandbox import CandidateFailed, SandboxLimits, sandboxed_factory

    started = _now()
    t0 = time.perf_counter()
    outcome = EvalOutcome(
        program_id=job.program_id, stage=job.stage, split=job.split, key=job.key(), started_at=started
    )
    llm = llm or _llm(job.model, job.api_base)
    embedder = embedder or _shared_embedder()
    try:
        environment = make_env(job.env, job.data, job.options, job.seed)
        metric = environment.primary_metric
        if job.recall_only:
            from agentmem.environment import PROXY_METRIC, supports_proxy

            if not supports_proxy(environment):
                raise ValueError(f"{job.env} has no LLM-free proxy; turn the proxy stage off ([cascade] proxy = false)")
            metric = PROXY_METRIC
        limits = SandboxLimits(**job.sandbox)
        shown: list[str] = []
        result = run_eval(
            environment,
            [f"candidate-{job.program_id}"],
            llm=llm,
            embedder=embedder,
            split=job.split,
            limit=job.limit,
            budget_tokens=job.budget_tokens,
            seed=job.seed,
            memory_factory=sandboxed_factory(job.source, limits),
            recall_only=job.recall_only,
            shown=shown if job.recall_only else None,
        )
    except LLMUnavailable as exc:  # the model's outage, not the candidate's failure: no score either way
        outcome.status = "unavailable"
        outcome.reason = str(exc)
        outcome.cost = {"seconds": round(time.perf_counter() - t0, 2)}
        outcome.finished_at = _now()
        return outcome
    except CandidateFailed as exc:
        outcome.status = "failed"
        outcome.reason = str(exc)
        outcome.failure_kind = getattr(exc, "kind", None)
        outcome.cost = {"seconds": round(time.perf_counter() - t0, 2)}
        outcome.finished_at = _now()
        return outcome
    except Exception as exc:
        outcome.status = "failed"
        outcome.reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        outcome.failure_kind = "error"
        outcome.cost = {"seconds": round(time.perf_counter() - t0, 2)}
        outcome.finished_at = _now()
        return outcome
    questions = [q for task in result.tasks for q in task.questions]
    if job.recall_only:
        _score_proxy(outcome, result, metric)
        if shown:
            outcome.metrics[PROMPT_DIGEST] = prompt_digest(shown)
    else:
        outcome.metrics = result.metrics
        outcome.score = round(result.primary(metric), 4)
        outcome.per_instance = {
            f"{task.task_id}/{q.question_id}": float(q.metrics.get(metric, 0.0))
            for task in result.tasks
            for q in task.questions
        }
        proxies = [q.metrics["proxy"] for q in questions if "proxy" in q.metrics]
        if proxies:  # the proxy comes free with every LLM-scored run of an environment that has one
            outcome.metrics["proxy"] = round(sum(proxies) / len(proxies), 4)
    n = max(1, len(questions))
    outcome.cost = {
        "llm_calls": result.cost.llm_calls,
        "cache_hits": result.cost.cache_hits,
        "prompt_tokens": result.cost.prompt_tokens,
        "completion_tokens": result.cost.completion_tokens,
        "counted_tokens": result.cost.counted_tokens,
        "seconds": result.cost.seconds,
        "questions": len(questions),
    }
    outcome.descriptors = {
        "tokens": round(result.cost.counted_tokens / n, 1),  # the program's price, however warm the LLM cache
        "recall_items": round(sum(len([ln for ln in q.recalled.splitlines() if ln.strip()]) for q in questions) / n, 2),
        "recall_chars": round(sum(len(q.recalled) for q in questions) / n, 1),
    }
    if job.recall_only:
        outcome.traces = []
    else:
        from agentmem_evolve.diagnosis import diagnose

        diagnosis = diagnose(questions, metric)
        outcome.metrics.update(diagnosis.metrics())
        outcome.traces = pick_traces(questions, metric, job.max_traces, diagnosis=diagnosis)
    outcome.finished_at = _now()
    return outcome


def _score_proxy(outcome: EvalOutcome, result: Any, metric: str) -> None:
    """A proxy-stage outcome: the mean proxy over the questions that have grounding to check."""
    per = {
        f"{task.task_id}/{q.question_id}": float(q.metrics[metric])
        for task in result.tasks
        for q in task.questions
        if metric in q.metrics
    }
    outcome.per_instance = per
    outcome.score = round(sum(per.values()) / len(per), 4) if per else 0.0
    outcome.metrics = {
        metric: outcome.score,
        "questions": float(sum(len(t.questions) for t in result.tasks)),
        "proxy_questions": float(len(per)),
    }
    for key in ("proxy/evidence", "proxy/stale"):
        values = [q.metrics[key] for task in result.tasks for q in task.questions if key in q.metrics]
        if values:
            outcome.metrics[key] = round(sum(values) / len(values), 4)


def pick_traces(questions: list[Any], metric: str, limit: int, *, diagnosis: Any = None) -> list[dict[str, Any]]:
    """A few failures (lowest score first) and a success or two, for the reflective proposer.

    With a :class:`~agentmem_evolve.diagnosis.Diagnosis`, two cases of its
    largest class come first and every failure carries its ``diagnosis``.
    """
    from agentmem_evolve.diagnosis import classify, trace_of

    ranked = sorted(questions, key=lambda q: q.metrics.get(metric, 0.0))
    failures = [q for q in ranked if q.metrics.get(metric, 0.0) < 1.0][: max(1, limit - 2)]
    successes = [q for q in reversed(ranked) if q.metrics.get(metric, 0.0) >= 0.999][:2]
    out: list[dict[str, Any]] = []
    largest = diagnosis.largest if diagnosis is not None else None
    if largest is not None:
        out.extend(diagnosis.examples.get(largest, [])[:2])
    seen = {(t["question"], t["prediction"]) for t in out}
    for q in failures + successes:
        trace = trace_of(q, metric)
        if (trace["question"], trace["prediction"]) in seen:
            continue
        label = classify(q.metrics, q.reference, q.prediction, float(q.metrics.get(metric, 0.0)))
        if label is not None and diagnosis is not None:
            trace["diagnosis"] = label
        out.append(trace)
    return out[:limit]
