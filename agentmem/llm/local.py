"""The embedded local backend: a known GGUF model served by llama.cpp on this machine.

``LLM("local")`` and ``LLM("local/<name>")`` reach it. On the first call the
model file is fetched and verified (:func:`agentmem.llm.models.ensure_model`)
and the server is started, or one another process already runs for the same
file is attached (:func:`agentmem.llm.server.shared_local_server`). Requests
are written the OpenAI way everywhere else; :meth:`LocalBackend.prepare`
translates what llama-cpp-python's server reads differently
(:func:`agentmem.llm.schemas.for_llama_cpp`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentmem.llm.schemas import for_llama_cpp
from agentmem.llm.transport import Target

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.config import Settings
    from agentmem.llm.server import AttachedServer, LocalServer

log = logging.getLogger("agentmem.llm")

LOCAL_ALIAS = "local"
LOCAL_API_KEY = "sk-local"

__all__ = ["LOCAL_ALIAS", "LOCAL_API_KEY", "LocalBackend", "is_local_model"]


def is_local_model(model: str) -> bool:
    """Whether ``model`` names the embedded backend (``local`` or ``local/<known name>``)."""
    return model == "local" or model.startswith("local/")


class LocalBackend:
    """One known local model: fetched, verified and served on first use."""

    is_local = True

    def __init__(self, model: str, settings: Settings) -> None:
        """``model``: ``local`` (the default model) or ``local/<known name>``; an unknown name fails now (one line)."""
        from agentmem.llm.models import DEFAULT_MODEL, get_known

        name = model.removeprefix("local/") if model.startswith("local/") else DEFAULT_MODEL
        self.name = get_known(name).name
        self.settings = settings
        self.server: LocalServer | AttachedServer | None = None
        self._model_path: Path | None = None
        self._lock = threading.Lock()

    def describe(self) -> str:
        user_file = self.settings.local_model_path
        if user_file is not None:
            from agentmem.llm.models import KNOWN_MODELS

            if not any(m.filename == Path(user_file).name for m in KNOWN_MODELS.values()):
                return f"local {Path(user_file).name} (llama.cpp)"
        return f"local {self.name} (llama.cpp)"

    def identity(self) -> str:
        """What determines the answers apart from the request (for cache keys): the weights' sha256,
        or the resolved path of a file the user named."""
        if self.settings.local_model_path is not None:
            return f"local:{Path(self.settings.local_model_path).expanduser().resolve()}"
        from agentmem.llm.models import get_known

        return f"local:{get_known(self.name).sha256}"

    def ready(self) -> bool:
        return self.server is not None and self.server.is_running()

    def start(self) -> None:
        """Fetch and verify the model (once), then start or attach its server."""
        with self._lock:
            if self.ready():
                return
            from agentmem.llm.models import ensure_model
            from agentmem.llm.server import shared_local_server

            if self._model_path is None:
                self._model_path = ensure_model(
                    self.name,
                    path=self.settings.local_model_path,
                    cache_dir=self.settings.cache_dir,
                    progress=lambda msg: log.info("%s", msg),
                )
            self.server = shared_local_server(
                self._model_path, alias=LOCAL_ALIAS, n_ctx=self.settings.n_ctx, n_threads=self.settings.n_threads
            )

    def target(self) -> Target:
        assert self.server is not None, "start() first"
        return Target(f"openai/{LOCAL_ALIAS}", self.server.api_base, LOCAL_API_KEY)

    def prepare(self, request: dict[str, Any]) -> dict[str, Any]:
        """``request`` as llama-cpp-python's server reads it (its ``response_format`` translated)."""
        response_format = request.get("response_format")
        translated = for_llama_cpp(response_format)
        return request if translated is response_format else {**request, "response_format": translated}

    def slot(self) -> contextlib.AbstractContextManager[Any]:
        """One of the server's parallel slots, held for the length of a call."""
        return self.server.slots if self.server is not None else contextlib.nullcontext()

    def where(self) -> str | None:
        return self.server.api_base if self.server is not None else None

    def failure_hint(self) -> str:
        log_path = self.server.log_path if self.server is not None else None
        return f"the local llama.cpp server failed (log: {log_path})"

    def context_window(self) -> int | None:
        return int(self.settings.n_ctx)

    def max_output_tokens(self) -> int | None:
        return None  # only the context limits a reply
