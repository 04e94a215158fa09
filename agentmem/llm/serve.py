"""`agentmem serve`: a local OpenAI-compatible server, llama.cpp on a CPU or vLLM on a GPU.

Both backends run the server as a child process in its own process group
through :class:`~agentmem.llm.server.LocalServer`'s lifecycle (start, wait
until ``GET /v1/models`` answers, stop the whole group with SIGTERM then
SIGKILL; a watchdog in the child ends it if this process dies without
cleaning up): :class:`LlamaCppServer` is a LocalServer that passes extra
flags through, :class:`VLLMServer` one whose command line is
``vllm serve MODEL ...``. :func:`serve_until_stopped` is the one loop both
use: start, announce, block, and stop cleanly on Ctrl-C, SIGTERM or SIGHUP.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agentmem.errors import ModelError
from agentmem.llm.server import LocalServer, free_port

BACKENDS = ("llamacpp", "vllm")
VLLM_INSTALL_HINT = "pip install 'agentmem[vllm]'"

# Runs in the vLLM child: a watchdog that takes the whole process group (vLLM's
# workers too) down when the parent dies, then vLLM's own command line.
_VLLM_BOOTSTRAP = """
import os, signal, sys, threading, time
parent = int(sys.argv[1])
sys.argv = ["vllm"] + sys.argv[2:]
def _watch():
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os.killpg(0, signal.SIGTERM)
            time.sleep(10)
            os.killpg(0, signal.SIGKILL)
threading.Thread(target=_watch, daemon=True, name="agentmem-parent-watch").start()
try:
    from vllm.entrypoints.cli.main import main
except ImportError:
    from vllm.scripts import main
sys.exit(main())
"""


@dataclass
class ServeOptions:
    """What `agentmem serve` was asked for."""

    backend: str = "llamacpp"
    model: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    alias: str | None = None
    # llama.cpp
    n_ctx: int | None = None
    threads: int | None = None
    parallel: int = 1
    # vLLM
    tensor_parallel_size: int | None = None
    max_model_len: int | None = None
    gpu_memory_utilization: float | None = None
    extra: list[str] = field(default_factory=list)
    log_path: Path | None = None


class LlamaCppServer(LocalServer):
    """A :class:`LocalServer` for `agentmem serve`: a chosen alias, extra server flags passed through."""

    backend = "llama.cpp"

    def __init__(self, model_path: Path, *, extra: Sequence[str] = (), **kw: object) -> None:
        super().__init__(model_path, **kw)  # type: ignore[arg-type]
        self.extra = list(extra)

    def _command(self) -> list[str]:
        return [*super()._command(), *self.extra]

    @property
    def litellm_model(self) -> str:
        """The model string a litellm client passes with this server's ``api_base``."""
        return f"openai/{self.alias}"


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def require_vllm() -> None:
    """Raise a one-line :class:`ModelError` when vLLM is not installed."""
    if not vllm_available():
        raise ModelError(f"vLLM is not installed in this environment: {VLLM_INSTALL_HINT} (it needs a CUDA GPU)")


class VLLMServer(LocalServer):
    """``vllm serve MODEL`` as a child process group, with :class:`LocalServer`'s wait and stop."""

    backend = "vLLM"

    def __init__(
        self,
        model: str,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tensor_parallel_size: int | None = None,
        max_model_len: int | None = None,
        gpu_memory_utilization: float | None = None,
        extra: Sequence[str] = (),
        log_path: Path | None = None,
    ) -> None:
        super().__init__(Path(model), host=host, port=port, alias=_served_name(model, extra), log_path=log_path)
        self.model = model
        self.tensor_parallel_size = tensor_parallel_size
        self.max_model_len = max_model_len
        self.gpu_memory_utilization = gpu_memory_utilization
        self.extra = list(extra)

    def vllm_command(self) -> list[str]:
        """The ``vllm serve`` command line this server runs."""
        port = self.port if self.port is not None else "PORT"
        cmd = ["vllm", "serve", self.model, "--host", self.host, "--port", str(port)]
        if self.tensor_parallel_size is not None:
            cmd += ["--tensor-parallel-size", str(self.tensor_parallel_size)]
        if self.max_model_len is not None:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        return cmd + self.extra

    def _command(self) -> list[str]:
        return [sys.executable, "-c", _VLLM_BOOTSTRAP, str(os.getpid()), *self.vllm_command()[1:]]

    def start(self, timeout: float = 900) -> VLLMServer:
        """Start ``vllm serve`` and wait until it answers (loading and compiling take minutes)."""
        require_vllm()
        with self._lock:
            if self.is_running():
                return self
            if self.port is None:
                self.port = free_port(self.host)
            try:
                self._launch_and_wait(timeout)
            except ModelError as exc:
                raise ModelError(
                    str(exc).replace(
                        f"the local llama.cpp server for {self.model_path.name}", f"the vLLM server for {self.model}"
                    )
                ) from None
        return self

    @property
    def litellm_model(self) -> str:
        return f"hosted_vllm/{self.alias}"


