"""The help screen: every key binding and slash command, read from where they are defined.

It lists the app's own ``BINDINGS`` and :data:`~agentmem.chat.commands.COMMANDS`
rather than a hand-written copy, so the help can never drift from what the
keys and commands actually do.
"""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from agentmem.chat.commands import COMMANDS


def _key_label(keys: str) -> str:
    def one(key: str) -> str:
        *mods, last = key.strip().split("+")
        return "+".join([m.capitalize() for m in mods] + [last.upper() if len(last) <= 3 else last.capitalize()])

    return ", ".join(one(k) for k in keys.split(","))


def keys_table(bindings: list[BindingType]) -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("action")
    for binding in bindings:
        if isinstance(binding, Binding):
            table.add_row(Text(_key_label(binding.key)), Text(binding.description))
    table.add_row("Enter", "send the message (or run the /command)")
    table.add_row("Esc", "close this help")
    return table


def commands_table() -> Table:
    table = Table(box=None, show_header=False, pad_edge=False, padding=(0, 2, 0, 0))
    table.add_column("command", style="bold cyan", no_wrap=True)
    table.add_column("what it does")
    for spec in COMMANDS:
        table.add_row(Text(spec.usage), Text(spec.help))
    table.add_row("//text", "send a message that starts with '/'")
    return table


class HelpScreen(ModalScreen[None]):
    """Keys and commands over the chat; any of Esc, F1 or q closes it."""

    BINDINGS = [Binding("escape,f1,q", "dismiss", "Close", show=False)]

    def __init__(self, bindings: list[BindingType]) -> None:
        super().__init__()
        self._listed_bindings = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "agentmem chat · help"
            box.border_subtitle = "Esc closes"
            yield Static(Text("Keys", style="bold"), classes="help-heading")
            yield Static(keys_table(self._listed_bindings), classes="help-table")
            yield Static(Text("Commands", style="bold"), classes="help-heading")
            yield Static(commands_table(), classes="help-table")
            yield Static(
                Text(
                    "The transcript is on the left; the memory inspector on the right shows, for each turn, what every "
                    "memory plugin recalled (score and why), what it wrote, tool calls and tokens spent.",
                    style="italic dim",
                ),
                classes="help-note",
            )

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
