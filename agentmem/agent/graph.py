"""A minimal memory-backed agent on LangGraph: recall -> respond -> observe.

The graph is deliberately small: one node asks every memory for context
within the token budget, one node calls the LLM with the Jinja2 prompts, one
node lets memory observe the exchange (skipped during evaluation so that the
agent's own answers do not leak into what it is scored on).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph

from agentmem.environment import Answer
from agentmem.memory import MemoryProgram
from agentmem.prompts import render
from agentmem.registry import load_memory
from agentmem.toolkit import ChatModel, Clock, Embedder, Stores, Toolkit
from agentmem.types import Episode, Event, Query, Recall, RecallItem, Scope


class _TurnState(TypedDict, total=False):
    question: str
    now: str | None
    recalls: list[Recall]
    answer: str
    remember: bool


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


class MemoryAgent:
    """An LLM agent whose every answer is grounded in what its memories recall.

    ``memory`` is a list of memory programs (possibly empty); the token
    budget is split evenly among them.
    """

    def __init__(
        self,
        llm: ChatModel,
        memory: list[MemoryProgram] | MemoryProgram | None = None,
        *,
        budget_tokens: int = 1024,
        max_answer_tokens: int = 48,
        remember_answers: bool = True,
    ) -> None:
        self.llm = llm
        if memory is None:
            memory = []
        self.memory: list[MemoryProgram] = memory if isinstance(memory, list) else [memory]
        self.budget_tokens = budget_tokens
        self.max_answer_tokens = max_answer_tokens
        self.remember_answers = remember_answers
        self._graph = self._build_graph()

    # -- the graph ----------------------------------------------------------------
    def _build_graph(self) -> Any:
        graph = StateGraph(_TurnState)
        graph.add_node("recall", self._recall_node)
        graph.add_node("respond", self._respond_node)
        graph.add_node("observe", self._observe_node)
        graph.add_edge(START, "recall")
        graph.add_edge("recall", "respond")
        graph.add_conditional_edges("respond", lambda s: "observe" if s.get("remember") else END)
        graph.add_edge("observe", END)
        return graph.compile()

    def _recall_node(self, state: _TurnState) -> dict[str, Any]:
        if not self.memory:
            return {"recalls": []}
        share = self.budget_tokens // len(self.memory)
        query = Query(text=state["question"], budget_tokens=share)
        return {"recalls": [m.recall(query) for m in self.memory]}

    def _respond_node(self, state: _TurnState) -> dict[str, Any]:
        blocks = [r.instructions or r.text() for r in state.get("recalls", []) if r.items]
        messages = [
            {"role": "system", "content": render("answer_system")},
            {"role": "user", "content": render("answer_user", memory="\n\n".join(blocks), now=state.get("now"), question=state["question"])},
        ]
        text = self.llm.complete(messages, max_tokens=self.max_answer_tokens, caller="agent.respond")
        return {"answer": _clean_answer(text)}

    def _observe_node(self, state: _TurnState) -> dict[str, Any]:
        self.observe(Event.message(state["question"], speaker="user"))
        self.observe(Event.message(state["answer"], speaker="assistant"))
        return {}

    # -- the AgentLike interface environments use ------------------------------
    def observe(self, event: Event) -> None:
        for m in self.memory:
            m.observe(event)

    def end_session(self, episode: Episode) -> None:
        for m in self.memory:
            m.reflect(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        started = time.perf_counter()
        state = self._graph.invoke(
            {"question": question, "now": (context or {}).get("now"), "remember": self.remember_answers}
        )
        recalls: list[Recall] = state.get("recalls", [])
        merged = Recall(
            items=[item for r in recalls for item in r.items],
            omitted=sum(r.omitted for r in recalls),
            plugin="+".join(r.plugin for r in recalls),
        )
        return Answer(text=state["answer"], recall=merged, seconds=time.perf_counter() - started)

    def close(self) -> None:
        for m in self.memory:
            m.close()


def _clean_answer(text: str) -> str:
    """First non-empty line, without quotes or an 'Answer:' prefix."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    for prefix in ("answer:", "a:"):
        if first.lower().startswith(prefix):
            first = first[len(prefix):].strip()
    return first.strip('"').strip()


__all__ = ["MemoryAgent", "RecallItem", "build_memory_stack"]
