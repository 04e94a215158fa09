"""The embedded local model: llama.cpp's OpenAI-compatible server as a subprocess.

``python -m llama_cpp.server`` (llama-cpp-python) serves a GGUF file under an
alias; agentmem talks to it through litellm like to any OpenAI-compatible
server. The chat template stored in the GGUF file is used (no ``chat_format``
is forced), and ``response_format={"type": "json_object", "schema": ...}``
constrains the answer with a grammar built from the JSON schema.

The child runs in its own process group and is stopped with the group
(SIGTERM, then SIGKILL after a grace period): on :meth:`LocalServer.stop`, at
interpreter exit, and, through a watchdog thread in the child, when the parent
process dies without cleaning up. Requests are answered one at a time
(llama-cpp-python's server holds one model context).

One server per machine, not per process: :func:`shared_local_server` first
looks in a registry (``<cache dir>/servers/``, under a file lock) for a live
server of the same model started by another process and attaches to it; only
if there is none does it start one and register it. Several evaluations,
test runs or evolution workers on one machine then share one model instead of
each loading its own and fighting over the cores (on 2 cores, seven servers
made every call tens of times slower). When the owner exits its server goes
with it; a client attached to it sees the connection fail, retries, and
starts (and registers) a new one. ``AGENTMEM_SHARE_SERVER=0`` turns sharing off.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from agentmem.errors import ModelError

# Runs in the child: drop environment variables the server's pydantic settings
# would read in place of our flags (API_KEY, PORT, MODEL, ...), start a watchdog
# that exits when the parent dies, then run ``python -m llama_cpp.server``.
_BOOTSTRAP = """
import os, runpy, sys, threading, time
parent = int(sys.argv[1])
sys.argv = ["llama_cpp.server"] + sys.argv[2:]
try:
    from llama_cpp.server.settings import Settings as _S, ConfigFileSettings as _C
    _names = set(_S.model_fields) | set(_C.model_fields) | {"config_file"}
except Exception:
    _names = {"config_file"}
for _k in list(os.environ):
    if _k.lower() in _names:
        del os.environ[_k]
