"""Building memory stacks, and ``MemoryAgent``: the name evaluation code used for the agent it scores.

There is one agent, :class:`agentmem.Agent` (``agentmem/sdk/agent.py``): one
LangGraph graph, one set of prompts (``agentmem/prompts/``). ``agentmem
eval``, grids and evolution run it through :meth:`agentmem.Agent.for_tasks`,
with memory's observation of the agent's own answers off while it is scored.
``MemoryAgent(llm, programs)`` is kept for code written against it and builds
exactly that.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem.composition import ComposedMemory, Router
from agentmem.memory import MemoryProgram
from agentmem.registry import load_memory
from agentmem.toolkit import ChatModel, Clock, Embedder, Stores, Toolkit
from agentmem.types import RecallItem, Scope

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.sdk.agent import Agent


def build_memory_stack(
    names: list[str],
    *,
    scope: Scope,
    stores: Stores,
    llm: ChatModel | None,
    embedder: Embedder | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    clock: Clock | None = None,
) -> list[MemoryProgram]:
    """Instantiate the named memory plugins (entry-point names or ``.py`` paths), each with its own toolkit."""
    programs: list[MemoryProgram] = []
    for name in names:
        cls = load_memory(name)
        namespace = cls.name or Path(name).stem
        toolkit = Toolkit(scope=scope, stores=stores, llm=llm, embedder=embedder, namespace=namespace, clock=clock)
        programs.append(cls(toolkit, (params or {}).get(name)))
    return programs


def MemoryAgent(
    llm: ChatModel,
    memory: list[MemoryProgram] | MemoryProgram | ComposedMemory | None = None,
    *,
    budget_tokens: int | None = None,
    max_answer_tokens: int = 48,
    remember_answers: bool = True,
    weights: dict[str, float] | None = None,
    router: Router | None = None,
) -> Agent:
    """The one agent set up for tasks (:meth:`agentmem.Agent.for_tasks`); ``remember_answers`` is its
    ``remember_turns`` (evaluation turns it off)."""
    from agentmem.sdk.agent import Agent

    return Agent.for_tasks(
        llm,
        memory,
        budget_tokens=budget_tokens,
        max_answer_tokens=max_answer_tokens,
        weights=weights,
        router=router,
        remember_turns=remember_answers,
    )


__all__ = ["MemoryAgent", "RecallItem", "build_memory_stack"]
