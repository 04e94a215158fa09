"""What wraps every LLM call: the answer cache, retries with backoff, and metering.

* **Cache.** A deterministic request (temperature 0, or a fixed seed) is
  looked up under a key that holds the model's identity (the weights' sha256
  for the local model, ``model@api_base`` otherwise) and the whole request
  (:func:`cache_key`); a hit is metered as a call with ``cache_hit`` and no
  tokens. A cache that fails to read or write never fails the call.
* **Retries** (:func:`retry_policy`): tenacity, retrying only what
  :func:`agentmem.llm.transport.is_transient` calls transient (connection
  refused, timeouts, 429, 5xx), with exponential backoff and jitter.
* **Metering**: :func:`record_reply`, :func:`record_stream` and
  :func:`record_failure` put each call on the :class:`~agentmem.llm.meter.Meter`
  under its caller and the tags of the call context in force.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_exponential, wait_random

from agentmem.llm.cache import is_deterministic
from agentmem.llm.meter import Meter
from agentmem.llm.transport import is_transient, one_line, token_counts, usage_of

log = logging.getLogger("agentmem.llm")

__all__ = [
    "CompletionCache",
    "attempts_made",
    "cache_key",
    "cache_lookup",
    "cache_store",
    "counted_tokens",
    "record_failure",
    "record_reply",
    "record_stream",
    "retry_policy",
]


# -- the cache -------------------------------------------------------------------------
class CompletionCache(Protocol):
    """Where deterministic answers may be kept (a disk cache plugs in here).

    ``request`` holds everything that determines the answer: the model's
    identity, messages, max_tokens, temperature, response_format and, when
    set, seed. Only deterministic requests (temperature 0 or a seed) are
    offered. :class:`agentmem.llm.cache.DiskCache` is the default one.
    """

    def get(self, request: dict[str, Any]) -> str | None: ...

    def put(self, request: dict[str, Any], text: str) -> None: ...


def cache_key(identity: str, request: dict[str, Any]) -> dict[str, Any] | None:
    """The cache key of ``request`` sent to the model ``identity``; ``None`` when its answer is not fixed by it."""
    if not is_deterministic(request):
        return None
    return {"model": identity, **request}


def cache_lookup(
    cache: CompletionCache | None, key: dict[str, Any] | None, meter: Meter, caller: str | None
) -> str | None:
    """The cached answer for ``key`` (metered as a cache hit), or ``None``."""
    if cache is None or key is None:
        return None
    started = time.monotonic()
    try:
        hit = cache.get(key)
    except Exception as exc:
        log.warning("LLM cache lookup failed (%s): calling the model", one_line(exc))
        return None
    if hit is not None:
        counted = counted_tokens(key.get("messages") or [], hit)
        meter.record(caller, 0, 0, time.monotonic() - started, cache_hit=True, counted_tokens=counted)
    return hit


def counted_tokens(messages: list[dict[str, Any]], reply: str) -> int:
    """A call's messages and reply, counted here: the same for a model call and a cache hit of it.

    The server's usage is what was spent, but a cache hit has none; comparing callers by this count instead
    keeps a warm cache from making one of them look cheaper (the evolution's "cheaper wins a tie" rule).
    """
    from agentmem.tokens import count_tokens

    return _message_tokens(messages) + count_tokens(reply)


def _message_tokens(messages: list[dict[str, Any]]) -> int:
    """The messages' contents, counted here (a stream's prompt when the server reports no usage, too)."""
    from agentmem.tokens import count_tokens

    return sum(count_tokens(str(m.get("content") or "")) for m in messages if isinstance(m, dict))


def cache_store(cache: CompletionCache | None, key: dict[str, Any] | None, text: str) -> None:
    """Keep ``text`` under ``key`` (a blank reply is not worth keeping; a failed write is logged)."""
    if cache is None or key is None or not text.strip():
        return
    try:
        cache.put(key, text)
    except Exception as exc:
        log.warning("LLM cache write failed (%s)", one_line(exc))


# -- retries ---------------------------------------------------------------------------
def _log_retry(state: RetryCallState) -> None:
    outcome = state.outcome
    exc = outcome.exception() if outcome is not None else None
    log.debug("transient LLM failure (attempt %d): %s", state.attempt_number, one_line(exc) if exc else "?")


def retry_policy(max_retries: int, backoff: float, max_backoff: float, *, worth_retrying: Any = None) -> Retrying:
    """A tenacity policy: up to ``max_retries`` retries of transient failures, waiting
    ``backoff * 2**n`` (at most ``max_backoff``) plus up to ``backoff`` of jitter between them.

    ``worth_retrying(exc)`` replaces :func:`is_transient` as the test (a stream
    adds "and nothing was shown yet"). The last failure is re-raised as it was,
    for :func:`agentmem.llm.transport.classify`; :func:`attempts_made` says how
    many attempts it took.
    """
    return Retrying(
        retry=retry_if_exception(worth_retrying or is_transient),
        stop=stop_after_attempt(max(0, int(max_retries)) + 1),
        wait=wait_exponential(multiplier=backoff, max=max_backoff) + wait_random(0, backoff),
        before_sleep=_log_retry,
        reraise=True,
    )


def attempts_made(policy: Retrying) -> int:
    """How many attempts the last run of ``policy`` made (in this thread)."""
    return int(policy.statistics.get("attempt_number", 1) or 1)


# -- metering ---------------------------------------------------------------------------
def record_reply(
    meter: Meter, caller: str | None, response: Any, seconds: float, messages: list[dict[str, Any]], reply: str
) -> None:
    """Meter one answered call with the tokens its response reports (and its :func:`counted_tokens`)."""
    prompt_tokens, completion_tokens = usage_of(response)
    meter.record(caller, prompt_tokens, completion_tokens, seconds, counted_tokens=counted_tokens(messages, reply))


def record_stream(
    meter: Meter, caller: str | None, messages: list[dict[str, Any]], pieces: list[str], usage: Any, seconds: float
) -> None:
    """Meter a finished (or abandoned) stream: the server's usage when it sent one, else counted tokens."""
    from agentmem.tokens import count_tokens

    prompt_tokens, completion_tokens = token_counts(usage)
    sent, received = _message_tokens(messages), count_tokens("".join(pieces))
    counted = sent + received  # counted_tokens(messages, reply), from the counts this function needs anyway
    meter.record(caller, prompt_tokens or sent, completion_tokens or received, seconds, counted_tokens=counted)


def record_failure(meter: Meter, caller: str | None, seconds: float, completion_tokens: int = 0) -> None:
    """Meter a call that failed for good."""
    meter.record(caller, 0, completion_tokens, seconds, error=True)
