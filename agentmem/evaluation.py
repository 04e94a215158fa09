"""Running one memory configuration through one environment, and what it cost.

This is the machinery behind `agentmem eval` and the fitness function of
`agentmem evolve`: every task runs with a fresh, private store (its own
scope and directory), the same LLM and embedder, and the LLM meter's delta
becomes the cost of the run.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentmem.agent import build_memory_stack
from agentmem.embedding_cache import CachingEmbedder  # noqa: F401 - its old home; evolution imports it from here
from agentmem.environment import Action, AgentLike, Answer, Environment, Split, TaskResult
from agentmem.errors import ConfigError
from agentmem.llm.outage import OutageWatch
from agentmem.memory import MemoryProgram
from agentmem.provenance import Provenance
from agentmem.registry import load_environment
from agentmem.scratch import make_scratch, remove_tree
from agentmem.stats import Interval, mean_intervals
from agentmem.toolkit import ChatModel, Embedder, Stores, storage_name
from agentmem.types import Episode, Event, Query, Recall, Scope

Progress = Callable[[int, int, dict[str, float]], None]
#: builds a task's memory programs instead of build_memory_stack (e.g. sandboxed candidates):
#: (scope, stores, llm, embedder, params) -> programs
MemoryFactory = Callable[[Scope, Stores, ChatModel, Embedder, "dict[str, Any] | None"], "list[MemoryProgram]"]


class Cost(BaseModel):
    """What a run spent."""

    llm_calls: int = Field(0, description="calls that reached the model (cache hits excluded)")
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    counted_tokens: int = Field(
        0,
        description="every call's messages and reply counted here, cache hits included: what the run's calls take "
        "whoever answered them (tokens is what the model was paid; a warm cache lowers that, not this)",
    )
    seconds: float = 0.0
    by_caller: dict[str, Any] = Field(default_factory=dict)
    by_tag: dict[str, Any] = Field(default_factory=dict)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class ExtractionHealth(BaseModel):
    """How a run's structured calls (facts, summaries, notes, M* knowledge items, queries) fared.

    Counted from the outcomes the LLM client and the programs note on the meter
    (:mod:`agentmem.llm.structured`, :meth:`agentmem.toolkit.Toolkit.note`).
    """

    failed: int = Field(
        0,
        description="structured calls that ended with no valid object (invalid after a repair, or no room "
        "left in the context), not counting those whose input the program then split and asked again",
    )
    fallbacks: int = Field(
        0,
        description="inputs stored without the model's object (M*: the raw text kept once with an item built from it)",
    )
    splits: int = Field(0, description="inputs split in two because they did not fit the model's context")
    length_retries: int = Field(0, description="replies cut by their token limit and asked again with more room")
    repairs: int = Field(0, description="complete but invalid replies sent back once for repair")
    loops: int = Field(
        0, description="cut replies that repeated themselves, asked again once with a repetition penalty"
    )

    @classmethod
    def from_events(cls, events: dict[str, int]) -> ExtractionHealth:
        splits = events.get("split", 0)
        failed = events.get("invalid", 0) + max(events.get("no_room", 0) - splits, 0)  # a split answers a no_room
        return cls(
            failed=failed,
            fallbacks=events.get("fallback", 0),
            splits=splits,
            length_retries=events.get("length_retry", 0),
            repairs=events.get("repair", 0),
            loops=events.get("degenerate", 0),
        )


class EvalResult(BaseModel):
    """The result file of `agentmem eval` (also one fitness evaluation in evolution)."""

    env: str
    memory: list[str]
    params: dict[str, Any] = Field(default_factory=dict)
    split: str
    limit: int | None
    model: str
    data_source: str = ""
    metrics: dict[str, float]
    cost: Cost
    extraction: ExtractionHealth = Field(default_factory=ExtractionHealth)
    questions: int
    started_at: str
    tasks: list[TaskResult] = Field(default_factory=list)
    intervals: dict[str, Interval] = Field(
        default_factory=dict,
        description="per metric of `metrics` that is a mean over questions: that mean, its 95% percentile-bootstrap "
        "interval over the questions (agentmem.stats.mean_intervals, 10,000 resamples, seed 0) and n",
    )
    provenance: Provenance | None = Field(
        None,
        description="the command, agentmem version and commit, model, date and machine that made this result "
        "(written by `agentmem eval` and grids; None in results from before it or made in-process)",
    )

    def primary(self, metric: str) -> float:
        return float(self.metrics.get(metric, 0.0))

    def interval(self, metric: str) -> Interval | None:
        """``metric``'s mean with its 95% interval and n (computed from ``tasks`` for a result file without them)."""
        if metric in self.intervals:
            return self.intervals[metric]
        if metric not in self.metrics:
            return None
        return metric_intervals(self.tasks, {metric: self.metrics[metric]}).get(metric)


