"""agentmem: memory plugins for LLM agents, and an evolution loop for memory programs."""

from __future__ import annotations

import os

# litellm fetches a price list over the network at import unless told not to;
# agentmem must work offline, so use the copy bundled with litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentmem.errors import AgentmemError
from agentmem.memory import MemoryProgram
from agentmem.toolkit import Toolkit
from agentmem.types import Episode, Event, Query, Recall, RecallItem, Scope

__version__ = "0.1.0"

# the SDK pulls in LangGraph; load it on first use so that `import agentmem` stays fast
_SDK_NAMES = frozenset(
    {
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
    }
)


def __getattr__(name: str) -> object:
    if name in _SDK_NAMES:
        import agentmem.sdk as sdk

        return getattr(sdk, name)
    raise AttributeError(f"module 'agentmem' has no attribute {name!r}")


__all__ = [
    "Agent",
    "AgentmemError",
    "AgentmemStore",
    "Episode",
    "Event",
    "MemoryProgram",
    "Message",
    "Query",
    "Recall",
    "RecallDetail",
    "RecallItem",
    "RecalledItem",
    "Reply",
    "Scope",
    "StreamEvent",
    "ThreadInfo",
    "ToolCallRecord",
    "Toolkit",
    "TurnTrace",
    "__version__",
]
