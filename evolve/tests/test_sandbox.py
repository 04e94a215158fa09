"""The sandbox for untrusted memory programs: benign programs behave as in-process, hostile ones are contained.

Limits here are small so that every test ends in seconds: 3 s wall per op,
512 MB resident, 2 GiB of address space (chromadb + numpy map about 1 GB
before any data), 256 KB of printed output.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
from evolve_fakes import BagEmbedder

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

HERE = Path(__file__).resolve().parent
BENIGN = HERE / "benign"
HOSTILE = HERE / "hostile"
LIMITS = SandboxLimits(op_seconds=3, startup_seconds=60, cpu_seconds=60, memory_mb=512, address_space_mb=2048,
                       output_bytes=256 << 10)
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

    def call_tool(self, messages: list[dict[str, Any]], tools: list[Any], *, caller: str | None = None, **kw: Any) -> ToolCall:
        self.meter.record(caller, 10, 3, 0.0)
        request = re.search(r"Request: (.*)", messages[-1]["content"]).group(1)  # type: ignore[union-attr]
        meta = self.expected[request]
        return ToolCall(name=meta["tool"], arguments=meta["arguments"])

    def note(self, event: str, caller: str | None = None) -> None:
        self.meter.note(event, caller)


@pytest.fixture(scope="module")
def local_llm():
    """The real embedded local model (tests/conftest.py does not apply under evolve/)."""
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("AGENTMEM_CACHE", "0")
    from agentmem.llm import LLM

    return LLM("local")


@pytest.fixture(scope="module")
def embedder():
    """The real offline MiniLM sentence embedder."""
    from agentmem.embeddings import default_embedder

    return default_embedder()


@pytest.fixture(autouse=True)
def _secrets_in_parent(monkeypatch):
    """Every test runs with secrets in the controller's environment; no worker may see them."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AGENTMEM_SECRET", SECRET)


def _program(source: str | Path, tmp_path: Path, *, params: dict[str, Any] | None = None, llm: Any = None,
             limits: SandboxLimits = LIMITS) -> SandboxedProgram:
    text = Path(source).read_text() if isinstance(source, Path) else source
    toolkit = Toolkit(scope=Scope(user_id="t"), stores=Stores(tmp_path / "stores"), llm=llm or MeteredFakeLLM(),
                      embedder=BagEmbedder(), namespace="candidate")
    return SandboxedProgram(text, toolkit, params, limits)


def _group_gone(pgid: int, wait: float = 3.0) -> bool:
    """No live process is left in the worker's process group (a zombie awaiting its reaper is dead)."""
    deadline = time.monotonic() + wait
    while _group_alive(pgid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _group_alive(pgid: int) -> bool:
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state not in ("Z", "X"):
            return True
    return False


# --------------------------------------------------------------------------- benign programs through run_eval


@pytest.mark.parametrize("program", ["notes.py", "episodic_plus.py"])
def test_benign_program_in_the_sandbox_scores_as_in_process(program, tmp_path):
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    env = ToolPrefsEnvironment()
    path = BENIGN / program
    llm_in = MeteredFakeLLM(env)
    inproc = run_eval(env, [str(path)], llm=llm_in, embedder=BagEmbedder(), split="all", limit=2, workdir=tmp_path)
    llm_sb = MeteredFakeLLM(env)
    sandboxed = run_eval(env, [path.stem], llm=llm_sb, embedder=BagEmbedder(), split="all", limit=2, workdir=tmp_path,
                         memory_factory=sandboxed_factory(path, LIMITS))
    assert sandboxed.questions == inproc.questions == 2
    assert sandboxed.metrics == inproc.metrics
    assert [q.recalled for t in sandboxed.tasks for q in t.questions] == [q.recalled for t in inproc.tasks for q in t.questions]
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
        scratch = "/scratch" if jail != "none" else program.scratch
        assert env["HOME"] == env["TMPDIR"] == scratch
        assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "PYTHONHASHSEED", "TZ", "PYTHONDONTWRITEBYTECODE",
                            "PYTHONNOUSERSITE", "PYTHONIOENCODING", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
                            "MKL_NUM_THREADS", "ANONYMIZED_TELEMETRY"} | {k for k in env if k.startswith("LC_")} | {
            "PWD", "OLDPWD", "SHLVL", "_",  # set by the sh that sets up the mount namespace
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
    source = '''
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
'''
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
    source = '''
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
        return Recall(items=[RecallItem(content=f"{len(rows)}|{hits[0]}|{score}|{open('notes.txt').read().count(chr(10))}")])
'''
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
            "read_dataset.py": {"paths": [str(self.secret), str(dataset), str(SHARED_DATA), str(Path.home() / ".cache")]},
        }.get(filename)

    def assert_untouched(self) -> None:
        assert not self.target.exists(), "a file was created outside the sandbox"
        assert self.victim.read_text() == "keep me"
        assert self.archive.read_bytes() == self.archive_bytes
        assert self.secret.read_text() == SECRET_FILE_TEXT
        for stray in ("/tmp/agentmem-unhook-evil.txt", "/tmp/agentmem-forkexec-evil", "/tmp/agentmem-system-evil",
                      str(Path.home() / "agentmem-evil.txt")):
            assert not Path(stray).exists(), stray
        for source in (Path(__file__).resolve().parents[2] / "agentmem" / "memory.py",
                       Path(__file__).resolve().parents[2] / "agentmem" / "__init__.py"):
            assert "# pwned" not in source.read_text()