def question_scores(
    tasks: list[TaskResult], metric: str, *, category: str | None = None, missing: float | None = None
) -> dict[str, float]:
    """Per-question values of ``metric`` keyed ``<task id>/<question id>`` (the key evolution pairs programs on).

    Questions that do not carry the metric are left out, or count as
    ``missing`` when it is given (evolution scores a question without its
    primary metric as 0); ``category`` keeps only that category's questions.
    """
    out: dict[str, float] = {}
    for task in tasks:
        for q in task.questions:
            if category is not None and q.category != category:
                continue
            if metric in q.metrics:
                out[f"{task.task_id}/{q.question_id}"] = float(q.metrics[metric])
            elif missing is not None:
                out[f"{task.task_id}/{q.question_id}"] = float(missing)
    return out


def metric_intervals(tasks: list[TaskResult], metrics: dict[str, float], *, level: float = 0.95) -> dict[str, Interval]:
    """A mean with its ``level`` bootstrap interval and n for each of ``metrics`` that is a mean over questions.

    ``f1`` is matched with the questions' own ``f1``, ``f1/<category>`` with
    that category's questions, and a rate ``<x>_rate`` with the questions'
    ``<x>`` (``success_rate`` is the mean of ``success``); a metric is given
    an interval only when the mean of those per-question values is the
    reported number (over the questions that carry it, or over all with a
    missing value as 0, as the environment aggregated it). Counts
    (``questions``, ``n/...``) and other derived numbers (averages of
    averages, groups that are not categories) get none.

    All the intervals come from one :func:`agentmem.stats.mean_intervals`
    call: the metrics over the same questions share one drawn matrix of
    resamples, and a category's metrics are resampled within that category.
    """
    found: dict[tuple[str, str | None, float | None], list[float]] = {}

    def values_of(metric: str, category: str | None, missing: float | None) -> list[float]:
        if (metric, category, missing) not in found:
            found[metric, category, missing] = list(
                question_scores(tasks, metric, category=category, missing=missing).values()
            )
        return found[metric, category, missing]

    columns: dict[str, list[float]] = {}
    for key, reported in metrics.items():
        if key == "questions" or key.startswith("n/"):
            continue
        metric, _, group = key.partition("/")
        names = list(dict.fromkeys([metric, metric.removesuffix("_rate")]))
        # a category's key is the category (``accuracy/temporal-reasoning``), or LoCoMo's ``f1/cat2`` for category "2"
        categories = list(dict.fromkeys([group, group.removeprefix("cat")])) if group else [None]
        for name, category, missing in ((n, c, m) for n in names for c in categories for m in (None, 0.0)):
            values = values_of(name, category, missing)
            if values and abs(sum(values) / len(values) - float(reported)) <= 1e-6:
                columns[key] = values
                break
    return {key: Interval(**iv.rounded(), level=level) for key, iv in mean_intervals(columns, level=level).items()}


