"""The chat's widgets: transcript and message bubbles, memory inspector, status bar.

Widgets only draw; what they show is decided in :mod:`agentmem.chat.views`
and :mod:`agentmem.chat.commands`. All styling is in ``chat.tcss``: the
widgets set CSS classes (``user``, ``assistant``, ``error``, ``notice``,
``pending``...) and never colours.
"""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Markdown, Static
from textual.widgets.markdown import MarkdownStream

from agentmem.chat.views import InspectorView, Section


class UserMessage(Static):
    """What the user typed, shown verbatim (no markup, no markdown)."""

    def __init__(self, content: str) -> None:
        super().__init__(Text(content), classes="message user")
        self.message_text = content
        self.border_title = "you"


class AssistantMessage(Markdown):
    """The agent's reply, rendered as Markdown while its tokens stream in.

    Tokens go through a :class:`MarkdownStream`, which batches fragments when
    they arrive faster than the widget can re-render, so a fast model never
    makes the UI fall behind.
    """

    def __init__(self, content: str = "", *, pending: bool = False) -> None:
        super().__init__(content, classes="message assistant" + (" pending" if pending else ""))
        self.message_text = content
        self.border_title = "assistant"
        if pending:
            self.border_subtitle = "thinking…"
        self._stream: MarkdownStream | None = None

    async def write_token(self, text: str) -> None:
        """Append a streamed fragment."""
        if self._stream is None:
            self.remove_class("pending")
            self.border_subtitle = "writing…"
            self._stream = Markdown.get_stream(self)
        self.message_text += text
        await self._stream.write(text)

    async def finish(self, text: str | None = None, *, subtitle: str = "") -> None:
        """End streaming; when the final reply differs from what streamed (or nothing did), show the final text."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.remove_class("pending")
        if text is not None and text != self.message_text:
            self.message_text = text
            await self.update(text)
        self.border_subtitle = subtitle

    async def fail(self) -> None:
        """Stop streaming after an error; keep what was written, or go away if nothing was."""
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if not self.message_text:
            await self.remove()
        else:
            self.border_subtitle = "interrupted"


class ErrorMessage(Static):
    """A failure (model error, bad command) as one line; the chat goes on."""

    def __init__(self, content: str) -> None:
        super().__init__(Text(content), classes="message error")
        self.message_text = content
        self.border_title = "error"


class NoticeMessage(Static):
    """A one-line note from the app (command results, thread switches)."""

    def __init__(self, content: str) -> None:
        super().__init__(Text(content), classes="message notice")
        self.message_text = content


class Transcript(VerticalScroll):
    """The conversation, newest at the bottom; it follows new output unless the user scrolls up."""

    def on_mount(self) -> None:
        self.anchor()

    async def add(self, widget: Widget) -> Widget:
        await self.mount(widget)
        self.anchor()
        return widget

    async def clear(self) -> None:
        await self.remove_children()


class InspectorSection(Static):
    """One section of the inspector (a plugin's recall, what was written, tool calls, cost)."""

    def __init__(self, section: Section) -> None:
        super().__init__(self._render_section(section), classes=f"section {section.kind}")
        self.section = section
        self.border_title = Text(section.title)  # Text, not str: plugin names and queries are not markup
        if section.subtitle:
            self.border_subtitle = Text(section.subtitle)

    @staticmethod
    def _render_section(section: Section) -> Text:
        if not section.entries:
            return Text(section.empty, style="italic dim")
        out = Text()
        for n, entry in enumerate(section.entries):
            if n:
                out.append("\n")
            out.append("• ", style="dim")
            out.append(entry.text, style="red" if entry.error else "")
            if entry.meta:
                out.append("\n  ")
                out.append(entry.meta, style="dim italic")
            if entry.ref:  # on a line of its own: ids are long and /forget needs them whole
                out.append("\n  ")
                out.append(f"id {entry.ref}", style="dim cyan")
        return out


class MemoryInspector(VerticalScroll):
    """The right-hand pane: what memory did this turn (or what a command looked up)."""

    view: InspectorView | None = None

    def compose_placeholder(self) -> Static:
        return Static(
            Text("Send a message: what each memory recalls, and why, shows here.", style="italic dim"),
            classes="placeholder",
        )

    def on_mount(self) -> None:
        self.border_title = Text("memory")
        self.mount(self.compose_placeholder())

    async def show(self, view: InspectorView) -> None:
        """Replace the pane's content with ``view``."""
        self.view = view
        self.border_title = Text(f"memory · {view.title}")
        await self.remove_children()
        widgets: list[Widget] = [InspectorSection(s) for s in view.sections]
        if view.note:
            widgets.append(Static(Text(view.note, style="italic dim"), classes="note"))
        await self.mount_all(widgets)
        self.scroll_home(animate=False)

    async def reset(self) -> None:
        self.view = None
        self.border_title = Text("memory")
        await self.remove_children()
        await self.mount(self.compose_placeholder())


class StatusBar(Static):
    """Model, memory plugins, thread, and tokens spent this turn and this session."""

    model: reactive[str] = reactive("")
    plugins: reactive[str] = reactive("")
    thread: reactive[str] = reactive("")
    turn_tokens: reactive[int] = reactive(0)
    session_tokens: reactive[int] = reactive(0)
    state: reactive[str] = reactive("ready")

    def render(self) -> Text:
        out = Text(no_wrap=True, overflow="ellipsis")
        parts = [
            ("model", self.model or "?"),
            ("memory", self.plugins or "none"),
            ("thread", self.thread or "?"),
            ("tokens", f"{self.turn_tokens} turn / {self.session_tokens} session"),
        ]
        for n, (label, value) in enumerate(parts):
            if n:
                out.append("  │  ", style="dim")
            out.append(f"{label} ", style="dim")
            out.append(value, style="bold")
        out.append("  │  ", style="dim")
        out.append(self.state, style="bold yellow" if self.state != "ready" else "green")
        return out