def _watch():
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(0)
threading.Thread(target=_watch, daemon=True, name="agentmem-parent-watch").start()
runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)
"""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _cores() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        return max(os.cpu_count() or 1, 1)


def default_threads() -> int:
    """Threads for the model: every core this process may use.

    Measured on 2 idle cores with the 0.5B model: 20 LoCoMo questions took
    110 s with 2 threads against 179 s with 1. llama.cpp synchronises its
    threads at every step, so on a machine busy with other work fewer threads
    can be faster: set ``n_threads`` (``AGENTMEM_N_THREADS``) then.
    """
    return _cores()


class LocalServer:
    """A llama.cpp OpenAI-compatible server for one GGUF file, run as a child process."""

    def __init__(
        self,
        model_path: Path,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
        n_parallel: int = 1,
        alias: str = "local",
        log_path: Path | None = None,
        n_threads_batch: int | None = None,
    ) -> None:
        self.model_path = Path(model_path)
        self.host = host
        self.port = port
        self.n_ctx = n_ctx
        self.n_threads = n_threads or default_threads()
        self.n_threads_batch = n_threads_batch or self.n_threads
        # llama-cpp-python's server has a single context and answers one request at a time;
        # n_parallel is kept for interface parity with other backends.
        self.n_parallel = max(1, n_parallel)
        # clients in this process take a slot per request, so that requests queue here rather than
        # inside the server, where waiting would count against their timeout
        self.slots = threading.BoundedSemaphore(self.n_parallel)
        self.alias = alias
        self.log_path = log_path
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._own_log = log_path is None  # a temporary log we create, and remove after a clean stop
        self._lock = threading.RLock()
        self._atexit_registered = False

    # -- properties -----------------------------------------------------------
    @property
    def api_base(self) -> str:
        if self.port is None:
            raise ModelError("the local model server has not been started: call start() first")
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------
    def start(self, timeout: float = 120) -> LocalServer:
        """Start the server and wait until ``GET /v1/models`` answers. Idempotent."""
        with self._lock:
            if self.is_running():
                return self
            if not self.model_path.is_file():
                raise ModelError(f"model file {self.model_path} does not exist: run `agentmem models pull`")
            explicit_port = self.port is not None
            attempts = 1 if explicit_port else 3
            for attempt in range(attempts):
                if not explicit_port:
                    self.port = free_port(self.host)
                try:
                    self._launch_and_wait(timeout)
                    return self
                except ModelError as exc:
                    # another process may have taken the free port between our probe and the bind
                    if attempt + 1 < attempts and "address already in use" in str(exc).lower():
                        continue
                    raise
            raise AssertionError("unreachable")  # pragma: no cover

    def _command(self) -> list[str]:
        return [
            sys.executable, "-c", _BOOTSTRAP, str(os.getpid()),
            "--model", str(self.model_path),
            "--model_alias", self.alias,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
            "--n_threads_batch", str(self.n_threads_batch),
            "--use_mlock", "False",
            "--interrupt_requests", "False",
            "--verbose", "False",
        ]  # fmt: skip

    def _launch_and_wait(self, timeout: float) -> None:
        import httpx

        if self.log_path is None:
            fd, name = tempfile.mkstemp(prefix="agentmem-llama-server-", suffix=".log")
            os.close(fd)
            self.log_path = Path(name)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: stop() kills the whole group
                close_fds=True,
            )
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        url = f"http://{self.host}:{self.port}/v1/models"
        deadline = started + timeout
        with httpx.Client(timeout=httpx.Timeout(2.0, connect=0.5), trust_env=False) as client:
            while True:
                code = self._proc.poll()
                if code is not None:
                    self._proc = None
                    raise ModelError(
                        f"the local llama.cpp server for {self.model_path.name} exited with code {code} while "
                        "starting: "
                        f"{self._last_log_line()} (full log: {self.log_path})"
                    )
                try:
                    if client.get(url).status_code == 200:
                        self.startup_seconds = time.monotonic() - started
                        return
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise ModelError(
                        f"the local llama.cpp server for {self.model_path.name} did not answer within {timeout:.0f}s: "
                        f"see {self.log_path}"
                    )
                time.sleep(0.1)

    def _last_log_line(self) -> str:
        try:
            lines = (
                [ln.strip() for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
                if self.log_path
                else []
            )
        except OSError:
            lines = []
        return lines[-1] if lines else "no output"

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server's process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is None:
                return
            clean = proc.poll() is None
            if clean:
                _signal_group(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    pass
            # kill whatever is left in the group (the server, or anything it spawned)
            _signal_group(proc.pid, signal.SIGKILL)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
                pass
            if clean and self._own_log and self.log_path is not None:
                # it ran fine until we stopped it: nothing in its log is worth keeping
                self.log_path.unlink(missing_ok=True)
                self.log_path = None

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.api_base}" if self.is_running() else "stopped"
        return f"LocalServer({self.model_path.name}, {state})"


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class AttachedServer:
    """A local server another process started and registered: used, never stopped, from here."""

    def __init__(self, record: dict[str, object]) -> None:
        self.api_base = str(record["api_base"])
        self.model_path = Path(str(record["model_path"]))
        self.alias = str(record.get("alias", "local"))
        self._pid = int(record["pid"])  # type: ignore[call-overload]
        self._owner = int(record.get("owner", -1))  # type: ignore[call-overload]
        log = record.get("log")
        self.log_path: Path | None = Path(str(log)) if log else None
        self.slots = threading.BoundedSemaphore(1)
        self.startup_seconds: float | None = 0.0

    @property
    def pid(self) -> int:
        return self._pid

    def is_running(self) -> bool:
        """Alive, and so is its owner: a server whose owner exited is being stopped by its watchdog."""
        return _pid_alive(self._pid) and (self._owner < 0 or _pid_alive(self._owner))

    def stop(self, grace: float = 5.0) -> None:
        """Not ours to stop: the process that started it does, when it exits."""

    def __repr__(self) -> str:
        return f"AttachedServer({self.model_path.name} at {self.api_base}, pid {self._pid})"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, someone else's
        return True
    return True


def _registry_dir() -> Path:
    """The ``server_registry`` setting (``AGENTMEM_SERVER_REGISTRY``), else ``<cache_dir>/servers``."""
    from agentmem.config import load_settings

    settings = load_settings()
    return settings.server_registry if settings.server_registry is not None else settings.cache_dir / "servers"


def _sharing() -> bool:
    """The ``share_server`` setting (``AGENTMEM_SHARE_SERVER=0`` turns sharing off)."""
    from agentmem.config import load_settings

    return load_settings().share_server


def _healthy(api_base: str) -> bool:
    """The server's web layer answers (``/openapi.json``).

    Not ``/v1/models``: llama-cpp-python serves that behind the model lock, so
    a server busy with another process's completion would look dead.
    """
    import httpx

    root = api_base.rstrip("/").removesuffix("/v1")
    try:
        with httpx.Client(timeout=httpx.Timeout(10.0, connect=2.0), trust_env=False) as client:
            return client.get(f"{root}/openapi.json").status_code == 200
    except httpx.HTTPError:
        return False


_SHARED: dict[tuple[str, str], LocalServer | AttachedServer] = {}
_SHARED_LOCK = threading.Lock()
_REGISTERED: dict[Path, int] = {}  # registry files this process wrote -> the server pid they name


def shared_local_server(
    model_path: Path, *, alias: str = "local", timeout: float = 120, **kw: object
) -> LocalServer | AttachedServer:
    """The machine-wide server for ``model_path``: attached if another process runs one, else started here.

    Started servers are registered for other processes, restarted if they
    died, and stopped at this process's exit.
    """
    resolved = str(Path(model_path).resolve())
    key = (resolved, alias)
    with _SHARED_LOCK:
        server = _SHARED.get(key)
        if server is not None and server.is_running():
            return server
        if isinstance(server, AttachedServer):  # its owner is gone: find or start another
            del _SHARED[key]
            server = None
    if not _sharing():
        return _own_server(key, Path(model_path), alias, timeout, kw)
    from filelock import FileLock

    registry = _registry_dir()
    registry.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(f"{resolved}|{alias}|{kw.get('n_ctx')}".encode()).hexdigest()[:16]
    record_path = registry / f"{digest}.json"
    with FileLock(str(registry / f"{digest}.lock"), timeout=timeout + 60):
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = None
        if (
            record is not None
            and int(record.get("owner", -1)) != os.getpid()
            and _pid_alive(int(record.get("pid", -1)))
            and _pid_alive(int(record.get("owner", -1)))  # an orphaned server is on its way out
            and record.get("alias") == alias
            and _healthy(str(record.get("api_base")))
        ):
            attached = AttachedServer(record)
            with _SHARED_LOCK:
                _SHARED[key] = attached
            return attached
        own = _own_server(key, Path(model_path), alias, timeout, kw)
        assert isinstance(own, LocalServer)
        tmp = record_path.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "pid": own.pid,
                    "owner": os.getpid(),
                    "api_base": own.api_base,
                    "model_path": resolved,
                    "alias": alias,
                    "log": str(own.log_path) if own.log_path else None,
                    "n_ctx": own.n_ctx,
                    "n_threads": own.n_threads,
                }
            )
        )
        os.replace(tmp, record_path)
        _REGISTERED[record_path] = int(own.pid or -1)
        return own


def _own_server(
    key: tuple[str, str], model_path: Path, alias: str, timeout: float, kw: dict[str, object]
) -> LocalServer | AttachedServer:
    with _SHARED_LOCK:
        server = _SHARED.get(key)
        if not isinstance(server, LocalServer):
            server = LocalServer(model_path, alias=alias, **kw)  # type: ignore[arg-type]
            _SHARED[key] = server
    with server._lock:
        if not server.is_running():
            server.start(timeout=timeout)
    return server


def stop_shared_servers() -> None:
    """Stop every server this process started and unregister it (also done at interpreter exit)."""
    with _SHARED_LOCK:
        servers = list(_SHARED.values())
        _SHARED.clear()
    for path, pid in list(_REGISTERED.items()):
        try:
            if int(json.loads(path.read_text()).get("pid", -2)) == pid:
                path.unlink(missing_ok=True)
        except (OSError, ValueError):
            pass
        _REGISTERED.pop(path, None)
    for server in servers:
        server.stop()


atexit.register(stop_shared_servers)
