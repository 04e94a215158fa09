"""Helpers shared by the baselines: how an event reads as one line of memory."""

from __future__ import annotations

from agentmem.types import Event


def when(event: Event) -> str:
    """The event's date as the dataset states it (LoCoMo's ``date_time``), else its timestamp."""
    return str(event.metadata.get("date_time") or event.timestamp.strftime("%Y-%m-%d %H:%M"))


def body(event: Event) -> str:
    """The event without its date: ``speaker: content`` (tool calls and outcomes spelled out)."""
    if event.kind == "tool_call":
        who = f"{event.speaker} " if event.speaker else ""
        return f"{who}called {event.tool_name} with {event.arguments}"
    if event.kind == "outcome":
        reward = "" if event.reward is None else f" (reward {event.reward:g})"
        return f"outcome{reward}: {event.content}"
    return f"{event.speaker}: {event.content}" if event.speaker else event.content


def dia_id(event: Event) -> str | None:
    value = event.metadata.get("dia_id")
    return None if value is None else str(value)
