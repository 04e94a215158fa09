"""The data the SDK hands back: replies, per-turn traces, stream events, threads, messages.

They are pydantic models so that a chat UI, a web service or a log can take
them as JSON without knowing agentmem's internals.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = [
    "Message",
    "RecallDetail",
    "RecalledItem",
    "Reply",
    "StreamEvent",
    "ThreadInfo",
    "ToolCallRecord",
    "TurnTrace",
]


class RecalledItem(BaseModel):
    """One memory item a plugin brought back: what it says and why it was chosen."""

    id: str = ""
    text: str
    score: float = 0.0
    source: str = ""
    why: str = ""


class RecallDetail(BaseModel):
    """What one plugin recalled for one query, within its share of the token budget.

    ``truncated`` counts items that matched but did not fit the budget, so a
    reader can tell "nothing relevant" from "relevant but cut".
    """

    plugin: str
    items: list[RecalledItem] = Field(default_factory=list)
    tokens: int = 0
    truncated: int = 0


class ToolCallRecord(BaseModel):
    """One tool the agent ran this turn: its arguments and result, or the error it raised."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str | None = None
    error: str | None = None


class TurnTrace(BaseModel):
    """Everything that happened behind one reply: recall, tools, memory writes, LLM cost."""

    recalls: list[RecallDetail] = Field(default_factory=list)
    written: dict[str, list[str]] = Field(default_factory=dict)
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0


class Reply(BaseModel):
    """The agent's answer to one user message, with how it got there."""

    text: str
    thread_id: str
    trace: TurnTrace = Field(default_factory=TurnTrace)


class StreamEvent(BaseModel):
    """One event of :meth:`Agent.stream`: ``token`` events (``text``), then exactly one ``reply``."""

    kind: Literal["token", "reply"]
    text: str = ""
    reply: Reply | None = None


class ThreadInfo(BaseModel):
    """A conversation thread kept by the checkpointer."""

    id: str
    messages: int = 0
    updated_at: datetime | None = None


class Message(BaseModel):
    """One message of a thread's history (``tool`` messages carry the tool's name and arguments)."""

    role: Literal["system", "user", "assistant", "tool"]
    content: str
    tool_name: str | None = None
    tool_args: dict[str, Any] | None = None
