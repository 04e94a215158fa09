"""The main job end to end with the real local model: eval and a tiny evolution."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from agentmem.evaluation import run_eval
from agentmem_environments.locomo.demo import DEMO_PATH

pytestmark = pytest.mark.llm


def test_eval_episodic_on_locomo_with_the_local_model(local_llm, embedder, locomo6):
    result = run_eval("locomo", ["episodic"], llm=local_llm, embedder=embedder, data=locomo6, split="all", limit=6)
    assert result.questions == 6
    assert 0.0 <= result.metrics["f1"] <= 1.0
    # recall surfaces annotated evidence for most of these questions
    assert result.metrics["evidence_recall"] > 0.3
    assert result.cost.llm_calls == 6
    assert result.cost.prompt_tokens > 6 * 100
    answers = [q.prediction for t in result.tasks for q in t.questions]
    assert all(a and not a.lstrip().startswith("{") for a in answers), answers


def test_eval_without_memory_recalls_nothing(local_llm, embedder):
    result = run_eval("locomo", ["none"], llm=local_llm, embedder=embedder, data=DEMO_PATH, split="all", limit=3)
    assert result.metrics["evidence_recall"] == 0.0
    assert result.cost.llm_calls == 3


def test_cli_eval_prints_metrics_and_writes_json(tmp_path):
    """The command prints and writes its metrics (the demo set the project ships: no data file needed)."""
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmem.cli.main",
            "eval",
            "--env",
            "locomo",
            "--memory",
            "episodic",
            "--data",
            str(DEMO_PATH),
            "--limit",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "evidence_recall" in proc.stdout and "f1" in proc.stdout
    data = json.loads(out.read_text())
    assert data["questions"] == 2 and data["cost"]["llm_calls"] == 2


def test_cli_bad_data_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    proc = subprocess.run(
        [sys.executable, "-m", "agentmem.cli.main", "eval", "--env", "locomo", "--memory", "none", "--data", str(bad)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error:") and "broken.json" in proc.stderr
