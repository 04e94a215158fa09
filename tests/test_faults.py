"""Fault injection: `agentmem eval` and `agentmem evolve` against a model server that fails, and runs killed with -9.

The server is :class:`tests.fault_proxy.FaultProxy`, a local OpenAI-compatible
endpoint the CLI reaches through litellm (``--model openai/fault --api-base
...``) exactly as it reaches vLLM. It refuses connections, answers 500,
stalls, drops the connection mid-reply, sends malformed JSON, or answers
with a canned valid reply at once (so no model is needed and the runs are
short). What a user must see:

- each run either finishes or stops with one line saying what failed and how
  to go on (exit status 75, "try again later"), never a traceback and never
  a score recorded for questions the model did not answer;
- ``kill -9`` at random points of a grid and of an evolution run loses no
  finished evaluation and repeats none, and the next start removes the
  scratch directories the killed run left in the temp dir.

Sizes are small on purpose (toolprefs and the LoCoMo demo, two questions a
cell, the LLM-free memories); the kill points come from a seeded RNG.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.fault_proxy import FaultProxy

pytestmark = pytest.mark.timeout(900)

AGENTMEM = str(Path(sys.executable).parent / "agentmem")
SERVER_FAULTS = ["refuse", "http500", "stall", "drop", "malformed"]
EXIT_MODEL_UNAVAILABLE = 75


@pytest.fixture
def proxy():
    with FaultProxy() as server:
        yield server


@pytest.fixture
def scratch_tmp(tmp_path: Path) -> Path:
    """The temp dir the CLI runs with (TMPDIR): what a run leaves there is visible to the test."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def cli_env(tmp_path: Path, scratch_tmp: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("AGENTMEM_MODEL", "AGENTMEM_API", "AGENTMEM_CONFIG"))
    }
    env.update(
        {
            "TMPDIR": str(scratch_tmp),
            "AGENTMEM_HOME": str(tmp_path / "home"),
            "AGENTMEM_CACHE": "0",
            "AGENTMEM_LLM_TIMEOUT": "1.5",  # a stalled server costs seconds, not the default two minutes
            "AGENTMEM_MAX_RETRIES": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "COLUMNS": "200",
        }
    )
    return env


def model_flags(proxy: FaultProxy) -> list[str]:
    return ["--model", "openai/fault", "--api-base", proxy.api_base]


def leftovers(scratch_tmp: Path) -> list[str]:
    return sorted(p.name for p in scratch_tmp.iterdir() if p.name.startswith("agentmem-"))


def processes_of(scratch_tmp: Path) -> list[int]:
    """Live processes started for this test's runs: by the TMPDIR they inherited, or (jails, sandboxed workers,
    whose environment is scrubbed) a path under it on their command line or as their working directory."""
    marker = f"TMPDIR={scratch_tmp}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if (
                marker in (entry / "environ").read_bytes().split(b"\0")
                or str(scratch_tmp).encode() in (entry / "cmdline").read_bytes()
                or os.readlink(entry / "cwd").startswith(str(scratch_tmp))
            ):
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_gone(scratch_tmp: Path, seconds: float = 30.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (alive := processes_of(scratch_tmp)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def assert_one_line_stop(done: subprocess.CompletedProcess[str], *, resume_hint: str) -> None:
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    assert done.returncode == EXIT_MODEL_UNAVAILABLE, output
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "LLM call to openai/fault" in errors[0] and resume_hint in errors[0], errors[0]


# -- agentmem eval ------------------------------------------------------------------------------
@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, scratch_tmp: Path):
    """Run the real ``agentmem`` entry point in this process (the fault cases need no fresh interpreter each)."""
    import tempfile

    from agentmem.cli.main import main

    for key, value in cli_env(tmp_path, scratch_tmp).items():
        if key.startswith(("AGENTMEM_", "LITELLM_")):
            monkeypatch.setenv(key, value)
    for key in ("AGENTMEM_MODEL", "AGENTMEM_API_BASE", "AGENTMEM_API_KEY", "AGENTMEM_CONFIG"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(scratch_tmp))
    monkeypatch.chdir(tmp_path)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        monkeypatch.setattr(sys, "argv", ["agentmem", *args])
        code: Any = 0
        try:
            main()  # an exception escaping here is the traceback a user would see: the test fails on it
        except SystemExit as exc:
            code = exc.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, code if isinstance(code, int) else 1, captured.out, captured.err)

    return run


