"""Running untrusted memory programs: a worker process per program, the controller holds the keys.

Evolution writes memory programs with an LLM, so a candidate is untrusted
code. The environment and the agent run here, in the trusted controller;
only the memory program runs in a worker (:mod:`agentmem_evolve.worker`):

* a fresh interpreter in its own process group and scratch directory, with a
  scrubbed environment (no API keys: HOME and TMPDIR point at scratch);
* when the machine allows it, inside new user, network and mount namespaces
  (``unshare -rnm``): no network at all, and the whole filesystem read-only
  except scratch - a second wall behind the audit hook (recorded in
  :attr:`SandboxedProgram.capabilities`, silently skipped where unavailable);
* resource limits (CPU seconds, address space, file size, no core files), a
  wall-clock limit per operation and a resident-memory watch from here;
* an audit-hook policy installed after the trusted imports and before the
  candidate loads: no processes, sockets, native calls, writes outside
  scratch, reads of secrets or of other processes, patching of trusted code.

:class:`SandboxedProgram` is a :class:`~agentmem.memory.MemoryProgram`:
``observe``/``recall``/``reflect``/``close`` become messages (length-prefixed
JSON over the worker's stdin/stdout). The program's LLM and embedding calls
come back over the same channel and are made here with the controller's LLM
and embedder - metered here under the program's caller and op tags - so the
worker never holds a key nor needs the network.

Anything that goes wrong - a breach, a crash, a timeout, too much memory,
output or garbage on the channel - raises :class:`CandidateFailed` with a
``kind`` and a one-line reason, after the worker's process group is killed
and its scratch directory removed; the run that evaluated it goes on.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeGuard, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from agentmem.errors import AgentmemError
from agentmem.memory import MemoryProgram, NoParams
from agentmem.scratch import make_scratch, remove_tree
from agentmem.tokens import count_tokens
from agentmem.toolkit import ChatModel, Clock, Embedder, Stores, Toolkit
from agentmem.types import Episode, Event, Query, Recall, Scope
from agentmem_evolve import protocol
from agentmem_evolve.jail import JAIL_SCRATCH, choose_backend, jail_command, jail_view

TAMPER_EXIT = 87  # the worker's exit code when its denial channel was tampered with (worker.TAMPER_EXIT)

__all__ = [
    "CandidateFailed",
    "FailureKind",
    "SandboxLimits",
    "SandboxedProgram",
    "ValidationReport",
    "sandbox_capabilities",
    "sandboxed_factory",
    "validate_program",
]

FailureKind = Literal["timeout", "memory", "crash", "denied", "output", "invalid", "error"]
_FAILURE_KINDS: frozenset[str] = frozenset(get_args(FailureKind))
WORKER_PATH = Path(__file__).resolve().parent / "worker.py"
_ENV_KEEP = ("PATH", "LANG", "PYTHONHASHSEED", "TZ")
_LOG_FD_ENV = "AGENTMEM_SANDBOX_LOG_FD"
_LOG_FILE = "worker.log"
_FRAME_DRAIN_SECONDS = 2.0


def _is_failure_kind(value: object) -> TypeGuard[FailureKind]:
    """Whether a worker's reported failure kind is one the controller knows (anything else is "invalid")."""
    return isinstance(value, str) and value in _FAILURE_KINDS


def _object_field(message: dict[str, Any], key: str) -> dict[str, Any]:
    """``message[key]`` when it is a JSON object, else empty: the worker's messages are untrusted."""
    value = message.get(key)
    return value if isinstance(value, dict) else {}


def _with_parent_death(argv: list[str]) -> list[str]:
    """``argv`` started so that it is killed when the controller dies (setpriv --pdeathsig), where setpriv can."""
    if _pdeathsig_supported():
        return ["setpriv", "--pdeathsig", "KILL", "--", *argv]
    return list(argv)


_PDEATHSIG: list[bool] = []


def _pdeathsig_supported() -> bool:
    if not _PDEATHSIG:
        ok = False
        if shutil.which("setpriv"):
            try:
                ok = (
                    subprocess.run(
                        ["setpriv", "--pdeathsig", "KILL", "--", "true"],
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        timeout=10,
                    ).returncode
                    == 0
                )
            except (OSError, subprocess.SubprocessError):
                ok = False
        _PDEATHSIG.append(ok)
    return _PDEATHSIG[0]


#: distinct (event, caller) outcome counters one sandboxed program may add to the controller's meter
_MAX_NOTED = 64


