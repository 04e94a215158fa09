"""The sandbox for untrusted memory programs: benign programs behave as in-process, hostile ones are contained.

Limits here are small so that every test ends in seconds: 3 s wall per op,
512 MB resident, 2 GiB of address space (chromadb + numpy map about 1 GB
before any data), 256 KB of printed output.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from agentmem.evaluation import run_eval
from agentmem.llm.meter import Meter
from agentmem.llm.tools import ToolCall
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Recall, Scope
from agentmem_evolve.jail import available_backends
from agentmem_evolve.sandbox import (
    CandidateFailed,
    SandboxedProgram,
    SandboxLimits,
    sandboxed_factory,
    validate_program,
)
from tests.helpers import SHARED_DATA, BagEmbedder, task_request

HERE = Path(__file__).resolve().parent
BENIGN = HERE / "benign"
HOSTILE = HERE / "hostile"
LIMITS = SandboxLimits(
    op_seconds=3, startup_seconds=60, cpu_seconds=60, memory_mb=512, address_space_mb=2048, output_bytes=256 << 10
)
SECRET = "sk-test-do-not-leak"

pytestmark = pytest.mark.timeout(120)


def _jail_modes() -> list[str]:
    """The jails this machine can build (CI installs bubblewrap), then the audit-hook-only mode."""
    modes = [backend for backend, reason in available_backends().items() if reason is None]
    if os.environ.get("AGENTMEM_REQUIRE_JAIL") and not modes:
        raise RuntimeError(f"no sandbox jail on this machine: {available_backends()}")
    return modes + ["none"]


JAIL_MODES = _jail_modes()
JAILED = [m for m in JAIL_MODES if m != "none"]


def _limits(jail: str, **update: Any) -> SandboxLimits:
    return LIMITS.model_copy(update={"jail": jail, "allow_unjailed": jail == "none", **update})


# --------------------------------------------------------------------------- plumbing fakes


class MeteredFakeLLM:
    """A fake model for plumbing: answers tool calls from the prompt's request, counts every call in a real Meter."""

    model = "fake"

    def __init__(self, env: Any | None = None) -> None:
        self.meter = Meter()
        self.expected = {q.text: q.metadata for t in env.tasks("all", limit=20) for q in t.questions} if env else {}

    def complete(self, messages: list[dict[str, Any]], *, caller: str | None = None, **kw: Any) -> str:
        self.meter.record(caller, 10, 3, 0.0)
        return "Dana likes window seats."

    def structured(self, messages: list[dict[str, Any]], schema: Any, *, caller: str | None = None) -> Any:
        self.meter.record(caller, 10, 3, 0.0)
        return schema.model_validate_json('{"fact": "window seat", "confidence": 0.9}')

    def call_tool(
        self, messages: list[dict[str, Any]], tools: list[Any], *, caller: str | None = None, **kw: Any
    ) -> ToolCall:
        self.meter.record(caller, 10, 3, 0.0)
        meta = self.expected[task_request(messages)]
        return ToolCall(name=meta["tool"], arguments=meta["arguments"])

    def note(self, event: str, caller: str | None = None) -> None:
        self.meter.note(event, caller)