SECRET_FILE_TEXT = "the-host-secret-7f3a9c"
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


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
]
# the unshare backend builds the same tree as bubblewrap: the escape attempts run on it too
ESCAPES = {"write_outside.py", "delete_outside.py", "dirfd_escape.py", "symlink_read.py", "proc_tricks.py",
           "proc_environ.py", "network.py", "segfault_real.py", "ignore_sigterm.py", "fill_disk.py", "write_source.py",
           "tamper_archive.py", "peek_answers.py", "read_dataset.py", "caught_denial.py", "memory_hog.py"}


def _hostile_params() -> list[Any]:
    out = []
    for case in HOSTILE_CASES:
        for mode in JAIL_MODES:
            if mode == "unshare" and "bwrap" in JAIL_MODES and case[0] not in ESCAPES:
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


def _scratch_dirs() -> set[str]:
    return {str(p) for p in Path(tempfile.gettempdir()).glob("agentmem-sandbox-*")}


@pytest.mark.parametrize(("case", "jail"), _hostile_params())
def test_hostile_program_is_contained(case, jail, host, tmp_path):
    filename, op, kind, fragment = case
    before = _scratch_dirs()
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
    assert _scratch_dirs() <= before
    host.assert_untouched()


# The jail alone (audit hook off): the escapes that the hook normally stops first must still fail,
# because the private root holds nothing to reach. The programs catch every error and report what they got.
JAIL_ALONE = ["dirfd_escape.py", "symlink_read.py", "proc_tricks.py", "read_dataset.py", "write_outside.py",
              "remount_rw.py", "write_source.py"]


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

    monkeypatch.setattr(jail_module, "_probed", {"bwrap": "bwrap is not installed", "unshare": "unshare is not installed"})
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
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        with pytest.raises(CandidateFailed) as failed:
            program = _program(HOSTILE / "network.py", tmp_path, params={"host": "127.0.0.1", "port": port})
            program.recall(Query(text="x"))
        assert failed.value.kind == "denied" and f"('127.0.0.1', {port})" in str(failed.value)
        server.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.accept()  # nobody came
    finally:
        server.close()


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


def test_the_run_goes_on_after_a_hostile_candidate(tmp_path):
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    env = ToolPrefsEnvironment()
    with pytest.raises(CandidateFailed) as failed:
        run_eval(env, ["loop"], llm=MeteredFakeLLM(env), embedder=BagEmbedder(), split="all", limit=1, workdir=tmp_path,
                 memory_factory=sandboxed_factory(HOSTILE / "loop_recall.py", LIMITS))
    assert failed.value.kind == "timeout"
    result = run_eval(env, ["notes"], llm=MeteredFakeLLM(env), embedder=BagEmbedder(), split="all", limit=1,
                      workdir=tmp_path, memory_factory=sandboxed_factory(BENIGN / "notes.py", LIMITS))
    assert result.questions == 1 and result.metrics["param_accuracy"] == 1.0
    assert not list(tmp_path.glob("agentmem-eval-*"))


# --------------------------------------------------------------------------- validation