class SandboxLimits(BaseModel):
    """What one candidate may use. The defaults suit evaluation; tests use smaller ones."""

    model_config = ConfigDict(extra="forbid")

    op_seconds: float = Field(30.0, gt=0, description="wall seconds per operation (LLM/embedding time excluded)")
    startup_seconds: float = Field(60.0, gt=0, description="wall seconds for the worker's trusted imports")
    cpu_seconds: int = Field(600, ge=1, description="CPU seconds for the worker's whole life (RLIMIT_CPU)")
    memory_mb: int = Field(1024, ge=64, description="resident memory, watched from the controller")
    address_space_mb: int | None = Field(
        4096, ge=256, description="virtual memory (RLIMIT_AS); chromadb+numpy map about 1 GB before any data"
    )
    output_bytes: int = Field(1 << 20, ge=0, description="printed output kept in the worker's log; the rest is dropped")
    file_bytes: int = Field(512 << 20, ge=1 << 20, description="largest file the worker may write (RLIMIT_FSIZE)")
    max_message_bytes: int = Field(16 << 20, ge=1 << 16, description="largest message either side accepts")
    disk_mb: int = Field(1024, ge=8, description="size of the writable scratch (a tmpfs inside the jail)")
    jail: Literal["auto", "bwrap", "unshare", "none"] = Field(
        "auto", description="the private root: bubblewrap, unshare + pivot_root, or none (audit hook only)"
    )
    allow_unjailed: bool = Field(
        False, description="run candidates with the audit hook alone where no jail can be built (weaker; reported)"
    )
    audit_hook: bool = Field(
        True, description="the policy inside the worker (the second wall); only tests of the jail alone turn it off"
    )
    calls_per_op: int = Field(200, ge=1, description="LLM and embedding requests one operation may make")
    service_seconds: float = Field(
        900.0, gt=0, description="wall seconds per operation the controller may spend serving its LLM/embedding calls"
    )
    embed_texts_per_op: int = Field(50_000, ge=1, description="texts one operation may ask to embed")
    max_reply_tokens: int = Field(4096, ge=16, description="the largest max_tokens a program may ask of the LLM")
    instruction_tokens: int = Field(
        512, ge=0, description="tokens a recall's rendered instructions may add to its items (template text)"
    )

    @model_validator(mode="after")
    def _at_least_one_wall(self) -> SandboxLimits:
        if not self.audit_hook and self.jail == "none":
            raise ValueError("a sandbox needs a wall: with jail = 'none' the audit hook must stay on")
        return self


class CandidateFailed(AgentmemError):
    """A sandboxed candidate broke a rule or broke down; ``str(err)`` is the one-line reason.

    ``kind``: timeout, memory, crash, denied, output, invalid (bad program or
    protocol) or error (an exception the program raised). ``stage`` is where
    it happened ("import", "interface", or the op name), ``traceback`` the tail
    of the worker's traceback (for repair prompts).
    """

    def __init__(self, reason: str, kind: FailureKind, *, stage: str | None = None, traceback: str = "") -> None:
        reason = " ".join(str(reason).split())[:600]
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.stage = stage
        self.traceback = traceback


# --------------------------------------------------------------------------- capabilities of this machine


def sandbox_capabilities(jail: str = "auto", *, allow_unjailed: bool = False) -> dict[str, Any]:
    """Which walls a candidate gets here: the jail backend (``none``: the audit hook alone) and what it isolates.

    Raises :class:`~agentmem_evolve.jail.JailUnavailable` when no jail can be
    built and ``allow_unjailed`` is false.
    """
    backend = choose_backend(jail, allow_unjailed=allow_unjailed)
    jailed = backend != "none"
    return {
        "jail": backend,
        "private_root": jailed,
        "network_namespace": jailed,
        "pid_namespace": jailed,
        "user_namespace": jailed,
        "audit_hook": True,
    }


