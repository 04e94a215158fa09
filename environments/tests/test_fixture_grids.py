"""Both new environments in an `agentmem eval` grid on their generated fixtures, with `none` and `episodic`.

The answering model is scripted (this is plumbing: cells, reports, metrics
per type and competency); the memory, the embedder and the stores are real,
so the LLM-free proxies say whether episodic memory brought the evidence back.
The real-model grids quoted in docs/evaluation.md come from
``benchmarks/env_fixture_grids.sh``.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from agentmem.errors import ModelError
from agentmem.grid import run_grid
from tests.helpers import FixedReplyLLM


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    for var in ("AGENTMEM_LONGMEMEVAL_DATA", "AGENTMEM_MEMORYAGENTBENCH_DATA"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(url, dest, **kw):
        raise ModelError(f"download of {url} failed (no network in tests)")

    monkeypatch.setattr("agentmem.fetch.http_download", refuse)


@pytest.mark.timeout(600)
def test_grid_of_both_environments_with_none_and_episodic(tmp_path, embedder):
    llm = FixedReplyLLM("I don't know")
    out = tmp_path / "grid"
    grid = run_grid(
        ["longmemeval", "memoryagentbench"],
        [["none"], ["episodic"]],
        llm=llm,
        out_dir=out,
        split="all",
        embedder=embedder,
    )
    cells = {(c.env, "+".join(c.memory)): c for c in grid.cells}
    assert set(cells) == {
        ("longmemeval", "none"),
        ("longmemeval", "episodic"),
        ("memoryagentbench", "none"),
        ("memoryagentbench", "episodic"),
    }
    assert llm.calls == 2 * (14 + 28)
    lme_none, lme_epi = cells[("longmemeval", "none")].metrics, cells[("longmemeval", "episodic")].metrics
    assert lme_none["questions"] == lme_epi["questions"] == 14
    assert lme_none.get("session_recall", 0.0) == 0.0 and lme_epi["session_recall"] > 0.5
    assert lme_epi["f1/abstention"] == 1.0 and "f1/temporal-reasoning" in lme_epi  # "I don't know" is right only there
    mab_none, mab_epi = cells[("memoryagentbench", "none")].metrics, cells[("memoryagentbench", "episodic")].metrics
    assert mab_none["questions"] == mab_epi["questions"] == 28
    assert {"accuracy/AR", "accuracy/TTL", "accuracy/LRU", "accuracy/CR"} <= set(mab_epi)
    assert mab_epi["answer_in_recall"] > mab_none.get("answer_in_recall", 0.0)
    report = (out / "report.md").read_text()
    assert "longmemeval" in report and "memoryagentbench" in report
    assert json.loads((out / "grid.json").read_text())


def test_eval_refuses_the_local_model_as_judge_in_one_line():
    from agentmem.cli.main import app

    result = CliRunner().invoke(app, ["eval", "--env", "longmemeval", "--memory", "none", "--judge-model", "local"])
    assert result.exit_code == 2
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "small embedded model" in errors[0], result.output
