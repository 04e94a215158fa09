"""The environment protocol: tasks an agent lives through, then is scored on.

An environment yields :class:`Task` objects for a fixed split; running a task
feeds its sessions to the agent (whose memory observes them), then asks the
questions that need that memory and scores the answers. Results carry quality
metrics, an LLM-free proxy where the data allows one, and cost.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError

from agentmem.types import Episode, Event, Recall

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.llm.tools import ToolSpec

Split = Literal["train", "validation", "test", "all"]
K = TypeVar("K", bound=BaseModel)


def cap_questions(tasks: list[Task], limit: int | None) -> list[Task]:
    """Deep copies of ``tasks``, in order, holding at most ``limit`` questions in all.

    Tasks left with no question are dropped; ``None`` keeps every question.
    """
    out: list[Task] = []
    remaining = limit
    for task in tasks:
        if remaining is not None and remaining <= 0:
            break
        questions = task.questions if remaining is None else task.questions[:remaining]
        if not questions:
            continue
        copy = task.model_copy(deep=True)
        copy.questions = [q.model_copy(deep=True) for q in questions]
        out.append(copy)
        if remaining is not None:
            remaining -= len(questions)
    return out


def require_act(env: str, agent: Any) -> Any:
    """The agent's ``act`` method, or one clear error for environments that score tool calls."""
    from agentmem.errors import ConfigError

    act = getattr(agent, "act", None)
    if act is None:
        raise ConfigError(
            f"{env}: the agent ({type(agent).__name__}) has no act(instruction, tools); "
            "use agentmem.Agent (Agent.for_tasks) or give the agent an act method"
        )
    return act


SPLITS: tuple[str, ...] = ("train", "validation", "test", "all")
"""The splits every environment offers (``all`` is their union)."""


def check_split(env: str, split: str, limit: int | None, unit: str = "questions") -> None:
    """One clear :class:`~agentmem.errors.ConfigError` for an unknown split or a negative limit."""
    from agentmem.errors import ConfigError

    if split not in SPLITS:
        raise ConfigError(f"{env}: unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if limit is not None and limit < 0:
        raise ConfigError(f"{env}: limit must be 0 or more, got {limit}; pass a non-negative number of {unit}")


def check_top_k(env: str, top_k: int | None) -> int | None:
    """``top_k`` as an int (``None``: every recalled item), or one clear error when it is below 1."""
    from agentmem.errors import ConfigError

    if top_k is not None and top_k < 1:
        raise ConfigError(f"{env}: top_k must be at least 1, got {top_k}; pass a positive number")
    return None if top_k is None else int(top_k)


def parse_knobs(env: str, model: type[K], data: str | Path | None = None, overrides: dict[str, Any] | None = None) -> K:
    """An environment's knobs from ``--data`` and keyword overrides, validated by ``model``.

    ``data`` is a JSON file holding an object of knobs, or ``"key=value,key=value"``
    (``;`` separates pairs instead when a value itself needs commas). Unknown
    knobs and out-of-range values are one clear :class:`~agentmem.errors.ConfigError`
    naming the environment, the knob and its bounds.
    """
    from agentmem.errors import ConfigError

    names = tuple(model.model_fields)
    options: dict[str, Any] = {}
    if data not in (None, ""):
        text = str(data).strip()
        path = Path(text).expanduser()
        if text.endswith(".json") or path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(
                    f"{env}: cannot read knobs from {path} ({exc}); write a JSON object of knobs ({', '.join(names)})"
                ) from None
            if not isinstance(value, dict):
                raise ConfigError(f"{env}: {path} must hold a JSON object of knobs ({', '.join(names)})")
            options.update(value)
        else:
            for part in filter(None, (p.strip() for p in text.split(";" if ";" in text else ","))):
                key, sep, value = part.partition("=")
                if not sep or not key.strip():
                    raise ConfigError(
                        f"{env}: cannot read knob {part!r} in --data; write key=value pairs like '{names[0]}=2'"
                    )
                options[key.strip()] = value.strip()
    options.update(overrides or {})
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise ConfigError(f"{env}: unknown knob {', '.join(unknown)}; the knobs are {', '.join(names)}")
    try:
        return model(**options)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(x) for x in err.get("loc", ())) or "knobs"
        info = model.model_fields.get(field)
        limits = ""
        if info is not None:
            lo = next((m.ge for m in info.metadata if hasattr(m, "ge")), None)
            hi = next((m.le for m in info.metadata if hasattr(m, "le")), None)
            if lo is not None and hi is not None:
                limits = f"; use a value from {lo} to {hi}"
        raise ConfigError(
            f"{env}: {field} {err.get('msg', 'is invalid').lower()} (got {err.get('input')!r}){limits}"
        ) from None


class Session(BaseModel):
    """A stretch of experience fed to memory before questions are asked."""

    id: str
    when: str | None = None  # the session's time as the dataset states it
    events: list[Event] = Field(default_factory=list)


class Question(BaseModel):
    """A question that needs memory, with its reference answer and evidence ids."""

    id: str
    text: str
    answer: str
    category: str = ""
    evidence: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Task(BaseModel):
    """One unit of evaluation: sessions to live through, then questions."""

    id: str
    sessions: list[Session] = Field(default_factory=list)
    questions: list[Question] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Answer(BaseModel):
    """What the agent answered, and what memory gave it to answer with."""

    text: str
    recall: Recall = Field(default_factory=Recall)
    seconds: float = 0.0


class Action(BaseModel):
    """A tool call the agent decided on for an instruction, and what memory gave it to decide with.

    ``tool`` is empty (and ``error`` says why) when the model produced no valid
    call: environments score that as a wrong call instead of aborting the run.
    """

    tool: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    recall: Recall = Field(default_factory=Recall)
    seconds: float = 0.0
    error: str = ""


