"""A real tiny evolution run with the local model: it runs, survives being killed, resumes and exports.

This is the issue's "done when": toolprefs, two questions per LLM-scored
evaluation, one iteration; the process is SIGKILLed midway (once the seed is
scored), `agentmem evolve resume` finishes it with every completed
evaluation intact and none done twice, and the exported plugin is found by
`agentmem plugins list`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.llm

BIN = Path(sys.executable).parent


def _config(tmp_path: Path, **over) -> Path:
    text = f"""
seeds = ["episodic"]
seed = 0

[environment]
name = "toolprefs"
minibatch = 2
validation_limit = 2
test_limit = 2

[budget]
iterations = {over.get("iterations", 1)}

[cascade]
proxy_questions = 20  # the stage runs and gates as with 200; each program's proxy costs ~5 s, not ~55

[proposers]
children_per_iteration = 1
repair_attempts = 1
weights = {{ mutate = 1.0 }}

[selection]
strategy = "{over.get("strategy", "pareto")}"

[execution]
executor = "{over.get("executor", "local")}"
"""
    path = tmp_path / "run.toml"
    path.write_text(text)
    return path


def _evaluations(run: Path) -> list[tuple]:
    con = sqlite3.connect(run / "archive.sqlite")
    try:
        return con.execute("SELECT program_id, stage, key, score, finished_at FROM evaluations ORDER BY id").fetchall()
    finally:
        con.close()


def _wait_for(predicate, timeout: float, proc: subprocess.Popen) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(
                f"the run ended before the kill point (exit {proc.returncode}): "
                f"{proc.stdout.read() if proc.stdout else ''}"
            )
        time.sleep(0.5)
    raise AssertionError("the run never reached the kill point")


def test_run_killed_midway_resumes_without_redoing_work_and_exports(tmp_path, local_llm):
    run = tmp_path / "run"
    env = {**os.environ, "AGENTMEM_EVOLVE_TEST": "1"}
    proc = subprocess.Popen(
        [str(BIN / "agentmem"), "evolve", "run", "--config", str(_config(tmp_path)), "--run-dir", str(run), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        # kill once the seed is scored (proxy, screen, select): the iteration and the test stage are left to resume
        _wait_for(lambda: (run / "archive.sqlite").exists() and len(_evaluations(run)) >= 3, 600, proc)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _evaluations(run)
    assert len(before) >= 3

    resumed = subprocess.run(
        [str(BIN / "agentmem"), "evolve", "resume", str(run), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    after = _evaluations(run)
    assert after[: len(before)] == before  # nothing completed was lost or rewritten
    keys = [(p, stage, key) for p, stage, key, _, _ in after]
    assert len(keys) == len(set(keys))  # and nothing was evaluated twice
    assert any(stage == "test" for _, stage, _ in keys)  # the best was scored on the held-out split

    status = subprocess.run(
        [str(BIN / "agentmem"), "evolve", "status", str(run)], capture_output=True, text=True, timeout=120
    )
    assert status.returncode == 0, status.stderr
    report = subprocess.run(
        [str(BIN / "agentmem"), "evolve", "report", str(run)], capture_output=True, text=True, timeout=120
    )
    assert report.returncode == 0, report.stderr
    html = (run / "report.html").read_text()
    assert "<svg" in html

    out = tmp_path / "evolved-prefs"
    export = [str(BIN / "agentmem"), "evolve", "export", str(run), "--name", "evolved-prefs", "--out", str(out)]
    exported = subprocess.run(export, capture_output=True, text=True, timeout=120)
    if (
        exported.returncode != 0
    ):  # on 3 test questions the best seldom beats its seed with confidence: refused, one line
        assert exported.returncode == 2 and "--force" in exported.stdout + exported.stderr, (
            exported.stdout + exported.stderr
        )
        assert not out.exists()
        exported = subprocess.run(export + ["--force"], capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    package = next(p.parent for p in out.rglob("pyproject.toml"))  # the package directory `export` printed
    site = tmp_path / "site"
    uv = shutil.which("uv") or pytest.skip("uv is not on PATH")
    install = subprocess.run(
        [uv, "pip", "install", "--no-deps", "--python", sys.executable, "--target", str(site), str(package)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    listed = subprocess.run(
        [str(BIN / "agentmem"), "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert listed.returncode == 0, listed.stderr
    plugins = {p["name"]: p for p in json.loads(listed.stdout)}
    assert plugins["evolved-prefs"]["status"] == "ok", plugins.get("evolved-prefs")


def test_ray_executor_scores_a_program_on_a_local_ray_instance(local_llm):
    from agentmem_evolve import program as prog
    from agentmem_evolve.evaluator import EvalJob
    from agentmem_evolve.executor import RayExecutor

    source, _ = prog.seed_source("episodic")
    job = EvalJob(
        program_id=prog.program_id(source), source=source, stage="screen", env="toolprefs", split="train", limit=1
    )
    executor = RayExecutor(concurrency=1)
    try:
        outcomes = list(executor.map_unordered([job]))
    finally:
        executor.close()
    assert len(outcomes) == 1
    outcome = outcomes[0]
    assert outcome.status == "ok", outcome.reason
    assert outcome.per_instance and outcome.cost["questions"] == 1


def test_the_python_example_evolves_and_scores_on_test(tmp_path, local_llm):
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "evolve_from_python.py"
    spec = importlib.util.spec_from_file_location("evolve_from_python", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(str(tmp_path / "run"), iterations=1)
    assert summary["iteration"] == 1 and summary["best"] is not None