def test_validate_program_reports_stage_and_a_one_line_error():
    llm, emb = MeteredFakeLLM(), BagEmbedder()
    ok = validate_program((BENIGN / "notes.py").read_text(), llm=llm, embedder=emb, limits=LIMITS)
    assert ok.ok and ok.stage is None and ok.name == "notes"

    syntax = validate_program("def broken(:\n", llm=llm, embedder=emb, limits=LIMITS)
    assert not syntax.ok and syntax.stage == "import" and "syntax error at line 1" in syntax.error

    raises = validate_program("import json\nraise ValueError('boom at import')\n", llm=llm, embedder=emb, limits=LIMITS)
    assert raises.stage == "import" and "boom at import" in raises.error and "ValueError" in raises.traceback

    none = validate_program("from agentmem.memory import MemoryProgram\nX = 1\n", llm=llm, embedder=emb, limits=LIMITS)
    assert none.stage == "interface" and "exactly one MemoryProgram subclass" in none.error



def test_validate_program_checks_the_interface_and_runs_a_smoke_test():
    llm, emb = MeteredFakeLLM(), BagEmbedder()
    abstract = validate_program(
        "from agentmem.memory import MemoryProgram\nclass P(MemoryProgram):\n    pass\n", llm=llm, embedder=emb, limits=LIMITS
    )
    assert abstract.stage == "interface" and "recall" in abstract.error

    greedy = validate_program(
        "from agentmem.memory import MemoryProgram\nfrom agentmem.types import Recall, RecallItem\n"
        "class P(MemoryProgram):\n    def recall(self, q):\n"
        "        return Recall(items=[RecallItem(content='word ' * 500, tokens=500)])\n",
        llm=llm, embedder=emb, limits=LIMITS,
    )
    assert greedy.stage == "smoke" and "over the budget" in greedy.error

    crashing = validate_program(
        "from agentmem.memory import MemoryProgram\nclass P(MemoryProgram):\n    def recall(self, q):\n"
        "        return {}['missing']\n", llm=llm, embedder=emb, limits=LIMITS,
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
    sandboxed = run_eval(env, ["notes"], llm=local_llm, embedder=embedder, split="validation", limit=1, workdir=tmp_path,
                         memory_factory=sandboxed_factory(path, SandboxLimits(op_seconds=60, memory_mb=1024)))
    inproc = run_eval(env, [str(path)], llm=local_llm, embedder=embedder, split="validation", limit=1, workdir=tmp_path)
    assert sandboxed.questions == inproc.questions == 1
    assert sandboxed.cost.by_caller["notes.reflect"]["calls"] == inproc.cost.by_caller["notes.reflect"]["calls"] >= 1
    assert local_llm.meter.total().calls - before == sandboxed.cost.llm_calls + sandboxed.cost.cache_hits + inproc.cost.llm_calls + inproc.cost.cache_hits
    # same recalled context (memory is deterministic); the model's answers may differ only by sampling noise
    assert [q.recalled for t in sandboxed.tasks for q in t.questions] == [q.recalled for t in inproc.tasks for q in t.questions]
    assert sandboxed.metrics["evidence_recall"] == inproc.metrics["evidence_recall"]


# --------------------------------------------------------------------------- no answer reaches a candidate


def test_no_expected_answer_ever_reaches_the_worker(tmp_path, monkeypatch):
    """Every frame the controller sends a candidate during a toolprefs evaluation is free of the expected calls.

    The worker sees what the agent observed (sessions), queries and episodes; the expected tool call, its
    arguments, which parameters are memory-only, their grounding and their stale values stay with the scorer.
    """
    import json

    from agentmem_evolve import protocol
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    env = ToolPrefsEnvironment()
    sent: list[str] = []
    real_write = protocol.write_frame

    def recording(fd: int, message: dict[str, Any], max_bytes: int = protocol.DEFAULT_MAX_BYTES) -> None:
        sent.append(json.dumps(message, default=str))
        real_write(fd, message, max_bytes)

    monkeypatch.setattr(protocol, "write_frame", recording)
    result = run_eval(env, ["notes"], llm=MeteredFakeLLM(env), embedder=BagEmbedder(), split="all", limit=4,
                      workdir=tmp_path, memory_factory=sandboxed_factory(BENIGN / "notes.py", LIMITS))
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
def test_a_candidate_cannot_obtain_any_expected_answer(jail, tmp_path):
    """The strongest peeker: every route to the answers at once (import, regenerate, read files), catching denials."""
    source = '''
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
'''
    from agentmem_environments.toolprefs import ToolPrefsEnvironment

    env = ToolPrefsEnvironment()
    with pytest.raises(CandidateFailed) as failed:
        run_eval(env, ["peeker"], llm=MeteredFakeLLM(env), embedder=BagEmbedder(), split="test", limit=2,
                 workdir=tmp_path, memory_factory=sandboxed_factory(source, _limits(jail)))
    assert failed.value.kind == "denied" and "agentmem_environments" in str(failed.value)