@pytest.mark.parametrize("fault", SERVER_FAULTS)
def test_eval_stops_with_one_line_and_writes_no_score_when_the_server_fails(fault, proxy, cli, tmp_path, scratch_tmp):
    proxy.ok_first = 1  # the first question is answered, then the server fails: a fault in the middle of the run
    proxy.fault = fault
    out = tmp_path / "result.json"
    done = cli("eval", "--env", "toolprefs", "--memory", "none", "--limit", "3", "--out", str(out), *model_flags(proxy))
    assert_one_line_stop(done, resume_hint="run it again")
    # before: the agent took each failed call for a bad reply, and the run wrote a score of 0 for those questions
    assert not out.exists()
    if fault != "refuse":  # (a refused connection never reaches the proxy to be counted)
        assert proxy.by_fault[fault] == 2  # the failing call was retried once (AGENTMEM_MAX_RETRIES=1), then it stopped
    assert leftovers(scratch_tmp) == []


def test_eval_rides_out_a_transient_fault_and_scores_a_bad_reply_as_a_wrong_answer(proxy, cli, tmp_path, scratch_tmp):
    # one 500, then answers: the retry hides it
    proxy.fault, proxy.fail_first = "http500", 1
    out = tmp_path / "transient.json"
    done = cli("eval", "--env", "toolprefs", "--memory", "none", "--limit", "2", "--out", str(out), *model_flags(proxy))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["questions"] == 2 and proxy.by_fault["http500"] == 1
    predictions = [q["prediction"] for task in result["tasks"] for q in task["questions"]]
    assert not any(p.startswith("(no call:") for p in predictions), predictions
    # a reply that arrives but whose content is not valid JSON is the model's fault: that question scores 0
    proxy.fault, proxy.fail_first = "bad_content", None
    out = tmp_path / "bad-content.json"
    done = cli("eval", "--env", "toolprefs", "--memory", "none", "--limit", "2", "--out", str(out), *model_flags(proxy))
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    predictions = [q["prediction"] for task in result["tasks"] for q in task["questions"]]
    assert len(predictions) == 2 and all(p.startswith("(no call:") for p in predictions), predictions
    assert leftovers(scratch_tmp) == []


GRID = ["--env", "toolprefs,locomo", "--memory", "none,full-context", "--limit", "2"]


def _cells(out_dir: Path) -> dict[str, bytes]:
    cells = out_dir / "cells"
    return {p.name: p.read_bytes() for p in sorted(cells.glob("*.json"))} if cells.is_dir() else {}


def _kill_at_request(proxy: FaultProxy, proc: subprocess.Popen, request: int, delay: float) -> threading.Event:
    """SIGKILL ``proc`` when the proxy gets its ``request``-th request (``delay`` > 0: that long after it)."""
    killed = threading.Event()
    first = proxy.requests

    def kill() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            killed.set()

    def on_request(n: int) -> None:
        if n - first == request and not killed.is_set():
            if delay <= 0:
                kill()  # while the request is in flight: the reply never arrives
            else:
                threading.Timer(delay, kill).start()  # somewhere after the reply: scoring, storing, writing

    proxy.on_request = on_request
    return killed


