"""``agentmem.Agent``: a memory-backed chat agent in ten lines.

::

    from agentmem import Agent

    def get_weather(city: str) -> str:
        "The current weather in a city."
        return f"sunny in {city}"

    with Agent(memory="episodic+semantic", tools=[get_weather], user_id="ann") as agent:
        print(agent.chat("I prefer aisle seats", thread_id="trip").text)

Each turn runs a LangGraph ``StateGraph`` compiled with a SQLite checkpointer
(``<store_dir>/threads.sqlite``), so a thread's messages survive a restart:

    recall -> decide -> [tools -> decide]* -> respond -> observe -> END

* **recall** asks every memory plugin for context about the user's message
  within ``budget_tokens`` (split among plugins by
  :class:`~agentmem.composition.ComposedMemory`).
* **decide** picks a tool or none. Small local models are not reliable at
  free-form function calling, so for them (and for any non-litellm
  ``ChatModel``) this is two constrained steps: a JSON choice among the tool
  names plus ``"none"``, then the chosen tool's arguments constrained by its
  JSON schema. Remote models use native function calling.
* **tools** runs the chosen function; an exception becomes the tool's result
  text (``error: ...``), never a crash. At most ``max_tool_rounds`` rounds.
* **respond** streams the answer from the system prompt, the recalled memory,
  the thread's recent messages (within ``history_tokens``) and the tool results.
* **observe** hands the user message, tool calls and results, and the answer
  to memory as :class:`~agentmem.types.Event` s (session = the thread). Every
  ``reflect_every`` turns of a thread, and at :meth:`Agent.end_thread`, memory
  also gets ``reflect(Episode)`` to consolidate. Skipped when
  ``remember_turns`` is off.

Memory is scoped by ``user_id`` alone: a user's memories are shared by all of
their threads and never seen by another user.

This is the one agent of agentmem: ``agentmem eval``, grids and evolution
score exactly this graph and these prompts (``agentmem/prompts/agent_*.j2``).
They build it with :meth:`Agent.for_tasks` (memory programs they made, no
thread store, ``remember_turns`` off so that the agent's own answers never
reach the memory being scored) and drive it through the environment
interface, :meth:`Agent.observe`, :meth:`Agent.end_session`,
:meth:`Agent.answer` and :meth:`Agent.act`. A benchmark's task says how to
answer through its instruction (``context["instruction"]``; by default
``task_answer.j2``, a short phrase from memory), which takes the place of
the conversational system prompt (``persona.j2``) for that question: an SDK
user who gives the same ``system_prompt`` gets the same messages.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

from pydantic import create_model

from agentmem.composition import ComposedMemory, Router
from agentmem.environment import Action, Answer
from agentmem.errors import ConfigError, LLMError, LLMUnavailable
from agentmem.llm.tools import ToolSpec, as_tool_specs, parse_tool_calls
from agentmem.memory import Forgets, MemoryProgram
from agentmem.packer import Candidate, Packer
from agentmem.prompts import render
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
from agentmem.toolkit import ChatModel, Stores, Toolkit
from agentmem.types import Episode, Event, Query, Recall, RecallItem, Scope

MemorySpec = str | Path | MemoryProgram | type[MemoryProgram]

__all__ = ["Agent", "Message", "RecallDetail", "Reply", "StreamEvent", "ThreadInfo", "TurnTrace", "default_store_dir"]


def _check_memory_names(memory: Any) -> None:
    """Load every plugin named in ``memory`` (names and ``.py`` paths; objects are checked when built)."""
    from agentmem.registry import load_memory

    for spec in memory if isinstance(memory, (list, tuple)) else [memory]:
        if isinstance(spec, (str, Path)):
            text = str(spec)
            names = [text] if text.endswith(".py") else [n.strip() for n in text.split("+")]
            for name in names:
                if name and name != "none":
                    load_memory(name)


def default_store_dir() -> Path:
    """The ``home`` setting (``AGENTMEM_HOME``; default ``<user data dir>/agentmem``): where memories and
    threads live unless ``store_dir`` says otherwise."""
    from agentmem.config import load_settings

    return load_settings().home


def _append(old: list[dict[str, Any]] | None, new: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The ``messages`` reducer: nodes return only the messages they add."""
    return [*(old or []), *(new or [])]


class _State(TypedDict, total=False):
    messages: Annotated[list[dict[str, Any]], _append]  # the thread: persisted by the checkpointer
    turns: int  # finished turns in this thread (for reflect_every)
    thread_id: str
    # this turn only (overwritten by the next one)
    user: str
    recalls: list[dict[str, Any]]
    memory: str
    tool_calls: list[dict[str, Any]]
    pending: dict[str, Any] | None
    draft: str | None
    answer: str
    written: dict[str, list[str]]
    # what the caller sets for this turn: a task's instruction in place of the system prompt, the date it
    # happens on, the reply's room, whether memory observes the turn, and whether someone watches the tokens
    instruction: str | None
    message_template: str | None  # a task's user-message template (memory beside the request) in place of agent_user
    now: str | None
    max_tokens: int | None
    remember: bool
    streaming: bool


