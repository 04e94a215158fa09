"""The transport: one litellm call to a chat backend, its reply read, its failure classified.

This is the bottom of the LLM layer: no cache, no retries, no metering (those
are :mod:`agentmem.llm.middleware`), no knowledge of the embedded model (that
is :mod:`agentmem.llm.local`). It holds

* litellm, imported lazily and once, with its network look-ups turned off;
* :class:`RemoteBackend`: any model string litellm speaks, and its limits;
* :func:`completion`: the litellm call itself (one attempt: litellm's own
  retries are off, :mod:`agentmem.llm.middleware` retries);
* reading a response: :func:`reply_of`, :func:`chunk_text`, :func:`tool_calls_as_text`;
* the error classification that is ours: :func:`is_transient` (what is worth
  retrying) and :func:`classify` (one line that says what failed and how to fix it);
* :func:`iterate_in_thread`, a blocking stream read from asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, NamedTuple, Protocol

from agentmem.errors import LLMError, LLMUnavailable, NoRoomForReply

log = logging.getLogger("agentmem.llm")

__all__ = [
    "Backend",
    "RemoteBackend",
    "Reply",
    "Target",
    "chunk_text",
    "classify",
    "completion",
    "import_litellm",
    "is_transient",
    "iterate_in_thread",
    "one_line",
    "reply_of",
    "token_counts",
    "tool_calls_as_text",
    "usage_of",
]


class Reply(NamedTuple):
    """A model's reply text and why it stopped (``"stop"``, ``"length"``, ``"tool_calls"`` or ``None``)."""

    text: str
    finish_reason: str | None = None

    @property
    def cut(self) -> bool:
        """Whether the token limit stopped it (its end is missing)."""
        return self.finish_reason == "length"


class Target(NamedTuple):
    """Where one attempt goes: the litellm model string, its api base and key."""

    model: str
    api_base: str | None
    api_key: str | None


# -- litellm, imported lazily ----------------------------------------------------------
_litellm: Any = None
_litellm_lock = threading.Lock()


def import_litellm() -> Any:
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


def litellm_loaded() -> bool:
    """Whether litellm has been imported (by :func:`import_litellm`)."""
    return _litellm is not None


@contextlib.contextmanager
def importing_litellm() -> Iterator[None]:
    """Import litellm in a background thread while the body runs (starting the local server, say)."""
    importer = None
    if _litellm is None:
        importer = threading.Thread(target=import_litellm, daemon=True, name="agentmem-import-litellm")
        importer.start()
    try:
        yield
    finally:
        if importer is not None:
            importer.join()
    import_litellm()  # re-raises an import error in this thread, if any


# -- backends ----------------------------------------------------------------------------
class Backend(Protocol):
    """What the client needs of a backend (:class:`RemoteBackend`, :class:`agentmem.llm.local.LocalBackend`)."""

    is_local: bool

    def describe(self) -> str: ...

    def identity(self) -> str: ...

    def ready(self) -> bool: ...

    def start(self) -> None: ...

    def target(self) -> Target: ...

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]: ...

    def slot(self) -> contextlib.AbstractContextManager[Any]: ...

    def context_window(self) -> int | None: ...

    def max_output_tokens(self) -> int | None: ...

    def where(self) -> str | None: ...

    def failure_hint(self) -> str: ...


class RemoteBackend:
    """A model litellm speaks: a provider, or a self-hosted OpenAI-compatible server at ``api_base``."""

    is_local = False

    def __init__(self, model: str, api_base: str | None, api_key: str | None) -> None:
        self.model = model
        self.api_base = api_base
        self.api_key = api_key
        self._info: dict[str, Any] | None = None

    def describe(self) -> str:
        where = f" at {self.api_base}" if self.api_base else ""
        return f"{self.model} (litellm{where})"

    def identity(self) -> str:
        """What determines the answers apart from the request (for cache keys)."""
        return f"{self.model}@{self.api_base or ''}"

    def ready(self) -> bool:
        return True

    def start(self) -> None:
        """Nothing to start: the server is someone else's."""

    def target(self) -> Target:
        key = self.api_key
        if key is None and self.api_base and self.model.startswith("openai/") and not os.environ.get("OPENAI_API_KEY"):
            key = "sk-no-key"  # a self-hosted OpenAI-compatible server that needs none; the client insists on one
        return Target(self.model, self.api_base, key)

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        return request

    def slot(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def where(self) -> str | None:
        return self.api_base

    def failure_hint(self) -> str:
        return "check the server is running and --api-base / AGENTMEM_API_BASE"

    def context_window(self) -> int | None:
        """litellm's model table's input limit, ``None`` when unknown."""
        value = self._model_info().get("max_input_tokens")  # litellm's "max_tokens" is sometimes the output cap
        return int(value) if isinstance(value, int) and value > 0 else None

    def max_output_tokens(self) -> int | None:
        value = self._model_info().get("max_output_tokens")
        return int(value) if isinstance(value, int) and value > 0 else None

    def _model_info(self) -> dict[str, Any]:
        cached = self._info
        if cached is None:
            try:
                cached = dict(import_litellm().get_model_info(self.model) or {})
            except Exception:
                cached = {}
            self._info = cached
        return cached


# -- the call ------------------------------------------------------------------------------
def completion(target: Target, request: dict[str, Any], *, timeout: float | None, stream: bool = False) -> Any:
    """The litellm call itself (one attempt, no retries of its own)."""
    kwargs: dict[str, Any] = {
        "model": target.model,
        "messages": request["messages"],
        "max_tokens": request["max_tokens"],
        "temperature": request["temperature"],
        "timeout": timeout,
        "num_retries": 0,
        "max_retries": 0,
    }
    if target.api_base:
        kwargs["api_base"] = target.api_base
    if target.api_key:
        kwargs["api_key"] = target.api_key
    if request.get("response_format"):
        kwargs["response_format"] = request["response_format"]
    if request.get("seed") is not None:
        kwargs["seed"] = request["seed"]
    for penalty in ("frequency_penalty", "presence_penalty"):  # set only to stop a degenerate (looping) reply
        if request.get(penalty):
            kwargs[penalty] = request[penalty]
    if request.get("tools"):  # native function calling (LLM.call_tool)
        kwargs["tools"] = request["tools"]
        kwargs["tool_choice"] = request.get("tool_choice") or "auto"
    if stream:
        kwargs["stream"] = True
        kwargs["stream_options"] = {"include_usage": True}
    return import_litellm().completion(**kwargs)


# -- reading a response ----------------------------------------------------------------------
def usage_of(response: Any) -> tuple[int, int]:
    """(prompt tokens, completion tokens) a response or chunk reports (zeros when it reports none)."""
    return token_counts(getattr(response, "usage", None))


def token_counts(usage: Any) -> tuple[int, int]:
    """(prompt tokens, completion tokens) of a ``usage`` object (zeros for ``None``)."""
    return int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)


