"""The agent SDK: ``Agent`` (a memory-backed LangGraph chat agent) and ``AgentmemStore``
(any agentmem memory as a LangGraph ``BaseStore``)."""

from agentmem.sdk.agent import Agent
from agentmem.sdk.models import (
    Message,
    RecallDetail,
    RecalledItem,
    Reply,
    StreamEvent,
    ThreadInfo,
    ToolCallRecord,
    TurnTrace,
)
from agentmem.sdk.store import AgentmemStore

__all__ = [
    "Agent",
    "AgentmemStore",
    "Message",
    "RecallDetail",
    "RecalledItem",
    "Reply",
    "StreamEvent",
    "ThreadInfo",
    "ToolCallRecord",
    "TurnTrace",
]