class _CountingAgent:
    """Passes calls through to the agent and reports progress after each answer (or action)."""

    def __init__(self, agent: AgentLike, tick: Callable[[], None]) -> None:
        self._agent = agent
        self._tick = tick

    def observe(self, event: Event) -> None:
        self._agent.observe(event)

    def end_session(self, episode: Episode) -> None:
        self._agent.end_session(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        result = self._agent.answer(question, context=context)
        self._tick()
        return result

    def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
        """One tool call (for environments that score actions); a clear error if the agent cannot act."""
        act = getattr(self._agent, "act", None)
        if act is None:
            raise ConfigError(
                f"{type(self._agent).__name__} has no act(); this environment needs an agent that calls tools"
            )
        result = act(instruction, tools, context=context)
        self._tick()
        return result


class RecallOnlyAgent:
    """An agent that lives through the sessions and recalls for each question, but never answers.

    The first, LLM-free stage of evolution's cascade: memory observes and
    reflects as usual (a program's own LLM use while ingesting is its cost),
    then each question or request gets exactly the recall the real agent
    would get (same query text, same token budget) and an empty answer. The
    environment's proxy (:class:`~agentmem.environment.ProxyScoring`) scores
    that recall; the answer metrics of such a run mean nothing.
    """

    def __init__(self, agent: Any, shown: list[str] | None = None) -> None:
        self._agent = agent  # an agentmem.Agent (or MemoryAgent): its memory and budget are used, never its model
        self._shown = shown

    def _show(self, text: str, recall: Recall) -> Recall:
        """Note a digest of the memory block the real agent would have read for ``text`` (usage text included)."""
        if self._shown is not None:
            self._shown.append(hashlib.sha256(f"{text}\x00{recall.block()}".encode()).hexdigest())
        return recall

    def observe(self, event: Event) -> None:
        self._agent.observe(event)

    def end_session(self, episode: Episode) -> None:
        self._agent.end_session(episode)

    def _recall(self, text: str) -> Recall:
        composed = getattr(self._agent, "composed", None)  # MemoryAgent
        if composed is None:
            composed = self._agent.memory  # the SDK Agent
        if not composed.programs:
            return Recall()
        return composed.recall(Query(text=text, budget_tokens=self._agent.budget_tokens))

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        started = time.perf_counter()
        return Answer(
            text="", recall=self._show(question, self._recall(question)), seconds=time.perf_counter() - started
        )

    def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
        started = time.perf_counter()
        return Action(
            recall=self._show(instruction, self._recall(instruction)),
            error="recall only: no call was made",
            seconds=time.perf_counter() - started,
        )

    def close(self) -> None:
        self._agent.close()


def make_environment(name: str, **options: Any) -> Environment:
    """Instantiate an environment plugin with ``options`` (``None`` values count as not given).

    An option its constructor does not take is a :class:`ConfigError` naming the
    option and the ones it accepts, rather than silently dropped (an environment
    with ``**knobs`` takes any keyword and checks its knobs itself). ``seed``,
    which every run passes, goes only to an environment that takes one.
    """
    cls = load_environment(name)
    parameters = inspect.signature(cls).parameters
    named = [p.name for p in parameters.values() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    kwargs = {k: v for k, v in options.items() if v is not None}
    if "seed" not in named and not takes_any:
        kwargs.pop("seed", None)  # every run passes a seed; an environment without one is deterministic anyway
    unknown = [] if takes_any else sorted(set(kwargs) - set(named))
    if unknown:
        flags = ", ".join(f"{k} (--{k.replace('_', '-')})" for k in unknown)
        raise ConfigError(
            f"environment '{name}' does not take option(s) {flags}: it accepts {', '.join(named) or 'none'}; "
            "leave the option out for this environment"
        )
    return cls(**kwargs)


def run_eval(
    env: Environment | str,
    memory: list[str],
    *,
    llm: ChatModel,
    embedder: Embedder | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    split: Split = "validation",
    limit: int | None = None,
    budget_tokens: int | None = None,
    data: str | Path | None = None,
    seed: int = 0,
    workdir: Path | None = None,
    keep_stores: bool = False,
    chroma_host: str | None = None,
    progress: Progress | None = None,
    memory_factory: MemoryFactory | None = None,
    recall_only: bool = False,
    shown: list[str] | None = None,
) -> EvalResult:
    """Run ``memory`` (plugin names or program paths) through ``env`` and score it.

    Each task gets a fresh private store under ``workdir`` (a temporary
    directory, removed afterwards unless ``keep_stores``); ``chroma_host``
    puts the vector collections on a Chroma server instead. ``memory_factory``,
    when given, builds each task's programs instead (evolution passes one that
    runs candidates in a sandbox); ``memory`` is then only the result's label.
    ``recall_only`` asks no question of the model (:class:`RecallOnlyAgent`):
    only an environment's LLM-free proxy metrics are meaningful then; a
    ``shown`` list then receives, for each question, a digest of the memory
    block the agent would have read (the usage text included), so that two
    programs that would put the same prompts before the model can be told
    from two that only recall the same.

    When the model cannot be reached (:class:`~agentmem.errors.LLMUnavailable`
    after the client's retries) the evaluation raises it, even where a plugin,
    the agent or a sandboxed candidate caught it: questions the model never
    answered are not scored.
    """
    from agentmem.config import recall_budget
    from agentmem.embedding_cache import shared_embedder
    from agentmem.llm.context import call_context
    from agentmem.sdk.agent import Agent

    budget_tokens = recall_budget(budget_tokens)  # None: the recall_budget setting
    environment = make_environment(env, data=data, seed=seed) if isinstance(env, str) else env
    tasks = environment.tasks(split=split, limit=limit)
    model_label = getattr(llm, "model", type(llm).__name__)
    # a model outage must stop the evaluation even where a plugin or candidate catches the error:
    # otherwise the run records a score the memory never earned
    llm = watch = OutageWatch(llm)
    total = sum(len(t.questions) for t in tasks)
    # each text is embedded once per model, whatever the evaluation, process or run (agentmem.embedding_cache)
    task_embedder = embedder or shared_embedder()
    meter = getattr(llm, "meter", None)
    # a child meter that sees exactly this run's calls, even when other runs share the LLM
    metering = meter.scope(env=environment.name) if meter is not None else contextlib.nullcontext(None)
    started = time.perf_counter()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    root = make_scratch("eval", workdir)
    results: list[TaskResult] = []
    done = 0

    def tick() -> None:
        nonlocal done
        watch.check()  # the question just answered may have been answered without the model
        done += 1
        if progress is not None:
            progress(done, total, {})

    try:
        with metering as spent:
            for task in tasks:
                stores = Stores(root / storage_name(task.id), chroma_host=chroma_host)  # one directory per task id
                scope = Scope(user_id="eval", agent_id="+".join(memory) or "none", run_id=task.id)
                with call_context(task=task.id):
                    if memory_factory is not None:
                        programs = memory_factory(scope, stores, llm, task_embedder, params)
                    else:
                        programs = build_memory_stack(
                            memory, scope=scope, stores=stores, llm=llm, embedder=task_embedder, params=params
                        )
                    # the agent SDK users run; memory sees what the task feeds it, never the agent's answers
                    agent = Agent.for_tasks(llm, programs, budget_tokens=budget_tokens, remember_turns=False)
                    if recall_only:
                        agent = RecallOnlyAgent(agent, shown)  # type: ignore[assignment]
                    try:
                        result = environment.run_task(task, _CountingAgent(agent, tick))
                    except Exception:
                        watch.check()  # whatever the outage made fail (a candidate's op, a plugin) was the outage
                        raise
                    finally:
                        try:
                            agent.close()
                        finally:
                            stores.close()
                watch.check()  # an outage swallowed after the last question (a reflection) spoils the task too
                results.append(result)
                if progress is not None:
                    progress(done, total, environment.aggregate(results))
    finally:
        if not keep_stores:
            remove_tree(root)
    metrics = environment.aggregate(results)
    intervals = metric_intervals(results, metrics)
    cost = Cost(seconds=round(time.perf_counter() - started, 2))
    extraction = ExtractionHealth()
    if spent is not None:
        spent_total = spent.total()
        snapshot = spent.snapshot()
        cost.llm_calls = spent_total.model_calls
        cost.cache_hits = spent_total.cache_hits
        cost.prompt_tokens = spent_total.prompt_tokens
        cost.completion_tokens = spent_total.completion_tokens
        cost.counted_tokens = spent_total.counted_tokens
        cost.by_caller = snapshot.get("by_caller", {})
        cost.by_tag = snapshot.get("by_tag", {})
        extraction = ExtractionHealth.from_events(snapshot.get("events", {}))
    return EvalResult(
        env=environment.name,
        memory=memory,
        params=params or {},
        split=split,
        limit=limit,
        model=model_label,
        data_source=str(getattr(environment, "source", "")),
        metrics=metrics,
        cost=cost,
        extraction=extraction,
        questions=total,
        started_at=started_at,
        tasks=results,
        intervals=intervals,
    )
