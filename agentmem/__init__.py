"""agentmem: memory plugins for LLM agents, and an evolution loop for memory programs."""

from __future__ import annotations

import os

# litellm fetches a price list over the network at import unless told not to;
# agentmem must work offline, so use the copy bundled with litellm.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentmem.errors import AgentmemError  # noqa: E402
from agentmem.memory import MemoryProgram  # noqa: E402
from agentmem.toolkit import Toolkit  # noqa: E402
from agentmem.types import Episode, Event, Query, Recall, RecallItem, Scope  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "AgentmemError",
    "Episode",
    "Event",
    "MemoryProgram",
    "Query",
    "Recall",
    "RecallItem",
    "Scope",
    "Toolkit",
    "__version__",
]
