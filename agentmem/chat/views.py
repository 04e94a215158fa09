"""What the memory inspector shows, as plain data built by pure functions.

The inspector widget only draws an :class:`InspectorView`; everything that
decides *what* to show (a turn's recalls and writes, a memory search, the
plugin list, the thread list) lives here, so it can be tested without a
terminal and reused by other front ends. The SDK's trace objects are read
through :func:`field`, which accepts pydantic models, dataclasses and dicts
alike: the inspector must keep working if the SDK adds fields or changes a
model into a dict.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field


class Entry(BaseModel):
    """One line in a section: the text, then why it is there (``meta``) and its id (``ref``)."""

    text: str
    meta: str = ""
    ref: str = ""
    error: bool = False


class Section(BaseModel):
    """A titled group of entries (one plugin's recall, what was written, tool calls, cost)."""

    title: str
    subtitle: str = ""
    entries: list[Entry] = Field(default_factory=list)
    empty: str = "nothing"
    kind: str = "recall"


class InspectorView(BaseModel):
    """Everything the inspector pane shows at once."""

    title: str
    sections: list[Section] = Field(default_factory=list)
    note: str = ""


def field(obj: Any, *names: str, default: Any = None) -> Any:
    """The first of ``names`` that ``obj`` has, as an attribute or a mapping key."""
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj and obj[name] is not None:
                return obj[name]
        else:
            value = getattr(obj, name, None)
            if value is not None:
                return value
    return default


def _short(value: Any, limit: int = 160) -> str:
    if not isinstance(value, str):
        try:
            value = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            value = str(value)
    text = " ".join(value.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _item_entry(item: Any, plugin: str = "") -> Entry:
    """An item's text, then its score, where it came from (unless that is the plugin itself) and why."""
    text = field(item, "text", "content", "memory", default="")
    score = field(item, "score")
    source = str(field(item, "source", default="") or "")
    why = str(field(item, "why", "reason", default="") or "")
    meta_parts = []
    if isinstance(score, (int, float)) and not isinstance(score, bool) and "score" not in why:
        meta_parts.append(f"score {score:.2f}")
    if source and source != plugin:
        meta_parts.append(source)
    if why:
        meta_parts.append(why)
    return Entry(
        text=_short(text, 400), meta=" · ".join(meta_parts), ref=str(field(item, "id", "item_id", default="") or "")
    )


def recall_sections(recalls: Iterable[Any]) -> list[Section]:
    """One section per plugin: what it recalled, each item with its score and why."""
    sections = []
    for detail in recalls or []:
        items = list(field(detail, "items", default=[]) or [])
        tokens = field(detail, "tokens", default=0) or 0
        truncated = field(detail, "truncated", "omitted", default=0)
        subtitle = f"{len(items)} item{'s' if len(items) != 1 else ''} · {tokens} tokens"
        if truncated:
            subtitle += (
                f" · {truncated} cut by the budget"
                if isinstance(truncated, int) and not isinstance(truncated, bool)
                else " · cut by the budget"
            )
        plugin = str(field(detail, "plugin", "name", default="memory"))
        sections.append(
            Section(
                title=plugin,
                subtitle=subtitle,
                entries=[_item_entry(i, plugin) for i in items],
                empty="recalled nothing",
                kind="recall",
            )
        )
    return sections


def trace_view(trace: Any, *, turn: int | None = None) -> InspectorView:
    """The inspector for one turn: recalls per plugin, what was written, tool calls, cost."""
    sections = recall_sections(field(trace, "recalls", default=[]))
    written: Mapping[str, Any] = field(trace, "written", default={}) or {}
    by_line: dict[str, list[str]] = {}  # the same event handed to several plugins shows once, naming them all
    for plugin, items in written.items():
        for item in items or []:
            by_line.setdefault(_short(field(item, "text", "content", default=item), 400), []).append(str(plugin))
    entries = [Entry(text=line, meta="→ " + ", ".join(plugins)) for line, plugins in by_line.items()]
    sections.append(
        Section(
            title="written",
            subtitle=f"{len(entries)} item{'s' if len(entries) != 1 else ''}",
            entries=entries,
            empty="nothing written",
            kind="written",
        )
    )
    calls = []
    for call in field(trace, "tool_calls", default=[]) or []:
        name = field(call, "name", default="?")
        args = field(call, "arguments", "args", default={})
        error = field(call, "error")
        result = field(call, "result", default="")
        calls.append(
            Entry(
                text=f"{name}({_short(args, 120)})",
                meta=f"error: {_short(error)}" if error else f"→ {_short(result)}",
                error=bool(error),
            )
        )
    sections.append(
        Section(
            title="tool calls",
            subtitle=str(len(calls)) if calls else "",
            entries=calls,
            empty="no tool calls",
            kind="tools",
        )
    )
    prompt = field(trace, "prompt_tokens", default=0) or 0
    completion = field(trace, "completion_tokens", default=0) or 0
    llm_calls = field(trace, "llm_calls", default=0) or 0
    seconds = field(trace, "seconds", default=0.0) or 0.0
    sections.append(
        Section(
            title="cost",
            kind="cost",
            entries=[
                Entry(text=f"{prompt + completion} tokens", meta=f"{prompt} prompt + {completion} completion"),
                Entry(text=f"{llm_calls} LLM call{'s' if llm_calls != 1 else ''}", meta=f"{seconds:.1f} s"),
            ],
        )
    )
    return InspectorView(title=f"turn {turn}" if turn else "this turn", sections=sections)


def search_view(query: str, details: Any) -> InspectorView:
    """The inspector for ``/memory <query>``: every plugin's matches, ids shown for ``/forget``."""
    if isinstance(details, Mapping):  # {plugin: detail or items}
        details = [
            d if field(d, "plugin") else {"plugin": name, "items": field(d, "items", default=d)}
            for name, d in details.items()
        ]
    sections = recall_sections(details)
    note = "" if any(s.entries for s in sections) else "no memory matches this query"
    return InspectorView(title=f"memory search: {query}", sections=sections, note=note)


def plugins_view(active: list[str], installed: list[Any]) -> InspectorView:
    """Active plugins of this agent, then every memory plugin installed (from the registry)."""
    act = [Entry(text=name) for name in active]
    inst = []
    for info in installed:
        name = field(info, "name", default="?")
        status = field(info, "status", default="ok")
        dist = f"{field(info, 'distribution', default='?')} {field(info, 'version', default='')}".strip()
        meta = dist if status == "ok" else f"broken: {field(info, 'error', default='')}"
        inst.append(Entry(text=f"{name}{'  (active)' if name in active else ''}", meta=meta, error=status != "ok"))
    return InspectorView(
        title="plugins",
        sections=[
            Section(title="active", subtitle=str(len(act)), entries=act, empty="no memory (stateless)", kind="plugins"),
            Section(
                title="installed",
                subtitle=str(len(inst)),
                entries=inst,
                empty="no memory plugin installed",
                kind="plugins",
            ),
        ],
        note="start with --memory a+b to choose; /help lists commands",
    )


def threads_view(threads: list[Any], current: str) -> InspectorView:
    """Every thread of this user, the current one marked, newest first as the SDK gives them."""
    entries = []
    for info in threads:
        tid = str(field(info, "id", "thread_id", default="?"))
        count = field(info, "messages", default=0)
        count = len(count) if isinstance(count, list) else count
        updated = field(info, "updated_at", default="")
        if hasattr(updated, "astimezone") and getattr(updated, "tzinfo", None) is not None:
            updated = updated.astimezone()  # stored in UTC, shown in the user's time
        when = updated.strftime("%Y-%m-%d %H:%M") if hasattr(updated, "strftime") else str(updated or "")
        meta = " · ".join(p for p in (f"{count} messages", when) if p)
        entries.append(Entry(text=f"{tid}{'  (current)' if tid == current else ''}", meta=meta))
    return InspectorView(
        title="threads",
        sections=[
            Section(
                title="threads",
                subtitle=str(len(entries)),
                entries=entries,
                empty="no saved thread yet",
                kind="threads",
            )
        ],
        note="/thread <name> switches to (or starts) a thread",
    )
