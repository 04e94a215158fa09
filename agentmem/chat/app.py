"""``ChatApp``: chat with a memory-backed :class:`agentmem.Agent` and watch its memory work.

The transcript (left) streams the reply as Markdown; the memory inspector
(right) shows, for the turn just finished, what each plugin recalled and why,
what it wrote, tool calls and tokens spent; the status bar shows model,
plugins, thread and tokens. Model calls and slash commands that touch the
agent run in worker threads and report back through messages, so the UI
never freezes and a failing model is one error line in the transcript, not a
crash.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Footer, Header, Input
from textual.worker import get_current_worker

from agentmem.chat.commands import (
    COMMANDS,
    ChatMessage,
    ChatState,
    Command,
    Outcome,
    message_text,
    new_thread_name,
    parse,
    run_command,
)
from agentmem.chat.help import HelpScreen
from agentmem.chat.views import trace_view
from agentmem.chat.widgets import (
    AssistantMessage,
    ErrorMessage,
    MemoryInspector,
    NoticeMessage,
    StatusBar,
    Transcript,
    UserMessage,
)
from agentmem.errors import AgentmemError


def _one_line(exc: BaseException) -> str:
    """An exception as one line; agentmem errors already are, others get their type name first."""
    text = " ".join(str(exc).split())
    if isinstance(exc, AgentmemError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class ChatApp(App[None]):
    """The terminal chat. It does not own ``agent``: whoever made it closes it after :meth:`run`."""

    CSS_PATH = "chat.tcss"
    TITLE = "agentmem chat"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("f1", "help", "Help"),
        Binding("f2,ctrl+t", "toggle_inspector", "Inspector"),
        Binding("ctrl+n", "new_thread", "New thread"),
        Binding("ctrl+l", "clear_view", "Clear view"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    class Token(Message):
        """A fragment of the reply being written (posted from the turn's worker thread)."""

        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class TurnDone(Message):
        """The agent's reply, with its trace."""

        def __init__(self, reply: Any) -> None:
            super().__init__()
            self.reply = reply

    class TurnFailed(Message):
        """The turn failed; ``error`` is one line."""

        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    class CommandDone(Message):
        """A slash command that ran in a worker thread finished."""

        def __init__(self, command: Command, outcome: Outcome) -> None:
            super().__init__()
            self.command = command
            self.outcome = outcome

    def __init__(
        self,
        agent: Any,
        *,
        thread_id: str = "default",
        cwd: Path | None = None,
        now: Callable[[], datetime] = datetime.now,
    ) -> None:
        super().__init__()
        self.agent = agent
        self.thread_id = thread_id
        self.cwd = cwd or Path.cwd()
        self.now = now
        self.messages: list[ChatMessage] = []  # this thread as shown: what /export writes
        self.session_tokens = 0
        self.busy = False
        self._bubble: AssistantMessage | None = None
        self._panes: dict[str, Any] = {}

    # -- layout ---------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Header(icon="◆")
        with Horizontal(id="main"):
            with Vertical(id="chat-pane"):
                yield Transcript(id="transcript")
                yield Input(
                    placeholder="Message the agent, or /help for commands",
                    id="prompt",
                    suggester=SuggestFromList(
                        [f"/{c.name}" + (" " if "<" in c.usage or "[" in c.usage else "") for c in COMMANDS]
                    ),
                )
            yield MemoryInspector(id="inspector")
        yield StatusBar(id="status")
        yield Footer()

    # The panes are looked up once, on the chat's own screen: ``App.query_one`` searches the
    # active screen, which is the help screen while it is open, and a reply may land then.
    @property
    def transcript(self) -> Transcript:
        return self._panes["transcript"]

    @property
    def inspector(self) -> MemoryInspector:
        return self._panes["inspector"]

    @property
    def status(self) -> StatusBar:
        return self._panes["status"]

    async def on_mount(self) -> None:
        self._panes = {
            "transcript": self.query_one(Transcript),
            "inspector": self.query_one(MemoryInspector),
            "status": self.query_one(StatusBar),
        }
        self._refresh_status()
        await self.load_thread(self.thread_id)
        self.query_one(Input).focus()

    def _refresh_status(self) -> None:
        status = self.status
        status.model = str(getattr(self.agent, "model", "?"))
        status.plugins = "+".join(getattr(self.agent, "plugins", []) or [])
        status.thread = self.thread_id
        status.session_tokens = self.session_tokens
        self.sub_title = f"thread {self.thread_id}"

    async def notice(self, text: str, *, error: bool = False) -> None:
        """One line in the transcript (not part of the conversation: /export leaves it out)."""
        await self.transcript.add(ErrorMessage(text) if error else NoticeMessage(text))

    # -- threads ---------------------------------------------------------------------------
    async def load_thread(self, thread_id: str) -> None:
        """Show ``thread_id``: the transcript reloads with its saved history."""
        self.thread_id = thread_id
        self.messages = []
        transcript = self.transcript
        await transcript.clear()
        try:
            history = list(self.agent.history(thread_id))
        except Exception as exc:
            await self.notice(f"cannot read thread {thread_id}: {_one_line(exc)}", error=True)
            history = []
        widgets = []
        for msg in history:
            role, content = getattr(msg, "role", ""), getattr(msg, "content", "")
            if role == "user":
                widgets.append(UserMessage(content))
                self.messages.append(ChatMessage(role="user", content=content))
            elif role == "assistant" and content:
                widgets.append(AssistantMessage(content))
                self.messages.append(ChatMessage(role="assistant", content=content))
            elif role == "tool":
                widgets.append(NoticeMessage(f"tool {getattr(msg, 'tool_name', None) or ''}: {content}".strip()))
        if widgets:
            await transcript.mount_all(widgets)
        turns = sum(1 for m in self.messages if m.role == "user")
        await self.notice(
            f"thread {thread_id}: {turns} earlier turn{'s' if turns != 1 else ''}"
            if turns
            else f"new thread {thread_id}; type a message, or /help"
        )
        transcript.scroll_end(animate=False)
        self._refresh_status()

    async def switch_thread(self, thread_id: str) -> None:
        await self.inspector.reset()
        self.status.turn_tokens = 0
        await self.load_thread(thread_id)

    # -- input -----------------------------------------------------------------------------
    @on(Input.Submitted, "#prompt")
    async def _submitted(self, event: Input.Submitted) -> None:
        line = event.value
        event.input.clear()
        if not line.strip():
            return
        command = parse(line)
        if command is not None:
            await self.run_slash(command)
        else:
            await self.send(message_text(line))

    async def send(self, text: str) -> None:
        """Show ``text``, then stream the agent's reply in a worker thread."""
        if self.busy:
            await self.notice("still writing the last reply; send again when it is done", error=True)
            return
        self.busy = True
        self.status.state = "thinking…"
        self.messages.append(ChatMessage(role="user", content=text))
        await self.transcript.add(UserMessage(text))
        self._bubble = AssistantMessage(pending=True)
        await self.transcript.add(self._bubble)
        self._run_turn(text, self.thread_id)

    @work(thread=True, group="turn", exit_on_error=False)
    def _run_turn(self, text: str, thread_id: str) -> None:
        """Runs off the UI thread: every event goes back as a message, every failure too."""
        worker = get_current_worker()
        try:
            reply = None
            for event in self.agent.stream(text, thread_id=thread_id):
                if worker.is_cancelled:  # the app is closing: stop generating, release the agent
                    return
                if event.kind == "token" and event.text:
                    self.post_message(self.Token(event.text))
                elif event.kind == "reply":
                    reply = event.reply
            if reply is None:
                raise RuntimeError("the agent ended the turn without a reply")
            self.post_message(self.TurnDone(reply))
        except BaseException as exc:
            self.post_message(self.TurnFailed(_one_line(exc)))

    async def on_chat_app_token(self, message: Token) -> None:
        if self._bubble is not None:
            await self._bubble.write_token(message.text)

    async def on_chat_app_turn_done(self, message: TurnDone) -> None:
        reply = message.reply
        trace = reply.trace
        tokens = int(trace.prompt_tokens + trace.completion_tokens)
        if self._bubble is not None:
            await self._bubble.finish(reply.text, subtitle=f"{tokens} tokens" if tokens else "")
        self._bubble = None
        self.messages.append(ChatMessage(role="assistant", content=reply.text))
        self.session_tokens += tokens
        self.status.turn_tokens = tokens
        self.status.session_tokens = self.session_tokens
        turn = sum(1 for m in self.messages if m.role == "user")
        await self.inspector.show(trace_view(trace, turn=turn))
        self._turn_over()

    async def on_chat_app_turn_failed(self, message: TurnFailed) -> None:
        if self._bubble is not None:
            await self._bubble.fail()
        self._bubble = None
        self.messages.append(ChatMessage(role="error", content=message.error))
        await self.notice(f"the model call failed: {message.error}", error=True)
        self._turn_over()

    def _turn_over(self) -> None:
        self.busy = False
        self.status.state = "ready"
        self.transcript.scroll_end(animate=False)

    # -- slash commands ------------------------------------------------------------------
    def _state(self) -> ChatState:
        return ChatState(
            agent=self.agent, thread_id=self.thread_id, transcript=list(self.messages), cwd=self.cwd, now=self.now
        )

    async def run_slash(self, command: Command) -> None:
        """Run a command: agent work in a worker thread, the rest right here."""
        spec = command.spec
        if spec is not None and spec.needs_agent:
            if self.busy:
                await self.notice(f"/{command.name} must wait until the reply is written", error=True)
                return
            self.busy = True
            self.status.state = f"/{command.name}…"
            self._run_command(command, self._state())
            return
        await self.apply(command, run_command(command, self._state()))

    @work(thread=True, group="command", exit_on_error=False)
    def _run_command(self, command: Command, state: ChatState) -> None:
        self.post_message(self.CommandDone(command, run_command(command, state)))

    async def on_chat_app_command_done(self, message: CommandDone) -> None:
        self.busy = False
        self.status.state = "ready"
        await self.apply(message.command, message.outcome)

    async def apply(self, command: Command, outcome: Outcome) -> None:
        """Show what a command did."""
        if outcome.notice:
            await self.notice(outcome.notice, error=outcome.error)
        if outcome.view is not None:
            self.inspector.remove_class("hidden")
            await self.inspector.show(outcome.view)
        if outcome.switch_thread:
            await self.switch_thread(outcome.switch_thread)
        if outcome.model_changed:
            self._refresh_status()
        if outcome.clear:
            await self.action_clear_view()
        if outcome.show_help:
            self.action_help()
        if outcome.quit:
            self.exit()

    # -- actions (key bindings) ----------------------------------------------------------
    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(list(self.BINDINGS)))

    def action_toggle_inspector(self) -> None:
        self.inspector.toggle_class("hidden")

    async def action_new_thread(self) -> None:
        if self.busy:
            await self.notice("a new thread must wait until the reply is written", error=True)
            return
        await self.switch_thread(new_thread_name(self.now()))

    async def action_clear_view(self) -> None:
        """Clear what is on screen; the thread's history and memory stay (reload it with /thread <name>)."""
        if self.busy:
            await self.notice("the view can be cleared once the reply is written", error=True)
            return
        await self.transcript.clear()
        await self.inspector.reset()
        await self.notice(f"view cleared (thread {self.thread_id} and memory are kept)")
