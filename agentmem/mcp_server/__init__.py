"""Memory as a service: any agentmem memory configuration behind the Model Context Protocol.

:class:`MemoryService` is the transport-free core (a ledger of what was
added, per-user memories rebuilt from it, real deletion); :func:`build_server`
puts it behind an MCP server (`agentmem mcp`, see ``docs/mcp.md``).
"""

from typing import Any

from agentmem.mcp_server.service import (
    DeleteResult,
    ListResult,
    MemoryRecord,
    MemoryService,
    SearchHit,
    SearchResult,
    ServiceError,
)

__all__ = [
    "DeleteResult",
    "ListResult",
    "MemoryRecord",
    "MemoryService",
    "SearchHit",
    "SearchResult",
    "ServiceError",
    "build_server",
]


def build_server(*args: Any, **kwargs: Any) -> Any:
    """:func:`agentmem.mcp_server.server.build_server` (imported lazily: the MCP SDK is only needed to serve)."""
    from agentmem.mcp_server.server import build_server as _build

    return _build(*args, **kwargs)