@pytest.fixture(autouse=True)
def _secrets_in_parent(monkeypatch):
    """Every test runs with secrets in the controller's environment; no worker may see them."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AGENTMEM_SECRET", SECRET)


def _program(
    source: str | Path,
    tmp_path: Path,
    *,
    params: dict[str, Any] | None = None,
    llm: Any = None,
    embedder: Any = None,
    limits: SandboxLimits = LIMITS,
) -> SandboxedProgram:
    """A sandboxed program whose controller directory is made under ``tmp_path/sandboxes`` (see _scratch_dirs)."""
    text = Path(source).read_text() if isinstance(source, Path) else source
    toolkit = Toolkit(
        scope=Scope(user_id="t"),
        stores=Stores(tmp_path / "stores"),
        llm=llm or MeteredFakeLLM(),
        embedder=embedder or BagEmbedder(),
        namespace="candidate",
    )
    (tmp_path / "sandboxes").mkdir(exist_ok=True)
    return SandboxedProgram(text, toolkit, params, limits, scratch_parent=tmp_path / "sandboxes")


@pytest.fixture
def toolprefs() -> Any:
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    return ToolPrefsEnvironment()


def _sandboxed_eval(
    env: Any,
    name: str,
    source: str | Path,
    tmp_path: Path,
    *,
    limits: SandboxLimits = LIMITS,
    split: str = "all",
    limit: int = 1,
) -> Any:
    """``run_eval`` of one candidate in the sandbox, with the plumbing fakes (a MeteredFakeLLM that knows ``env``)."""
    return run_eval(
        env,
        [name],
        llm=MeteredFakeLLM(env),
        embedder=BagEmbedder(),
        split=split,
        limit=limit,
        workdir=tmp_path,
        memory_factory=sandboxed_factory(source, limits),
    )


def _validate(source: str | Path, limits: SandboxLimits | None = None) -> Any:
    """``validate_program`` of a source (or a file's text) with the plumbing fakes, on the first jail by default."""
    text = source.read_text() if isinstance(source, Path) else source
    return validate_program(text, llm=MeteredFakeLLM(), embedder=BagEmbedder(), limits=limits or _limits(FIRST_MODE))


def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (state, ppid, pgrp, ...), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _pids_in_group(pgid: int, *, live: bool = False) -> list[int]:
    """The processes in a process group; with ``live``, not those already dead (a zombie awaiting its reaper)."""
    found = []
    for entry in os.listdir("/proc"):
        fields = _proc_stat(entry) if entry.isdigit() else None
        if fields and int(fields[2]) == pgid and not (live and fields[0] in ("Z", "X")):
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    fields = _proc_stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _group_gone(pgid: int, wait: float = 3.0) -> bool:
    """No live process is left in the worker's process group (a zombie awaiting its reaper is dead)."""
    deadline = time.monotonic() + wait
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_alive(pgid: int) -> bool:
    return bool(_pids_in_group(pgid, live=True))


@contextlib.contextmanager
def _listener() -> Iterator[socket.socket]:
    """A loopback TCP server that no candidate may reach (see _nobody_came)."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        server.settimeout(0.2)
        yield server
    finally:
        server.close()


def _nobody_came(server: socket.socket) -> None:
    with pytest.raises(socket.timeout):
        server.accept()[0].close()


# --------------------------------------------------------------------------- benign programs through run_eval


@pytest.mark.parametrize("program", ["notes.py", "episodic_plus.py"])
def test_benign_program_in_the_sandbox_scores_as_in_process(program, toolprefs, tmp_path):
    env = toolprefs
    path = BENIGN / program
    llm_in = MeteredFakeLLM(env)
    inproc = run_eval(env, [str(path)], llm=llm_in, embedder=BagEmbedder(), split="all", limit=2, workdir=tmp_path)
    sandboxed = _sandboxed_eval(env, path.stem, path, tmp_path, limit=2)
    assert sandboxed.questions == inproc.questions == 2
    assert sandboxed.metrics == inproc.metrics
    assert [q.recalled for t in sandboxed.tasks for q in t.questions] == [
        q.recalled for t in inproc.tasks for q in t.questions
    ]
    # the program's LLM calls were made (and metered) by the controller, under the same callers
    assert sandboxed.cost.llm_calls == inproc.cost.llm_calls >= 2
    assert set(sandboxed.cost.by_caller) == set(inproc.cost.by_caller)
    if program == "notes.py":
        assert sandboxed.cost.by_caller["notes.reflect"]["calls"] >= 1 and sandboxed.cost.llm_calls > 2
        assert sandboxed.cost.by_tag["plugin"]["notes"]["calls"] == inproc.cost.by_tag["plugin"]["notes"]["calls"]
    assert not list(tmp_path.glob("agentmem-eval-*"))


@pytest.mark.parametrize("jail", JAIL_MODES)
def test_worker_environment_is_scrubbed_and_walls_are_up(jail, tmp_path):
    program = _program(HOSTILE / "env_secrets.py", tmp_path, limits=_limits(jail))
    try:
        got = program.recall(Query(text="keys?"))
        text = got.text()
        assert SECRET not in text and "OPENAI_API_KEY" not in text and "AGENTMEM_SECRET" not in text
        env = eval(got.items[1].content)  # the worker's whole environment, as it saw it
        scratch = "/scratch" if jail != "none" else os.path.join(program.scratch, "work")
        assert env["HOME"] == env["TMPDIR"] == scratch
        assert set(env) <= {
            "PATH",
            "HOME",
            "TMPDIR",
            "LANG",
            "PYTHONHASHSEED",
            "TZ",
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONNOUSERSITE",
            "PYTHONIOENCODING",
            "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS",
            "MKL_NUM_THREADS",
            "ANONYMIZED_TELEMETRY",
        } | {k for k in env if k.startswith("LC_")} | {
            "PWD",
            "OLDPWD",
            "SHLVL",
            "_",  # set by the sh that sets up the mount namespace
            "LITELLM_LOCAL_MODEL_COST_MAP",  # set by agentmem's own import inside the worker
        }
    finally:
        program.close()
    assert program.capabilities["audit_hook"] is True
    assert {"cpu", "address_space", "file_size", "core"} <= set(program.capabilities["rlimits"])
    assert program.capabilities["jail"] == jail
    assert program.capabilities["private_root"] is program.capabilities["network_namespace"] is (jail != "none")
    assert not os.path.exists(program.scratch)


def test_llm_and_embedding_calls_are_serviced_and_metered_by_the_controller(tmp_path):
    source = """
from typing import ClassVar
from pydantic import BaseModel
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem

class Fact(BaseModel):
    fact: str
    confidence: float

class Asker(MemoryProgram):
    name: ClassVar[str] = "asker"

    def recall(self, query):
        text = self.toolkit.complete([{"role": "user", "content": query.text}], op="answer")
        fact = self.toolkit.structured([{"role": "user", "content": "extract"}], Fact, op="extract")
        vec = self.toolkit.embed(["abc"])[0]
        self.toolkit.note("fallback", op="extract")
        return Recall(items=[RecallItem(content=f"{text}|{fact.fact}|{fact.confidence}|{len(vec)}")])
"""
    llm = MeteredFakeLLM()
    program = _program(source, tmp_path, llm=llm)
    try:
        got = program.recall(Query(text="what seat?"))
    finally:
        program.close()
    assert got.items[0].content == "Dana likes window seats.|window seat|0.9|26"
    calls = llm.meter.by_caller()
    assert calls["asker.answer"].calls == 1 and calls["asker.extract"].calls == 1
    assert set(llm.meter.by_tag("plugin")) == {"asker"} and set(llm.meter.by_tag("op")) == {"answer", "extract"}
    assert program.requests == {"complete": 1, "structured": 1, "embed": 1}
    assert llm.meter.events() == {"fallback": 1}  # a program's outcome count reaches the controller's meter


def test_chromadb_sqlite_and_numpy_work_under_the_policy(tmp_path):
    source = """
import numpy as np
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem

class Stores(MemoryProgram):
    name = "stores"

    def observe(self, event):
        db = self.toolkit.db
        db.execute("CREATE TABLE IF NOT EXISTS t (x TEXT)")
        db.execute("INSERT INTO t VALUES (?)", (event.content,))
        db.commit()
        self.toolkit.collection("c").add(ids=[event.id], documents=[event.content])
        with open("notes.txt", "a") as fh:
            fh.write(event.content + "\\n")

    def recall(self, query):
        rows = [r[0] for r in self.toolkit.db.execute("SELECT x FROM t")]
        hits = self.toolkit.collection("c").query(query_texts=[query.text], n_results=1)["documents"][0]
        score = float(np.dot(np.ones(3), np.arange(3)))
        lines = open('notes.txt').read().count(chr(10))
        return Recall(items=[RecallItem(content=f"{len(rows)}|{hits[0]}|{score}|{lines}")])
"""
    program = _program(source, tmp_path)
    try:
        for text in ("the cat sat", "zebra zone zoo"):
            program.observe(Event.message(text))
        got = program.recall(Query(text="zebra zoo"))
    finally:
        program.close()
    assert got.items[0].content == "2|zebra zone zoo|3.0|2"


def test_overhead_per_op_and_startup_are_small(tmp_path):
    started = time.perf_counter()
    program = _program(BENIGN / "notes.py", tmp_path, params={"summarise": False})
    startup = time.perf_counter() - started
    try:
        t0 = time.perf_counter()
        for i in range(50):
            program.observe(Event.message(f"message {i}"))
        observe_ms = (time.perf_counter() - t0) / 50 * 1000
        t0 = time.perf_counter()
        for _ in range(50):
            program.recall(Query(text="message 7", budget_tokens=64))
        recall_ms = (time.perf_counter() - t0) / 50 * 1000
    finally:
        program.close()
    print(f"\nsandbox startup {startup:.2f} s, observe {observe_ms:.2f} ms, recall {recall_ms:.2f} ms per op")
    assert observe_ms < 50 and recall_ms < 50
    assert startup < 30


# --------------------------------------------------------------------------- the hostile suite


class Host:
    """Files of the host a hostile program goes after: a secret to read, targets to create, a victim to keep."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.secret = root / "host-secret.txt"
        self.secret.write_text(SECRET_FILE_TEXT)
        self.target = Path(f"/tmp/agentmem-evil-{os.getpid()}-{root.name}.txt")
        self.victim = root / "victim" / "precious.txt"
        self.victim.parent.mkdir()
        self.victim.write_text("keep me")
        self.archive = root / "run" / "archive.sqlite"
        self.archive.parent.mkdir()
        import sqlite3

        db = sqlite3.connect(self.archive)
        db.execute("CREATE TABLE evaluations (score REAL)")
        db.execute("INSERT INTO evaluations VALUES (0.25)")
        db.commit()
        db.close()
        self.archive_bytes = self.archive.read_bytes()

    def params(self, filename: str) -> dict[str, Any] | None:
        dataset = Path(__file__).resolve().parents[2] / "environments" / "agentmem_environments" / "locomo"
        return {
            "write_outside.py": {"target": str(self.target)},
            "delete_outside.py": {"victim": str(self.victim)},
            "dirfd_escape.py": {"target": str(self.target), "secret": str(self.secret)},
            "symlink_read.py": {"target": str(self.target), "secret": str(self.secret)},
            "proc_tricks.py": {"target": str(self.target), "secret": str(self.secret)},
            "tamper_archive.py": {"archive": str(self.archive)},
            "sqlite_attach.py": {"archive": str(self.archive), "target": str(self.target)},
            "read_dataset.py": {
                "paths": [str(self.secret), str(dataset), str(SHARED_DATA), str(Path.home() / ".cache")]
            },
        }.get(filename)

    def assert_untouched(self) -> None:
        assert not self.target.exists(), "a file was created outside the sandbox"
        assert self.victim.read_text() == "keep me"
        assert self.archive.read_bytes() == self.archive_bytes
        assert self.secret.read_text() == SECRET_FILE_TEXT
        for stray in (
            "/tmp/agentmem-unhook-evil.txt",
            "/tmp/agentmem-forkexec-evil",
            "/tmp/agentmem-system-evil",
            str(Path.home() / "agentmem-evil.txt"),
        ):
            assert not Path(stray).exists(), stray
        for source in (
            Path(__file__).resolve().parents[2] / "agentmem" / "memory.py",
            Path(__file__).resolve().parents[2] / "agentmem" / "__init__.py",
        ):
            assert "# pwned" not in source.read_text()


SECRET_FILE_TEXT = "the-host-secret-7f3a9c"


@pytest.fixture
def host(tmp_path):
    made = Host(tmp_path)
    yield made
    made.target.unlink(missing_ok=True)


HOSTILE_CASES: list[tuple[str, str, str, str]] = [
    # (file, op that trips it, expected kind, a fragment of the reason)
    ("loop_recall.py", "recall", "timeout", "timeout: recall took over 3 s"),
    ("loop_import.py", "load", "timeout", "timeout: import took over 3 s"),
    ("fork_bomb.py", "observe", "denied", "os.fork"),
    ("fork_subprocess.py", "observe", "denied", "subprocess.Popen"),
    ("fork_exec_direct.py", "observe", "denied", "fork_exec"),
    ("memory_hog.py", "observe", "memory", "memory"),
    ("memory_creep.py", "observe", "memory", "memory"),
    ("proc_environ.py", "recall", "denied", "environ"),
    ("write_outside.py", "observe", "denied", "denied: "),
    ("network.py", "recall", "denied", "socket.connect to ('1.1.1.1', 80)"),
    ("segfault_ctypes.py", "observe", "denied", "ctypes"),
    ("segfault_real.py", "recall", "crash", "crash: worker died with SIGSEGV during recall"),
    ("huge_recall.py", "recall", "output", "output: recall"),
    ("thread_leak.py", "observe", "denied", "thread"),
    ("sys_exit.py", "observe", "crash", "sys.exit(3)"),
    ("os_exit.py", "observe", "crash", "crash: worker exited with code 7 during observe"),
    ("unhook.py", "observe", "denied", "denied"),
    ("delete_outside.py", "observe", "denied", "outside the scratch directory"),
    # issue 12: a program that tries a little harder
    ("dirfd_escape.py", "observe", "denied", "denied: "),
    ("symlink_read.py", "recall", "denied", "denied: "),
    ("proc_tricks.py", "recall", "denied", "denied: reading "),
    ("sleep_forever.py", "recall", "timeout", "timeout: recall took over 3 s"),
    ("exit_zero.py", "observe", "crash", "sys.exit(0)"),
    ("ignore_sigterm.py", "observe", "timeout", "timeout: observe took over 3 s"),
    ("deep_recursion.py", "observe", "crash|memory", "during observe"),  # the stack overflows or fills memory
    ("fill_disk.py", "observe", "output", "output: observe filled its scratch space"),
    ("wrong_types.py", "recall", "invalid", "not a Recall"),
    ("system_at_import.py", "load", "denied", "os.system"),
    ("write_source.py", "observe", "denied", "denied: writing"),
    ("patch_scorer.py", "observe", "denied", "agentmem_environments"),
    ("tamper_archive.py", "observe", "denied", "denied: "),
    ("peek_answers.py", "recall", "denied", "importing 'agentmem_environments"),
    ("read_dataset.py", "recall", "denied", "denied: reading"),
    ("caught_denial.py", "recall", "denied", "importing 'agentmem_environments'"),
    ("tamper_channel.py", "recall", "denied", "tampered with the sandbox's channel"),
    ("raw_output.py", "observe", "output", "output: observe"),  # the log watch, or the file-size limit first
]
# the unshare backend builds the same tree as bubblewrap: the escape attempts run on it too
ESCAPES = {
    "write_outside.py",
    "delete_outside.py",
    "dirfd_escape.py",
    "symlink_read.py",
    "proc_tricks.py",
    "proc_environ.py",
    "network.py",
    "segfault_real.py",
    "fill_disk.py",
    "write_source.py",
    "tamper_archive.py",
    "peek_answers.py",
    "read_dataset.py",
    "caught_denial.py",
    "memory_creep.py",
    "raw_output.py",
    "tamper_channel.py",
    "fork_bomb.py",
    "fork_subprocess.py",
    "system_at_import.py",
}


def _hostile_params() -> list[Any]:
    """Every case on the first jail; the escapes (and what differs by mode) on the other jail and without one."""
    out = []
    for case in HOSTILE_CASES:
        for mode in JAIL_MODES:
            if mode != JAIL_MODES[0] and case[0] not in ESCAPES:
                continue
            out.append(pytest.param(case, mode, id=f"{case[0]}-{mode}"))
    return out


def _trip(program: SandboxedProgram, op: str) -> None:
    if op == "observe":
        program.observe(Event.message("hello"))
    elif op == "recall":
        program.recall(Query(text="hello"))
    program.reflect(Episode())
    program.close()


def _scratch_dirs(tmp_path: Path) -> set[str]:
    """The sandbox directories left under this test's own parent (other processes' runs do not count)."""
    return {str(p) for p in (tmp_path / "sandboxes").glob("agentmem-sandbox-*")}


@pytest.mark.parametrize(("case", "jail"), _hostile_params())
def test_hostile_program_is_contained(case, jail, host, tmp_path):
    filename, op, kind, fragment = case
    before = _scratch_dirs(tmp_path)
    started = time.monotonic()
    program: SandboxedProgram | None = None
    limits = _limits(jail, disk_mb=64) if filename == "fill_disk.py" else _limits(jail)
    with pytest.raises(CandidateFailed) as failed:
        program = _program(HOSTILE / filename, tmp_path, params=host.params(filename), limits=limits)
        _trip(program, op)
    err = failed.value
    assert err.kind in kind.split("|"), str(err)
    assert fragment in str(err), str(err)
    assert "\n" not in str(err) and len(str(err)) < 700
    assert time.monotonic() - started < 30
    if filename in ("loop_import.py", "system_at_import.py"):
        assert err.stage == "import"
    # contained: the worker's whole process group is gone, its scratch removed, nothing touched outside
    if program is not None:
        assert _group_gone(program._proc.pid)
        assert not os.path.exists(program.scratch)
        assert program.capabilities["jail"] == jail
    assert _scratch_dirs(tmp_path) <= before
    host.assert_untouched()


# The jail alone (audit hook off): the escapes that the hook normally stops first must still fail,
# because the private root holds nothing to reach. The programs catch every error and report what they got.
JAIL_ALONE = [
    "dirfd_escape.py",
    "symlink_read.py",
    "proc_tricks.py",
    "read_dataset.py",
    "write_outside.py",
    "remount_rw.py",
    "write_source.py",
]


@pytest.mark.skipif(not JAILED, reason="no jail backend on this machine (install bubblewrap)")
@pytest.mark.parametrize("jail", JAILED)
@pytest.mark.parametrize("filename", JAIL_ALONE)
def test_the_jail_holds_without_the_audit_hook(filename, jail, host, tmp_path):
    limits = _limits(jail, audit_hook=False)
    program = _program(HOSTILE / filename, tmp_path, params=host.params(filename), limits=limits)
    found = ""
    try:
        assert program.capabilities["audit_hook"] is False
        # writes land in the jail's own /tmp or fail on its read-only tree (an escaping OSError fails the candidate)
        with contextlib.suppress(CandidateFailed):
            program.observe(Event.message("x"))
            found = program.recall(Query(text="x")).text()
    finally:
        program.close()
    assert SECRET_FILE_TEXT not in found
    assert SECRET not in found
    if filename == "read_dataset.py":
        assert "locomo" not in found.lower() and "qa" not in found
    if filename == "remount_rw.py":
        steps = dict((name, (rc, errno)) for name, rc, errno in eval(found.strip()))
        assert steps["remount"][0] == -1 and steps["write"][0] == -1, steps
    host.assert_untouched()


def test_without_a_jail_the_sandbox_refuses_unless_told(monkeypatch, tmp_path):
    from agentmem_evolve import jail as jail_module

    monkeypatch.setattr(
        jail_module, "_probed", {"bwrap": "bwrap is not installed", "unshare": "unshare is not installed"}
    )
    with pytest.raises(jail_module.JailUnavailable) as refused:
        _program(BENIGN / "notes.py", tmp_path, limits=LIMITS)
    message = str(refused.value)
    assert "\n" not in message and "bubblewrap" in message and "--allow-unjailed" in message
    program = _program(BENIGN / "notes.py", tmp_path, limits=LIMITS.model_copy(update={"allow_unjailed": True}))
    try:
        assert program.capabilities["jail"] == "none" and program.capabilities["private_root"] is False
    finally:
        program.close()


def test_network_to_the_local_model_port_is_denied(tmp_path):
    with _listener() as server:
        port = server.getsockname()[1]
        with pytest.raises(CandidateFailed) as failed:
            program = _program(HOSTILE / "network.py", tmp_path, params={"host": "127.0.0.1", "port": port})
            program.recall(Query(text="x"))
        assert failed.value.kind == "denied" and f"('127.0.0.1', {port})" in str(failed.value)
        _nobody_came(server)


def test_huge_output_is_capped_not_fatal(tmp_path):
    program = _program(HOSTILE / "huge_print.py", tmp_path)
    try:
        started = time.monotonic()
        program.observe(Event.message("x"))
        assert time.monotonic() - started < 3
        log = Path(program.scratch) / "worker.log"
        assert log.stat().st_size <= LIMITS.output_bytes
        assert program.recall(Query(text="x")) == Recall()
    finally:
        program.close()


def test_the_run_goes_on_after_a_hostile_candidate(toolprefs, tmp_path):
    with pytest.raises(CandidateFailed) as failed:
        _sandboxed_eval(toolprefs, "loop", HOSTILE / "loop_recall.py", tmp_path)
    assert failed.value.kind == "timeout"
    result = _sandboxed_eval(toolprefs, "notes", BENIGN / "notes.py", tmp_path)
    assert result.questions == 1 and result.metrics["param_accuracy"] == 1.0
    assert not list(tmp_path.glob("agentmem-eval-*"))


# --------------------------------------------------------------------------- validation


def test_validate_program_reports_stage_and_a_one_line_error():
    ok = _validate(BENIGN / "notes.py", LIMITS)
    assert ok.ok and ok.stage is None and ok.name == "notes"

    syntax = _validate("def broken(:\n", LIMITS)
    assert not syntax.ok and syntax.stage == "import" and "syntax error at line 1" in syntax.error

    raises = _validate("import json\nraise ValueError('boom at import')\n", LIMITS)
    assert raises.stage == "import" and "boom at import" in raises.error and "ValueError" in raises.traceback

    none = _validate("from agentmem.memory import MemoryProgram\nX = 1\n", LIMITS)
    assert none.stage == "interface" and "exactly one MemoryProgram subclass" in none.error


def test_validate_program_checks_the_interface_and_runs_a_smoke_test():
    abstract = _validate("from agentmem.memory import MemoryProgram\nclass P(MemoryProgram):\n    pass\n", LIMITS)
    assert abstract.stage == "interface" and "recall" in abstract.error

    greedy = _validate(
        "from agentmem.memory import MemoryProgram\nfrom agentmem.types import Recall, RecallItem\n"
        "class P(MemoryProgram):\n    def recall(self, q):\n"
        "        return Recall(items=[RecallItem(content='word ' * 500, tokens=500)])\n",
        LIMITS,
    )
    assert greedy.stage == "smoke" and "over the budget" in greedy.error

    crashing = _validate(
        "from agentmem.memory import MemoryProgram\nclass P(MemoryProgram):\n    def recall(self, q):\n"
        "        return {}['missing']\n",
        LIMITS,
    )
    assert crashing.stage == "smoke" and crashing.kind == "error" and "KeyError" in crashing.error
    assert "candidate.py" in crashing.traceback and "missing" in crashing.traceback


# --------------------------------------------------------------------------- the real local model


@pytest.mark.llm
@pytest.mark.timeout(900)
def test_real_model_sandboxed_matches_in_process(local_llm, embedder, tmp_path):
    """The real local model serves the sandboxed program's reflect() calls; scores equal the in-process run."""
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    env = ToolPrefsEnvironment()
    path = BENIGN / "notes.py"
    before = local_llm.meter.total().calls
    sandboxed = run_eval(
        env,
        ["notes"],
        llm=local_llm,
        embedder=embedder,
        split="validation",
        limit=1,
        workdir=tmp_path,
        memory_factory=sandboxed_factory(path, SandboxLimits(op_seconds=60, memory_mb=1024)),
    )
    inproc = run_eval(env, [str(path)], llm=local_llm, embedder=embedder, split="validation", limit=1, workdir=tmp_path)
    assert sandboxed.questions == inproc.questions == 1
    assert sandboxed.cost.by_caller["notes.reflect"]["calls"] == inproc.cost.by_caller["notes.reflect"]["calls"] >= 1
    assert (
        local_llm.meter.total().calls - before
        == sandboxed.cost.llm_calls + sandboxed.cost.cache_hits + inproc.cost.llm_calls + inproc.cost.cache_hits
    )
    # same recalled context (memory is deterministic); the model's answers may differ only by sampling noise
    assert [q.recalled for t in sandboxed.tasks for q in t.questions] == [
        q.recalled for t in inproc.tasks for q in t.questions
    ]
    assert sandboxed.metrics["evidence_recall"] == inproc.metrics["evidence_recall"]


# --------------------------------------------------------------------------- no answer reaches a candidate


def test_no_expected_answer_ever_reaches_the_worker(toolprefs, tmp_path, monkeypatch):
    """Every frame the controller sends a candidate during a toolprefs evaluation is free of the expected calls.

    The worker sees what the agent observed (sessions), queries and episodes; the expected tool call, its
    arguments, which parameters are memory-only, their grounding and their stale values stay with the scorer.
    """
    import json

    from agentmem_evolve import protocol

    env = toolprefs
    sent: list[str] = []
    real_write = protocol.write_frame

    def recording(fd: int, message: dict[str, Any], max_bytes: int = protocol.DEFAULT_MAX_BYTES) -> None:
        sent.append(json.dumps(message, default=str))
        real_write(fd, message, max_bytes)

    monkeypatch.setattr(protocol, "write_frame", recording)
    result = _sandboxed_eval(env, "notes", BENIGN / "notes.py", tmp_path, limit=4)
    assert result.questions == 4 and sent
    wire = "\n".join(sent)
    questions = [q for t in env.tasks("all", limit=4) for q in t.questions]
    for question in questions:
        assert question.answer not in wire
        meta = question.metadata
        assert json.dumps(meta["arguments"]) not in wire
        for key in ("memory_params", "grounding", "stale"):
            assert f'"{key}"' not in wire


@pytest.mark.parametrize("jail", JAIL_MODES)
def test_a_candidate_cannot_obtain_any_expected_answer(jail, toolprefs, tmp_path):
    """The strongest peeker: every route to the answers at once (import, regenerate, read files), catching denials."""
    source = """
import importlib, os
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem

class Peeker(MemoryProgram):
    def recall(self, query):
        found = []
        for attempt in (
            lambda: importlib.import_module("agentmem_environments.toolprefs"),
            lambda: __import__("agentmem_environments"),
            lambda: open(os.path.join(os.path.dirname(os.path.dirname(__import__("agentmem").__file__)),
                                      "environments", "agentmem_environments", "toolprefs", "generator.py")).read(),
        ):
            try:
                found.append(repr(attempt())[:2000])
            except BaseException as exc:
                found.append(type(exc).__name__)
        return Recall(items=[RecallItem(content=" | ".join(found))])
"""
    with pytest.raises(CandidateFailed) as failed:
        _sandboxed_eval(toolprefs, "peeker", source, tmp_path, limits=_limits(jail), split="test", limit=2)
    assert failed.value.kind == "denied" and "agentmem_environments" in str(failed.value)


# --------------------------------------------------------------------------- holes found by an attack round
#
# Each test below shows a hole that is open today (strict xfail: the suite stays green until it is
# fixed, and then the xfail mark must go). The hostile programs carry the mechanism in their docstring.

HOOK_MODES = ["none"] + (["bwrap"] if "bwrap" in JAILED else JAILED[:1])  # hook-only, and one jail (it holds)
FIRST_MODE = JAIL_MODES[0]


def _hole(reason: str) -> pytest.MarkDecorator:
    return pytest.mark.xfail(strict=True, reason=f"hole: {reason}")


def _attempt(
    filename: str,
    tmp_path: Path,
    limits: SandboxLimits,
    *,
    params: dict[str, Any] | None = None,
    ops: tuple[str, ...] = ("observe", "recall", "close"),
) -> tuple[SandboxedProgram | None, CandidateFailed | None, str]:
    """Run a hostile program through ``ops``: (the program, its failure or None, what its recalls returned)."""
    program: SandboxedProgram | None = None
    got: list[str] = []
    try:
        program = _program(HOSTILE / filename, tmp_path, params=params, limits=limits)
        for op in ops:
            if op == "observe":
                program.observe(Event.message("hello"))
            elif op == "recall":
                got.append(program.recall(Query(text="hello")).text())
            elif op == "close":
                program.close()
        return program, None, "\n".join(got)
    except CandidateFailed as exc:
        return program, exc, "\n".join(got)
    finally:
        if program is not None:
            program._finalizer()


_BYPASSES = {
    "subinterpreter.py": "an extension module loads again under a dotted alias ('evil._xxsubinterpreters' passes the "
    "blocked-import check on its first component); a sub-interpreter has no audit hook",
    "extension_alias_spawn.py": "a fresh _posixsubprocess loaded under a dotted alias has the original fork_exec, "
    "which raises no audit event: a shell without the hook, and a process left behind",
    "numpy_poke.py": "numpy's __array_interface__ is a raw memory read/write with no audit event: the program "
    "silences the reporter and widens the hook's roots to '/' in place",
    "gc_swap.py": "a gc callback runs inside the hook's own allocations and swaps a checked scratch directory for a "
    "symlink to the host after the hook resolved it (time of check to time of use)",
    "tcl_exec.py": "_tkinter is not a blocked import; a Tcl interpreter's open and exec are C code in libtcl "
    "that raise "
    "no audit event: it reads and writes host files and runs a shell",
    "uvloop_escape.py": "uvloop (allowed, not blocked) spawns processes with uv_spawn and connects with libuv "
    "sockets: no "
    "audit event for either; the shell reads and writes host files, the connection reaches the network",
}


# numpy's raw memory access cannot be stopped from an audit hook: without a jail it is an open door (the
# audit-hook-only mode is weaker, and is reported as such); in a jail it reaches nothing
_NOT_A_WALL = {("numpy_poke.py", "none")}


def _bypass_params() -> list[Any]:
    out = []
    for name, why in _BYPASSES.items():
        for mode in HOOK_MODES:
            marks = [_hole(why)] if (name, mode) in _NOT_A_WALL else []
            out.append(pytest.param(name, mode, marks=marks, id=f"{name}-{mode}"))
    return out


@pytest.mark.parametrize(("filename", "jail"), _bypass_params())
def test_audit_hook_bypass_attempts_are_contained(filename, jail, host, tmp_path):
    """Without a jail these read and write host files (and the controller's environment) unreported; in a jail the
    jail holds but the policy (no processes, no reads of other processes) is bypassed without a denial."""
    linger = tmp_path / "linger.pid"
    before = _scratch_dirs(tmp_path)
    params = {"secret": str(host.secret), "target": str(host.target)}
    if filename == "extension_alias_spawn.py":
        params["linger"] = str(linger)
    lingering = None
    with _listener() as server:
        if filename in ("subinterpreter.py", "uvloop_escape.py"):
            params.update(host="127.0.0.1", port=server.getsockname()[1])
        try:
            program, failure, got = _attempt(filename, tmp_path, _limits(jail), params=params, ops=("recall", "close"))
            if linger.exists() and linger.read_text().strip().isdigit():
                lingering = int(linger.read_text())
            host.assert_untouched()
            assert SECRET_FILE_TEXT not in got
            _nobody_came(server)
            assert lingering is None or not _alive(lingering), f"process {lingering} outlived the worker"
            if filename not in ("numpy_poke.py", "gc_swap.py"):  # numpy pokes unseen (reaching nothing in a jail);
                # the gc swap no longer runs inside the hook, so the program only opens a missing file
                assert failure is not None and failure.kind == "denied", (
                    f"nothing was denied; the program got: {got[:300]!r}"
                )
            assert _scratch_dirs(tmp_path) <= before
        finally:
            if lingering is not None and _alive(lingering):
                os.kill(lingering, 9)


class Attack(NamedTuple):
    """One hostile program that must fail the candidate: how it is run, and the failure it must end in."""

    filename: str
    modes: list[str]  # the jails it runs under (one test each)
    kinds: tuple[str, ...]  # the failure kinds that count as contained
    why: str  # the mechanism, and what stops it
    fragment: str = ""  # a fragment the failure's reason must hold
    params: Mapping[str, Any] = {}  # besides Host.params
    limits: Mapping[str, Any] = {}  # updates to _limits(mode)
    ops: tuple[str, ...] = ("observe", "recall", "close")
    within: float | None = None  # seconds the whole attempt may take


ATTACKS = [
    Attack(
        "raw_thread.py",
        HOOK_MODES,
        ("denied",),
        "_imp.create_builtin (no audit event) would make a fresh _thread with the original start_new_thread",
    ),
    Attack(
        "sqlite_attach.py",
        ["none"],
        ("denied",),
        "ATTACH, VACUUM INTO and file: URIs would open host files by SQL; an authorizer and the URI's path deny them",
        ops=("recall", "close"),
    ),
    Attack(
        "proxy_flood.py",
        [FIRST_MODE],
        ("timeout",),
        "the controller's time serving a program's calls has its own limit (service_seconds), and calls a count",
        params={"seconds": 3 * LIMITS.op_seconds},
        limits={"service_seconds": 2.0},
        ops=("recall", "close"),
        within=2 * LIMITS.op_seconds + 10,
    ),
    Attack(
        "memfd_hog.py",
        HOOK_MODES,
        ("memory",),
        "memfd_create + posix_fallocate hold memory outside VmRSS and RLIMIT_AS: the watch counts unlinked files too",
        params={"megabytes": 768},
    ),
    Attack(
        "boot_log_write.py",
        ["bwrap"],
        ("output",),
        "bubblewrap's pid 1 has the worker's own log as its stderr (size-watched), not another host file",
        fragment="to its log",
        limits={"audit_hook": False},
        ops=("recall", "close"),
    ),
]


def _attack_params() -> list[Any]:
    out = []
    for attack in ATTACKS:
        for mode in attack.modes:
            missing = mode != "none" and mode not in JAILED
            marks = [pytest.mark.skip(reason=f"{mode} is not available here")] if missing else []
            out.append(pytest.param(attack, mode, marks=marks, id=f"{attack.filename}-{mode}"))
    return out


@pytest.mark.parametrize(("attack", "jail"), _attack_params())
def test_an_attack_fails_the_candidate(attack, jail, host, tmp_path):
    """Each row of ATTACKS ends in a failure of one of its kinds (its ``why`` says how), and the host is untouched."""
    params = {**(host.params(attack.filename) or {}), **attack.params} or None
    started = time.monotonic()
    _, failure, got = _attempt(attack.filename, tmp_path, _limits(jail, **attack.limits), params=params, ops=attack.ops)
    assert failure is not None and failure.kind in attack.kinds and attack.fragment in str(failure), (failure, got)
    if attack.within is not None:
        assert time.monotonic() - started < attack.within
    host.assert_untouched()


def test_denials_after_a_forged_result_are_read():
    """In close() the program forges a 'result' frame; the denials behind it are still read, and fail it."""
    report = _validate(HOSTILE / "forge_close.py")
    assert not report.ok and report.kind == "denied", report


def test_a_nested_json_frame_is_an_invalid_candidate():
    try:
        report = _validate(HOSTILE / "json_bomb.py")
    except RecursionError:
        pytest.fail("validate_program raised RecursionError for the candidate's frame")
    assert not report.ok and report.kind == "invalid"


@pytest.mark.skipif("bwrap" not in JAILED, reason="bubblewrap is not available here")
def test_bwrap_dev_is_read_only(tmp_path):
    """bubblewrap's --dev is a tmpfs of half the RAM: it is remounted read-only, so nothing fills it."""
    limits = _limits("bwrap", audit_hook=False, disk_mb=64)
    _, failure, got = _attempt("dev_fill.py", tmp_path, limits, params={"megabytes": 600})
    assert (failure is not None and failure.kind in ("output", "memory")) or "wrote 0 MB" in got, got


def test_log_fifo_cannot_hang_the_controller_without_a_jail(tmp_path):
    """The controller's log is out of the program's directory, and is read without blocking on a FIFO."""
    import threading

    outcome: list[Any] = []
    program = _program(HOSTILE / "log_fifo.py", tmp_path, limits=_limits("none"))

    def observe() -> None:
        try:
            program.observe(Event.message("x"))
            outcome.append(None)
        except CandidateFailed as exc:
            outcome.append(exc)

    worker = threading.Thread(target=observe, daemon=True)
    worker.start()
    worker.join(8)  # the worker exits at once: a controller that is not stuck answers in a few seconds
    hung = worker.is_alive()
    if hung:  # release the controller: open each FIFO for writing, then close it (the reader sees EOF)
        for name in ("boot.log", "worker.log"):
            path = os.path.join(program.scratch, name)
            deadline = time.monotonic() + 5
            while worker.is_alive() and time.monotonic() < deadline:
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # ENXIO until the controller opens it
                    break
                except OSError:
                    time.sleep(0.05)
        worker.join(10)
    program._finalizer()
    assert not hung, "the controller blocked opening the worker's log"
    assert outcome and isinstance(outcome[0], CandidateFailed)


def test_log_symlink_cannot_leak_host_files_into_the_traceback(host, tmp_path):
    _, failure, _ = _attempt("log_symlink.py", tmp_path, _limits("none"), params={"secret": str(host.secret)})
    assert failure is not None
    assert SECRET_FILE_TEXT not in failure.traceback


@pytest.mark.skipif(os.geteuid() != 0, reason="needs a controller running as root (CAP_LINUX_IMMUTABLE)")
def test_an_immutable_file_cannot_keep_scratch_behind(tmp_path):
    """fcntl.ioctl (FS_IOC_SETFLAGS) is denied, so no scratch file becomes immutable."""
    import fcntl
    import struct

    before = _scratch_dirs(tmp_path)
    try:
        _, failure, got = _attempt("immutable_scratch.py", tmp_path, _limits("none"))
        left = _scratch_dirs(tmp_path) - before
        assert not left, f"scratch left behind: {left}"
        assert failure is not None and failure.kind == "denied", got
    finally:
        for directory in _scratch_dirs(tmp_path) - before:
            stuck = os.path.join(directory, "stuck.txt")
            if os.path.exists(stuck):
                fd = os.open(stuck, os.O_RDONLY)
                try:
                    fcntl.ioctl(fd, 0x40086602, struct.pack("i", 0))  # FS_IOC_SETFLAGS: clear immutable
                finally:
                    os.close(fd)
                import shutil

                shutil.rmtree(directory, ignore_errors=True)


def test_a_candidate_cannot_overspend_its_recall_budget(tmp_path):
    """The controller counts the tokens itself and holds the rendered instructions to the items plus template text."""
    from agentmem.composition import ComposedMemory
    from agentmem.tokens import count_tokens

    report = _validate(HOSTILE / "budget_liar.py")
    assert not report.ok and report.kind == "invalid", report
    program = _program(HOSTILE / "budget_liar.py", tmp_path, limits=_limits(FIRST_MODE))
    try:
        got = ComposedMemory([program]).recall(Query(text="x", budget_tokens=64))
        shown = got.block()  # what the agent puts in its prompt
        assert count_tokens(shown) <= 64 + LIMITS.instruction_tokens, f"the agent is shown {count_tokens(shown)} tokens"
    except CandidateFailed as failed:
        assert failed.kind == "invalid" and "budget" in str(failed) or "instructions" in str(failed)
    finally:
        program.close()


def test_a_failure_reason_is_not_rendered_as_markup():
    import io

    from rich.console import Console

    from agentmem_evolve.display import _describe

    report = _validate(HOSTILE / "markup_reason.py")
    assert not report.ok
    line = _describe("validated", {"id": "p1", "ok": False, "error": f"{report.stage}: {report.error}"})
    Console(file=io.StringIO(), width=200).print(line)


def test_embed_calls_cannot_grow_the_controllers_cache(tmp_path):
    """The shared embedding cache keeps digests and vectors, never the texts."""
    from agentmem.evaluation import CachingEmbedder

    shared = CachingEmbedder(BagEmbedder())
    program = _program(
        HOSTILE / "embed_cache_flood.py",
        tmp_path,
        params={"texts": 8, "megabytes": 1},
        embedder=shared,
        limits=_limits(FIRST_MODE),
    )
    try:
        program.recall(Query(text="x"))
    except CandidateFailed:
        pass
    finally:
        program._finalizer()
    kept = sum(len(text) for text in shared._cache)
    assert kept < 4 << 20, f"the controller keeps {kept >> 20} MB of the candidate's texts"


_KILLED_CONTROLLER = """
import sys
sys.path.insert(0, sys.argv[2])
from tests.helpers import BagEmbedder
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Query, Scope
from agentmem_evolve.sandbox import SandboxedProgram, SandboxLimits
limits = SandboxLimits(op_seconds=60, memory_mb=512, address_space_mb=2048, jail=sys.argv[1],
                       allow_unjailed=sys.argv[1] == "none")
toolkit = Toolkit(scope=Scope(user_id="t"), stores=Stores(sys.argv[3]), llm=None, embedder=BagEmbedder(), namespace="c")
program = SandboxedProgram(open(sys.argv[4]).read(), toolkit, None, limits)
print(program._proc.pid, program.scratch, flush=True)
program.recall(Query(text="x"))
"""


@pytest.mark.parametrize("jail", JAIL_MODES)
def test_a_worker_dies_with_its_killed_controller(jail, tmp_path):
    """A parent-death signal (setpriv --pdeathsig; bubblewrap's --die-with-parent) ends the worker with its controller.

    The scratch directory of a killed run stays until the next run starts (see the crash-hygiene sweep)."""
    import signal
    import subprocess
    import sys

    controller = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _KILLED_CONTROLLER,
            jail,
            str(HERE.parents[1]),
            str(tmp_path / "stores"),
            str(HOSTILE / "sleep_forever.py"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert controller.stdout is not None
    line = controller.stdout.readline().split()
    worker_group, scratch = int(line[0]), line[1]
    time.sleep(1)  # the recall is under way: the worker sleeps in the candidate's code
    controller.kill()
    controller.wait()
    try:
        assert _group_gone(worker_group, wait=5), "the worker outlived its controller"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker_group, signal.SIGKILL)
        for pid in _pids_in_group(worker_group):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)


