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

from agentmem.composition import ComposedMemory, Router
from agentmem.config import recall_budget
from agentmem.environment import Action, Answer
from agentmem.errors import ConfigError, LLMError, LLMUnavailable
from agentmem.memory import MemoryProgram
from agentmem.prompts import render
from agentmem.registry import load_memory
from agentmem.toolkit import ChatModel, Clock, Embedder, Stores, Toolkit
from agentmem.types import Episode, Event, Query, Recall, RecallItem, Scope


class _TurnState(TypedDict, total=False):
    question: str
    now: str | None
    recalls: list[Recall]
    recall: Recall
    answer: str
    remember: bool
    max_tokens: int | None
    free_form: bool


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

    ``memory`` is a list of memory programs (possibly empty) or one
    :class:`~agentmem.composition.ComposedMemory`; the token budget is split
    among them by ``weights`` (evenly by default), and an optional ``router``
    picks which of them to consult for each question.
    """

    def __init__(
        self,
        llm: ChatModel,
        memory: list[MemoryProgram] | MemoryProgram | None = None,
        *,
        budget_tokens: int | None = None,
        max_answer_tokens: int = 48,
        remember_answers: bool = True,
        weights: dict[str, float] | None = None,
        router: Router | None = None,
    ) -> None:
        self.llm = llm
        if isinstance(memory, ComposedMemory):
            self.composed = memory
        else:
            programs = [] if memory is None else (memory if isinstance(memory, list) else [memory])
            self.composed = ComposedMemory(programs, weights=weights, router=router)
        self.memory: list[MemoryProgram] = self.composed.programs
        self.budget_tokens = recall_budget(budget_tokens)  # None: the recall_budget setting
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
        if not self.composed.programs:
            return {"recalls": [], "recall": Recall()}
        merged = self.composed.recall(Query(text=state["question"], budget_tokens=self.budget_tokens))
        return {"recall": merged, "recalls": list(self.composed.last_recalls.values())}

    def _respond_node(self, state: _TurnState) -> dict[str, Any]:
        blocks = [r.instructions or r.text() for r in state.get("recalls", []) if r.items]
        free_form = bool(state.get("free_form"))
        messages = [
            {"role": "system", "content": render("solve_system" if free_form else "answer_system")},
            {"role": "user", "content": render("answer_user", memory="\n\n".join(blocks), now=state.get("now"), question=state["question"], free_form=free_form)},
        ]
        limit = state.get("max_tokens") or self.max_answer_tokens
        text = self.llm.complete(messages, max_tokens=limit, caller="agent.respond")
        return {"answer": text.strip() if free_form else _clean_answer(text)}

    def _observe_node(self, state: _TurnState) -> dict[str, Any]:
        self.observe(Event.message(state["question"], speaker="user"))
        self.observe(Event.message(state["answer"], speaker="assistant"))
        return {}

    # -- the AgentLike interface environments use ------------------------------
    def observe(self, event: Event) -> None:
        self.composed.observe(event)

    def end_session(self, episode: Episode) -> None:
        self.composed.reflect(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        started = time.perf_counter()
        context = context or {}
        state = self._graph.invoke({
            "question": question, "now": context.get("now"), "remember": self.remember_answers,
            # environments whose answers are not short phrases (a grid, code) ask for room and every line
            "max_tokens": context.get("max_tokens"), "free_form": bool(context.get("multiline")),
        })
        return Answer(text=state["answer"], recall=state.get("recall") or Recall(), seconds=time.perf_counter() - started)

    def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
        """Answer ``instruction`` with one call of one of ``tools`` (``ToolSpec``s or typed functions).

        Memory is recalled for the instruction (within the budget) and put
        first in the prompt, which tells the model to fill every parameter the
        request leaves unstated from the user's remembered preferences (the
        latest statement wins). The call itself is ``llm.call_tool``: JSON-schema
        constrained arguments, choose-then-fill when several tools are offered.
        A model that yields no valid call gives an empty :class:`Action` with
        the error, so that one bad reply costs one question, not the run; a
        model that cannot be reached (:class:`LLMUnavailable`) raises.
        """
        started = time.perf_counter()
        call_tool = getattr(self.llm, "call_tool", None)
        if call_tool is None:
            raise ConfigError(f"{type(self.llm).__name__} cannot call tools; use agentmem.llm.LLM to let the agent act")
        state = self._recall_node({"question": instruction})
        recall = state.get("recall") or Recall()
        blocks = [r.instructions or r.text() for r in state.get("recalls", []) if r.items]
        messages = [
            {"role": "system", "content": render("act_system")},
            {"role": "user", "content": render("act_user", memory="\n\n".join(blocks), now=(context or {}).get("now"), request=instruction)},
        ]
        try:
            call = call_tool(messages, tools, caller="agent.act")
        except LLMUnavailable:
            raise  # the server is down: no answer was given, none may be scored
        except LLMError as exc:
            return Action(recall=recall, error=str(exc), seconds=time.perf_counter() - started)
        return Action(tool=call.name, arguments=dict(call.arguments), recall=recall, seconds=time.perf_counter() - started)

    def close(self) -> None:
        self.composed.close()


def _clean_answer(text: str) -> str:
    """First non-empty line, without quotes or an 'Answer:' prefix."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    for prefix in ("answer:", "a:"):
        if first.lower().startswith(prefix):
            first = first[len(prefix):].strip()
    return first.strip('"').strip()


__all__ = ["MemoryAgent", "RecallItem", "build_memory_stack"]
