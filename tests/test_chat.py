"""`agentmem chat`: the Textual app driven headless with Pilot against the real SDK Agent.

Plumbing tests use a scripted ChatModel (fixed replies, fixed token counts)
with the real Agent, real SQLite threads and the real episodic plugin; the
snapshots add a small deterministic memory program so that ids and scores
never change. One test talks to the real local model.
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmem.chat.app import ChatApp
from agentmem.chat.commands import COMMANDS, ChatMessage, ChatState, Command, parse, run_command, transcript_markdown
from agentmem.chat.help import HelpScreen
from agentmem.chat.views import plugins_view, search_view, threads_view, trace_view
from agentmem.chat.widgets import AssistantMessage, ErrorMessage, NoticeMessage, UserMessage
from agentmem.errors import LLMError
from agentmem.llm.meter import Meter
from agentmem.memory import Forgets, MemoryProgram
from agentmem.sdk import Agent, RecallDetail, RecalledItem, ThreadInfo, ToolCallRecord, TurnTrace
from agentmem.types import Event, Query, Recall, RecallItem

SIZE = (120, 36)
pytestmark = pytest.mark.timeout(180)


# -- test doubles (plumbing only) -----------------------------------------------------------
class ScriptedModel:
    """A ChatModel that answers with fixed text in word-sized pieces, metered at fixed token counts."""

    def __init__(
        self,
        reply: str | Callable[[list[dict[str, Any]]], str] = "Noted.",
        *,
        model: str = "scripted",
        fail: BaseException | None = None,
    ) -> None:
        self.model = model
        self.reply = reply
        self.fail = fail
        self.meter = Meter()
        self.prompts: list[list[dict[str, Any]]] = []

    def _answer(self, messages: list[dict[str, Any]], caller: str | None) -> str:
        if self.fail is not None:
            raise self.fail
        self.prompts.append(messages)
        self.meter.record(caller, 120, 8, 0.0)
        return self.reply(messages) if callable(self.reply) else self.reply

    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
        **_: Any,
    ) -> str:
        return self._answer(messages, caller)

    def stream(self, messages: list[dict[str, Any]], *, caller: str | None = None, **_: Any) -> Iterator[str]:
        yield from re.findall(r"\S+\s*", self._answer(messages, caller))

    def structured(self, messages: list[dict[str, Any]], schema: Any, *, caller: str | None = None) -> Any:
        raise LLMError("the scripted test model has no structured output")


class Notebook(MemoryProgram, Forgets):
    """A deterministic memory: keeps each user message as note-N, recalls notes sharing a word with the query."""

    name = "notebook"

    def __init__(self) -> None:
        super().__init__(None)  # type: ignore[arg-type]
        self.notes: dict[str, str] = {}

    def observe(self, event: Event) -> None:
        if event.kind == "message" and event.speaker == "user":
            self.notes[f"note-{len(self.notes) + 1}"] = event.content

    def recall(self, query: Query) -> Recall:
        words = set(re.findall(r"\w+", query.text.lower())) - {"is", "my", "the", "a", "what"}
        items = []
        for note_id, text in self.notes.items():
            shared = words & set(re.findall(r"\w+", text.lower()))
            if shared:
                items.append(
                    RecallItem(
                        content=text,
                        score=round(len(shared) / len(words), 2),
                        source="notebook",
                        tokens=len(text.split()),
                        metadata={"id": note_id, "why": f"shares '{', '.join(sorted(shared))}'"},
                    )
                )
        return Recall(items=sorted(items, key=lambda i: -i.score), plugin=self.name)

    def forget(self, item_id: str) -> bool:
        return self.notes.pop(item_id, None) is not None


class FixedTiming:
    """The real agent, except that each reply reports the same duration (snapshots must not depend on speed)."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._agent, name)

    def stream(self, message: str, thread_id: str = "default") -> Iterator[Any]:
        for event in self._agent.stream(message, thread_id=thread_id):
            if event.reply is not None:
                event.reply.trace.seconds = 0.8
            yield event


def echo(messages: list[dict[str, Any]]) -> str:
    """Repeat the user's message (what the scripted model answers in most tests)."""
    last = messages[-1]["content"].strip().splitlines()
    return f"You said: *{last[-1] if last else ''}*"


