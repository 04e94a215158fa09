"""One LLM client for every backend, through litellm.

``LLM("local")`` runs the embedded default model (llama.cpp, a small instruct
GGUF, no network and no GPU needed); ``LLM("local/qwen2.5-coder-1.5b")`` picks
another known GGUF; any other string is a litellm model string
(``hosted_vllm/Qwen/Qwen3-8B`` with ``api_base=...``, ``openai/gpt-4o-mini``...).

Every call is metered (:class:`~agentmem.llm.meter.Meter`), limited to
``max_concurrency`` at once, and retried with exponential backoff and jitter on
transient failures (connection refused, timeouts, 429, 5xx). A deterministic
call (temperature 0, or a fixed ``seed``) is answered from the on-disk
:class:`~agentmem.llm.cache.DiskCache` when it was asked before (settings
``cache`` / ``cache_path``, env ``AGENTMEM_CACHE`` / ``AGENTMEM_CACHE_PATH``;
``LLM(..., cache=False)`` turns it off); a hit is metered as a call with
``cache_hit`` and no tokens. Calls are metered under their ``caller`` and the
tags of the :func:`~agentmem.llm.context.call_context` in force.

This module only wires the layers together:

* :mod:`agentmem.llm.transport` - the litellm call, reading replies, classifying failures;
* :mod:`agentmem.llm.middleware` - the answer cache, retries (tenacity), metering;
* :mod:`agentmem.llm.local` - the embedded llama.cpp backend;
* :mod:`agentmem.llm.schemas` - response formats and JSON helpers;
* :mod:`agentmem.llm.structured` and :mod:`agentmem.llm.tools` - structured output and tool calls.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from agentmem.errors import AgentmemError, LLMError
from agentmem.llm import middleware
from agentmem.llm.local import LOCAL_ALIAS, LOCAL_API_KEY, LocalBackend, is_local_model
from agentmem.llm.meter import Meter
from agentmem.llm.middleware import CompletionCache
from agentmem.llm.schemas import response_format as schema_response_format
from agentmem.llm.structured import Reply, structured
from agentmem.llm.tools import ToolCall, ToolSpec, call_tool
from agentmem.llm.transport import (
    Backend,
    RemoteBackend,
    Target,
    chunk_text,
    classify,
    completion,
    import_litellm,
    importing_litellm,
    is_transient,
    iterate_in_thread,
    litellm_loaded,
    reply_of,
)

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.config import Settings
    from agentmem.llm.server import AttachedServer, LocalServer

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger("agentmem.llm")

__all__ = ["LLM", "CompletionCache", "LOCAL_ALIAS", "LOCAL_API_KEY", "iterate_in_thread"]

# kept under their old names for code that imported them from here
_import_litellm = import_litellm
_transient = is_transient
_chunk_text = chunk_text


class LLM:
    """A metered, retried, concurrency-limited chat model (satisfies :class:`agentmem.toolkit.ChatModel`)."""

    @classmethod
    def from_settings(cls, model: str | None = None, api_base: str | None = None) -> LLM:
        """The client for the chosen model, resolved as every command resolves it.

        Precedence: the arguments, then ``AGENTMEM_MODEL`` / ``AGENTMEM_API_BASE``,
        then the config file, then the embedded local default. The CLI, the
        evolution evaluator and its workers all build their clients here, so a
        run scores with exactly the model its command line named.
        """
        from agentmem.config import load_settings

        settings = load_settings(model=model, api_base=api_base)
        return cls(settings.model, api_base=settings.api_base, api_key=settings.api_key, settings=settings)

    def __init__(
        self,
        model: str | None = None,
        *,
        api_base: str | None = None,
        api_key: str | None = None,
        temperature: float = 0.0,
        max_tokens: int = 256,
        timeout: float | None = None,
        settings: Settings | None = None,
        meter: Meter | None = None,
        cache: CompletionCache | bool | None = None,
        seed: int | None = None,
        retry_backoff: float = 0.5,
        max_backoff: float = 20.0,
    ) -> None:
        """``cache``: ``None`` uses the settings' disk cache (on by default), ``False`` none,
        ``True`` the settings' disk cache even where the settings turn it off, or any
        :class:`CompletionCache`. ``seed``: the default seed of every call (``None``: none)."""
        if settings is None:
            from agentmem.config import load_settings

            # the arguments are the top layer: the model and its api base/key resolve as a pair there
            settings = load_settings(model=model, api_base=api_base, api_key=api_key)
            model = api_base = api_key = None
        self.settings = settings
        chosen = (model or settings.model).strip()
        if chosen == LOCAL_ALIAS and settings.model.startswith("local/"):
            chosen = settings.model  # "local" is the backend; the settings say which local model
        paired = chosen == settings.model  # the settings' api base and key belong to their model only
        self.model: str = chosen
        self.api_base: str | None = api_base or (settings.api_base if paired else None)
        self.api_key: str | None = api_key or (settings.api_key if paired else None)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.timeout = timeout if timeout is not None else settings.llm_timeout
        self.meter = meter if meter is not None else Meter()
        self.seed = seed
        self.cache: CompletionCache | None = self._resolve_cache(cache, settings)
        self.max_retries = settings.max_retries
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self._semaphore = threading.BoundedSemaphore(settings.max_concurrency)
        self._ready_lock = threading.Lock()

        self.is_local = is_local_model(self.model)
        self._backend: Backend
        if self.is_local:
            self._backend = LocalBackend(self.model, settings)  # a clear error now for an unknown name
            self.local_name = self._backend.name
        else:
            self._backend = RemoteBackend(self.model, self.api_base, self.api_key)

    @staticmethod
    def _resolve_cache(cache: CompletionCache | bool | None, settings: Settings) -> CompletionCache | None:
        if cache is False or (cache is None and not settings.cache):
            return None
        if cache is None or cache is True:
            from agentmem.llm.cache import shared_cache

            return shared_cache(settings.llm_cache_path, max_bytes=settings.cache_max_mb * 1024 * 1024)
        return cache

    # -- description --------------------------------------------------------------
    def describe(self) -> str:
        """A short human-readable name of the backend, e.g. ``local qwen2.5-coder-0.5b (llama.cpp)``."""
        return self._backend.describe()

    def __repr__(self) -> str:
        return f"LLM({self.describe()})"

    def identity(self) -> str:
        """What determines the answers apart from the request (for cache keys)."""
        return self._backend.identity()

    # -- limits and outcomes -----------------------------------------------------------
    def context_window(self) -> int | None:
        """The model's context in tokens: ``n_ctx`` for the local model, litellm's model
        table for providers it knows, ``None`` when unknown (structured calls then grow
        their limit step by step)."""
        return self._backend.context_window()

    def max_output_tokens(self) -> int | None:
        """The most tokens the backend lets one reply take (``None``: only the context limits it)."""
        return self._backend.max_output_tokens()

    def note(self, event: str, caller: str | None = None) -> None:
        """Count an outcome (``length_retry``, ``failed``, a program's ``fallback``) on the meter."""
        self.meter.note(event, caller)

    # -- backend --------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        """Import litellm and, for the local model, fetch it and start its server (in parallel)."""
        if litellm_loaded() and self._backend.ready():
            return
        with self._ready_lock, importing_litellm():
            self._backend.start()

    @property
    def server(self) -> LocalServer | AttachedServer | None:
        """The local llama.cpp server (started on the first call), or ``None`` for remote models."""
        return self._backend.server if isinstance(self._backend, LocalBackend) else None

    def _target(self) -> Target:
        """(litellm model string, api_base, api_key) for the next attempt."""
        return self._backend.target()

    def _schema_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        """The ``response_format`` constraining a reply to ``schema`` on this backend."""
        return schema_response_format(schema.__name__, schema.model_json_schema(), local=self.is_local)

    # -- calls ------------------------------------------------------------------------
    def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
        seed: int | None = None,
    ) -> str:
        """The model's reply text to ``messages`` (OpenAI chat format).

        A deterministic request (temperature 0, or a ``seed``) is looked up in
        the cache first, and its answer kept there.
        """
        return self.complete_reply(
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            response_format=response_format,
            caller=caller,
            seed=seed,
        ).text

    def complete_reply(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
        seed: int | None = None,
        repetition_penalty: float | None = None,
    ) -> Reply:
        """:meth:`complete`, with the reason the reply stopped (``finish_reason``: ``"length"`` when cut).

        A JSON reply (``response_format`` set) cut by its token limit is not
        cached, so an answer from the cache is always a complete one.
        ``repetition_penalty`` sets the OpenAI ``frequency_penalty`` and
        ``presence_penalty`` (structured calls use it to ask again after a
        reply that looped; see :mod:`agentmem.llm.structured`).
        """
        request = self._request(messages, max_tokens, temperature, response_format, seed)
        if repetition_penalty:
            request["frequency_penalty"] = request["presence_penalty"] = float(repetition_penalty)
        key = middleware.cache_key(self.identity(), request) if self.cache is not None else None
        hit = middleware.cache_lookup(self.cache, key, self.meter, caller)
        if hit is not None:
            return Reply(hit, "stop")
        reply = self._call_reply(request, caller)
        if not (reply.cut and response_format):
            middleware.cache_store(self.cache, key, reply.text)
        return reply

    def _request(
        self,
        messages: list[dict[str, Any]],
        max_tokens: int | None,
        temperature: float | None,
        response_format: dict[str, Any] | None,
        seed: int | None,
    ) -> dict[str, Any]:
        """The request body, with this client's defaults filled in."""
        request: dict[str, Any] = {
            "messages": messages,
            "max_tokens": self.max_tokens if max_tokens is None else max_tokens,
            "temperature": self.temperature if temperature is None else temperature,
            "response_format": response_format,
        }
        seed = self.seed if seed is None else seed
        if seed is not None:
            request["seed"] = int(seed)
        return request

    def _call(self, request: dict[str, Any], caller: str | None) -> str:
        """One metered call with retries; returns the reply text or raises :class:`LLMError`."""
        return self._call_reply(request, caller).text

    def _retry_policy(self, worth_retrying: Callable[[BaseException], bool] | None = None) -> Any:
        return middleware.retry_policy(
            self.max_retries, self.retry_backoff, self.max_backoff, worth_retrying=worth_retrying
        )

    def _call_reply(self, request: dict[str, Any], caller: str | None) -> Reply:
        """One metered call with retries; returns the reply and its finish reason, or raises :class:`LLMError`."""
        started = time.monotonic()
        setup = 0.0  # one-time work (importing litellm, starting the local server) is not the call's latency

        def attempt() -> Any:
            nonlocal setup
            ready_at = time.monotonic()
            self._ensure_ready()
            setup += time.monotonic() - ready_at
            model, base, key = self._target()
            with self._backend.slot():
                return self._completion(model, base, key, request)

        with self._semaphore:
            policy = self._retry_policy()
            try:
                response = policy(attempt)
            except AgentmemError:  # the local model could not be fetched or started
                middleware.record_failure(self.meter, caller, time.monotonic() - started)
                raise
            except Exception as exc:
                middleware.record_failure(self.meter, caller, time.monotonic() - started - setup)
                raise self._error(exc, middleware.attempts_made(policy)) from None
        reply = reply_of(response, tools=bool(request.get("tools")))
        seconds = time.monotonic() - started - setup
        middleware.record_reply(self.meter, caller, response, seconds, request["messages"], reply.text)
        return reply

    # -- streaming ----------------------------------------------------------------------
    def stream(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        caller: str | None = None,
        seed: int | None = None,
    ) -> Iterator[str]:
        """The model's reply to ``messages`` as it is generated, piece by piece.

        Metered like :meth:`complete` (tokens counted once the stream ends: the
        server's usage when it reports one, else an estimate) and cached like
        it: a deterministic request answered before streams back as one chunk.
        Connection failures before the first piece are retried; a failure
        after it raises :class:`LLMError` (one line), since the pieces already
        shown cannot be taken back.
        """
        request = self._request(messages, max_tokens, temperature, None, seed)
        key = middleware.cache_key(self.identity(), request) if self.cache is not None else None
        hit = middleware.cache_lookup(self.cache, key, self.meter, caller)
        if hit is not None:
            yield hit
            return
        pieces: list[str] = []
        for piece in self._stream_call(request, caller):
            pieces.append(piece)
            yield piece
        middleware.cache_store(self.cache, key, "".join(pieces))

    async def astream(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        caller: str | None = None,
        seed: int | None = None,
    ) -> AsyncIterator[str]:
        """:meth:`stream` for asyncio: the same pieces, metering, cache and errors.

        The blocking stream runs in a worker thread (carrying this context's
        metering tags) so that the event loop never waits on the model.
        """
        async for piece in iterate_in_thread(
            lambda: self.stream(messages, max_tokens=max_tokens, temperature=temperature, caller=caller, seed=seed)
        ):
            yield piece

    def _stream_call(self, request: dict[str, Any], caller: str | None) -> Iterator[str]:
        """One metered streaming call: retried until its first piece arrives, then never.

        The retried part opens the stream and reads up to its first piece (a
        failure there has shown the reader nothing); the rest is read once.
        """
        from agentmem.tokens import count_tokens

        started = time.monotonic()
        setup = 0.0
        usage: Any = None

        def open_stream() -> tuple[contextlib.ExitStack, Iterator[Any], str | None]:
            nonlocal setup, usage
            ready_at = time.monotonic()
            self._ensure_ready()
            setup += time.monotonic() - ready_at
            model, base, key = self._target()
            held = contextlib.ExitStack()
            try:
                held.enter_context(self._backend.slot())
                chunks = iter(self._completion(model, base, key, request, stream=True))
                for chunk in chunks:
                    usage = getattr(chunk, "usage", None) or usage
                    piece = chunk_text(chunk)
                    if piece:
                        return held, chunks, piece
                return held, chunks, None  # a stream with no text at all
            except BaseException:
                held.close()
                raise

        with self._semaphore:
            policy = self._retry_policy()
            try:
                held, chunks, first = policy(open_stream)
            except AgentmemError:
                middleware.record_failure(self.meter, caller, time.monotonic() - started)
                raise
            except Exception as exc:
                middleware.record_failure(self.meter, caller, time.monotonic() - started - setup)
                raise self._error(exc, middleware.attempts_made(policy)) from None
            pieces: list[str] = []
            with held:
                try:
                    if first is not None:
                        pieces.append(first)
                        yield first
                    for chunk in chunks:
                        usage = getattr(chunk, "usage", None) or usage
                        piece = chunk_text(chunk)
                        if piece:
                            pieces.append(piece)
                            yield piece
                except GeneratorExit:  # the reader stopped early: count what it got
                    middleware.record_stream(
                        self.meter, caller, request["messages"], pieces, usage, time.monotonic() - started - setup
                    )
                    raise
                except Exception as exc:
                    middleware.record_failure(
                        self.meter,
                        caller,
                        time.monotonic() - started - setup,
                        completion_tokens=count_tokens("".join(pieces)),
                    )
                    error = self._error(exc, middleware.attempts_made(policy))
                    if pieces:
                        error = type(error)(f"{error} (the reply broke off after {len(pieces)} pieces)")
                    raise error from None
            middleware.record_stream(
                self.meter, caller, request["messages"], pieces, usage, time.monotonic() - started - setup
            )

    def _completion(
        self, model: str, base: str | None, key: str | None, request: dict[str, Any], *, stream: bool = False
    ) -> Any:
        """The litellm call itself (one attempt, no retries of its own; the backend's format translations applied)."""
        return completion(Target(model, base, key), self._backend.prepare(request), timeout=self.timeout, stream=stream)

    def _error(self, exc: BaseException, attempts: int) -> LLMError:
        """The one-line error of a failed call (see :func:`agentmem.llm.transport.classify`)."""
        return classify(
            exc, model=self.model, base=self._backend.where(), attempts=attempts, hint=self._backend.failure_hint()
        )

    # -- structured output -------------------------------------------------------------
    def structured(
        self,
        messages: list[dict[str, Any]],
        schema: type[T],
        *,
        caller: str | None = None,
        max_tokens: int | None = None,
    ) -> T:
        """The reply parsed into ``schema`` (constrained to its JSON schema where the backend can).

        The reply may take what the schema can need, up to the room the prompt
        leaves in the context; a reply cut by that limit is asked again with
        more room, and :class:`~agentmem.errors.NoRoomForReply` says when there
        is none (give a smaller input). A complete but invalid reply gets one
        repair request, then :class:`~agentmem.errors.InvalidReply`. See
        :mod:`agentmem.llm.structured`.
        """
        return structured(self, messages, schema, caller=caller, max_tokens=max_tokens)

    # -- tool calling -------------------------------------------------------------------
    def call_tool(
        self,
        messages: list[dict[str, Any]],
        tools: list[ToolSpec | Callable[..., Any]],
        *,
        tool: str | None = None,
        caller: str | None = None,
        max_tokens: int | None = None,
    ) -> ToolCall:
        """One validated tool call: JSON-schema constrained output for local models and
        whenever ``tool`` is named, native function calling otherwise (see
        :func:`agentmem.llm.tools.call_tool`). Raises :class:`LLMError` after one repair attempt."""
        return call_tool(self, messages, tools, tool=tool, caller=caller, max_tokens=max_tokens)
