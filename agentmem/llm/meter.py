"""Counting LLM use: calls, tokens, seconds, cache hits and errors, per caller and per tag.

Every call is recorded three ways: in the total, under its ``caller`` string
(``"episodic.reflect"``), and under each tag of the
:func:`~agentmem.llm.context.call_context` in force (``env``, ``task``,
``candidate``, ``plugin``, ``op``...).

What one run spent, exactly, even while other runs share the meter in other
threads::

    with llm.meter.scope(env="locomo") as spent:   # tags are optional
        ...                                        # every call made in this context
    spent.snapshot()                               # {"total": ..., "by_caller": ..., "by_tag": ...}

or, when the work may leave this context (threads started without
:func:`~agentmem.llm.context.bind`) and nothing else uses the meter meanwhile::

    before = meter.snapshot()
    ...
    meter.delta(before)                            # the same shape, only what changed
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import BaseModel

from agentmem.llm.context import call_context, current_tags

UNTAGGED = "(untagged)"

_FIELDS = ("calls", "prompt_tokens", "completion_tokens", "seconds", "cache_hits", "errors", "counted_tokens")


class CallStats(BaseModel):
    """Totals for a set of LLM calls (``calls`` counts cache hits and failures too)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    errors: int = 0
    #: every answered call's messages and reply, cache hits included, counted here (agentmem.tokens): what the
    #: calls take whoever answered them. Not what was spent (a hit spends nothing), but the one measure by which
    #: two callers compare fairly when a warm cache answered more of one's calls than the other's
    counted_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def model_calls(self) -> int:
        """Calls that reached the model (or tried to): ``calls`` less cache hits."""
        return self.calls - self.cache_hits

    def add(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
        cache_hit: bool,
        error: bool,
        counted_tokens: int = 0,
    ) -> None:
        self.calls += 1
        self.prompt_tokens += int(prompt_tokens or 0)
        self.completion_tokens += int(completion_tokens or 0)
        self.seconds += float(seconds or 0.0)
        self.cache_hits += int(bool(cache_hit))
        self.errors += int(bool(error))
        self.counted_tokens += int(counted_tokens or 0)


# the scopes in force in this context: (the meter they watch, the meter they fill)
_SCOPES: contextvars.ContextVar[tuple[tuple[Meter, Meter], ...]] = contextvars.ContextVar(
    "agentmem_meter_scopes", default=()
)