@pytest.fixture
def make_agent(tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    made: list[Agent] = []

    def make(model: Any = None, memory: Any = "episodic", store_dir: Path | None = None, **kw: Any) -> Agent:
        agent = Agent(
            model=model or ScriptedModel(echo),
            memory=memory,
            user_id="ann",
            store_dir=store_dir or tmp_path / "store",
            reflect_every=None,
            **kw,
        )
        made.append(agent)
        return agent

    yield make
    for agent in made:
        agent.close()


async def submit(app: ChatApp, pilot: Any, line: str, timeout: float = 60.0) -> None:
    """Type ``line`` in the prompt, press Enter, and wait until the turn or command is over."""
    app.query_one("#prompt").value = line  # type: ignore[attr-defined]
    await pilot.press("enter")
    await settle(app, pilot, timeout)


async def settle(app: ChatApp, pilot: Any, timeout: float = 60.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    await pilot.pause()
    while app.busy or any(w.is_running for w in app.workers):
        if loop.time() > deadline:
            raise AssertionError(f"the chat was still busy after {timeout} s")
        await asyncio.sleep(0.05)
    await pilot.pause()
    await pilot.pause()


def bubbles(app: ChatApp, kind: type) -> list[str]:
    return [w.message_text for w in app.transcript.children if isinstance(w, kind)]


# -- pure parts: parsing, views, export --------------------------------------------------------
def test_parse_tells_commands_from_messages() -> None:
    assert parse("/memory  favourite colour ") == Command(name="memory", arg="favourite colour")
    assert parse("/PLUGINS") == Command(name="plugins")
    assert parse("hello /memory") is None
    assert parse("//not a command") is None
    assert {c.name for c in COMMANDS} >= {"memory", "forget", "plugins", "model", "thread", "export", "help"}


def test_unknown_command_is_one_line() -> None:
    out = run_command(Command(name="frobnicate"), ChatState(agent=None, thread_id="t"))
    assert out.error and "\n" not in out.notice and "/help" in out.notice


def test_trace_view_shows_recall_why_writes_tools_and_cost() -> None:
    trace = TurnTrace(
        recalls=[
            RecallDetail(
                plugin="episodic",
                tokens=12,
                truncated=2,
                items=[
                    RecalledItem(id="ev1", text="user: my cat is Tom", score=0.91, source="episodic", why="recency")
                ],
            ),
            RecallDetail(plugin="semantic"),
        ],
        written={"episodic": ["user: hi", "assistant: hello"], "semantic": ["user: hi", "assistant: hello"]},
        tool_calls=[
            ToolCallRecord(name="weather", arguments={"city": "Oslo"}, result="sunny"),
            ToolCallRecord(name="book", error="error: ValueError: no seats"),
        ],
        llm_calls=2,
        prompt_tokens=300,
        completion_tokens=20,
        seconds=1.25,
    )
    view = trace_view(trace, turn=3)
    by_title = {s.title: s for s in view.sections}
    assert view.title == "turn 3"
    item = by_title["episodic"].entries[0]
    assert (item.text, item.ref) == ("user: my cat is Tom", "ev1") and "0.91" in item.meta and "recency" in item.meta
    assert "2 cut by the budget" in by_title["episodic"].subtitle
    assert by_title["semantic"].entries == []
    assert [e.text for e in by_title["written"].entries] == [
        "user: hi",
        "assistant: hello",
    ]  # once, naming both plugins
    assert "episodic, semantic" in by_title["written"].entries[0].meta
    assert by_title["tool calls"].entries[1].error
    assert by_title["cost"].entries[0].text == "320 tokens" and "1.2 s" in by_title["cost"].entries[1].meta


def test_other_views() -> None:
    assert search_view("cat", []).note == "no memory matches this query"
    view = plugins_view(
        ["episodic"],
        [
            {"name": "episodic", "status": "ok", "distribution": "agentmem-episodic", "version": "0.1"},
            {"name": "bad", "status": "broken", "error": "ImportError: x"},
        ],
    )
    installed = view.sections[1].entries
    assert installed[0].text.endswith("(active)") and installed[1].error
    threads = threads_view([ThreadInfo(id="a", messages=4), ThreadInfo(id="b")], current="b")
    assert [e.text for e in threads.sections[0].entries] == ["a", "b  (current)"]


def test_transcript_markdown() -> None:
    text = transcript_markdown(
        [
            ChatMessage(role="user", content="hi"),
            ChatMessage(role="assistant", content="**hello**"),
            ChatMessage(role="error", content="model down"),
        ],
        thread_id="t1",
        model="local",
        plugins=["episodic"],
    )
    assert text.startswith("# agentmem chat: t1\n")
    assert "**You:**\n\nhi\n" in text and "**Assistant:**\n\n**hello**\n" in text and "> error: model down" in text
    assert "model `local` · memory `episodic`" in text


# -- the app ----------------------------------------------------------------------------------
@pytest.mark.asyncio
async def test_reply_streams_into_transcript_and_inspector_shows_recall(make_agent: Callable[..., Agent]) -> None:
    model = ScriptedModel(echo)
    app = ChatApp(make_agent(model), thread_id="pets")
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, "My cat is called Tom")
        assert bubbles(app, UserMessage) == ["My cat is called Tom"]
        assert bubbles(app, AssistantMessage) == ["You said: *My cat is called Tom*"]
        first = {s.title: s for s in app.inspector.view.sections}  # type: ignore[union-attr]
        assert first["episodic"].entries == []  # nothing to recall yet
        assert any("My cat is called Tom" in e.text for e in first["written"].entries)

        await submit(app, pilot, "What is my cat called?")
        view = app.inspector.view
        assert view is not None and view.title == "turn 2"
        recalled = {s.title: s for s in view.sections}["episodic"].entries
        assert any("My cat is called Tom" in e.text for e in recalled), recalled
        assert all(e.ref for e in recalled) and all("score" in e.meta for e in recalled)
        # the recalled memory reached the model's prompt
        assert "My cat is called Tom" in model.prompts[-1][0]["content"]
        assert app.status.turn_tokens == 128 and app.status.session_tokens == 256
        assert app.status.thread == "pets" and app.status.plugins == "episodic"
        assert not bubbles(app, ErrorMessage)


class GatedModel(ScriptedModel):
    """Streams its first piece, then waits for the test to open the gate (to look at the UI mid-reply)."""

    def __init__(self) -> None:
        super().__init__("First piece, then the rest.")
        self.gate = threading.Event()

    def stream(self, messages: list[dict[str, Any]], *, caller: str | None = None, **_: Any) -> Iterator[str]:
        pieces = re.findall(r"\S+\s*", self._answer(messages, caller))
        yield pieces[0]
        self.gate.wait(30)
        yield from pieces[1:]


@pytest.mark.asyncio
async def test_tokens_show_while_streaming_and_the_ui_stays_responsive(make_agent: Callable[..., Agent]) -> None:
    model = GatedModel()
    app = ChatApp(make_agent(model, memory=None))
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#prompt").value = "go"  # type: ignore[attr-defined]
        await pilot.press("enter")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while bubbles(app, AssistantMessage) != ["First "]:
            assert loop.time() < deadline, bubbles(app, AssistantMessage)
            await asyncio.sleep(0.05)
        assert app.busy and app.status.state == "thinking…"
        await submit_now(app, pilot, "second message")  # refused politely while the reply is written
        assert bubbles(app, ErrorMessage)[-1].startswith("still writing the last reply")
        await pilot.press("f1")  # keys still work mid-reply
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        model.gate.set()  # the reply ends while the help screen is open
        await settle(app, pilot)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)
        assert bubbles(app, AssistantMessage) == ["First piece, then the rest."]
        assert app.status.state == "ready"