def _worker_env(scratch: Path) -> dict[str, str]:
    """The worker's whole environment: an allowlist, never the parent's secrets."""
    env = {k: v for k, v in os.environ.items() if k in _ENV_KEEP or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/bin:/bin")
    env.update(
        HOME=str(scratch),
        TMPDIR=str(scratch),
        PYTHONDONTWRITEBYTECODE="1",
        PYTHONNOUSERSITE="1",
        PYTHONIOENCODING="utf-8",
        OPENBLAS_NUM_THREADS="1",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        ANONYMIZED_TELEMETRY="False",
    )
    return env


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _cleanup(proc: subprocess.Popen | None, scratch: str | None) -> None:
    """Kill the worker's whole process group and remove its scratch directory (also run at GC)."""
    if proc is not None:
        if proc.poll() is None:
            tree = _tree_pids(proc.pid)  # the jail's launcher, its init and the worker, whatever their group
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            for pid in tree:
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not wait long
            pass
        for stream in (proc.stdin, proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
    if scratch:
        remove_tree(scratch)


class _OpaqueParams(BaseModel):
    """The candidate's validated parameters as the worker reported them (its Params class stays there)."""

    model_config = ConfigDict(extra="allow")


# --------------------------------------------------------------------------- the proxy program


class SandboxedProgram(MemoryProgram):
    """A memory program that runs in a sandboxed worker; used exactly like the program itself.

    ``source`` is the candidate's Python source. ``toolkit`` supplies the
    scope, the LLM and embedder that serve the worker's requests, and the
    clock; its stores are not used (the worker keeps its stores in its own
    scratch directory, removed when the program closes or fails).
    """

    name: ClassVar[str] = "sandboxed"
    Params: ClassVar[type[BaseModel]] = NoParams
    templates: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        source: str,
        toolkit: Toolkit,
        params: BaseModel | dict[str, Any] | None = None,
        limits: SandboxLimits | None = None,
        *,
        namespace: str = "candidate",
        scratch_parent: str | Path | None = None,
    ) -> None:
        self.toolkit = toolkit
        self.limits = limits or SandboxLimits()
        self.source = source
        self.failure: CandidateFailed | None = None
        self.capabilities: dict[str, Any] = {}
        self.startup_seconds = 0.0
        self.requests: dict[str, int] = {"complete": 0, "structured": 0, "embed": 0}
        self._noted: set[tuple[str, str | None]] = set()  # (event, caller) pairs counted for this program
        self._closed = False
        self._op_name = "startup"
        self._deadline = 0.0
        self._last_rss_check = 0.0
        self._last_disk_check = 0.0
        self._last_slow_check = 0.0
        caps = sandbox_capabilities(self.limits.jail, allow_unjailed=self.limits.allow_unjailed)
        self.capabilities = dict(caps)
        # the controller's own directory for this worker: its logs and the jail's support files (never
        # visible to the program, which writes to a tmpfs of its own inside the jail)
        self._scratch = str(make_scratch("sandbox", scratch_parent))
        backend = caps["jail"]
        view = jail_view()
        command = [view.python, "-I", "-B", str(WORKER_PATH)]
        if backend == "none":
            # without a jail the program's directory is a subdirectory: the controller's files (its log)
            # stay out of the program's reach (writes outside its directory are denied)
            cwd = os.path.join(self._scratch, "work")
            os.mkdir(cwd, 0o700)
            argv = _with_parent_death(command)
            self._policy = {
                "readable": view.readable[0],
                "hidden": view.readable[1],
                "blocked_imports": view.blocked_imports,
            }
        else:
            cwd = self._scratch
            argv = jail_command(backend, command, host_dir=Path(self._scratch), disk_mb=self.limits.disk_mb, view=view)
            if backend == "unshare":  # bubblewrap dies with its parent by itself (--die-with-parent)
                argv = _with_parent_death(argv)
            self._policy = {
                "readable": view.readable[0],
                "hidden": view.readable[1],
                "blocked_imports": view.blocked_imports,
                "scratch": JAIL_SCRATCH,
            }
        started = time.perf_counter()
        # one log for the launcher's and the worker's messages, watched in size (see _watch_memory)
        worker_log = os.open(
            os.path.join(self._scratch, _LOG_FILE), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600
        )
        env = _worker_env(Path(JAIL_SCRATCH if backend != "none" else cwd))
        env[_LOG_FD_ENV] = str(worker_log)
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=worker_log,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
                pass_fds=(worker_log,),
            )
        finally:
            os.close(worker_log)
        self._finalizer = weakref.finalize(self, _cleanup, self._proc, self._scratch)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._out_fd = self._proc.stdin.fileno()
        self._reader = protocol.FrameReader(self._proc.stdout.fileno(), self.limits.max_message_bytes)
        self._send({"type": "init", "limits": self.limits.model_dump(), "policy": self._policy})
        hello = self._wait("startup", self.limits.startup_seconds, expect="hello")
        self.capabilities = {**caps, "audit_hook": self.limits.audit_hook, "rlimits": list(hello.get("limits") or [])}
        info = self._call_op(
            "load",
            {
                "source": source,
                "namespace": namespace,
                "params": params.model_dump() if isinstance(params, BaseModel) else (params or None),
                "scope": toolkit.scope.model_dump(mode="json"),
                "llm": toolkit._llm is not None,
                "model": str(getattr(toolkit._llm, "model", type(toolkit._llm).__name__)),
                "embedder": self._embedder_info(),
            },
        )
        self.startup_seconds = time.perf_counter() - started
        self.import_seconds = float(hello.get("import_seconds") or 0.0)
        if not isinstance(info, dict):
            raise self._fail("invalid", "invalid: the worker's load reply is malformed", stage="interface")
        # per instance: the candidate's name (a ClassVar on MemoryProgram, which cannot say "per proxy")
        self.name = str(info.get("name") or namespace)  # type: ignore[misc]
        from agentmem.toolkit import _safe_name

        self.toolkit.namespace = _safe_name(str(info.get("namespace") or self.name))
        self.params = _OpaqueParams.model_validate(info.get("params") or {})
        # the candidate's templates render in the worker (Jinja2 is not a sandbox): here only their names
        self.templates = {str(k): "(rendered in the sandbox)" for k in info.get("templates") or []}  # type: ignore[misc]

    # -- the lifecycle, forwarded ---------------------------------------------------------------
    def observe(self, event: Event) -> None:
        self._call_op("observe", {"event": event.model_dump(mode="json")})

    def recall(self, query: Query) -> Recall:
        value = self._call_op("recall", {"query": query.model_dump(mode="json")})
        try:
            got = Recall.model_validate(value)
        except Exception as exc:
            raise self._fail(
                "invalid",
                f"invalid: recall returned something that is not a Recall ({type(exc).__name__})",
                stage="recall",
            ) from None
        # the worker's token counts are claims: count here, and hold what the agent will be shown to the budget
        items = [item.model_copy(update={"tokens": count_tokens(item.content)}) for item in got.items]
        used = sum(item.tokens for item in items)
        if used > query.budget_tokens:
            raise self._fail(
                "invalid",
                f"invalid: recall returned {used} tokens of items, over the budget of {query.budget_tokens}",
                stage="recall",
            )
        shown = count_tokens(got.instructions)
        if shown > used + self.limits.instruction_tokens:
            raise self._fail(
                "invalid",
                f"invalid: recall's instructions are {shown} tokens, more than its items "
                f"({used}) plus {self.limits.instruction_tokens} of template text",
                stage="recall",
            )
        return got.model_copy(update={"items": items})

    def reflect(self, episode: Episode) -> None:
        self._call_op("reflect", {"episode": episode.model_dump(mode="json")})

    def instructions(self, template: str = "usage", **context: Any) -> str:
        if template not in self.templates:
            return ""
        safe = json.loads(json.dumps(context, default=str))
        return str(self._call_op("instructions", {"template": template, "context": safe}) or "")

    def close(self) -> None:
        """Close the program (it flushes its stores), stop the worker, remove scratch. Idempotent."""
        if self._closed or self.failure is not None:
            self._closed = True
            self._finalizer()
            return
        try:
            self._call_op("close", {})
            self._send({"type": "op", "name": "exit"})
            self._drain_after_exit()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        finally:
            self._closed = True
            self._finalizer()

    def _drain_after_exit(self) -> None:
        """After ``exit`` nothing more may come: a frame (a denial behind a forged result) fails the candidate."""
        self._op_name = "close"
        self._deadline = time.monotonic() + _FRAME_DRAIN_SECONDS
        try:
            message = self._reader.read(lambda: self._deadline, watch=self._watch_memory)
        except protocol.ProtocolError as exc:
            if exc.kind in ("eof", "timeout"):
                return  # the worker left (or lingers, and is killed): nothing was said after the result
            raise self._fail("invalid", f"invalid: {exc.reason} from the worker after close", stage="close") from None
        if message.get("type") == "denied":
            reason = " ".join(str(message.get("reason") or "denied").split())[:600]
            raise self._fail("denied", reason if reason.startswith("denied") else f"denied: {reason}", stage="close")
        raise self._fail(
            "invalid",
            f"invalid: the worker sent a {str(message.get('type'))[:40]!r} message after close (a forged reply)",
            stage="close",
        )

    @property
    def alive(self) -> bool:
        return self.failure is None and not self._closed and self._proc.poll() is None

    @property
    def scratch(self) -> str:
        return self._scratch

    # -- the exchange ---------------------------------------------------------------------------
    def _call_op(self, name: str, payload: dict[str, Any]) -> Any:
        if self.failure is not None:
            raise self.failure
        if self._closed:
            raise CandidateFailed(f"invalid: {name} after the sandboxed program was closed", "invalid", stage=name)
        message: dict[str, Any] = {"type": "op", "name": name, **payload}
        fixed = getattr(self.toolkit.clock, "_fixed", None)
        if fixed is not None:
            message["now"] = fixed.isoformat()
        self._send(message)
        reply = self._wait(name, self.limits.op_seconds, expect="result")
        self._watch_memory(settled=True)  # what the program holds between ops counts too
        return reply.get("value")

    def _send(self, message: dict[str, Any]) -> None:
        try:
            protocol.write_frame(self._out_fd, message, self.limits.max_message_bytes)
        except (BrokenPipeError, OSError):
            raise self._died(self._op_name) from None
        except protocol.ProtocolError as exc:
            # our own message is too big (a huge event): the candidate is not at fault, but cannot take it
            raise CandidateFailed(
                f"output: {message.get('name', 'message')} for the sandbox is a {exc.reason}", "output"
            ) from None

    def _wait(self, op: str, seconds: float, *, expect: str) -> dict[str, Any]:
        """Read until the worker's ``expect`` message, servicing its calls (their time is not charged)."""
        self._op_name = op
        self._deadline = time.monotonic() + seconds
        calls, serving = 0, 0.0
        while True:
            message = self._read(op, seconds)
            kind = message.get("type")
            if kind == expect:
                return message
            if kind == "call":
                calls += 1
                if calls > self.limits.calls_per_op:
                    raise self._fail(
                        "timeout",
                        f"timeout: {op} made over {self.limits.calls_per_op} model and embedding calls",
                        stage=op,
                    )
                began = time.monotonic()
                reply = self._service(message)
                spent = time.monotonic() - began
                serving += spent
                if serving > self.limits.service_seconds:
                    raise self._fail(
                        "timeout",
                        f"timeout: {op}'s model and embedding calls took over {self.limits.service_seconds:g} s",
                        stage=op,
                    )
                self._deadline += spent  # the program's own time is what op_seconds limits
                self._send(reply)
                continue
            if kind == "error":
                reason = str(message.get("reason") or f"error: {op} failed")
                error_kind = message.get("kind")
                stage = message.get("stage") or op
                raise self._fail(
                    error_kind if _is_failure_kind(error_kind) else "invalid",
                    reason,
                    stage=str(stage),
                    traceback=str(message.get("traceback") or "")[-4000:],
                )
            raise self._fail("invalid", f"invalid: unexpected {kind!r} message from the worker during {op}", stage=op)

    def _read(self, op: str, seconds: float) -> dict[str, Any]:
        if op == "load":
            op = "import"  # what the user knows it as: loading the program's module
        try:
            message = self._reader.read(lambda: self._deadline, watch=self._watch_memory)
        except protocol.ProtocolError as exc:
            if exc.kind == "timeout":
                raise self._fail("timeout", f"timeout: {op} took over {seconds:g} s", stage=op) from None
            if exc.kind == "eof":
                raise self._died(op) from None
            if exc.kind == "output":
                raise self._fail("output", f"output: {op} {exc.reason}", stage=op) from None
            raise self._fail("invalid", f"invalid: {exc.reason} from the worker during {op}", stage=op) from None
        if message.get("type") == "denied":  # the policy said no: whatever the program does next, it has failed
            reason = " ".join(str(message.get("reason") or "denied").split())[:600]
            raise self._fail("denied", reason if reason.startswith("denied") else f"denied: {reason}", stage=op)
        return message

    def _watch_memory(self, settled: bool = False) -> None:
        """Memory, log size and (without a jail) disk use of the worker; ``settled``: an op just ended, check all."""
        now = time.monotonic()
        if not settled and now - self._last_rss_check < 0.1:
            return
        self._last_rss_check = now
        slow = settled or now - self._last_slow_check >= 0.5
        if slow:
            self._last_slow_check = now
        rss_kb = _tree_rss_kb(self._proc.pid, count_unlinked=slow)
        if rss_kb is not None and rss_kb > self.limits.memory_mb * 1024:
            raise self._fail(
                "memory",
                f"memory: worker used {rss_kb // 1024} MB, over the {self.limits.memory_mb} MB "
                f"limit during {self._op_name}",
                stage=self._op_name,
            )
        if not slow:
            return
        op = "import" if self._op_name == "load" else self._op_name
        try:  # the log lives outside the jail: raw writes to fd 1 skip the capped stream, so watch its size here
            logged = os.stat(os.path.join(self._scratch, "worker.log")).st_size
        except OSError:
            logged = 0
        cap = max(4 * self.limits.output_bytes, 16 << 20)
        if logged > cap:
            raise self._fail(
                "output",
                f"output: {op} printed {logged >> 20} MB to its log, over the {cap >> 20} MB limit",
                stage=self._op_name,
            )
        if self.capabilities.get("jail") == "none" and now - self._last_disk_check >= 0.5:
            self._last_disk_check = now
            # no tmpfs of a fixed size without a jail: the controller measures the scratch directory instead
            if _directory_bytes(self._scratch, limit=self.limits.disk_mb << 20) > self.limits.disk_mb << 20:
                raise self._fail(
                    "output",
                    f"output: {op} filled its scratch space (the disk limit of {self.limits.disk_mb} MB)",
                    stage=self._op_name,
                )

    def _died(self, op: str) -> CandidateFailed:
        """The worker went away on its own: say how."""
        try:
            code = self._proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            code = None
        tail = self._log_tail()
        if code is None:
            return self._fail(
                "invalid", f"invalid: the worker closed its channel during {op}", stage=op, traceback=tail
            )
        if code > 128 and self.capabilities.get("jail") in ("bwrap", "unshare"):
            code = -(code - 128)  # the jail's launcher reports a signal as 128 + its number
        if code < 0:
            sig = -code
            if sig == signal.SIGXCPU:
                return self._fail(
                    "timeout",
                    f"timeout: worker used its {self.limits.cpu_seconds} s of CPU time during {op}",
                    stage=op,
                    traceback=tail,
                )
            if sig == signal.SIGKILL:
                return self._fail(
                    "memory",
                    f"memory: worker was killed (SIGKILL, out of memory?) during {op}",
                    stage=op,
                    traceback=tail,
                )
            return self._fail(
                "crash", f"crash: worker died with {_signal_name(sig)} during {op}", stage=op, traceback=tail
            )
        if code == TAMPER_EXIT:
            return self._fail(
                "denied",
                f"denied: the program tampered with the sandbox's channel during {op}",
                stage=op,
                traceback=tail,
            )
        return self._fail("crash", f"crash: worker exited with code {code} during {op}", stage=op, traceback=tail)

    def _log_tail(self) -> str:
        """The end of the worker's log: a regular file opened without following links or blocking on a FIFO."""
        import stat as stat_module

        try:
            fd = os.open(os.path.join(self._scratch, _LOG_FILE), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return ""
        try:
            info = os.fstat(fd)
            if not stat_module.S_ISREG(info.st_mode):
                return ""
            os.lseek(fd, max(0, info.st_size - 4000), os.SEEK_SET)
            return os.read(fd, 4000).decode("utf-8", "replace")[-4000:]
        except OSError:
            return ""
        finally:
            os.close(fd)

    def _fail(
        self, kind: FailureKind, reason: str, *, stage: str | None = None, traceback: str = ""
    ) -> CandidateFailed:
        """Record the failure, kill the worker's process group, remove scratch; return the error to raise."""
        if self.failure is None:
            self.failure = CandidateFailed(reason, kind, stage=stage, traceback=traceback)
        self._finalizer()
        return self.failure

    # -- servicing the worker's requests -------------------------------------------------------
    def _service(self, message: dict[str, Any]) -> dict[str, Any]:
        from agentmem.llm.context import call_context

        method = message.get("method")
        if method not in ("complete", "structured", "embed", "note"):
            raise self._fail("invalid", f"invalid: the worker asked for {method!r}", stage=self._op_name)
        if method == "note":  # a program's outcome count (an M* fallback, a split) for the evaluation result
            event, caller = message.get("event"), message.get("caller")
            try:
                note = getattr(self.toolkit.llm, "note", None)
            except AgentmemError:  # no LLM configured: nothing to count on
                note = None
            caller = str(caller)[:200] if caller is not None else None
            if (
                isinstance(event, str)
                and event.isidentifier()
                and len(event) <= 40
                and callable(note)
                and ((event, caller) in self._noted or len(self._noted) < _MAX_NOTED)
            ):  # a bounded set of counters
                self._noted.add((event, caller))
                note(event, caller)
            return {"type": "return", "value": None}
        self.requests[method] += 1
        try:
            if method == "embed":
                texts = message.get("texts")
                if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                    raise self._fail("invalid", "invalid: embed request without a list of texts", stage=self._op_name)
                if len(texts) > self.limits.embed_texts_per_op:
                    raise self._fail(
                        "timeout",
                        f"timeout: {self._op_name} asked to embed over {self.limits.embed_texts_per_op} texts",
                        stage=self._op_name,
                    )
                return {"type": "return", "value": [list(map(float, v)) for v in self.toolkit.embedder.embed(texts)]}
            messages = message.get("messages")
            if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
                raise self._fail(
                    "invalid", f"invalid: {method} request without a list of messages", stage=self._op_name
                )
            # only plain role/content pairs reach the model client (no provider options smuggled in a message)
            messages = [
                {
                    "role": str(m.get("role")) if m.get("role") in ("system", "user", "assistant") else "user",
                    "content": str(m.get("content", "")),
                }
                for m in messages
            ]
            caller = message.get("caller")
            caller = str(caller)[:200] if caller is not None else None
            raw_tags = _object_field(message, "tags")
            tags = {k: str(raw_tags[k])[:100] for k in ("plugin", "op") if k in raw_tags}
            with call_context(**tags):
                if method == "complete":
                    options = _object_field(message, "options")
                    kwargs = {k: options.get(k) for k in ("max_tokens", "temperature", "response_format")}
                    if (
                        not isinstance(kwargs["max_tokens"], int)
                        or not 0 < kwargs["max_tokens"] <= self.limits.max_reply_tokens
                    ):
                        kwargs["max_tokens"] = None if kwargs["max_tokens"] is None else self.limits.max_reply_tokens
                    if not isinstance(kwargs["temperature"], (int, float)) or not 0 <= kwargs["temperature"] <= 2:
                        kwargs["temperature"] = None
                    if not isinstance(kwargs["response_format"], dict):
                        kwargs["response_format"] = None
                    text = self.toolkit.llm.complete(messages, caller=caller, **kwargs)
                    return {"type": "return", "value": str(text)}
                schema = _object_field(message, "schema")
                shim = self._schema_shim(schema)
                result = self.toolkit.llm.structured(messages, shim, caller=caller)
                value = result.model_dump(mode="json") if isinstance(result, BaseModel) else result
                return {"type": "return", "value": value}
        except CandidateFailed:
            raise
        except Exception as exc:  # the controller's LLM failed: the program sees the same error class
            return {"type": "raise", "error_type": type(exc).__name__, "message": str(exc)[:2000]}

    def _schema_shim(self, schema: dict[str, Any]) -> type[BaseModel]:
        """A stand-in for the program's schema class: its JSON schema, validated by the worker on each reply."""
        json_schema = _object_field(schema, "json")
        schema_id = str(schema.get("id", ""))[:300]
        name = "".join(c for c in str(schema.get("name", "Schema")) if c.isalnum() or c == "_")[:60] or "Schema"
        program = self

        class _Shim(BaseModel):
            model_config = ConfigDict(extra="allow")

            @classmethod
            def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
                return json_schema

            @classmethod
            def model_validate_json(cls, json_data: Any, *args: Any, **kwargs: Any) -> _Shim:
                text = (
                    json_data.decode("utf-8", "replace")
                    if isinstance(json_data, (bytes, bytearray))
                    else str(json_data)
                )
                return cls.model_construct(**program._remote_validate(schema_id, text))

            @classmethod
            def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> _Shim:
                return cls.model_validate_json(json.dumps(obj, default=str))

        _Shim.__name__ = _Shim.__qualname__ = name
        return _Shim

    def _remote_validate(self, schema_id: str, text: str) -> dict[str, Any]:
        """Ask the worker to validate ``text`` against its schema (raises ValueError for the repair loop)."""
        self._send({"type": "call", "method": "validate", "schema": schema_id, "text": text})
        saved = self._deadline
        self._deadline = time.monotonic() + self.limits.op_seconds
        try:
            reply = self._read(self._op_name, self.limits.op_seconds)
        finally:
            self._deadline = saved
        if reply.get("type") == "return" and isinstance(reply.get("value"), dict):
            return reply["value"]
        if reply.get("type") == "raise":
            raise ValueError(str(reply.get("message", "invalid"))[:1000])
        raise self._fail("invalid", "invalid: malformed validation reply from the worker", stage=self._op_name)

    def _embedder_info(self) -> dict[str, Any]:
        embedder = self.toolkit._embedder
        if embedder is None:
            from agentmem.toolkit import _LazyDefaultEmbedder

            return {"name": _LazyDefaultEmbedder.name, "dim": _LazyDefaultEmbedder.dim}
        return {"name": str(getattr(embedder, "name", "embedder")), "dim": int(getattr(embedder, "dim", 0) or 0)}

    def __repr__(self) -> str:
        state = "failed" if self.failure else ("closed" if self._closed else "running")
        return f"SandboxedProgram({getattr(self, 'name', '?')}, {state})"


def _directory_bytes(root: str, *, limit: int, max_entries: int = 200_000) -> int:
    """Bytes under ``root`` (stops counting past ``limit``; too many entries count as over it)."""
    total, entries, stack = 0, 0, [root]
    while stack and total <= limit:
        try:
            with os.scandir(stack.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        return limit + 1
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        continue
        except OSError:
            continue
    return total


def _tree_pids(pid: int) -> list[int]:
    """``pid`` and all its descendants (the jail's launcher, its init, the worker)."""
    seen: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children", "rb") as fh:
                    stack.extend(int(child) for child in fh.read().split())
        except (OSError, ValueError):
            pass
    return seen


def _tree_rss_kb(pid: int, *, count_unlinked: bool = False) -> int | None:
    """Resident memory of ``pid`` and all its descendants.

    ``count_unlinked`` adds the files they hold open that have no name left (memfd_create, an unlinked tmpfs
    file): memory that is neither in VmRSS nor under RLIMIT_AS. Files on disk cost nothing here: only
    in-memory file systems are counted (their st_dev is not a block device's).
    """
    pids = _tree_pids(pid)
    sizes = [rss for rss in map(_rss_kb, pids) if rss is not None]
    if not sizes:
        return None
    total = sum(sizes)
    if count_unlinked:
        seen: set[tuple[int, int]] = set()
        for member in pids:
            try:
                names = os.listdir(f"/proc/{member}/fd")
            except OSError:
                continue
            for name in names:
                try:
                    info = os.stat(f"/proc/{member}/fd/{name}")
                except OSError:
                    continue
                if info.st_nlink == 0 and (info.st_dev, info.st_ino) not in seen and os.major(info.st_dev) == 0:
                    seen.add((info.st_dev, info.st_ino))
                    total += info.st_blocks // 2
    return total


def _rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


# --------------------------------------------------------------------------- run_eval and validation


def _read_source(source_path_or_text: str | Path) -> tuple[str, str]:
    """(source, namespace) from a ``.py`` path or the source text itself."""
    if isinstance(source_path_or_text, Path) or (
        isinstance(source_path_or_text, str) and "\n" not in source_path_or_text and source_path_or_text.endswith(".py")
    ):
        path = Path(source_path_or_text)
        if not path.is_file():
            raise CandidateFailed(
                f"invalid: program file {path} does not exist; give a path to a .py file or the source text",
                "invalid",
                stage="import",
            )
        return path.read_text(encoding="utf-8"), path.stem
    return str(source_path_or_text), "candidate"


MemoryFactory = Callable[[Scope, Stores, ChatModel, Embedder, "dict[str, Any] | None"], "list[MemoryProgram]"]


def sandboxed_factory(
    source_path_or_text: str | Path,
    limits: SandboxLimits | None = None,
    params: dict[str, Any] | None = None,
    *,
    label: str | None = None,
) -> MemoryFactory:
    """A ``memory_factory`` for :func:`agentmem.evaluation.run_eval`: one sandboxed program per task.

    ``params`` are the candidate's own parameters; when ``None``, run_eval's
    ``params[label]`` is used if present (label: the file stem, or "candidate").
    """
    source, namespace = _read_source(source_path_or_text)
    label = label or namespace

    def factory(
        scope: Scope, stores: Stores, llm: ChatModel, embedder: Embedder, run_params: dict[str, Any] | None = None
    ) -> list[MemoryProgram]:
        chosen = params if params is not None else (run_params or {}).get(label)
        toolkit = Toolkit(scope=scope, stores=stores, llm=llm, embedder=embedder, namespace=namespace)
        return [SandboxedProgram(source, toolkit, chosen, limits, namespace=namespace)]

    return factory


class ValidationReport(BaseModel):
    """Whether a candidate program is fit to evaluate, and if not, what to tell the repairing LLM."""

    ok: bool
    stage: Literal["import", "interface", "smoke"] | None = None
    kind: str | None = None
    error: str = ""
    traceback: str = ""
    seconds: float = 0.0
    name: str = ""


_SMOKE_TURNS = (
    ("user", "Hi! I'm Dana, I moved to Lisbon last spring and I prefer window seats on flights."),
    ("assistant", "Nice to meet you, Dana. Noted: window seats."),
    ("user", "Also, I'm vegetarian, so please remember that for restaurant bookings."),
)


def validate_program(
    source: str,
    *,
    llm: ChatModel | None,
    embedder: Embedder | None,
    limits: SandboxLimits | None = None,
    smoke: bool = True,
    params: dict[str, Any] | None = None,
    budget_tokens: int = 64,
) -> ValidationReport:
    """Compile, import and check a candidate in the sandbox, then (``smoke``) run it briefly.

    The smoke run observes a few messages, recalls under a small budget (the
    result must be a Recall within budget), reflects on the episode and
    closes. Never raises for the candidate's faults: they are in the report.
    """
    started = time.perf_counter()
    try:  # compiling runs nothing: a syntax error costs no worker
        compile(source, "candidate.py", "exec", dont_inherit=True)
    except SyntaxError as exc:
        return ValidationReport(
            ok=False,
            stage="import",
            kind="invalid",
            error=f"invalid: syntax error at line {exc.lineno}: {exc.msg}",
            traceback=f"candidate.py, line {exc.lineno}: {(exc.text or '').rstrip()}\nSyntaxError: {exc.msg}",
            seconds=round(time.perf_counter() - started, 3),
        )
    except ValueError as exc:  # null bytes
        return ValidationReport(
            ok=False,
            stage="import",
            kind="invalid",
            error=f"invalid: {exc}",
            seconds=round(time.perf_counter() - started, 3),
        )
    except (RecursionError, MemoryError) as exc:  # nesting the compiler cannot take
        return ValidationReport(
            ok=False,
            stage="import",
            kind="invalid",
            error=f"invalid: the source is too deeply nested to compile ({type(exc).__name__})",
            seconds=round(time.perf_counter() - started, 3),
        )
    root = make_scratch("validate")
    stores = Stores(root)
    program: SandboxedProgram | None = None
    stage: Literal["import", "interface", "smoke"] = "import"
    try:
        toolkit = Toolkit(
            scope=Scope(user_id="validate", agent_id="candidate"),
            stores=stores,
            llm=llm,
            embedder=embedder,
            namespace="candidate",
            clock=Clock(),
        )
        try:
            program = SandboxedProgram(source, toolkit, params, limits)
        except CandidateFailed as exc:
            bad_stage = "interface" if exc.stage == "interface" else "import"
            return ValidationReport(
                ok=False,
                stage=bad_stage,
                kind=exc.kind,
                error=exc.reason,
                traceback=exc.traceback,
                seconds=round(time.perf_counter() - started, 3),
            )
        stage = "smoke"
        if smoke:
            events = [Event.message(text, speaker=who, session_id="smoke-1") for who, text in _SMOKE_TURNS]
            for event in events:
                program.observe(event)
            got = program.recall(
                Query(text="Where does Dana live and what seat does she like?", budget_tokens=budget_tokens)
            )
            used = sum(item.tokens or count_tokens(item.content) for item in got.items)
            if used > budget_tokens:
                program.close()
                return ValidationReport(
                    ok=False,
                    stage="smoke",
                    kind="invalid",
                    name=program.name,
                    error=f"invalid: recall used {used} tokens, over the budget of {budget_tokens}",
                    seconds=round(time.perf_counter() - started, 3),
                )
            program.reflect(Episode(task="smoke", events=events, outcome="done", reward=1.0, success=True))
        program.close()
        return ValidationReport(ok=True, seconds=round(time.perf_counter() - started, 3), name=program.name)
    except CandidateFailed as exc:
        return ValidationReport(
            ok=False,
            stage=stage,
            kind=exc.kind,
            error=exc.reason,
            traceback=exc.traceback,
            seconds=round(time.perf_counter() - started, 3),
            name=getattr(program, "name", ""),
        )
    finally:
        if program is not None:
            program._finalizer()
        stores.close()
        remove_tree(root)
