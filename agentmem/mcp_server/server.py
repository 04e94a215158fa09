"""The MCP server: :class:`~agentmem.mcp_server.service.MemoryService` as tools, over stdio or streamable HTTP.

Tools (every one scoped by ``user_id`` and ``agent_id``; both default to the
server's ``--user`` / ``--agent``):

* ``add_memory(text, metadata?)`` - store a memory; durable when it returns;
* ``search_memories(query, top_k?, budget_tokens?)`` - what the memory recalls, best first;
* ``list_memories(limit?, offset?)`` - what was stored, newest first;
* ``delete_memory(memory_id)`` - delete one memory and everything derived from it;
* ``delete_all_memories(user_id, agent_id?)`` - one user's memories (``user_id`` must be given);
* ``fact_history(fact_id)`` - only when a plugin keeps fact versions (semantic).

A tool that cannot do what it was asked returns an error result whose text is
one line (what was wrong and how to fix it); the server keeps serving.
"""

# no `from __future__ import annotations`: the MCP SDK reads the tools' annotations at runtime,
# and User/Agent below are local names it could not resolve from strings
import logging
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import Field, ValidationError

from agentmem.errors import AgentmemError
from agentmem.mcp_server.service import (
    DeleteResult,
    FactHistory,
    ListResult,
    MemoryRecord,
    MemoryService,
    SearchResult,
)

__all__ = ["build_server", "one_line_validation"]

log = logging.getLogger(__name__)
T = TypeVar("T")

_INSTRUCTIONS = (
    "Long-term memory ({label}). Call search_memories before answering anything that may depend on what the user "
    "said earlier; call add_memory for facts, preferences and decisions worth keeping. Every tool takes user_id "
    "(default {user!r}) and agent_id (default {agent!r}): memories never cross users. delete_memory removes one "
    "memory for good; delete_all_memories removes one user's memories and needs user_id spelled out."
)


def one_line_validation(tool: str, exc: ValidationError) -> str:
    """A pydantic argument error as one line: which argument, what is wrong, what was given."""
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ()) if p != "model") or "arguments"
    given = err.get("input")
    shown = "" if err.get("type") == "missing" else f" (got {given!r})"[:120]
    more = f"; {len(exc.errors()) - 1} more problem(s)" if len(exc.errors()) > 1 else ""
    return f"{tool}: argument {where}: {err.get('msg', 'is invalid')}{shown}{more}"


def build_server(
    service: MemoryService, *, default_user: str = "default", default_agent: str = "default", log_level: str = "WARNING"
) -> Any:
    """An ``MCPServer`` whose tools call ``service`` (run it with ``.run("stdio")`` or over HTTP)."""
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    class _Server(MCPServer):
        """Argument errors as one line (the SDK's are multi-line pydantic reports)."""

        async def call_tool(self, name: str, arguments: dict[str, Any], context: Any = None) -> Any:
            try:
                return await super().call_tool(name, arguments, context)
            except ToolError as exc:
                if isinstance(exc.__cause__, ValidationError):
                    raise ToolError(one_line_validation(name, exc.__cause__)) from None
                raise

    server = _Server(
        "agentmem",
        instructions=_INSTRUCTIONS.format(label=service.label, user=default_user, agent=default_agent),
        log_level=log_level.upper(),
    )

    def run(tool: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except AgentmemError as exc:
            raise ToolError(f"{tool}: {' '.join(str(exc).split())}") from None
        except Exception as exc:
            log.exception("%s failed", tool)
            raise ToolError(
                f"{tool}: internal error ({type(exc).__name__}: {' '.join(str(exc).split())[:200]}); "
                "see the server's log (stderr)"
            ) from None

    User = Annotated[
        str | None, Field(description=f"whose memories (default {default_user!r}); memories never cross users")
    ]
    Agent = Annotated[str | None, Field(description=f"which agent of that user (default {default_agent!r})")]

    @server.tool(
        description="Store one memory (a fact, preference, decision or event) for a user. Durable when it returns."
    )
    def add_memory(
        text: Annotated[str, Field(description="the memory, as a self-contained sentence or short paragraph")],
        metadata: Annotated[
            dict[str, Any] | None, Field(description="optional JSON object kept with the memory")
        ] = None,
        user_id: User = None,
        agent_id: Agent = None,
    ) -> MemoryRecord:
        return run(
            "add_memory",
            lambda: service.add(
                text, user_id=user_id or default_user, agent_id=agent_id or default_agent, metadata=metadata
            ),
        )

    @server.tool(
        description="Search a user's memories: what memory recalls for the query, best first, "
        "each hit with the ids of the stored memories behind it."
    )
    def search_memories(
        query: Annotated[str, Field(description="what to look for, in words")],
        top_k: Annotated[int | None, Field(description="at most this many hits (1-200)")] = None,
        budget_tokens: Annotated[
            int | None, Field(description="token budget of the recalled text (default: the server's)")
        ] = None,
        user_id: User = None,
        agent_id: Agent = None,
    ) -> SearchResult:
        return run(
            "search_memories",
            lambda: service.search(
                query,
                user_id=user_id or default_user,
                agent_id=agent_id or default_agent,
                top_k=top_k,
                budget_tokens=budget_tokens,
            ),
        )

    @server.tool(description="List the memories stored for a user, newest first.")
    def list_memories(
        limit: Annotated[int, Field(description="at most this many (1-500)")] = 50,
        offset: Annotated[int, Field(description="skip this many of the newest first")] = 0,
        user_id: User = None,
        agent_id: Agent = None,
    ) -> ListResult:
        return run(
            "list_memories",
            lambda: service.list_memories(
                user_id=user_id or default_user, agent_id=agent_id or default_agent, limit=limit, offset=offset
            ),
        )

    @server.tool(
        description="Delete one memory for good: it and everything memory derived from it "
        "(chunks, facts, their history) never come back in search."
    )
    def delete_memory(
        memory_id: Annotated[str, Field(description="the id add_memory or list_memories returned")],
        user_id: User = None,
        agent_id: Agent = None,
    ) -> DeleteResult:
        return run(
            "delete_memory",
            lambda: service.delete(memory_id, user_id=user_id or default_user, agent_id=agent_id or default_agent),
        )

    @server.tool(
        description="Delete every memory of ONE user (all their agents, or only agent_id). "
        "user_id must be given; no other user's memories are touched."
    )
    def delete_all_memories(
        user_id: Annotated[str, Field(description="whose memories to delete (required, never a wildcard)")],
        agent_id: Annotated[
            str | None, Field(description="only this agent's memories (default: all of the user's agents)")
        ] = None,
    ) -> DeleteResult:
        return run("delete_all_memories", lambda: service.delete_all(user_id=user_id, agent_id=agent_id))

    if service.capabilities.get("history"):

        @server.tool(
            description="Every version of one fact (ADD/UPDATE/DELETE, with dates and sources), "
            f"from {', '.join(service.capabilities['history'])} memory."
        )
        def fact_history(
            fact_id: Annotated[str, Field(description="a fact id from search_memories (hit metadata.fact_id)")],
            user_id: User = None,
            agent_id: Agent = None,
        ) -> FactHistory:
            return run(
                "fact_history",
                lambda: service.fact_history(
                    fact_id, user_id=user_id or default_user, agent_id=agent_id or default_agent
                ),
            )

    return server