async def submit_now(app: ChatApp, pilot: Any, line: str) -> None:
    app.query_one("#prompt").value = line  # type: ignore[attr-defined]
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.asyncio
async def test_slash_commands(make_agent: Callable[..., Agent], tmp_path: Path) -> None:
    agent = make_agent(memory=[Notebook()])
    app = ChatApp(agent, thread_id="main", cwd=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, "My cat is called Tom")
        await submit(app, pilot, "I live in Oslo")

        await submit(app, pilot, "/memory cat")
        view = app.inspector.view
        assert view is not None and view.title == "memory search: cat"
        assert [(e.text, e.ref) for e in view.sections[0].entries] == [("My cat is called Tom", "note-1")]

        await submit(app, pilot, "/forget note-1")
        assert bubbles(app, NoticeMessage)[-1] == "forgot item note-1"
        await submit(app, pilot, "/memory cat")
        assert app.inspector.view.sections[0].entries == []  # type: ignore[union-attr]
        assert app.inspector.view.note == "no memory matches this query"  # type: ignore[union-attr]

        await submit(app, pilot, "/plugins")
        active, installed = app.inspector.view.sections  # type: ignore[union-attr]
        assert [e.text for e in active.entries] == ["notebook"]
        assert any(e.text.startswith("episodic") for e in installed.entries)

        await submit(app, pilot, "/model")
        assert bubbles(app, NoticeMessage)[-1].startswith("model: scripted")
        await submit(app, pilot, "/model hosted_vllm/some-model")
        assert app.status.model == "hosted_vllm/some-model" and agent.model == "hosted_vllm/some-model"
        agent.set_model(ScriptedModel(echo))

        out = tmp_path / "exports" / "chat.md"
        await submit(app, pilot, f"/export {out}")
        text = out.read_text()
        assert "**You:**\n\nMy cat is called Tom" in text and "You said: *I live in Oslo*" in text
        assert bubbles(app, NoticeMessage)[-1] == f"transcript written to {out}"

        await submit(app, pilot, "/thread")
        assert [e.text for e in app.inspector.view.sections[0].entries] == ["main  (current)"]  # type: ignore[union-attr]
        await submit(app, pilot, "/thread holiday")
        assert app.thread_id == "holiday" and app.status.thread == "holiday"
        assert bubbles(app, UserMessage) == [] and bubbles(app, NoticeMessage) == [
            "new thread holiday; type a message, or /help"
        ]
        await submit(app, pilot, "/thread main")
        assert bubbles(app, UserMessage) == ["My cat is called Tom", "I live in Oslo"]
        await submit(app, pilot, "/thread no spaces allowed")
        assert "is not a thread name" in bubbles(app, ErrorMessage)[-1]

        await submit(app, pilot, "/frobnicate now")
        assert bubbles(app, ErrorMessage)[-1] == "unknown command '/frobnicate'; /help lists the commands"
        await submit(app, pilot, "/forget")
        assert bubbles(app, ErrorMessage)[-1].startswith("/forget needs")

        await submit(app, pilot, "/help")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)

        await submit(app, pilot, "/new")
        assert app.thread_id.startswith("chat-")
        await submit(app, pilot, "/clear")
        assert bubbles(app, UserMessage) == [] and len(app.transcript.children) == 1