def reply_of(response: Any, *, tools: bool = False) -> Reply:
    """The reply text and finish reason of a response (with native tool calls as ``<tool_call>`` blocks)."""
    finish_reason: str | None = None
    try:
        choice = response.choices[0]
        finish_reason = getattr(choice, "finish_reason", None)
        message = choice.message
        content = tool_calls_as_text(message) if tools else message.content
    except (AttributeError, IndexError):
        content = None
    return Reply(content or "", finish_reason if isinstance(finish_reason, str) else None)


def chunk_text(chunk: Any) -> str:
    """The text a streamed chunk adds (empty for role-only and usage-only chunks)."""
    try:
        return chunk.choices[0].delta.content or ""
    except (AttributeError, IndexError, TypeError):
        return ""


def tool_calls_as_text(message: Any) -> str:
    """A reply message's text followed by its native ``tool_calls`` as ``<tool_call>`` blocks
    (so that :func:`agentmem.llm.tools.parse_tool_calls` reads both the same way)."""
    content = getattr(message, "content", None) or ""
    blocks = []
    for call in getattr(message, "tool_calls", None) or []:
        fn = getattr(call, "function", None)
        name = getattr(fn, "name", None)
        if not name:
            continue
        arguments = getattr(fn, "arguments", None)
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError:
                pass  # left as a string: validation reports it
        payload = {"name": name, "arguments": arguments if arguments is not None else {}}
        if getattr(call, "id", None):
            payload["id"] = call.id
        blocks.append(f"<tool_call>{json.dumps(payload)}</tool_call>")
    if not blocks:
        return content
    return "\n".join([*([content] if content.strip() else []), *blocks])


# -- failures --------------------------------------------------------------------------------
def is_transient(exc: BaseException) -> bool:
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


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` as one line of at most ``limit`` characters (litellm's module prefix dropped)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    text = text.replace("litellm.", "")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def classify(exc: BaseException, *, model: str, base: str | None, attempts: int, hint: str) -> LLMError:
    """The one-line :class:`LLMError` for a failed call: what failed, where, after how many
    attempts, and how to fix it (``hint``: the backend's advice when nothing more specific fits).

    A prompt too long for the context is :class:`NoRoomForReply`; a failure
    that retrying could have cured (:func:`is_transient`) is :class:`LLMUnavailable`.
    """
    where = f" at {base}" if base else ""
    what = f"LLM call to {model}{where}"
    name = type(exc).__name__
    detail = one_line(exc)
    while detail.startswith(f"{name}: "):  # litellm repeats the class name
        detail = detail[len(name) + 2 :]
    detail = f"{name}: {detail}"
    ex = _litellm.exceptions if _litellm is not None else None
    if (ex is not None and isinstance(exc, ex.ContextWindowExceededError)) or "exceed context window" in detail:
        # llama.cpp's server words it "Requested tokens (n) exceed context window of m"
        return NoRoomForReply(
            f"{what} failed: {detail}: the prompt is too long for the model's context: "
            "give a smaller input or raise n_ctx"
        )
    if ex is not None and isinstance(exc, (ex.AuthenticationError, ex.PermissionDeniedError)):
        hint = "check the API key (--api-key / AGENTMEM_API_KEY)"
    elif ex is not None and isinstance(exc, ex.NotFoundError):
        hint = "check the model name (--model / AGENTMEM_MODEL) and --api-base"
    elif ex is not None and isinstance(exc, ex.BadRequestError):
        hint = "the server rejected the request: check the model string and its parameters"
    if is_transient(exc):
        return LLMUnavailable(f"{what} failed after {attempts} attempt{'s' if attempts != 1 else ''}: {detail}: {hint}")
    return LLMError(f"{what} failed: {detail}: {hint}")


# -- streams from asyncio ----------------------------------------------------------------------
_DONE = object()


async def iterate_in_thread(make: Callable[[], Iterator[Any]]) -> AsyncIterator[Any]:
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
        except BaseException as exc:
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