def _served_name(model: str, extra: Sequence[str]) -> str:
    """The name vLLM serves the model under: ``--served-model-name`` if given, else the model."""
    args = list(extra)
    for i, arg in enumerate(args):
        if arg == "--served-model-name" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--served-model-name="):
            return arg.split("=", 1)[1]
    return model


def resolve_gguf(model: str | None, *, cache_dir: Path | None = None) -> tuple[Path, str]:
    """(the GGUF file, a short name) for a known model name (fetched if needed) or a ``.gguf`` path."""
    from agentmem.llm.models import DEFAULT_MODEL, KNOWN_MODELS, ensure_model

    name = (model or DEFAULT_MODEL).strip()
    if name == "local":
        name = DEFAULT_MODEL
    name = name.removeprefix("local/")
    if name in KNOWN_MODELS:
        return ensure_model(name, cache_dir=cache_dir), name
    path = Path(name).expanduser()
    if path.is_file():
        return path.resolve(), path.stem
    if path.suffix == ".gguf":
        raise ModelError(
            f"model file {path} does not exist: give an existing .gguf file or a known name ({', '.join(KNOWN_MODELS)})"
        )
    raise ModelError(
        f"'{name}' is neither a known local model ({', '.join(KNOWN_MODELS)}) nor a .gguf file: "
        "for a Hugging Face model use --backend vllm"
    )


def build_server(opts: ServeOptions) -> LlamaCppServer | VLLMServer:
    """The server `agentmem serve` would run for ``opts`` (not started)."""
    if opts.backend not in BACKENDS:
        raise ModelError(f"unknown backend '{opts.backend}': use one of {', '.join(BACKENDS)}")
    if opts.backend == "vllm":
        require_vllm()
        if not opts.model:
            raise ModelError("--backend vllm needs --model (a Hugging Face model id or a local model directory)")
        return VLLMServer(
            opts.model,
            host=opts.host,
            port=opts.port,
            tensor_parallel_size=opts.tensor_parallel_size,
            max_model_len=opts.max_model_len,
            gpu_memory_utilization=opts.gpu_memory_utilization,
            extra=opts.extra,
            log_path=opts.log_path,
        )
    from agentmem.config import load_settings

    settings = load_settings()
    path, name = resolve_gguf(opts.model, cache_dir=settings.cache_dir)
    return LlamaCppServer(
        path,
        host=opts.host,
        port=opts.port,
        n_ctx=opts.n_ctx or settings.n_ctx,
        n_threads=opts.threads or settings.n_threads,
        n_parallel=opts.parallel,
        alias=opts.alias or name,
        log_path=opts.log_path,
        extra=opts.extra,
    )


class _Stop(Exception):
    """Raised in the main thread by a stop signal."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def serve_until_stopped(
    server: LocalServer,
    *,
    on_ready: Callable[[LocalServer], None],
    startup_timeout: float = 120,
    poll: float = 0.5,
) -> str:
    """Start ``server``, call ``on_ready``, and block until a stop signal; then stop it.

    SIGINT (Ctrl-C), SIGTERM and SIGHUP stop the server's whole process group
    (also while it is still starting) and return the signal's name. A server
    that exits by itself raises :class:`ModelError` naming its log. Must run
    in the main thread (signal handlers can only be set there).
    """
    stopping = False

    def handler(signum: int, frame: object) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise _Stop(signum)

    watched = [s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {sig: signal.signal(sig, handler) for sig in watched}
    try:
        try:
            server.start(timeout=startup_timeout)
            on_ready(server)
            while server.is_running():
                time.sleep(poll)
            proc = server._proc
            code = proc.returncode if proc is not None else None
            log_path = server.log_path
            server._own_log = False  # keep the log of a server that died: it says why
            raise ModelError(
                f"the {getattr(server, 'backend', 'model')} server exited by itself"
                f"{f' with code {code}' if code is not None else ''}: see {log_path}"
            )
        except _Stop as stop:
            return str(stop)
        finally:
            stopping = True  # a second Ctrl-C must not interrupt the clean-up
            for sig in watched:
                signal.signal(sig, signal.SIG_IGN)
            server.stop()
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
