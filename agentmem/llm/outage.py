"""Notice a model outage even where the code in between catches the error.

Plugins, agents and sandboxed candidates catch :class:`~agentmem.errors.LLMError`
on purpose: one bad reply should cost one question or one fact, not the run.
But when the server is down, every "bad reply" is an outage, and an
evaluation that carries on records a score the memory never earned (and a
resumed run would then skip it as done). :class:`OutageWatch` wraps a chat
model, passes everything through, and remembers the first
:class:`~agentmem.errors.LLMUnavailable` any call raised, whoever catches it
afterwards; the evaluation asks it after each question and stops.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from typing import Any

from agentmem.errors import LLMUnavailable

__all__ = ["OutageWatch"]

# the methods through which a chat model is called (LLM's public ones, and the one tools.call_tool uses)
_CALLS = frozenset({"complete", "structured", "call_tool", "stream", "astream", "_call"})


class OutageWatch:
    """``llm`` with every call watched for :class:`LLMUnavailable` (``failure``: the first one seen)."""

    def __init__(self, llm: Any) -> None:
        self._llm = llm
        self._lock = threading.Lock()
        self.failure: LLMUnavailable | None = None

    @property
    def wrapped(self) -> Any:
        return self._llm

    def _note(self, exc: LLMUnavailable) -> None:
        with self._lock:
            if self.failure is None:
                self.failure = exc

    def check(self) -> None:
        """Raise the outage seen so far, if any (a new exception each time, with the same one line)."""
        if self.failure is not None:
            raise LLMUnavailable(str(self.failure))

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._llm, name)
        if name not in _CALLS or not callable(value):
            return value
        if name == "astream":
            return self._watch_async(value)

        @functools.wraps(value)
        def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                result = value(*args, **kwargs)
            except LLMUnavailable as exc:
                self._note(exc)
                raise
            return self._watch_iter(result) if name == "stream" else result

        return watched

    def _watch_iter(self, pieces: Iterator[Any]) -> Iterator[Any]:
        try:
            yield from pieces
        except LLMUnavailable as exc:
            self._note(exc)
            raise

    def _watch_async(self, method: Any) -> Any:
        @functools.wraps(method)
        async def watched(*args: Any, **kwargs: Any) -> Any:
            try:
                async for piece in method(*args, **kwargs):
                    yield piece
            except LLMUnavailable as exc:
                self._note(exc)
                raise

        return watched

    def __repr__(self) -> str:
        return f"OutageWatch({self._llm!r})"
