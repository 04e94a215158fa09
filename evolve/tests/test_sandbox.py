"""The sandbox for untrusted memory programs: benign programs behave as in-process, hostile ones are contained.

Limits here are small so that every test ends in seconds: 3 s wall per op,
512 MB resident, 2 GiB of address space (chromadb + numpy map about 1 GB
before any data), 256 KB of printed output.
"""

from __future__ import annotations

import os
import re
import socket
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

from agentmem_evolve.sandbox import (
    CandidateFailed,
    SandboxedProgram,
    SandboxLimits,
    sandbox_capabilities,
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


def _group_gone(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
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


def test_worker_environment_is_scrubbed_and_walls_are_up(tmp_path):
    program = _program(HOSTILE / "env_secrets.py", tmp_path)
    try:
        got = program.recall(Query(text="keys?"))
        text = got.text()
        assert SECRET not in text and "OPENAI_API_KEY" not in text and "AGENTMEM_SECRET" not in text
        env = eval(got.items[1].content)  # the worker's whole environment, as it saw it
        assert env["HOME"] == env["TMPDIR"] == os.path.realpath(program.scratch) or env["HOME"] == program.scratch
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
    if sandbox_capabilities()["network_namespace"]:
        assert program.capabilities["network_namespace"] is True
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
    ("write_outside.py", "observe", "denied", "outside the scratch directory"),
    ("network.py", "recall", "denied", "socket.connect to ('1.1.1.1', 80)"),
    ("segfault_ctypes.py", "observe", "denied", "ctypes"),
    ("segfault_real.py", "recall", "crash", "crash: worker died with SIGSEGV during recall"),
    ("huge_recall.py", "recall", "output", "output: recall"),
    ("thread_leak.py", "observe", "denied", "thread"),
    ("sys_exit.py", "observe", "crash", "sys.exit(3)"),
    ("os_exit.py", "observe", "crash", "crash: worker exited with code 7 during observe"),
    ("unhook.py", "observe", "denied", "denied"),
    ("delete_outside.py", "observe", "denied", "outside the scratch directory"),
]


def _trip(program: SandboxedProgram, op: str) -> None:
    if op == "observe":
        program.observe(Event.message("hello"))
    elif op == "recall":
        program.recall(Query(text="hello"))
    program.reflect(Episode())
    program.close()


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=[c[0] for c in HOSTILE_CASES])
def test_hostile_program_is_contained(case, tmp_path):
    filename, op, kind, fragment = case
    params: dict[str, Any] | None = None
    victim = tmp_path / "victim" / "precious.txt"
    evil = Path(f"/tmp/agentmem-evil-{os.getpid()}.txt")
    if filename == "write_outside.py":
        params = {"target": str(evil)}
    if filename == "delete_outside.py":
        victim.parent.mkdir()
        victim.write_text("keep me")
        params = {"victim": str(victim)}
    started = time.monotonic()
    program: SandboxedProgram | None = None
    with pytest.raises(CandidateFailed) as failed:
        program = _program(HOSTILE / filename, tmp_path, params=params)
        _trip(program, op)
    err = failed.value
    assert err.kind == kind, str(err)
    assert fragment in str(err), str(err)
    assert "\n" not in str(err) and len(str(err)) < 600
    assert time.monotonic() - started < 20
    if filename == "loop_import.py":
        assert err.stage == "import"
    # contained: the worker's whole process group is gone, its scratch removed, nothing written outside
    scratch_dirs = list(Path(os.environ.get("TMPDIR", "/tmp")).glob("agentmem-sandbox-*"))
    if program is not None:
        assert _group_gone(program._proc.pid)
        assert not os.path.exists(program.scratch) and program.scratch not in map(str, scratch_dirs)
    assert not evil.exists()
    assert not Path("/tmp/agentmem-unhook-evil.txt").exists()
    assert not Path("/tmp/agentmem-forkexec-evil").exists()
    assert not (Path.home() / "agentmem-evil.txt").exists()
    if filename == "delete_outside.py":
        assert victim.read_text() == "keep me"


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
