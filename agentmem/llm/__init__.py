"""LLM access: one litellm client for every backend, the embedded llama.cpp model, metering.

``LLM("local")`` runs the default local GGUF model (fetched and verified on
first use); any litellm model string (``hosted_vllm/...``, ``openai/...``)
works the same way. See :mod:`agentmem.llm.client`.
"""

from agentmem.llm.cache import DiskCache
from agentmem.llm.client import LLM, CompletionCache
from agentmem.llm.context import bind, call_context
from agentmem.llm.meter import CallStats, Meter
from agentmem.llm.models import DEFAULT_MODEL, KNOWN_MODELS, KnownModel, ensure_model, model_status
from agentmem.llm.server import LocalServer, shared_local_server
from agentmem.llm.tools import ToolCall, ToolCallError, ToolSpec, parse_tool_calls

__all__ = [
    "LLM",
    "CompletionCache",
    "DiskCache",
    "bind",
    "call_context",
    "CallStats",
    "Meter",
    "DEFAULT_MODEL",
    "KNOWN_MODELS",
    "KnownModel",
    "ensure_model",
    "model_status",
    "LocalServer",
    "shared_local_server",
    "ToolSpec",
    "ToolCall",
    "ToolCallError",
    "parse_tool_calls",
]