def test_a_grid_killed_at_random_points_loses_no_cell_and_redoes_none(proxy, tmp_path, scratch_tmp):
    rng = random.Random(20240612)
    env = cli_env(tmp_path, scratch_tmp)
    out_dir = tmp_path / "grid"
    command = [AGENTMEM, "eval", *GRID, "--out-dir", str(out_dir), *model_flags(proxy)]
    kept: dict[str, bytes] = {}
    kills = 0
    stranded: list[str] = []
    for _ in range(2):
        remaining = 8 - 2 * len(kept)  # 4 cells x 2 questions, one request each: kill at one still to come
        if remaining <= 0:
            break
        proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
        )
        killed = _kill_at_request(proxy, proc, rng.randint(1, remaining), rng.choice([0.0, rng.uniform(0.01, 0.4)]))
        output, _ = proc.communicate(timeout=300)
        proxy.on_request = None
        assert "Traceback" not in output, output
        now = _cells(out_dir)
        for name, data in kept.items():
            assert now.get(name) == data, f"finished cell {name} was lost or rewritten by a killed run"
        kept = now
        if not killed.is_set():
            assert proc.returncode == 0, output
            break
        kills += 1
        stranded += leftovers(scratch_tmp)  # the killed run's scratch: it could not remove it
    assert kills >= 1
    final = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert final.returncode == 0 and "Traceback" not in final.stdout + final.stderr, final.stdout + final.stderr
    cells = _cells(out_dir)
    assert len(cells) == 4
    for name, data in kept.items():
        assert cells[name] == data, f"finished cell {name} was run again"
    resumed_lines = [line for line in final.stdout.splitlines() if "(resumed from an earlier run)" in line]
    assert len(resumed_lines) == len(kept)
    summary = json.loads((out_dir / "grid.json").read_text())
    assert len(summary["rows"]) == 4
    assert not list(out_dir.rglob("*.tmp"))
    assert wait_gone(scratch_tmp) == []
    assert stranded and leftovers(scratch_tmp) == []  # the killed runs' eval scratch was swept by the next start


# -- agentmem evolve ----------------------------------------------------------------------------
def _evolve_config(tmp_path: Path, *, iterations: int = 1) -> Path:
    path = tmp_path / "evolve.toml"
    path.write_text(f"""
seeds = ["episodic"]
seed = 3

[environment]
name = "toolprefs"
minibatch = 2
validation_limit = 2
test_limit = 2

[budget]
iterations = {iterations}

[cascade]
proxy_questions = 20

[proposers]
children_per_iteration = 1
repair_attempts = 0
weights = {{ mutate = 1.0 }}

[execution]
executor = "local"

[sandbox]
wall_seconds_per_op = 60
""")
    return path


def _jail_flags() -> list[str]:
    from agentmem_evolve.jail import available_backends

    return [] if any(reason is None for reason in available_backends().values()) else ["--allow-unjailed"]


def _evaluations(run: Path) -> list[tuple[Any, ...]]:
    if not (run / "archive.sqlite").exists():
        return []
    con = sqlite3.connect(run / "archive.sqlite")
    try:
        return con.execute(
            "SELECT id, program_id, stage, key, status, score, finished_at FROM evaluations ORDER BY id"
        ).fetchall()
    finally:
        con.close()


def _evaluated_events(run: Path) -> Counter[tuple[str, str]]:
    con = sqlite3.connect(run / "archive.sqlite")
    try:
        rows = con.execute("SELECT payload FROM events WHERE kind = 'evaluated'").fetchall()
    finally:
        con.close()
    return Counter((json.loads(p)["id"], json.loads(p)["stage"]) for (p,) in rows)