@_hole(
    "hook-only mode is not a wall: chromadb.PersistentClient on a host directory creates chroma.sqlite3 there "
    "from Rust (no audit event) before the candidate is denied; only the jail stops it"
)
def test_hole_chroma_writes_a_host_directory_without_a_jail(tmp_path):
    outside = tmp_path / "someone-elses-store"
    outside.mkdir()
    _attempt(
        "chroma_outside.py", tmp_path, _limits("none"), params={"directory": str(outside)}, ops=("recall", "close")
    )
    assert not list(outside.iterdir()), f"written outside scratch: {sorted(p.name for p in outside.iterdir())}"


@pytest.mark.parametrize(
    "source", ["x = " + "-" * 100_000 + "1", "x = " + "+".join(["1"] * 200_000)], ids=["unary-chain", "long-sum"]
)
def test_a_source_that_breaks_the_compiler_is_invalid(source):
    try:
        report = _validate(source)
    except (MemoryError, RecursionError) as exc:
        pytest.fail(f"validate_program raised {type(exc).__name__} for the candidate's source")
    assert not report.ok and report.stage == "import"


@pytest.mark.skipif(not JAILED, reason="no jail backend on this machine (install bubblewrap)")
@pytest.mark.parametrize("jail", JAILED)
def test_a_checkout_under_tmp_is_visible_inside_the_jail(jail, tmp_path):
    """A fresh clone (and its virtual environment) under /tmp is bound over the jail's own /tmp, not hidden by it."""
    import subprocess

    from agentmem_evolve.jail import jail_command, jail_view

    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "marker.txt").write_text("found me")
    view = jail_view()
    view = view.model_copy(update={"readonly": [*view.readonly, str(checkout)]})
    host = tmp_path / "host"
    host.mkdir()
    script = (
        f"import os; print(open({str(checkout / 'marker.txt')!r}).read()); "
        "open('/tmp/scratch-note', 'w').write('x'); print(sorted(os.listdir('/tmp')))"
    )
    argv = jail_command(jail, [view.python, "-I", "-c", script], host_dir=host, disk_mb=8, view=view)  # type: ignore[arg-type]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "found me" in done.stdout
    assert not (checkout / "scratch-note").exists() and not Path("/tmp/scratch-note").exists()
