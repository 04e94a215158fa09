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
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import random
import threading
import time
from pathlib import Path
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from agentmem.errors import AgentmemError, LLMError, LLMUnavailable, NoRoomForReply
from agentmem.llm.cache import is_deterministic
from agentmem.llm.meter import Meter
from agentmem.llm.structured import Reply

if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    from agentmem.config import Settings
    from agentmem.llm.tools import ToolCall, ToolSpec
    from agentmem.llm.server import AttachedServer, LocalServer

T = TypeVar("T", bound=BaseModel)
log = logging.getLogger("agentmem.llm")

LOCAL_ALIAS = "local"
LOCAL_API_KEY = "sk-local"

# -- the cache seam --------------------------------------------------------------------
class CompletionCache(Protocol):
    """Where deterministic answers may be kept (a disk cache plugs in here).

    ``request`` holds everything that determines the answer: the model's
    identity, messages, max_tokens, temperature, response_format and, when
    set, seed. Only deterministic requests (temperature 0 or a seed) are
    offered. :class:`agentmem.llm.cache.DiskCache` is the default one.
    """

    def get(self, request: dict[str, Any]) -> str | None: ...

    def put(self, request: dict[str, Any], text: str) -> None: ...


# -- litellm, imported lazily ----------------------------------------------------------
_litellm: Any = None
_litellm_lock = threading.Lock()


def _import_litellm() -> Any:
    """Import litellm once (slow: seconds), with its network look-ups turned off."""
    global _litellm
    with _litellm_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_TELEMETRY", "False")
            import litellm

            litellm.suppress_debug_info = True
            litellm.telemetry = False
            litellm.drop_params = True  # a provider that lacks a parameter gets the call without it
            logging.getLogger("LiteLLM").setLevel(logging.WARNING)
            _litellm = litellm
        return _litellm


def _transient(exc: BaseException) -> bool:
    """True for failures worth retrying: connection problems, timeouts, 429 and 5xx."""
    litellm = _litellm
    if litellm is not None:
        ex = litellm.exceptions
        retryable = (
            ex.APIConnectionError,  # includes Timeout
            ex.Timeout,
            ex.RateLimitError,
            ex.InternalServerError,
            ex.ServiceUnavailableError,
            ex.BadGatewayError,
        )
        if isinstance(exc, retryable):
            return True
        if isinstance(exc, (ex.BadRequestError, ex.AuthenticationError, ex.NotFoundError, ex.PermissionDeniedError)):
            return False
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status == 429 or status >= 500
    return isinstance(exc, (ConnectionError, TimeoutError))


