"""Counting LLM use: calls, tokens, seconds, cache hits and errors, per caller."""

from __future__ import annotations

import threading

from pydantic import BaseModel

UNTAGGED = "(untagged)"


class CallStats(BaseModel):
    """Totals for a set of LLM calls."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    cache_hits: int = 0
    errors: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, prompt_tokens: int, completion_tokens: int, seconds: float, cache_hit: bool, error: bool) -> None:
        self.calls += 1
        self.prompt_tokens += int(prompt_tokens or 0)
        self.completion_tokens += int(completion_tokens or 0)
        self.seconds += float(seconds or 0.0)
        self.cache_hits += int(bool(cache_hit))
        self.errors += int(bool(error))


class Meter:
    """Thread-safe counters of LLM calls, in total and per caller tag.

    A caller tag names who asked (``"episodic.reflect"``); calls without one
    are counted under ``"(untagged)"``. Every call counts once in ``calls``,
    whether it was answered by the model, by a cache (``cache_hits``) or
    failed for good (``errors``).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = CallStats()
        self._by_caller: dict[str, CallStats] = {}

    def record(
        self,
        caller: str | None,
        prompt_tokens: int,
        completion_tokens: int,
        seconds: float,
        cache_hit: bool = False,
        error: bool = False,
    ) -> None:
        key = caller or UNTAGGED
        with self._lock:
            self._total.add(prompt_tokens, completion_tokens, seconds, cache_hit, error)
            self._by_caller.setdefault(key, CallStats()).add(prompt_tokens, completion_tokens, seconds, cache_hit, error)

    def total(self) -> CallStats:
        with self._lock:
            return self._total.model_copy()

    def by_caller(self) -> dict[str, CallStats]:
        with self._lock:
            return {key: stats.model_copy() for key, stats in sorted(self._by_caller.items())}

    def snapshot(self) -> dict:
        """``{"total": {...}, "by_caller": {name: {...}}}``, JSON-serialisable."""
        with self._lock:
            return {
                "total": self._total.model_dump(),
                "by_caller": {key: stats.model_dump() for key, stats in sorted(self._by_caller.items())},
            }

    def reset(self) -> None:
        with self._lock:
            self._total = CallStats()
            self._by_caller = {}