@pytest.mark.asyncio
async def test_forget_on_a_plugin_that_cannot_is_one_error_line(make_agent: Callable[..., Agent]) -> None:
    app = ChatApp(make_agent(memory="episodic"))
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, "/forget some query")
        (error,) = bubbles(app, ErrorMessage)
        assert "cannot forget" in error and "\n" not in error


@pytest.mark.asyncio
async def test_keys(make_agent: Callable[..., Agent]) -> None:
    app = ChatApp(make_agent(memory=None), thread_id="k")
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, "hello")
        await pilot.press("f2")
        assert app.inspector.has_class("hidden") and not app.inspector.display
        await pilot.press("f2")
        assert not app.inspector.has_class("hidden")
        await pilot.press("ctrl+l")
        await pilot.pause()
        assert bubbles(app, UserMessage) == [] and app.thread_id == "k"
        await pilot.press("ctrl+n")
        await pilot.pause()
        assert app.thread_id.startswith("chat-") and app.status.thread == app.thread_id
        await pilot.press("f1")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        await pilot.pause()
        assert not isinstance(app.screen, HelpScreen)


@pytest.mark.asyncio
async def test_restart_finds_the_thread_and_its_history(make_agent: Callable[..., Agent], tmp_path: Path) -> None:
    store = tmp_path / "shared-store"
    first = make_agent(store_dir=store)
    app = ChatApp(first, thread_id="pets")
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, "My cat is called Tom")
    first.close()

    second = make_agent(store_dir=store)
    app = ChatApp(second, thread_id="default")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await submit(app, pilot, "/thread")
        assert "pets" in [e.text for e in app.inspector.view.sections[0].entries]  # type: ignore[union-attr]
        await submit(app, pilot, "/thread pets")
        assert bubbles(app, UserMessage) == ["My cat is called Tom"]
        assert bubbles(app, AssistantMessage) == ["You said: *My cat is called Tom*"]
        assert bubbles(app, NoticeMessage)[-1] == "thread pets: 1 earlier turn"
        await submit(app, pilot, "/memory cat")  # the memory came back too
        assert any("My cat is called Tom" in e.text for e in app.inspector.view.sections[0].entries)  # type: ignore[union-attr]

    app = ChatApp(second, thread_id="pets")  # opening straight into the thread
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert bubbles(app, UserMessage) == ["My cat is called Tom"]


@pytest.mark.asyncio
async def test_failing_model_shows_an_error_and_the_chat_goes_on(make_agent: Callable[..., Agent]) -> None:
    agent = make_agent(
        ScriptedModel(
            fail=LLMError("model 'local' at http://127.0.0.1:9/v1: connection refused; start it with `agentmem serve`")
        )
    )
    app = ChatApp(agent, thread_id="t")
    async with app.run_test(size=SIZE) as pilot:
        await submit(app, pilot, "hello?")
        assert app.is_running and not app.busy
        (error,) = bubbles(app, ErrorMessage)
        assert (
            error == "the model call failed: model 'local' at http://127.0.0.1:9/v1: connection refused; start it "
            "with `agentmem serve`"
        )
        assert bubbles(app, AssistantMessage) == []  # the empty reply bubble is gone

        agent.set_model(ScriptedModel(fail=ZeroDivisionError("division by zero")))
        await submit(app, pilot, "again")
        assert bubbles(app, ErrorMessage)[-1] == "the model call failed: ZeroDivisionError: division by zero"

        agent.set_model(ScriptedModel(echo))
        await submit(app, pilot, "and now?")
        assert bubbles(app, AssistantMessage) == ["You said: *and now?*"]
        assert app.status.state == "ready"