def _one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.replace("litellm.", "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


class LLM:
    """A metered, retried, concurrency-limited chat model (satisfies :class:`agentmem.toolkit.ChatModel`)."""

    @classmethod
    def from_settings(cls, model: str | None = None, api_base: str | None = None) -> "LLM":
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
        settings: "Settings | None" = None,
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
        self._server: LocalServer | AttachedServer | None = None
        self._model_path: Path | None = None
        self._model_info_cache: dict[str, Any] | None = None

        self.is_local = self.model == "local" or self.model.startswith("local/")
        if self.is_local:
            from agentmem.llm.models import DEFAULT_MODEL, get_known

            name = self.model.removeprefix("local/") if self.model.startswith("local/") else DEFAULT_MODEL
            self.local_name = get_known(name).name  # a clear error now for an unknown name

    @staticmethod
    def _resolve_cache(cache: CompletionCache | bool | None, settings: "Settings") -> CompletionCache | None:
        if cache is False or (cache is None and not settings.cache):
            return None
        if cache is None or cache is True:
            from agentmem.llm.cache import shared_cache

            return shared_cache(settings.llm_cache_path, max_bytes=settings.cache_max_mb * 1024 * 1024)
        return cache

    # -- description --------------------------------------------------------------
    def describe(self) -> str:
        """A short human-readable name of the backend, e.g. ``local qwen2.5-coder-0.5b (llama.cpp)``."""
        if self.is_local:
            user_file = self.settings.local_model_path
            if user_file is not None:
                from agentmem.llm.models import KNOWN_MODELS

                if not any(m.filename == Path(user_file).name for m in KNOWN_MODELS.values()):
                    return f"local {Path(user_file).name} (llama.cpp)"
            return f"local {self.local_name} (llama.cpp)"
        where = f" at {self.api_base}" if self.api_base else ""
        return f"{self.model} (litellm{where})"

    def __repr__(self) -> str:
        return f"LLM({self.describe()})"

    # -- limits and outcomes -----------------------------------------------------------
    def context_window(self) -> int | None:
        """The model's context in tokens: ``n_ctx`` for the local model, litellm's model
        table for providers it knows, ``None`` when unknown (structured calls then grow
        their limit step by step)."""
        if self.is_local:
            return int(self.settings.n_ctx)
        value = self._model_info().get("max_input_tokens")  # litellm's "max_tokens" is sometimes the output cap: not used
        return int(value) if isinstance(value, int) and value > 0 else None

    def max_output_tokens(self) -> int | None:
        """The most tokens the backend lets one reply take (``None``: only the context limits it)."""
        if self.is_local:
            return None
        value = self._model_info().get("max_output_tokens")
        return int(value) if isinstance(value, int) and value > 0 else None

    def _model_info(self) -> dict[str, Any]:
        cached = self._model_info_cache
        if cached is None:
            try:
                cached = dict(_import_litellm().get_model_info(self.model) or {})
            except Exception:  # noqa: BLE001 - unknown to litellm (self-hosted vLLM, a new model)
                cached = {}
            self._model_info_cache = cached
        return cached

    def note(self, event: str, caller: str | None = None) -> None:
        """Count an outcome (``length_retry``, ``failed``, a program's ``fallback``) on the meter."""
        self.meter.note(event, caller)

    # -- backend --------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        """Import litellm and, for the local model, fetch it and start its server (in parallel)."""
        if _litellm is not None and (not self.is_local or (self._server is not None and self._server.is_running())):
            return
        with self._ready_lock:
            importer = None
            if _litellm is None:
                importer = threading.Thread(target=_import_litellm, daemon=True, name="agentmem-import-litellm")
                importer.start()
            try:
                if self.is_local:
                    self._start_local()
            finally:
                if importer is not None:
                    importer.join()
            _import_litellm()  # re-raises an import error in this thread, if any

    def _start_local(self) -> None:
        from agentmem.llm.models import ensure_model
        from agentmem.llm.server import shared_local_server

        if self._model_path is None:
            self._model_path = ensure_model(
                self.local_name,
                path=self.settings.local_model_path,
                cache_dir=self.settings.cache_dir,
                progress=lambda msg: log.info("%s", msg),
            )
        self._server = shared_local_server(
            self._model_path, alias=LOCAL_ALIAS, n_ctx=self.settings.n_ctx, n_threads=self.settings.n_threads
        )

    @property
    def server(self) -> "LocalServer | AttachedServer | None":
        """The local llama.cpp server (started on the first call), or ``None`` for remote models."""
        return self._server

    def _target(self) -> tuple[str, str | None, str | None]:
        """(litellm model string, api_base, api_key) for the next attempt."""
        if self.is_local:
            assert self._server is not None
            return f"openai/{LOCAL_ALIAS}", self._server.api_base, LOCAL_API_KEY
        key = self.api_key
        if key is None and self.api_base and self.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            key = "sk-no-key"  # a self-hosted OpenAI-compatible server that needs none; the client insists on one
        return self.model, self.api_base, key

    def identity(self) -> str:
        """What determines the answers apart from the request (for cache keys)."""
        if self.is_local:
            from agentmem.llm.models import get_known

            if self.settings.local_model_path is not None:
                return f"local:{Path(self.settings.local_model_path).expanduser().resolve()}"
            return f"local:{get_known(self.local_name).sha256}"
        return f"{self.model}@{self.api_base or ''}"

    def _translate_response_format(self, response_format: dict[str, Any] | None) -> dict[str, Any] | None:
        """llama-cpp-python's server takes ``{"type": "json_object", "schema": ...}``, not OpenAI's json_schema."""
        if not response_format or not self.is_local:
            return response_format
        if response_format.get("type") == "json_schema":
            inner = response_format.get("json_schema") or {}
            schema = inner.get("schema", inner)
            return {"type": "json_object", "schema": schema}
        return response_format

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
        return self.complete_reply(messages, max_tokens=max_tokens, temperature=temperature,
                                   response_format=response_format, caller=caller, seed=seed).text

    def complete_reply(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
        seed: int | None = None,
    ) -> Reply:
        """:meth:`complete`, with the reason the reply stopped (``finish_reason``: ``"length"`` when cut).

        A JSON reply (``response_format`` set) cut by its token limit is not
        cached, so an answer from the cache is always a complete one.
        """
        request = self._request(messages, max_tokens, temperature, response_format, seed)
        key, hit = self._cache_lookup(request, caller)
        if hit is not None:
            return Reply(hit, "stop")
        reply = self._call_reply(request, caller)
        if not (reply.cut and response_format):
            self._cache_store(key, reply.text)
        return reply

    def _request(self, messages: list[dict[str, Any]], max_tokens: int | None, temperature: float | None,
                 response_format: dict[str, Any] | None, seed: int | None) -> dict[str, Any]:
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

    def _cache_lookup(self, request: dict[str, Any], caller: str | None) -> tuple[dict[str, Any] | None, str | None]:
        """``(key, cached answer)``; the key is ``None`` for requests that may not be cached."""
        cache = self.cache
        if cache is None or not is_deterministic(request):
            return None, None
        key = {"model": self.identity(), **request}
        started = time.monotonic()
        try:
            hit = cache.get(key)
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail the call
            log.warning("LLM cache lookup failed (%s): calling the model", _one_line(exc))
            hit = None
        if hit is not None:
            self.meter.record(caller, 0, 0, time.monotonic() - started, cache_hit=True)
        return key, hit

    def _cache_store(self, key: dict[str, Any] | None, text: str) -> None:
        if self.cache is None or key is None or not text.strip():  # a blank reply is not worth keeping
            return
        try:
            self.cache.put(key, text)
        except Exception as exc:  # noqa: BLE001
            log.warning("LLM cache write failed (%s)", _one_line(exc))

    def _call(self, request: dict[str, Any], caller: str | None) -> str:
        """One metered call with retries; returns the reply text or raises :class:`LLMError`."""
        return self._call_reply(request, caller).text

    def _call_reply(self, request: dict[str, Any], caller: str | None) -> Reply:
        """One metered call with retries; returns the reply and its finish reason, or raises :class:`LLMError`."""
        started = time.monotonic()
        setup = 0.0  # one-time work (importing litellm, starting the local server) is not the call's latency
        with self._semaphore:
            attempts = self.max_retries + 1
            last: BaseException | None = None
            base: str | None = self.api_base
            for attempt in range(attempts):
                if attempt:
                    delay = min(self.retry_backoff * (2 ** (attempt - 1)), self.max_backoff)
                    time.sleep(delay * (0.5 + random.random()))
                try:
                    ready_at = time.monotonic()
                    self._ensure_ready()
                    setup += time.monotonic() - ready_at
                    model, base, key = self._target()
                    with self._server.slots if self._server is not None else contextlib.nullcontext():
                        response = self._completion(model, base, key, request)
                except AgentmemError as exc:  # the local model could not be fetched or started
                    self.meter.record(caller, 0, 0, time.monotonic() - started, error=True)
                    raise exc
                except Exception as exc:  # noqa: BLE001 - classified below
                    last = exc
                    if _transient(exc) and attempt + 1 < attempts:
                        log.debug("transient LLM failure (attempt %d/%d): %s", attempt + 1, attempts, _one_line(exc))
                        continue
                    self.meter.record(caller, 0, 0, time.monotonic() - started - setup, error=True)
                    raise self._error(exc, attempt + 1, base) from None
                usage = getattr(response, "usage", None)
                prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
                completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
                self.meter.record(caller, prompt_tokens, completion_tokens, time.monotonic() - started - setup)
                finish_reason: str | None = None
                try:
                    choice = response.choices[0]
                    finish_reason = getattr(choice, "finish_reason", None)
                    message = choice.message
                    content = message.content
                    if request.get("tools"):  # native tool calls come back as <tool_call> blocks
                        from agentmem.llm.tools import tool_calls_as_text

                        content = tool_calls_as_text(message)
                except (AttributeError, IndexError):
                    content = None
                return Reply(content or "", finish_reason if isinstance(finish_reason, str) else None)
            raise self._error(last or RuntimeError("no attempt made"), attempts, base)  # pragma: no cover

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
        key, hit = self._cache_lookup(request, caller)
        if hit is not None:
            yield hit
            return
        pieces: list[str] = []
        for piece in self._stream_call(request, caller):
            pieces.append(piece)
            yield piece
        self._cache_store(key, "".join(pieces))

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
        """One metered streaming call: retried until its first piece arrives, then never."""
        from agentmem.tokens import count_tokens

        started = time.monotonic()
        setup = 0.0
        with self._semaphore:
            attempts = self.max_retries + 1
            base: str | None = self.api_base
            for attempt in range(attempts):
                if attempt:
                    delay = min(self.retry_backoff * (2 ** (attempt - 1)), self.max_backoff)
                    time.sleep(delay * (0.5 + random.random()))
                pieces: list[str] = []
                usage: Any = None
                try:
                    ready_at = time.monotonic()
                    self._ensure_ready()
                    setup += time.monotonic() - ready_at
                    model, base, key = self._target()
                    with self._server.slots if self._server is not None else contextlib.nullcontext():
                        for chunk in self._completion(model, base, key, request, stream=True):
                            usage = getattr(chunk, "usage", None) or usage
                            piece = _chunk_text(chunk)
                            if piece:
                                pieces.append(piece)
                                yield piece
                except AgentmemError:
                    self.meter.record(caller, 0, 0, time.monotonic() - started, error=True)
                    raise
                except GeneratorExit:  # the reader stopped early: count what it got
                    self._record_stream(caller, request, pieces, usage, time.monotonic() - started - setup)
                    raise
                except Exception as exc:  # noqa: BLE001 - classified below
                    if not pieces and _transient(exc) and attempt + 1 < attempts:
                        log.debug("transient LLM failure (attempt %d/%d): %s", attempt + 1, attempts, _one_line(exc))
                        continue
                    self.meter.record(caller, 0, count_tokens("".join(pieces)), time.monotonic() - started - setup, error=True)
                    error = self._error(exc, attempt + 1, base)
                    if pieces:
                        error = type(error)(f"{error} (the reply broke off after {len(pieces)} pieces)")
                    raise error from None
                self._record_stream(caller, request, pieces, usage, time.monotonic() - started - setup)
                return

    def _record_stream(self, caller: str | None, request: dict[str, Any], pieces: list[str], usage: Any, seconds: float) -> None:
        """Meter a finished stream: the server's usage when it sent one, else counted tokens."""
        from agentmem.tokens import count_tokens

        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        if not prompt_tokens:
            prompt_tokens = sum(count_tokens(str(m.get("content") or "")) for m in request["messages"])
        if not completion_tokens:
            completion_tokens = count_tokens("".join(pieces))
        self.meter.record(caller, prompt_tokens, completion_tokens, seconds)

    def _completion(
        self, model: str, base: str | None, key: str | None, request: dict[str, Any], *, stream: bool = False
    ) -> Any:
        """The litellm call itself (one attempt, no retries of its own)."""
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": request["messages"],
            "max_tokens": request["max_tokens"],
            "temperature": request["temperature"],
            "timeout": self.timeout,
            "num_retries": 0,
            "max_retries": 0,
        }
        if base:
            kwargs["api_base"] = base
        if key:
            kwargs["api_key"] = key
        response_format = self._translate_response_format(request.get("response_format"))
        if response_format:
            kwargs["response_format"] = response_format
        if request.get("seed") is not None:
            kwargs["seed"] = request["seed"]
        if request.get("tools"):  # native function calling (LLM.call_tool)
            kwargs["tools"] = request["tools"]
            kwargs["tool_choice"] = request.get("tool_choice") or "auto"
        if stream:
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}
        return _litellm.completion(**kwargs)

    def _error(self, exc: BaseException, attempts: int, base: str | None) -> LLMError:
        where = f" at {base}" if base else ""
        what = f"LLM call to {self.model}{where}"
        name = type(exc).__name__
        detail = _one_line(exc)
        while detail.startswith(f"{name}: "):  # litellm repeats the class name
            detail = detail[len(name) + 2 :]
        detail = f"{name}: {detail}"
        ex = _litellm.exceptions if _litellm is not None else None
        if (ex is not None and isinstance(exc, ex.ContextWindowExceededError)) or "exceed context window" in detail:
            # llama.cpp's server words it "Requested tokens (n) exceed context window of m"
            return NoRoomForReply(f"{what} failed: {detail}: the prompt is too long for the model's context: "
                                  "give a smaller input or raise n_ctx")
        if ex is not None and isinstance(exc, (ex.AuthenticationError, ex.PermissionDeniedError)):
            hint = "check the API key (--api-key / AGENTMEM_API_KEY)"
        elif ex is not None and isinstance(exc, ex.NotFoundError):
            hint = "check the model name (--model / AGENTMEM_MODEL) and --api-base"
        elif ex is not None and isinstance(exc, ex.BadRequestError):
            hint = "the server rejected the request: check the model string and its parameters"
        elif self.is_local:
            log_path = self._server.log_path if self._server is not None else None
            hint = f"the local llama.cpp server failed (log: {log_path})"
        else:
            hint = "check the server is running and --api-base / AGENTMEM_API_BASE"
        if _transient(exc):
            return LLMUnavailable(f"{what} failed after {attempts} attempt{'s' if attempts != 1 else ''}: {detail}: {hint}")
        return LLMError(f"{what} failed: {detail}: {hint}")

    # -- structured output -------------------------------------------------------------
    def _schema_format(self, schema: type[BaseModel]) -> dict[str, Any]:
        json_schema = schema.model_json_schema()
        if self.is_local:
            return {"type": "json_object", "schema": json_schema}
        return {"type": "json_schema", "json_schema": {"name": schema.__name__, "schema": json_schema}}

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
        from agentmem.llm.structured import structured

        return structured(self, messages, schema, caller=caller, max_tokens=max_tokens)

    # -- tool calling -------------------------------------------------------------------
    def call_tool(
        self,
        messages: list[dict[str, Any]],
        tools: "list[ToolSpec | Callable[..., Any]]",
        *,
        tool: str | None = None,
        caller: str | None = None,
        max_tokens: int | None = None,
    ) -> "ToolCall":
        """One validated tool call: JSON-schema constrained output for local models and
        whenever ``tool`` is named, native function calling otherwise (see
        :func:`agentmem.llm.tools.call_tool`). Raises :class:`LLMError` after one repair attempt."""
        from agentmem.llm.tools import call_tool

        return call_tool(self, messages, tools, tool=tool, caller=caller, max_tokens=max_tokens)


