"""The environment protocol: tasks an agent lives through, then is scored on.

An environment yields :class:`Task` objects for a fixed split; running a task
feeds its sessions to the agent (whose memory observes them), then asks the
questions that need that memory and scores the answers. Results carry quality
metrics, an LLM-free proxy where the data allows one, and cost.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, Field

from agentmem.types import Episode, Event, Recall

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.llm.tools import ToolSpec

Split = Literal["train", "validation", "test", "all"]


class Session(BaseModel):
    """A stretch of experience fed to memory before questions are asked."""

    id: str
    date_time: str | None = None
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
    """What an environment needs of an agent (see :class:`agentmem.agent.MemoryAgent`)."""

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