# -- snapshots ----------------------------------------------------------------------------------
def _snapshot_app(make_agent: Callable[..., Agent]) -> ChatApp:
    agent = make_agent(
        ScriptedModel("Your cat is called **Tom**.\n\n- remembered from an earlier message"), memory=[Notebook()]
    )
    return ChatApp(FixedTiming(agent), thread_id="pets")


def test_snapshot_chat_with_reply_and_inspector(snap_compare: Any, make_agent: Callable[..., Agent]) -> None:
    app = _snapshot_app(make_agent)

    async def converse(pilot: Any) -> None:
        app.query_one("#prompt").cursor_blink = False  # type: ignore[attr-defined]  # a blinking cursor is timing
        await submit(app, pilot, "My cat is called Tom")
        await submit(app, pilot, "What is my cat called?")

    assert snap_compare(app, terminal_size=SIZE, run_before=converse)


def test_snapshot_help(snap_compare: Any, make_agent: Callable[..., Agent]) -> None:
    app = _snapshot_app(make_agent)

    def steady_cursor(pilot: Any) -> None:
        app.query_one("#prompt").cursor_blink = False  # type: ignore[attr-defined]

    assert snap_compare(app, terminal_size=SIZE, press=["f1"], run_before=steady_cursor)


# -- CLI --------------------------------------------------------------------------------------
def test_cli_chat_options() -> None:
    from typer.testing import CliRunner

    from agentmem.cli.main import app, parse_memory_names

    assert parse_memory_names("episodic+semantic") == ["episodic", "semantic"]
    assert parse_memory_names("episodic, procedural") == ["episodic", "procedural"]
    result = CliRunner().invoke(app, ["chat", "--help"])
    assert result.exit_code == 0
    for option in ("--model", "--api-base", "--memory", "--user", "--thread", "--store-dir"):
        assert option in result.output
    bad = CliRunner().invoke(app, ["chat", "--thread", "two words"])
    assert bad.exit_code != 0 and "is not a thread name" in bad.output


def test_cli_chat_builds_the_agent_from_its_options(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`agentmem chat` hands model, memory, user, thread and store to the app, and closes the agent after."""
    from typer.testing import CliRunner

    from agentmem.cli.main import app

    seen: dict[str, Any] = {}

    def fake_run(self: ChatApp, *args: Any, **kwargs: Any) -> None:  # no terminal under CliRunner
        seen.update(
            model=self.agent.model,
            plugins=self.agent.plugins,
            user=self.agent.user_id,
            store=self.agent.store_dir,
            thread=self.thread_id,
            agent=self.agent,
        )

    monkeypatch.setattr(ChatApp, "run", fake_run)
    result = CliRunner().invoke(
        app,
        [
            "chat",
            "-m",
            "local",
            "--memory",
            "none",
            "--user",
            "bob",
            "--thread",
            "work",
            "--store-dir",
            str(tmp_path / "s"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (seen["model"], seen["plugins"], seen["user"], seen["thread"]) == ("local", [], "bob", "work")
    assert seen["store"] == tmp_path / "s" and (tmp_path / "s" / "threads.sqlite").exists()
    with pytest.raises(Exception, match="closed"):
        seen["agent"].threads()


# -- the real local model ------------------------------------------------------------------------
@pytest.mark.llm
@pytest.mark.timeout(600)
@pytest.mark.asyncio
async def test_chat_with_the_local_model(local_llm: Any, tmp_path: Path) -> None:
    agent = Agent(
        model=local_llm, memory="episodic", user_id="ann", store_dir=tmp_path, max_reply_tokens=32, reflect_every=None
    )
    try:
        app = ChatApp(agent, thread_id="real")
        async with app.run_test(size=SIZE) as pilot:
            await submit(app, pilot, "Hi! My name is Ann. Say hello in one short sentence.", timeout=500)
            assert bubbles(app, ErrorMessage) == []
            (reply,) = bubbles(app, AssistantMessage)
            assert reply.strip()
            assert app.status.turn_tokens > 0 and app.status.model == "local"
            written = {s.title: s for s in app.inspector.view.sections}["written"]  # type: ignore[union-attr]
            assert any("My name is Ann" in e.text for e in written.entries)
    finally:
        agent.close()