def _chunk_text(chunk: Any) -> str:
    """The text a streamed chunk adds (empty for role-only and usage-only chunks)."""
    try:
        return chunk.choices[0].delta.content or ""
    except (AttributeError, IndexError, TypeError):
        return ""


_DONE = object()


async def iterate_in_thread(make: "Callable[[], Iterator[Any]]") -> AsyncIterator[Any]:
    """Items of a blocking iterator, produced in a worker thread and awaited here.

    The thread runs in a copy of the caller's context (metering tags follow);
    an exception in it is raised here; leaving the loop early stops the thread
    at its next item.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()
    context = contextvars.copy_context()

    def produce() -> None:
        try:
            iterator = make()
            try:
                for item in iterator:
                    loop.call_soon_threadsafe(queue.put_nowait, (True, item))
                    if stop.is_set():
                        break
            finally:
                close = getattr(iterator, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting side
            loop.call_soon_threadsafe(queue.put_nowait, (False, exc))
        finally:
            loop.call_soon_threadsafe(queue.put_nowait, (True, _DONE))

    worker = threading.Thread(target=context.run, args=(produce,), daemon=True, name="agentmem-stream")
    worker.start()
    try:
        while True:
            ok, item = await queue.get()
            if not ok:
                raise item
            if item is _DONE:
                return
            yield item
    finally:
        stop.set()
