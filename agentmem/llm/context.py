"""Who is asking: tags attached to every LLM call made inside a context.

>>> from agentmem.llm.context import call_context
>>> with call_context(env="locomo", task="conv-26"):
...     with call_context(plugin="episodic", op="reflect"):
...         llm.complete(...)   # metered under env, task, plugin and op  # doctest: +SKIP

Tags live in a :mod:`contextvars` variable, so they follow the code through
nested calls and asyncio tasks. A plain ``threading.Thread`` or a
``ThreadPoolExecutor`` worker starts with an empty context: hand it the
caller's with :func:`bind` (``pool.submit(bind(fn), ...)``) to keep the tags
(and any :meth:`~agentmem.llm.meter.Meter.scope` in force).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

#: the usual tag keys (any identifier is accepted)
KNOWN_TAGS = ("env", "task", "candidate", "plugin", "op")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_TAGS: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("agentmem_llm_call_tags", default=_EMPTY)


@contextlib.contextmanager
def call_context(**tags: Any) -> Iterator[Mapping[str, str]]:
    """Add ``tags`` to every LLM call made inside the ``with`` block.

    Nested contexts add to (and may override) the outer tags; a tag given as
    ``None`` is removed for the block. Values are stored as strings.
    """
    merged = dict(_TAGS.get())
    for key, value in tags.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = str(value)
    token = _TAGS.set(MappingProxyType(merged))
    try:
        yield _TAGS.get()
    finally:
        _TAGS.reset(token)


def current_tags() -> dict[str, str]:
    """The tags in force here (a copy)."""
    return dict(_TAGS.get())


def bind(fn: F) -> F:
    """``fn`` wrapped to run in a copy of the current context (for threads and executors)."""
    ctx = contextvars.copy_context()

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return ctx.copy().run(fn, *args, **kwargs)

    return run  # type: ignore[return-value]
