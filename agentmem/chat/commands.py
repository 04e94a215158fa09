"""Slash commands: parsing and handlers, as functions of the agent and the chat state.

The app only routes: it parses a line with :func:`parse`, runs the command
with :func:`run_command` (in a worker thread, since searching memory or
switching models may take a while) and applies the :class:`Outcome` to the
screen. Keeping the handlers free of widgets means each one is testable on
its own and the help screen lists exactly what :data:`COMMANDS` holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel

from agentmem.chat.views import InspectorView, plugins_view, search_view, threads_view
from agentmem.errors import AgentmemError

Role = Literal["user", "assistant", "error", "notice"]
THREAD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")


class ChatMessage(BaseModel):
    """One line of the transcript as the user saw it (exported by ``/export``)."""

    role: Role
    content: str


class CommandSpec(BaseModel):
    """A slash command as the help screen lists it."""

    name: str
    usage: str
    help: str
    needs_agent: bool = True  # touches the agent: not while a reply is being written


COMMANDS: list[CommandSpec] = [
    CommandSpec(
        name="memory", usage="/memory <query>", help="search every memory; results (with ids) in the inspector"
    ),
    CommandSpec(
        name="forget", usage="/forget <id or query>", help="delete one item by id, or the items matching a query"
    ),
    CommandSpec(name="plugins", usage="/plugins", help="active memory plugins, and every one installed"),
    CommandSpec(
        name="model",
        usage="/model [model]",
        help="show or switch the model ('local' or a litellm model string; an api_base may follow)",
    ),
    CommandSpec(
        name="thread", usage="/thread [name]", help="list threads, or switch to (or start) one and reload its history"
    ),
    CommandSpec(name="new", usage="/new", help="start a new thread"),
    CommandSpec(
        name="export", usage="/export [path]", help="write this thread's transcript as Markdown", needs_agent=False
    ),
    CommandSpec(name="clear", usage="/clear", help="clear the view (the thread and memory stay)", needs_agent=False),
    CommandSpec(name="help", usage="/help", help="keys and commands", needs_agent=False),
    CommandSpec(name="quit", usage="/quit", help="leave the chat", needs_agent=False),
]
_BY_NAME = {c.name: c for c in COMMANDS}


class Command(BaseModel):
    """A parsed slash command: its name (without the slash) and the rest of the line."""

    name: str
    arg: str = ""

    @property
    def spec(self) -> CommandSpec | None:
        return _BY_NAME.get(self.name)


class Outcome(BaseModel):
    """What a command asks the app to do; the app applies it on the UI thread."""

    notice: str = ""  # one line shown in the transcript
    error: bool = False
    view: InspectorView | None = None  # shown in the memory inspector
    switch_thread: str | None = None  # reload the transcript with this thread's history
    model_changed: bool = False
    show_help: bool = False
    clear: bool = False
    quit: bool = False


@dataclass
class ChatState:
    """What handlers may read of the chat: the agent, the thread, the transcript so far."""

    agent: Any
    thread_id: str
    transcript: list[ChatMessage] = field(default_factory=list)
    cwd: Path = field(default_factory=Path.cwd)
    now: Callable[[], datetime] = datetime.now


def parse(line: str) -> Command | None:
    """A command if ``line`` starts with one slash, else ``None`` (a message; ``//x`` sends ``/x``)."""
    text = line.strip()
    if not text.startswith("/") or text.startswith("//"):
        return None
    name, _, arg = text[1:].partition(" ")
    return Command(name=name.strip().lower(), arg=arg.strip())


def message_text(line: str) -> str:
    """The text to send for a non-command line (a leading ``//`` escapes one slash)."""
    text = line.strip()
    return text[1:] if text.startswith("//") else text


def new_thread_name(now: datetime | None = None) -> str:
    """A fresh, sortable thread name."""
    return f"chat-{(now or datetime.now()):%Y%m%d-%H%M%S}"


def run_command(cmd: Command, state: ChatState) -> Outcome:
    """Run one command; a user-fixable failure comes back as a one-line error outcome."""
    handler = _HANDLERS.get(cmd.name)
    if handler is None:
        return Outcome(error=True, notice=f"unknown command '/{cmd.name}'; /help lists the commands")
    try:
        return handler(cmd.arg, state)
    except AgentmemError as exc:
        return Outcome(error=True, notice=f"/{cmd.name}: {exc}")
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        return Outcome(error=True, notice=f"/{cmd.name} failed: {type(exc).__name__}: {text}")


# -- handlers ---------------------------------------------------------------------------
def _memory(arg: str, state: ChatState) -> Outcome:
    if not arg:
        return Outcome(error=True, notice="/memory needs a query, e.g. /memory favourite colour")
    details = state.agent.search_memory(arg)
    view = search_view(arg, details)
    found = sum(len(s.entries) for s in view.sections)
    return Outcome(
        view=view, notice=f"memory search '{arg}': {found} item{'s' if found != 1 else ''} (see the inspector)"
    )


def _forget(arg: str, state: ChatState) -> Outcome:
    if not arg:
        return Outcome(error=True, notice="/forget needs an item id (see /memory) or a query")
    removed = 0
    if " " not in arg:  # ids have no spaces: try it as an id first, a one-word query second
        removed = state.agent.forget(item_id=arg)
        if removed:
            return Outcome(notice=f"forgot item {arg}")
    removed = state.agent.forget(query=arg)
    if not removed:
        return Outcome(notice=f"nothing to forget for '{arg}'")
    return Outcome(notice=f"forgot {removed} item{'s' if removed != 1 else ''} matching '{arg}'")


def _plugins(arg: str, state: ChatState) -> Outcome:
    from agentmem.registry import discover

    active = list(state.agent.plugins)
    view = plugins_view(active, discover("memory"))
    return Outcome(view=view, notice=f"active memory: {'+'.join(active) or 'none'}")


def _model(arg: str, state: ChatState) -> Outcome:
    if not arg:
        return Outcome(notice=f"model: {state.agent.model}; /model <name> switches ('local' or a litellm model string)")
    model, _, api_base = arg.partition(" ")
    state.agent.set_model(model, api_base=api_base.strip() or None)
    return Outcome(notice=f"model switched to {state.agent.model}", model_changed=True)


def _thread(arg: str, state: ChatState) -> Outcome:
    if not arg:
        return Outcome(
            view=threads_view(list(state.agent.threads()), state.thread_id), notice=f"thread: {state.thread_id}"
        )
    if not THREAD_NAME.match(arg):
        return Outcome(
            error=True, notice=f"'{arg}' is not a thread name; use letters, digits and . _ - : @ (64 at most)"
        )
    if arg == state.thread_id:
        return Outcome(notice=f"already in thread {arg}")
    return Outcome(switch_thread=arg)


def _new(arg: str, state: ChatState) -> Outcome:
    return Outcome(switch_thread=arg if arg and THREAD_NAME.match(arg) else new_thread_name(state.now()))


def _export(arg: str, state: ChatState) -> Outcome:
    stamp = state.now()
    path = Path(arg).expanduser() if arg else Path(f"agentmem-chat-{state.thread_id}-{stamp:%Y%m%d-%H%M%S}.md")
    if not path.is_absolute():
        path = state.cwd / path
    if path.is_dir():
        path = path / f"agentmem-chat-{state.thread_id}-{stamp:%Y%m%d-%H%M%S}.md"
    text = transcript_markdown(
        state.transcript,
        thread_id=state.thread_id,
        model=str(getattr(state.agent, "model", "")),
        plugins=list(getattr(state.agent, "plugins", []) or []),
        when=stamp,
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        return Outcome(
            error=True, notice=f"cannot write {path}: {exc.strerror or exc}; give another path: /export <path>"
        )
    return Outcome(notice=f"transcript written to {path}")


def _clear(arg: str, state: ChatState) -> Outcome:
    return Outcome(clear=True)


def _help(arg: str, state: ChatState) -> Outcome:
    return Outcome(show_help=True)


def _quit(arg: str, state: ChatState) -> Outcome:
    return Outcome(quit=True)


_HANDLERS: dict[str, Callable[[str, ChatState], Outcome]] = {
    "memory": _memory,
    "forget": _forget,
    "plugins": _plugins,
    "model": _model,
    "thread": _thread,
    "new": _new,
    "export": _export,
    "clear": _clear,
    "help": _help,
    "quit": _quit,
}
assert set(_HANDLERS) == set(_BY_NAME), "every listed command has a handler"

_templates = Environment(
    loader=PackageLoader("agentmem.chat", "templates"),
    undefined=StrictUndefined,
    autoescape=False,
    keep_trailing_newline=True,
    trim_blocks=False,
)


def transcript_markdown(
    messages: list[ChatMessage],
    *,
    thread_id: str,
    model: str = "",
    plugins: list[str] | None = None,
    when: datetime | None = None,
) -> str:
    """The transcript as a Markdown document (what ``/export`` writes)."""
    meta = " · ".join(
        p
        for p in (
            f"model `{model}`" if model else "",
            f"memory `{'+'.join(plugins)}`" if plugins else "",
            f"{when:%Y-%m-%d %H:%M}" if when else "",
        )
        if p
    )
    text = _templates.get_template("transcript.md.j2").render(
        title=f"agentmem chat: {thread_id}", meta=meta, messages=messages
    )
    return text.rstrip() + "\n"