class _ModelHandle:
    """The agent's current model, as memory plugins see it: :meth:`Agent.set_model` swaps what it points to."""

    def __init__(self, model: ChatModel) -> None:
        self.target = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class Agent:
    """A chat agent with long-term memory, tools and persistent threads (see the module's notes).

    ``model``: ``None`` for the configured model (``AGENTMEM_MODEL`` /
    ``agentmem.toml``, else the embedded llama.cpp one), ``"local"`` (the
    embedded llama.cpp backend: the configured ``local/<name>`` if any), any
    litellm model string (``"openai/gpt-4o-mini"``, ``"hosted_vllm/..."`` with
    ``api_base``), or a ready :class:`~agentmem.toolkit.ChatModel`.
    ``budget_tokens`` and ``max_reply_tokens`` default to the ``recall_budget``
    and ``max_reply_tokens`` settings. ``memory``: plugin names
    (``"episodic"``), ``"episodic+semantic"``, paths of program ``.py`` files,
    :class:`~agentmem.memory.MemoryProgram` instances, or a list of them;
    ``None`` for none. ``tools``: typed Python functions (the docstring is
    the description, the type hints the schema). ``params``: per-plugin
    parameters, ``{"episodic": {"top_k": 4}}``.
    """

    #: the reply room of :meth:`answer` when the task names none: QA answers are short phrases
    ANSWER_TOKENS = 48

    def __init__(
        self,
        model: str | ChatModel | None = None,
        memory: MemorySpec | list[MemorySpec] | None = None,
        tools: list[Callable[..., Any] | ToolSpec] | None = None,
        user_id: str = "default",
        store_dir: str | Path | None = None,
        *,
        system_prompt: str | None = None,
        budget_tokens: int | None = None,
        api_base: str | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        max_tool_rounds: int = 3,
        history_tokens: int = 1536,
        max_reply_tokens: int | None = None,
        reflect_every: int | None = 10,
        remember_turns: bool = True,
    ) -> None:
        if not isinstance(user_id, str) or not user_id.strip():
            raise ConfigError("Agent(user_id=...) is empty: give the name or id of the person the memories belong to")
        self.user_id = user_id
        from agentmem.config import load_settings

        # resolved once: a model string here is the top layer, paired with api_base (see agentmem.config)
        settings = load_settings(model=model if isinstance(model, str) else None, api_base=api_base)
        _check_memory_names(memory)  # a misspelt plugin fails before any directory is made
        directory = Path(store_dir).expanduser() if store_dir is not None else settings.home
        if directory.exists() and not directory.is_dir():
            raise ConfigError(f"Agent(store_dir=...): {directory} is a file; give a directory for threads and memories")
        directory.mkdir(parents=True, exist_ok=True)
        self.store_dir: Path | None = directory  # None for a task agent (Agent.for_tasks)
        self._configure(
            system_prompt=system_prompt,
            budget_tokens=budget_tokens if budget_tokens is not None else settings.recall_budget,
            max_tool_rounds=max_tool_rounds,
            history_tokens=history_tokens,
            max_reply_tokens=max_reply_tokens if max_reply_tokens is not None else settings.max_reply_tokens,
            reflect_every=reflect_every,
            remember_turns=remember_turns,
        )

        self._handle = _ModelHandle(self._make_model(model, settings))
        try:
            self.tools: list[ToolSpec] = as_tool_specs(tools or [])
        except ValueError as exc:
            raise ConfigError(f"Agent(tools=...): {exc}; give each tool a unique function name") from None
        self._tools = {t.name: t for t in self.tools}
        self.stores: Stores | None = Stores(directory / "memory")
        self.scope = Scope(user_id=user_id)
        self.memory = ComposedMemory(self._make_memory(memory, params))

        from langgraph.checkpoint.sqlite import SqliteSaver

        self._conn: sqlite3.Connection | None = sqlite3.connect(directory / "threads.sqlite", check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._saver: Any = SqliteSaver(self._conn)
        self._saver.setup()
        self._build_graphs()

    @classmethod
    def for_tasks(
        cls,
        model: ChatModel,
        memory: list[MemoryProgram] | MemoryProgram | ComposedMemory | None = None,
        *,
        budget_tokens: int | None = None,
        max_answer_tokens: int | None = None,
        weights: dict[str, float] | None = None,
        router: Router | None = None,
        remember_turns: bool = False,
        system_prompt: str | None = None,
    ) -> Agent:
        """The same agent, set up the way ``agentmem eval`` and evolution run it on a benchmark's task.

        ``memory``: programs the caller built (each with its own toolkit and
        store, which the caller closes), or one
        :class:`~agentmem.composition.ComposedMemory`; the token budget is
        split among them by ``weights`` and an optional ``router`` picks whom
        to ask. No thread store is kept on disk (threads live in memory, and
        each :meth:`answer` is a fresh one), and ``remember_turns`` is off:
        memory sees only what the task feeds it, never the agent's answers.
        """
        agent = cls.__new__(cls)
        agent.user_id = "task"
        agent.store_dir = None
        from agentmem.config import load_settings

        settings = load_settings()
        agent._configure(
            system_prompt=system_prompt,
            budget_tokens=budget_tokens if budget_tokens is not None else settings.recall_budget,
            max_tool_rounds=3,
            history_tokens=1536,
            max_reply_tokens=settings.max_reply_tokens,
            reflect_every=None,
            remember_turns=remember_turns,
        )
        if max_answer_tokens is not None:
            agent.answer_tokens = max_answer_tokens
        agent._handle = _ModelHandle(cls._make_model(model, None))
        agent.tools, agent._tools = [], {}
        agent.stores = None
        agent.scope = Scope(user_id=agent.user_id)
        if isinstance(memory, ComposedMemory):
            agent.memory = memory
        else:
            programs = [] if memory is None else (memory if isinstance(memory, list) else [memory])
            agent.memory = ComposedMemory(programs, weights=weights, router=router)
        from langgraph.checkpoint.memory import InMemorySaver

        agent._conn = None
        agent._saver = InMemorySaver()
        agent._build_graphs()
        return agent

    def _configure(
        self,
        *,
        system_prompt: str | None,
        budget_tokens: int,
        max_tool_rounds: int,
        history_tokens: int,
        max_reply_tokens: int,
        reflect_every: int | None,
        remember_turns: bool,
    ) -> None:
        self.system_prompt = system_prompt
        self.budget_tokens = budget_tokens
        self.max_tool_rounds = max_tool_rounds
        self.history_tokens = history_tokens
        self.max_reply_tokens = max_reply_tokens
        self.answer_tokens = self.ANSWER_TOKENS
        self.reflect_every = reflect_every
        self.remember_turns = remember_turns
        self._last_recall = Recall()
        self._lock = threading.RLock()
        self._closed = False

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def _make_model(model: str | ChatModel | None, settings: Any) -> ChatModel:
        if model is None or isinstance(model, str):
            from agentmem.config import load_settings
            from agentmem.llm import LLM
            from agentmem.llm.models import conversation_model

            if settings is None:
                settings = load_settings(model=model)
            # no model given: the configured one, else the local model that converses well (see conversation_model)
            chosen = conversation_model(settings) if model is None else settings.model
            return LLM(
                chosen,
                api_base=settings.api_base,
                api_key=settings.api_key,
                settings=settings,
                max_tokens=settings.max_reply_tokens,
            )
            from agentmem.llm import LLM

            return LLM(
                settings.model,
                api_base=settings.api_base,
                api_key=settings.api_key,
                settings=settings,
                max_tokens=settings.max_reply_tokens,
            )
        if not callable(getattr(model, "complete", None)):
            raise ConfigError(
                f'Agent(model=...) got a {type(model).__name__}: give a model string such as "local" or an object '
                "with complete() and structured() (agentmem.toolkit.ChatModel)"
            )
        return model

    def _make_memory(
        self, memory: MemorySpec | list[MemorySpec] | None, params: dict[str, dict[str, Any]] | None
    ) -> list[MemoryProgram]:
        from agentmem.agent.graph import build_memory_stack

        if memory is None:
            return []
        specs: list[MemorySpec] = []
        for spec in memory if isinstance(memory, (list, tuple)) else [memory]:
            if isinstance(spec, str) and "+" in spec and not spec.endswith(".py"):
                specs += [s.strip() for s in spec.split("+") if s.strip()]
            else:
                specs.append(spec)
        programs: list[MemoryProgram] = []
        for spec in specs:
            if isinstance(spec, MemoryProgram):
                programs.append(spec)
            elif isinstance(spec, type) and issubclass(spec, MemoryProgram):  # a class: built here, in this scope
                toolkit = Toolkit(
                    scope=self.scope,
                    stores=self.stores,  # type: ignore[arg-type]
                    llm=self._handle,
                    namespace=spec.name or spec.__name__,
                )
                programs.append(spec(toolkit, (params or {}).get(spec.name or spec.__name__)))
            elif isinstance(spec, (str, Path)):
                name = str(spec)
                if name in ("none", ""):
                    continue
                programs += build_memory_stack(
                    [name],
                    scope=self.scope,
                    stores=self.stores,  # type: ignore[arg-type]
                    llm=self._handle,
                    params=params,
                )
            else:
                raise ConfigError(
                    f'Agent(memory=...) got a {type(spec).__name__}: give plugin names ("episodic"), '
                    '"episodic+semantic", .py program paths or MemoryProgram instances'
                )
        return programs

    # -- public properties ----------------------------------------------------------------
    @property
    def plugins(self) -> list[str]:
        """The memory plugins in use, by name (``[]`` for none)."""
        return list(self.memory.names)

    @property
    def model(self) -> str:
        """The model string in use (``"local"``, ``"openai/gpt-4o-mini"``), or the ChatModel's class name."""
        target = self._handle.target
        return str(getattr(target, "model", None) or type(target).__name__)

    @property
    def llm(self) -> ChatModel:
        """The model object answering now (an :class:`agentmem.llm.LLM` unless you passed your own)."""
        return self._handle.target

    def set_model(self, model: str | ChatModel | None, api_base: str | None = None) -> None:
        """Switch the model for the following turns; memories and threads stay as they are."""
        from agentmem.config import load_settings

        settings = load_settings(model=model if isinstance(model, str) else None, api_base=api_base)
        with self._lock:
            self._handle.target = self._make_model(model, settings)

    # -- the graph -------------------------------------------------------------------------
    def _build_graphs(self) -> None:
        """The graph, compiled twice: with the thread store (chat) and without it (one-off task questions)."""
        graph = self._graph_builder()
        self._graph = graph.compile(checkpointer=self._saver)
        self._oneoff = graph.compile()

    def _graph_builder(self) -> Any:
        from langgraph.graph import END, START, StateGraph

        graph = StateGraph(_State)
        graph.add_node("recall", self._recall_node)
        graph.add_node("decide", self._decide_node)
        graph.add_node("tools", self._tools_node)
        graph.add_node("respond", self._respond_node)
        graph.add_node("observe", self._observe_node)
        graph.add_edge(START, "recall")
        graph.add_edge("recall", "decide")
        graph.add_conditional_edges(
            "decide", lambda s: "tools" if s.get("pending") else "respond", ["tools", "respond"]
        )
        graph.add_edge("tools", "decide")
        graph.add_conditional_edges(
            "respond", lambda s: "observe" if s.get("remember", True) else END, ["observe", END]
        )
        graph.add_edge("observe", END)
        return graph

    def _recall_node(self, state: _State) -> dict[str, Any]:
        user = state["messages"][-1]["content"]
        details, block = self._recall(user, self.budget_tokens)
        return {
            "user": user,
            "recalls": [d.model_dump(mode="json") for d in details],
            "memory": block,
            "tool_calls": [],
            "pending": None,
            "draft": None,
            "answer": "",
            "written": {},
        }

    def _decide_node(self, state: _State) -> dict[str, Any]:
        done = [ToolCallRecord.model_validate(c) for c in state.get("tool_calls") or []]
        # a tool is called at most once a turn: small models otherwise repeat the call they just made
        untried = [t for t in self.tools if not any(c.name == t.name for c in done)]
        if not untried or len(done) >= self.max_tool_rounds:
            return {"pending": None}
        llm = self._handle.target
        messages = self._prompt(state, with_results=False)
        if _is_remote_llm(llm) and not done:
            return self._decide_native(llm, messages)
        note = render("agent_decide", tools=untried, done=[c.model_dump() for c in done])
        names = [t.name for t in untried]
        # a Literal of names known only at run time: no static type can say it
        choice_model = create_model(
            "ToolChoice",
            tool=(Literal[tuple([*names, "none"])], ...),  # type: ignore[arg-type,maybe-unrecognized-str-typeform]
        )
        choice = llm.structured(_with_note(messages, note), choice_model, caller="agent.decide")
        name = getattr(choice, "tool", "none")
        if name == "none" or name not in self._tools or any(c.name == name for c in done):
            return {"pending": None}
        spec = self._tools[name]
        call_tool = getattr(llm, "call_tool", None)
        try:
            if call_tool is not None:
                arguments = dict(call_tool(messages, [spec], tool=name, caller="agent.tool_args").arguments)
            elif spec._args_model is not None:
                arguments = llm.structured(messages, spec._args_model, caller="agent.tool_args").model_dump(mode="json")
            else:
                return {"pending": None}
        except LLMError as exc:  # the model could not fill the arguments: answer without the tool, say why
            return {
                "pending": None,
                "tool_calls": [
                    *state.get("tool_calls", []),
                    ToolCallRecord(name=name, error=f"{_NOT_CALLED}{exc}").model_dump(mode="json"),
                ],
            }
        return {"pending": {"name": name, "arguments": arguments}}

    def _decide_native(self, llm: Any, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """Native function calling: the model calls a tool or answers right away (the answer is kept as a draft)."""
        request = {
            "messages": messages,
            "max_tokens": self.max_reply_tokens,
            "temperature": llm.temperature,
            "response_format": None,
            "tools": [t.openai() for t in self.tools],
            "tool_choice": "auto",
        }
        text = llm._call(request, "agent.decide")
        calls = parse_tool_calls(text, self.tools, strict=False)
        if calls:
            return {"pending": {"name": calls[0].name, "arguments": dict(calls[0].arguments)}}
        return {"pending": None, "draft": text.strip()}

    def _tools_node(self, state: _State) -> dict[str, Any]:
        pending = state.get("pending") or {}
        name, arguments = pending.get("name", ""), dict(pending.get("arguments") or {})
        record = ToolCallRecord(name=name, arguments=arguments)
        spec = self._tools.get(name)
        try:
            if spec is None:
                raise LookupError(f"no tool named {name!r}")
            result = spec(**arguments)
            record.result = result if isinstance(result, str) else json.dumps(result, default=str)
        except Exception as exc:
            record.error = f"error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        message = {
            "role": "tool",
            "content": record.error or record.result or "",
            "tool_name": name,
            "tool_args": arguments,
            "ts": _now(),
        }
        return {
            "pending": None,
            "tool_calls": [*state.get("tool_calls", []), record.model_dump(mode="json")],
            "messages": [message],
        }

    def _respond_node(self, state: _State) -> dict[str, Any]:
        from langgraph.config import get_stream_writer

        write = get_stream_writer()
        llm = self._handle.target
        draft = state.get("draft")
        room = state.get("max_tokens") or self.max_reply_tokens
        if draft:
            write({"token": draft})
            text = draft
        elif state.get("streaming", True) and callable(stream := getattr(llm, "stream", None)):
            pieces: list[str] = []
            for piece in stream(self._prompt(state, with_results=True), max_tokens=room, caller="agent.respond"):
                pieces.append(piece)
                write({"token": piece})
            text = "".join(pieces)
        else:
            text = llm.complete(self._prompt(state, with_results=True), max_tokens=room, caller="agent.respond")
            write({"token": text})
        answer = text.strip()
        if not answer:
            # A small model sometimes ends its turn with nothing after a tool ran (the local 0.5B did, under load,
            # once in many runs): the tool's result is then the answer, rather than an empty reply.
            answer = next(
                (str(c.get("result")) for c in reversed(state.get("tool_calls") or []) if c.get("result")), ""
            )
            if answer:
                write({"token": answer})
        return {"answer": answer, "messages": [{"role": "assistant", "content": answer, "ts": _now()}]}

    def _observe_node(self, state: _State) -> dict[str, Any]:
        thread_id = state.get("thread_id") or "default"
        events = [Event.message(state["user"], speaker="user", session_id=thread_id)]
        for call in state.get("tool_calls") or []:
            if not _was_called(call):
                continue
            events.append(Event.tool_call(call["name"], call.get("arguments") or {}, session_id=thread_id))
            events.append(
                Event.observation(
                    call.get("error") or call.get("result") or "", session_id=thread_id, metadata={"tool": call["name"]}
                )
            )
        events.append(Event.message(state["answer"], speaker="assistant", session_id=thread_id))
        written: dict[str, list[str]] = {}
        if self.memory.programs:
            for event in events:
                self.memory.observe(event)
            lines = [_event_line(e) for e in events]
            written = {name: list(lines) for name in self.memory.names}
        turns = int(state.get("turns") or 0) + 1
        if self.reflect_every and turns % self.reflect_every == 0 and self.memory.programs:
            self._reflect(thread_id, state.get("messages") or [])
        return {"written": written, "turns": turns}

    # -- prompt ------------------------------------------------------------------------------
    def _prompt(self, state: _State, *, with_results: bool) -> list[dict[str, Any]]:
        """System prompt + memory, the thread's recent user/assistant messages within ``history_tokens``,
        the message.
        """
        template = state.get("message_template")
        memory = state.get("memory") or ""
        now = state.get("now") or datetime.now().strftime("%A %d %B %Y")
        system = render(
            "agent_system",
            instruction=state.get("instruction") or self.system_prompt or render("persona"),
            memory="" if template else memory,
            now="" if template else now,
        )
        thread = state.get("messages") or []
        start = max((i for i, m in enumerate(thread) if m.get("role") == "user"), default=len(thread))
        earlier = [m for m in thread[:start] if m.get("role") in ("user", "assistant") and m.get("content")]
        window = _HISTORY.pack(  # the newest messages that fit, each with its role's few tokens, oldest first
            (
                Candidate(RecallItem(content=m["content"], metadata={"role": m["role"]}), n)
                for n, m in reversed(list(enumerate(earlier)))
            ),
            self.history_tokens,
            extra=lambda cand, kept: 4,
        )
        recent = [{"role": i.metadata["role"], "content": i.content} for i in window.items]
        while recent and recent[0]["role"] != "user":  # chat templates want user first after the system message
            recent.pop(0)
        results = [c for c in state.get("tool_calls") or [] if _was_called(c)]
        user = render(
            template or "agent_user",
            message=state.get("user") or "",
            tool_results=results if with_results else [],
            memory=memory,
            now=now,
        )
        return [{"role": "system", "content": system}, *recent, {"role": "user", "content": user}]

    # -- memory ------------------------------------------------------------------------------
    def _recall(self, query: str, budget: int) -> tuple[list[RecallDetail], str]:
        self._last_recall = Recall()
        if not self.memory.programs or budget <= 0:
            return [], ""
        merged = self._last_recall = self.memory.recall(Query(text=query, budget_tokens=budget))
        details = [_detail(name, r) for name, r in self.memory.last_recalls.items()]
        return details, merged.block()

    def search_memory(self, query: str, budget_tokens: int | None = None) -> list[RecallDetail]:
        """What each memory plugin recalls for ``query`` (as the agent would see it), without chatting."""
        with self._lock:
            self._check_open()
            details, _ = self._recall(query, self.budget_tokens if budget_tokens is None else budget_tokens)
            return details

    def forget(self, item_id: str | None = None, *, query: str | None = None) -> int:
        """Soft-delete memory items by id, or those recalled for ``query``; returns how many were forgotten.

        Only plugins that declare the capability (subclasses of
        :class:`agentmem.memory.Forgets`: semantic does) can forget; stored
        history stays, the item just leaves recall. Ids are the
        ``RecalledItem.id`` values :meth:`search_memory` and reply traces show;
        each forgetting plugin says whether the id was its own.
        """
        if (item_id is None) == (query is None):
            raise ConfigError("Agent.forget: give either an item id or query=..., not both and not neither")
        with self._lock:
            self._check_open()
            able = {n: p for n, p in self.memory.members.items() if isinstance(p, Forgets)}
            if not able:
                raise ConfigError(
                    f"memory {self.memory.label} cannot forget items: use a plugin that supports it "
                    '(e.g. memory="semantic") or delete the store directory'
                )
            if item_id is not None:
                targets = [(p, item_id) for p in able.values()]
            else:
                targets = [
                    (able[d.plugin], i.id)
                    for d in self._recall(query or "", self.budget_tokens)[0]
                    if d.plugin in able
                    for i in d.items
                    if i.id
                ]
            return sum(1 for program, target in targets if program.forget(target))

    def end_thread(
        self, thread_id: str = "default", *, outcome: str | None = None, reward: float | None = None
    ) -> None:
        """Tell memory a conversation is over: it gets ``reflect(Episode)`` to consolidate (extract facts, distil).

        Also called every ``reflect_every`` turns of a thread. The thread itself
        stays and can be continued.
        """
        with self._lock:
            self._check_open()
            messages = self._values(thread_id).get("messages") or []
            self._reflect(thread_id, messages, outcome=outcome, reward=reward)

    def _reflect(
        self, thread_id: str, messages: list[dict[str, Any]], *, outcome: str | None = None, reward: float | None = None
    ) -> None:
        if not self.memory.programs:
            return
        events: list[Event] = []
        for m in messages:
            if m.get("role") == "tool":
                events.append(
                    Event.tool_call(m.get("tool_name") or "tool", m.get("tool_args") or {}, session_id=thread_id)
                )
                events.append(Event.observation(m.get("content") or "", session_id=thread_id))
            elif m.get("role") in ("user", "assistant"):
                events.append(Event.message(m.get("content") or "", speaker=m["role"], session_id=thread_id))
        self.memory.reflect(
            Episode(
                task=thread_id,
                events=events,
                outcome=outcome,
                reward=reward,
                metadata={"thread_id": thread_id, "user_id": self.user_id},
            )
        )

    # -- tasks: the interface environments drive (agentmem eval, grids, evolution) -----------------
    def observe(self, event: Event) -> None:
        """Hand memory one event of a task's history (a message, a tool call, an observation)."""
        with self._lock:
            self._check_open()
            self.memory.observe(event)

    def end_session(self, episode: Episode) -> None:
        """A task's session is over: memory gets ``reflect(episode)`` to consolidate."""
        with self._lock:
            self._check_open()
            self.memory.reflect(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        """Answer one task question with a turn of the chat graph, in a fresh thread of its own.

        ``context`` is the task's: ``instruction`` (the system prompt of this
        turn; default ``task_answer.j2``, or ``task_solve.j2`` when
        ``multiline``), ``now`` (the date the question is asked on),
        ``max_tokens`` (the reply's room; default :attr:`ANSWER_TOKENS`) and
        ``multiline`` (keep the whole reply; otherwise its first line, without
        quotes or an ``Answer:`` prefix, is the answer). Memory observes the
        turn only when ``remember_turns`` is on.
        """
        context = context or {}
        free_form = bool(context.get("multiline"))
        turn = {
            "messages": [{"role": "user", "content": question, "ts": _now()}],
            "thread_id": "task",
            "instruction": context.get("instruction") or render("task_solve" if free_form else "task_answer"),
            # memory and date beside the question, as task_answer_user.j2 lays them out (see its comment)
            "message_template": None if free_form else "task_answer_user",
            "now": context.get("now"),
            "max_tokens": context.get("max_tokens") or self.answer_tokens,
            "remember": self.remember_turns,
            # nobody watches a task's tokens: one call, which the client retries whole if the connection drops
            "streaming": False,
        }
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            final = self._oneoff.invoke(turn)
            text = str(final.get("answer") or "")
            return Answer(
                text=text if free_form else _clean_answer(text),
                recall=self._last_recall,
                seconds=time.perf_counter() - started,
            )

    def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
        """Answer ``instruction`` with one call of one of ``tools`` (``ToolSpec``s or typed functions).

        The prompt is a turn's prompt (system template, recalled memory, the
        request) with the task's instruction (``context["instruction"]``;
        default ``task_act.j2``: fill every parameter the request leaves
        unstated from the user's remembered preferences, the latest statement
        winning). The call is ``llm.call_tool``: JSON-schema constrained
        arguments, choose-then-fill when several tools are offered. A model
        that yields no valid call gives an empty :class:`Action` with the
        error, so that one bad reply costs one question, not the run; a model
        that cannot be reached (:class:`LLMUnavailable`) raises.
        """
        context = context or {}
        call_tool = getattr(self.llm, "call_tool", None)
        if call_tool is None:
            raise ConfigError(f"{type(self.llm).__name__} cannot call tools; use agentmem.llm.LLM to let the agent act")
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            _, block = self._recall(instruction, self.budget_tokens)
            recall = self._last_recall
            state: _State = {
                "user": instruction,
                "memory": block,
                "now": context.get("now"),
                "instruction": context.get("instruction") or render("task_act"),
                "message_template": "task_act_user",
            }
            try:
                call = call_tool(self._prompt(state, with_results=False), tools, caller="agent.act")
            except LLMUnavailable:
                raise  # the server is down: no answer was given, none may be scored
            except LLMError as exc:
                return Action(recall=recall, error=str(exc), seconds=time.perf_counter() - started)
            return Action(
                tool=call.name, arguments=dict(call.arguments), recall=recall, seconds=time.perf_counter() - started
            )

    # -- chatting ------------------------------------------------------------------------------
    def chat(self, message: str, thread_id: str = "default") -> Reply:
        """Answer ``message`` in thread ``thread_id`` (created on first use); the reply carries its trace."""
        reply: Reply | None = None
        for event in self.stream(message, thread_id=thread_id):
            if event.kind == "reply":
                reply = event.reply
        assert reply is not None
        return reply

    async def achat(self, message: str, thread_id: str = "default") -> Reply:
        """:meth:`chat` for asyncio (the turn runs in a worker thread; the event loop stays free)."""
        return await asyncio.to_thread(self.chat, message, thread_id)

    def stream(self, message: str, thread_id: str = "default") -> Iterator[StreamEvent]:
        """The answer as it is generated: ``token`` events, then one ``reply`` event with the full :class:`Reply`."""
        if not isinstance(message, str) or not message.strip():
            raise ConfigError("Agent.chat: the message is empty; say something")
        if not isinstance(thread_id, str) or not thread_id.strip():
            raise ConfigError('Agent.chat: thread_id is empty; name the conversation, e.g. thread_id="default"')
        with self._lock:
            self._check_open()
            started = time.perf_counter()
            meter = getattr(self._handle.target, "meter", None)
            before = meter.snapshot() if meter is not None else None
            config = {"configurable": {"thread_id": thread_id}}
            user = {"role": "user", "content": message, "ts": _now()}
            final: dict[str, Any] = {}
            turn = {
                "messages": [user],
                "thread_id": thread_id,
                "instruction": None,
                "now": None,
                "max_tokens": None,
                "remember": self.remember_turns,
                "streaming": True,
            }
            for mode, chunk in self._graph.stream(turn, config, stream_mode=["custom", "values"]):
                if mode == "custom" and isinstance(chunk, dict) and chunk.get("token"):
                    yield StreamEvent(kind="token", text=str(chunk["token"]))
                elif mode == "values":
                    final = chunk
            trace = TurnTrace(
                recalls=[RecallDetail.model_validate(r) for r in final.get("recalls") or []],
                written=dict(final.get("written") or {}),
                tool_calls=[ToolCallRecord.model_validate(c) for c in final.get("tool_calls") or []],
                seconds=time.perf_counter() - started,
            )
            if meter is not None and before is not None:
                total = meter.delta(before)["total"]
                trace.llm_calls = int(total.get("calls", 0))
                trace.prompt_tokens = int(total.get("prompt_tokens", 0))
                trace.completion_tokens = int(total.get("completion_tokens", 0))
            reply = Reply(text=str(final.get("answer") or ""), thread_id=thread_id, trace=trace)
            yield StreamEvent(kind="reply", reply=reply)

    async def astream(self, message: str, thread_id: str = "default") -> AsyncIterator[StreamEvent]:
        """:meth:`stream` for asyncio: the same events, produced in a worker thread."""
        from agentmem.llm.client import iterate_in_thread

        async for event in iterate_in_thread(lambda: self.stream(message, thread_id=thread_id)):
            yield event

    # -- threads -------------------------------------------------------------------------------
    def _values(self, thread_id: str) -> dict[str, Any]:
        snapshot = self._graph.get_state({"configurable": {"thread_id": thread_id}})
        return dict(snapshot.values or {})

    def threads(self) -> list[ThreadInfo]:
        """Every thread in this store, most recently updated first.

        Reads only the checkpointer (which has its own lock), so a UI may call
        it while a turn is streaming in another thread.
        """
        self._check_open()
        if self._conn is None:  # a task agent: threads live in memory
            rows = sorted({(c.config["configurable"]["thread_id"],) for c in self._saver.list(None)})
        else:
            with self._saver.lock:
                rows = self._conn.execute(
                    "SELECT DISTINCT thread_id FROM checkpoints WHERE checkpoint_ns = ''"
                ).fetchall()
        out: list[ThreadInfo] = []
        for (thread_id,) in rows:
            found = self._saver.get_tuple({"configurable": {"thread_id": thread_id}})
            if found is None:
                continue
            values = found.checkpoint.get("channel_values") or {}
            ts = found.checkpoint.get("ts")
            out.append(
                ThreadInfo(
                    id=str(thread_id),
                    messages=len(values.get("messages") or []),
                    updated_at=datetime.fromisoformat(ts) if isinstance(ts, str) else None,
                )
            )
        epoch = datetime.min.replace(tzinfo=UTC)
        return sorted(out, key=lambda t: t.updated_at or epoch, reverse=True)

    def history(self, thread_id: str = "default") -> list[Message]:
        """The thread's messages, oldest first (``[]`` for a thread never used); safe during a turn."""
        self._check_open()
        return [
            Message(
                role=m["role"],
                content=m.get("content") or "",
                tool_name=m.get("tool_name"),
                tool_args=m.get("tool_args"),
            )
            for m in self._values(thread_id).get("messages") or []
        ]

    # -- lifetime ------------------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ConfigError("this Agent is closed: create a new Agent(...) with the same store_dir to go on")

    def close(self) -> None:
        """Flush and close memory and the thread store (stored data stays); closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self.memory.close()
            finally:
                if self._conn is not None:
                    self._conn.close()
                if self.stores is not None:  # a task agent's programs came with stores their builder closes
                    self.stores.close()

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Agent(model={self.model!r}, memory={self.memory.label!r}, user_id={self.user_id!r})"


# -- helpers -------------------------------------------------------------------------------------
_NOT_CALLED = "not called: "  # a tool the model chose but could not give valid arguments


def _was_called(call: dict[str, Any]) -> bool:
    return bool(call.get("name")) and not str(call.get("error") or "").startswith(_NOT_CALLED)


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _is_remote_llm(llm: Any) -> bool:
    """A litellm model that speaks native function calling (not the embedded local one)."""
    from agentmem.llm import LLM

    return isinstance(llm, LLM) and not llm.is_local


def _with_note(messages: list[dict[str, Any]], note: str) -> list[dict[str, Any]]:
    out = [dict(m) for m in messages]
    out[-1]["content"] = f"{out[-1]['content']}\n\n{note}"
    return out


def _clean_answer(text: str) -> str:
    """A short answer as a QA scorer wants it: the first non-empty line, without quotes or an 'Answer:' prefix."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else ""
    for prefix in ("answer:", "a:"):
        if first.lower().startswith(prefix):
            first = first[len(prefix) :].strip()
    return first.strip('"').strip()


def _event_line(event: Event) -> str:
    if event.kind == "tool_call":
        return f"tool call: {event.tool_name}({json.dumps(event.arguments or {}, default=str)})"
    if event.kind == "observation":
        return f"tool result: {event.content}"
    return f"{event.speaker or event.kind}: {event.content}"


_HISTORY = Packer(order="position", contiguous=True)


def _item_id(item: Any) -> str:
    meta = item.metadata or {}
    for key in ("fact_id", "item_id", "id"):
        if meta.get(key):
            return str(meta[key])
    if item.event_ids:
        return str(item.event_ids[0])
    return ""


def _why(item: Any) -> str:
    meta = item.metadata or {}
    for key in ("why", "reason"):
        if meta.get(key):
            return str(meta[key])
    parts = [f"score {item.score:.3f}"]
    if meta.get("key"):
        parts.append(f"key {meta['key']}")
    if meta.get("session"):
        parts.append(f"thread {meta['session']}")
    return ", ".join(parts)


def _detail(name: str, recall: Recall) -> RecallDetail:
    items = [
        RecalledItem(id=_item_id(i), text=i.content, score=i.score, source=i.source or name, why=_why(i))
        for i in recall.items
    ]
    return RecallDetail(plugin=name, items=items, tokens=recall.tokens, truncated=recall.omitted)
