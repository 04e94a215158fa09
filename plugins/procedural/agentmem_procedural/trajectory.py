"""LLM-free reading of a trajectory: compact rendering, error messages, tool steps, placeholders.

These are the deterministic guards around the LLM distillation. A 0.5B
model paraphrases loosely and sometimes drops the one detail that matters
(the exact format a tool wanted), so the tool's own error message, the
failed call's arguments and the argument values that differed between a
failed and a successful attempt are read straight from the events and kept
with the lesson. They also give a usable item when no LLM is configured.
"""

from __future__ import annotations

import re
from typing import Any

from agentmem.types import Event

__all__ = [
    "abstract_steps",
    "argument_diffs",
    "describe_diff",
    "error_messages",
    "placeholderize",
    "recoveries",
    "render_trajectory",
    "short",
    "task_of",
]

_ERROR = re.compile(
    r"\b(error|errors|failed|fails|failure|invalid|exception|not found|denied|refused|rejected|unable|cannot|can't|"
    r"wrong|expected|must be|unknown|missing|timeout|timed out)\b",
    re.IGNORECASE,
)


def short(text: str, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters."""
    one = " ".join(str(text).split())
    return one if len(one) <= limit else one[: limit - 3].rstrip() + "..."


def _args(arguments: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in (arguments or {}).items())


def line_of(event: Event) -> str:
    """One event as one short trajectory line (no timestamp: the model does not need it)."""
    if event.kind == "tool_call":
        return short(f"call {event.tool_name}({_args(event.arguments)})")
    if event.kind == "observation":
        return "result: " + short(event.content)
    if event.kind == "outcome":
        reward = "" if event.reward is None else f" (reward {event.reward:g})"
        return f"outcome{reward}: " + short(event.content)
    who = f"{event.speaker}: " if event.speaker else ""
    return who + short(event.content)


def render_trajectory(events: list[Event], max_lines: int = 14) -> str:
    """The trajectory as at most ``max_lines`` lines: the opening two and the last ones (where the outcome is)."""
    lines = [line_of(e) for e in events if e.content or e.kind == "tool_call"]
    if len(lines) > max_lines:
        lines = lines[:2] + ["..."] + lines[-(max_lines - 3) :]
    return "\n".join(lines)


def task_of(task: str, events: list[Event]) -> str:
    """The task description: the episode's own, else the first user message."""
    if task.strip():
        return short(task, 300)
    for event in events:
        if event.kind == "message" and (event.speaker or "user") == "user" and event.content.strip():
            return short(event.content, 300)
    return ""


def error_messages(events: list[Event], limit: int = 2) -> list[str]:
    """Observations (and failed outcomes) that read like an error, most recent last, verbatim but short."""
    found: list[str] = []
    for event in events:
        if event.kind in ("observation", "outcome") and _ERROR.search(event.content or ""):
            text = short(event.content, 200)
            if text not in found:
                found.append(text)
    return found[-limit:]


def _is_error(event: Event) -> bool:
    return event.kind == "observation" and bool(_ERROR.search(event.content or ""))


def recoveries(events: list[Event], limit: int = 2) -> list[tuple[str, str, str]]:
    """``(tool, failed call + its error, what changed in the call that then worked)`` for each retried call.

    A successful episode often contains a failure the agent recovered from;
    the argument values that changed between the failed and the working
    call are the lesson, and they can be read without an LLM.
    """
    out: list[tuple[str, str, str]] = []
    calls = [(i, e) for i, e in enumerate(events) if e.kind == "tool_call"]
    for n, (i, call) in enumerate(calls):
        after = events[i + 1] if i + 1 < len(events) else None
        if after is None or not _is_error(after):
            continue
        for j, later in calls[n + 1 :]:
            if later.tool_name != call.tool_name:
                continue
            nxt = events[j + 1] if j + 1 < len(events) else None
            if nxt is not None and _is_error(nxt):
                continue
            diffs = argument_diffs(later.arguments or {}, call.arguments or {}, blamed=[after.content])
            if diffs:
                failed = f"{call.tool_name}({_args(call.arguments)}) failed with: {short(after.content, 160)}"
                out.append((call.tool_name or "", failed, "; ".join(describe_diff(d) for d in diffs)))
            break
        if len(out) >= limit:
            break
    return out


def argument_diffs(
    good: dict[str, Any], bad: dict[str, Any], *, blamed: list[str] | None = None, limit: int = 3
) -> list[tuple[str, Any, Any]]:
    """``(argument, value that worked, value that failed)`` for the arguments two calls disagree on.

    When ``blamed`` (error messages) quotes some of the failed values, only
    those arguments are kept: the tool said what it objected to, and the
    other differences (another restaurant, another name) are incidental.
    """
    out = [(k, good[k], bad[k]) for k in good if k in bad and good[k] != bad[k]]
    if blamed:
        text = " ".join(blamed).lower()
        named = [d for d in out if str(d[2]).lower() in text]
        out = named or out
    return out[:limit]


def describe_diff(diff: tuple[str, Any, Any]) -> str:
    key, good, bad = diff
    return f"{key}={good!r} worked where {key}={bad!r} failed"


def calls_by_tool(events: list[Event]) -> dict[str, dict[str, Any]]:
    """The last arguments each tool was called with."""
    out: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.kind == "tool_call" and event.tool_name:
            out[event.tool_name] = dict(event.arguments or {})
    return out


def abstract_steps(events: list[Event], limit: int = 6) -> list[str]:
    """The tool calls as abstract steps (``call book(date=<date>)``), retries collapsed: AWM's fallback workflow."""
    steps: list[str] = []
    last_tool = None
    for event in events:
        if event.kind != "tool_call" or not event.tool_name:
            continue
        step = f"call {event.tool_name}(" + ", ".join(f"{k}=<{k}>" for k in (event.arguments or {})) + ")"
        if event.tool_name == last_tool:
            steps[-1] = step
        else:
            steps.append(step)
        last_tool = event.tool_name
    return steps[:limit]


def placeholderize(text: str, events: list[Event]) -> str:
    """``text`` with the concrete argument values of the trajectory's tool calls replaced by ``<arg>``.

    After AWM, a workflow keeps the procedure and drops the example: "book for
    4 on 2025-03-14" becomes "book for <party_size> on <date>".
    """
    values: dict[str, str] = {}
    for event in events:
        if event.kind != "tool_call":
            continue
        for key, value in (event.arguments or {}).items():
            if isinstance(value, bool) or value is None or isinstance(value, (dict, list)):
                continue
            sval = str(value).strip()
            if not sval or len(sval) > 60:
                continue
            values.setdefault(sval, key)
    # longest first so "2025-03-14" is replaced before "2025"
    for sval in sorted(values, key=len, reverse=True):
        pattern = re.compile(r"(?<![\w<])" + re.escape(sval) + r"(?![\w>])", re.IGNORECASE)
        text = pattern.sub(f"<{values[sval]}>", text)
    return text