class Meter:
    """Thread-safe counters of LLM calls: in total, per caller, and per context tag.

    A caller names who asked (``"episodic.reflect"``); calls without one are
    counted under ``"(untagged)"``. Every call counts once in ``calls``,
    whether it was answered by the model, by a cache (``cache_hits``, no
    tokens) or failed for good (``errors``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = CallStats()
        self._by_caller: dict[str, CallStats] = {}
        self._by_tag: dict[str, dict[str, CallStats]] = {}
        self._events: dict[str, int] = {}
        self._events_by_caller: dict[str, dict[str, int]] = {}

    def note(self, event: str, caller: str | None = None, count: int = 1) -> None:
        """Count an outcome that is not a call: a structured reply cut and asked again
        (``length_retry``), one that failed for good (``failed``), a program's
        ``fallback`` or ``split``. Kept in total and under ``caller``; scopes see it."""
        key = caller or UNTAGGED
        with self._lock:
            self._events[event] = self._events.get(event, 0) + count
            per_caller = self._events_by_caller.setdefault(key, {})
            per_caller[event] = per_caller.get(event, 0) + count
        for watched, scope in _SCOPES.get():
            if watched is self:
                scope.note(event, caller, count)

    def events(self) -> dict[str, int]:
        """Counts of each noted outcome (see :meth:`note`)."""
        with self._lock:
            return dict(sorted(self._events.items()))

    def record(
        self,
        caller: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
        cache_hit: bool = False,
        error: bool = False,
        counted_tokens: int = 0,
        *,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        """Count one call under ``caller`` and ``tags`` (default: the current :func:`call_context`).

        A cache hit spends no tokens; ``counted_tokens`` is the call's messages and reply counted here, for hits
        and model calls alike.
        """
        tags = current_tags() if tags is None else dict(tags)
        key = caller or UNTAGGED
        stats = (prompt_tokens, completion_tokens, seconds, cache_hit, error, counted_tokens)
        with self._lock:
            self._total.add(*stats)
            self._by_caller.setdefault(key, CallStats()).add(*stats)
            for tag, value in tags.items():
                self._by_tag.setdefault(tag, {}).setdefault(value, CallStats()).add(*stats)
        for watched, scope in _SCOPES.get():
            if watched is self:
                scope.record(caller, *stats, tags=tags)

    # -- reading --------------------------------------------------------------------
    def total(self) -> CallStats:
        with self._lock:
            return self._total.model_copy()

    def by_caller(self) -> dict[str, CallStats]:
        with self._lock:
            return {key: stats.model_copy() for key, stats in sorted(self._by_caller.items())}

    def by_tag(self, key: str) -> dict[str, CallStats]:
        """Totals per value of tag ``key`` (``by_tag("task")`` → ``{"conv-26": CallStats, ...}``)."""
        with self._lock:
            return {value: stats.model_copy() for value, stats in sorted(self._by_tag.get(key, {}).items())}

    def tags(self) -> list[str]:
        """The tag keys seen so far."""
        with self._lock:
            return sorted(self._by_tag)

    def snapshot(self) -> dict[str, Any]:
        """``{"total": {...}, "by_caller": {name: {...}}, "by_tag": {key: {value: {...}}}, "events": {...},
        "events_by_caller": {name: {...}}}``, JSON-serialisable."""
        with self._lock:
            return {
                "total": self._total.model_dump(),
                "by_caller": {key: stats.model_dump() for key, stats in sorted(self._by_caller.items())},
                "by_tag": {
                    tag: {value: stats.model_dump() for value, stats in sorted(values.items())}
                    for tag, values in sorted(self._by_tag.items())
                },
                "events": dict(sorted(self._events.items())),
                "events_by_caller": {key: dict(sorted(v.items())) for key, v in sorted(self._events_by_caller.items())},
            }

    def delta(self, since: Mapping[str, Any]) -> dict[str, Any]:
        """What was recorded after ``since`` (an earlier :meth:`snapshot`), in the same shape.

        Callers and tag values with no new call are left out. Calls made by
        anything else sharing this meter in the meantime are included: use
        :meth:`scope` where that matters.
        """
        now = self.snapshot()
        out: dict[str, Any] = {"total": _minus(now["total"], since.get("total") or {})}
        old_callers = since.get("by_caller") or {}
        out["by_caller"] = {
            key: diff
            for key, stats in now["by_caller"].items()
            if (diff := _minus(stats, old_callers.get(key) or {}))["calls"]
        }
        old_tags = since.get("by_tag") or {}
        by_tag: dict[str, dict[str, Any]] = {}
        for tag, values in now["by_tag"].items():
            old_values = old_tags.get(tag) or {}
            changed = {
                value: diff
                for value, stats in values.items()
                if (diff := _minus(stats, old_values.get(value) or {}))["calls"]
            }
            if changed:
                by_tag[tag] = changed
        out["by_tag"] = by_tag
        old_events = since.get("events") or {}
        out["events"] = {k: n - old_events.get(k, 0) for k, n in now["events"].items() if n - old_events.get(k, 0)}
        old_by_caller = since.get("events_by_caller") or {}
        events_by_caller: dict[str, dict[str, int]] = {}
        for key, counts in now["events_by_caller"].items():
            before = old_by_caller.get(key) or {}
            moved = {k: n - before.get(k, 0) for k, n in counts.items() if n - before.get(k, 0)}
            if moved:
                events_by_caller[key] = moved
        out["events_by_caller"] = events_by_caller
        return out

    @contextlib.contextmanager
    def scope(self, **tags: Any) -> Iterator[Meter]:
        """A fresh :class:`Meter` that receives every call recorded here from this context.

        Exact under concurrency: calls made by other threads or tasks that are
        not running in this context are not counted (hand worker threads the
        context with :func:`agentmem.llm.context.bind`). ``tags``, if given,
        are also applied to the calls, as with :func:`call_context`.
        """
        child = Meter()
        token = _SCOPES.set((*_SCOPES.get(), (self, child)))
        try:
            if tags:
                with call_context(**tags):
                    yield child
            else:
                yield child
        finally:
            _SCOPES.reset(token)

    def reset(self) -> None:
        with self._lock:
            self._total = CallStats()
            self._by_caller = {}
            self._by_tag = {}
            self._events = {}
            self._events_by_caller = {}

    def __repr__(self) -> str:
        t = self.total()
        return f"Meter(calls={t.calls}, tokens={t.total_tokens}, cache_hits={t.cache_hits}, errors={t.errors})"


def _minus(now: Mapping[str, Any], before: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in _FIELDS:
        value = now.get(field, 0) - before.get(field, 0)
        out[field] = round(value, 6) if isinstance(value, float) else value
    return out