def test_evolution_stops_at_each_server_fault_and_resumes_losing_nothing(proxy, tmp_path, scratch_tmp, monkeypatch):
    """One run meets every fault in turn, at seeded points; each stop keeps what finished, records no failure."""
    import tempfile

    from agentmem.config import Settings
    from agentmem.embeddings import default_embedder
    from agentmem.errors import LLMUnavailable
    from agentmem.evaluation import CachingEmbedder
    from agentmem.llm import LLM
    from agentmem_evolve.config import RunConfig
    from agentmem_evolve.controller import Controller
    from agentmem_evolve.executor import InlineExecutor

    monkeypatch.setattr(tempfile, "tempdir", str(scratch_tmp))
    rng = random.Random(99)
    run = tmp_path / "run"
    sandbox = {"wall_seconds_per_op": 60}
    if _jail_flags():
        sandbox["allow_unjailed"] = True
    cfg = RunConfig.from_dict(
        {
            "seeds": ["episodic"],
            "seed": 5,
            "environment": {"name": "toolprefs", "minibatch": 2, "validation_limit": 2, "test_limit": 2},
            "budget": {"iterations": 1},
            "cascade": {"proxy_questions": 20},
            "proposers": {"weights": {"mutate": 1.0}, "children_per_iteration": 1},
            "sandbox": sandbox,
        }
    )
    llm = LLM(
        "openai/fault",
        api_base=proxy.api_base,
        timeout=1.0,
        cache=False,
        retry_backoff=0.01,
        settings=Settings(max_retries=1),
    )
    embedder = CachingEmbedder(default_embedder())

    def controller(create: bool) -> Controller:
        kw = dict(
            executor=InlineExecutor(llm=llm, embedder=embedder), task_llm=llm, mutation_llm=llm, embedder=embedder
        )
        return Controller.create(run, cfg, **kw) if create else Controller.resume(run, **kw)

    kept: list[tuple[Any, ...]] = []
    for index, fault in enumerate(rng.sample(SERVER_FAULTS, len(SERVER_FAULTS))):
        proxy.ok_first, proxy.fault = rng.randint(0, 2), fault
        ctl = controller(create=index == 0)
        try:
            with pytest.raises(LLMUnavailable, match=f"agentmem evolve resume {run}"):
                ctl.run()
        finally:
            ctl.close()
        now = _evaluations(run)
        assert now[: len(kept)] == kept, f"{fault}: a finished evaluation was lost or rewritten"
        # before: the outage was taken for the candidate's answers, and every evaluation was recorded (scored 0)
        assert all(row[4] == "ok" for row in now), f"{fault}: the outage was recorded as an evaluation: {now}"
        kept = now
    proxy.fault = "ok"
    ctl = controller(create=False)
    try:
        summary = ctl.run()
    finally:
        ctl.close()
    after = _evaluations(run)
    assert after[: len(kept)] == kept and len(after) > len(kept)
    assert all(row[4] == "ok" for row in after)
    assert max(_evaluated_events(run).values()) == 1
    assert summary["iteration"] == 1 and any(row[2] == "test" for row in after)
    assert leftovers(scratch_tmp) == []


def test_an_evolution_run_killed_at_random_points_loses_and_repeats_no_evaluation(proxy, tmp_path, scratch_tmp):
    rng = random.Random(31337)
    env = cli_env(tmp_path, scratch_tmp)
    run = tmp_path / "run"
    config = _evolve_config(tmp_path)
    kept: list[tuple[Any, ...]] = []
    kills = 0
    for round_ in range(4):
        if round_ == 0:
            command = [
                AGENTMEM,
                "evolve",
                "run",
                "--config",
                str(config),
                "--run-dir",
                str(run),
                "--quiet",
                *model_flags(proxy),
                *_jail_flags(),
            ]
        else:
            command = [AGENTMEM, "evolve", "resume", str(run), "--quiet"]
        if round_ == 1:  # this time the server fails instead: the run stops by itself, with one line
            proxy.ok_first, proxy.fault = rng.randint(0, 3), rng.choice(SERVER_FAULTS)
            stopped = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
            assert_one_line_stop(stopped, resume_hint=f"agentmem evolve resume {run}")
            proxy.ok_first, proxy.fault = 0, "ok"
        else:
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path
            )
            # a run asks for about 10 tool calls (one per question); kill at a random one of the next few
            killed = _kill_at_request(proxy, proc, rng.randint(1, 6), rng.choice([0.0, rng.uniform(0.01, 0.5)]))
            output, _ = proc.communicate(timeout=600)
            proxy.on_request = None
            assert "Traceback" not in output, output
            if not killed.is_set():
                assert proc.returncode == 0, output
                break
            kills += 1
        now = _evaluations(run)
        assert now[: len(kept)] == kept, "a finished evaluation was lost or rewritten by a killed run"
        kept = now
    assert kills >= 1
    # the kill -9 took the pool and the sandboxes with it, or they end on their own
    assert wait_gone(scratch_tmp) == []
    final = subprocess.run(
        [AGENTMEM, "evolve", "resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert final.returncode == 0 and "Traceback" not in final.stdout + final.stderr, final.stdout + final.stderr
    after = _evaluations(run)
    assert after[: len(kept)] == kept
    keys = [(row[1], row[2], row[3]) for row in after]
    assert len(keys) == len(set(keys))
    assert max(_evaluated_events(run).values()) == 1  # and none was evaluated twice (the archive would keep the last)
    assert any(row[2] == "test" for row in after)
    assert wait_gone(scratch_tmp) == []
    assert leftovers(scratch_tmp) == []