class QuestionResult(BaseModel):
    question_id: str
    category: str
    question: str
    reference: str
    prediction: str
    metrics: dict[str, float]
    recalled: str = ""


class TaskResult(BaseModel):
    task_id: str
    questions: list[QuestionResult] = Field(default_factory=list)
    seconds: float = 0.0


class AgentLike(Protocol):
    """What an environment needs of an agent (see :meth:`agentmem.Agent.for_tasks`, the agent evaluation runs).

    ``answer``'s ``context`` is the task's say in how to answer: ``instruction``
    (the agent's instruction for this question, in place of its conversational
    system prompt; the agent's default is a short phrase from memory),
    ``now`` (the date the question is asked on), ``max_tokens`` (room for the
    reply) and ``multiline`` (the whole reply is the answer, not its first line).
    """

    def observe(self, event: Event) -> None: ...

    def end_session(self, episode: Episode) -> None: ...

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer: ...


class ActingAgentLike(AgentLike, Protocol):
    """An agent that can also act: answer an instruction with one call of one of ``tools``.

    Optional: only environments that score tool calls (``toolprefs``) need it;
    ``tools`` are :class:`agentmem.llm.tools.ToolSpec` objects.
    """

    def act(self, instruction: str, tools: list[ToolSpec], *, context: dict[str, Any] | None = None) -> Action: ...


class Environment(ABC):
    """Base class of every environment plugin (entry-point group ``agentmem.environments``)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    @abstractmethod
    def tasks(self, split: Split = "validation", limit: int | None = None) -> list[Task]:
        """The tasks of one split, in a fixed order. ``limit`` caps the number of questions."""

    @abstractmethod
    def run_task(self, task: Task, agent: AgentLike) -> TaskResult:
        """Feed the task's sessions to the agent, ask its questions, score the answers."""

    @abstractmethod
    def aggregate(self, results: list[TaskResult]) -> dict[str, float]:
        """Overall metrics (and per-category ones) from task results."""

    primary_metric: ClassVar[str] = "score"


class ProxyScore(BaseModel):
    """An LLM-free verdict on what memory recalled for one question, within the budget.

    ``score`` (0..1) is the proxy itself. The other fields say why, so that a
    failed question can be diagnosed without an LLM: ``evidence`` is the
    fraction of the grounding turns recalled (``None`` where the environment
    does not know them), ``stale`` that a superseded value was recalled ahead
    of the current one, ``answer_in_recall`` that the reference answer itself
    is in the recalled text (``None`` where that cannot be checked).
    """

    score: float = Field(ge=0.0, le=1.0)
    evidence: float | None = None
    stale: bool = False
    answer_in_recall: bool | None = None


PROXY_METRIC = "proxy"
"""The per-question metric under which a :class:`ProxyScoring` environment records its proxy."""


class ProxyScoring(ABC):
    """Optional capability of an environment that knows each question's grounding.

    Such an environment scores what memory recalled for a question without any
    LLM call (:meth:`proxy_score`) and records the verdict in every
    :class:`QuestionResult` it makes, through :func:`proxy_metrics`. Evolution
    uses it as a cheap first stage: ingest and recall only, no answers.
    Environments opt in by inheriting this class (see :func:`supports_proxy`);
    nothing is inferred from errors.

    The proxy is computed in the trusted process that runs the environment,
    from the :class:`~agentmem.types.Recall` the (possibly sandboxed) memory
    returned: the memory never sees the grounding or the answer.
    """

    @abstractmethod
    def proxy_score(self, task: Task, question: Question, recall: Recall) -> ProxyScore | None:
        """The proxy for ``question`` given ``recall`` (``None``: this question has no grounding to check)."""


def supports_proxy(env: Any) -> bool:
    """Whether ``env`` (an environment or its class) offers an LLM-free proxy score."""
    return isinstance(env, ProxyScoring) or (isinstance(env, type) and issubclass(env, ProxyScoring))


def proxy_metrics(verdict: ProxyScore | None, recall: Recall) -> dict[str, float]:
    """The per-question metrics a :class:`ProxyScoring` environment adds to its own.

    ``proxy`` (the score), ``proxy/evidence``, ``proxy/stale``,
    ``proxy/answer_in_recall`` where known, and ``recall/omitted`` (matches the
    memory had to cut to stay within the budget), which diagnosis reads.
    """
    out: dict[str, float] = {"recall/omitted": float(recall.omitted)}
    if verdict is None:
        return out
    out[PROXY_METRIC] = float(verdict.score)
    if verdict.evidence is not None:
        out["proxy/evidence"] = float(verdict.evidence)
    out["proxy/stale"] = float(verdict.stale)
    if verdict.answer_in_recall is not None:
        out["proxy/answer_in_recall"] = float(verdict.answer_in_recall)
    return out


class TaskSetEnvironment(Environment):
    """An environment whose tasks load all at once and are split by task id.

    Subclasses implement :meth:`_load`, which returns every task and fills
    ``self._splits`` (split name -> task ids); :meth:`tasks` and
    :meth:`split_ids` then behave the same in every such environment.
    """

    _splits: dict[str, list[str]]

    @abstractmethod
    def _load(self) -> list[Task]:
        """Every task, loaded once; sets ``self._splits``."""

    def split_ids(self) -> dict[str, list[str]]:
        """The task ids of each split."""
        self._load()
        return {k: list(v) for k, v in self._splits.items()}

    def tasks(self, split: Split = "validation", limit: int | None = None) -> list[Task]:
        check_split(self.name, split, limit)  # before loading: a typo costs no data load
        all_tasks = self._load()
        wanted = None if split == "all" else set(self._splits[split])
        return cap_questions([t for t in all_tasks if wanted is None or t.id in wanted], limit)
