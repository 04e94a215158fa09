"""benchmarks/evolve/summarize.py: the committed summary of a run, from a small constructed run directory."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import RunConfig
from agentmem_evolve.proxy import REJECTED_STATE

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "evolve" / "summarize.py"
SEED_SRC = 'class Notes(MemoryProgram):\n    """Keeps notes."""\n    name = "notes"\n    TOP_K = 4\n'
BEST_SRC = SEED_SRC.replace("TOP_K = 4", "TOP_K = 8")
CUT_SRC = SEED_SRC.replace("TOP_K = 4", "TOP_K = 1")


@pytest.fixture(scope="module")
def summarize():
    spec = importlib.util.spec_from_file_location("summarize", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scored(pid: str, stage: str, scores: list[float]) -> EvaluationRecord:
    return EvaluationRecord(
        program_id=pid,
        stage=stage,
        split={"proxy": "train", "screen": "train", "select": "validation", "test": "test"}[stage],
        key=f"{stage}:k",
        score=sum(scores) / len(scores),
        per_instance={f"q{i}": s for i, s in enumerate(scores)},
        cost={"llm_calls": 0 if stage == "proxy" else len(scores), "prompt_tokens": 100 * len(scores)},
    )


@pytest.fixture
def run_dir(tmp_path):
    """A finished run: a seed, a child that beats it on test, one cut by the proxy, one invalid, a failed proposal."""
    run_dir = tmp_path / "run"
    RunConfig.model_validate({"seeds": ["notes"], "environment": {"name": "toolprefs"}}).write(run_dir / "config.toml")
    with Archive(run_dir) as archive:
        seed = ProgramRecord(source=SEED_SRC, status="valid", meta={"seed": "notes"})
        best = ProgramRecord(
            source=BEST_SRC,
            parents=[seed.id],
            operator="structural:add-manager",
            generation=1,
            status="valid",
            meta={"rationale": "add the supersede manager"},
        )
        cut = ProgramRecord(source=CUT_SRC, parents=[seed.id], operator="mutate", generation=1, status="valid")
        broken = ProgramRecord(
            source="def (:\n", parents=[seed.id], operator="reflective", generation=1, status="invalid", error="bad"
        )
        for p in (seed, best, cut, broken):
            archive.add_program(p)
        archive.set_state("iteration_0_proposals", [best.id, cut.id, broken.id, None])
        archive.set_state("iteration", 1)
        archive.set_state(REJECTED_STATE, [cut.id])
        archive.set_state("elapsed", 1234.5)
        archive.set_state("controller_spend", {"llm_calls": 2, "tokens": 900})
        for pid, proxy in ((seed.id, 0.5), (best.id, 0.8), (cut.id, 0.1)):
            archive.record_evaluation(scored(pid, "proxy", [proxy] * 10))
        archive.record_evaluation(
            scored(seed.id, "select", [0.4] * 30).model_copy(update={"metrics": {"f1": 0.4, "evidence_recall": 0.5}})
        )
        archive.record_evaluation(scored(best.id, "select", [0.4] * 10 + [0.8] * 20))
        archive.record_evaluation(scored(seed.id, "test", [0.4] * 40))
        archive.record_evaluation(scored(best.id, "test", [0.4] * 10 + [0.9] * 30))
        archive.log_event("proposal_failed", operator="reflective", parent=seed.id, reason="no reply")
        archive.log_event("judged", id=best.id, against="parent", replaces=True, wins=20, losses=0)
    return run_dir, {"seed": seed, "best": best, "cut": cut}


def test_a_run_is_summarized_into_status_report_and_diff(summarize, run_dir, tmp_path):
    run, programs = run_dir
    out = tmp_path / "out"
    assert summarize.main([str(run), str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"status.json", "report.md", "best.diff", "config.toml"}

    status = json.loads((out / "status.json").read_text())
    assert status["git_commit"] and status["command"].startswith("python benchmarks/evolve/summarize.py")
    assert status["run_dir"] == "run"  # not the machine's path
    assert status["funnel"] == {
        "proposed": 4,
        "failed_proposals": 1,
        "valid": 2,
        "invalid": 1,
        "screened_out_by_proxy": 1,
        "scored_with_llm": 1,
        "reached_select": 1,
    }
    assert status["best"]["id"] == programs["best"].id
    assert status["test"]["verdict"] == "better" and not status["test"]["flagged"]
    (vs_seed,) = status["test"]["vs_seeds"]
    assert vs_seed["n"] == 40 and vs_seed["low"] > 0 and vs_seed["own_seed"]
    assert status["diff"] == {"seed": programs["seed"].id, "best": programs["best"].id}
    assert status["spend"]["seconds"] == 1234.5
    # what the docs quote beside the scores: each paired verdict and each evaluation's own metrics
    assert status["judgements"] == [
        {"id": programs["best"].id, "against": "parent", "replaces": True, "wins": 20, "losses": 0}
    ]
    assert status["metrics"][programs["seed"].id]["select"] == {"f1": 0.4, "evidence_recall": 0.5}

    report = (out / "report.md").read_text()
    assert "| proposed | failed proposals | valid |" in report and "| 4 | 1 | 2 | 1 | 1 | 1 | 1 |" in report
    assert "Verdict: **better**" in report and f"| notes | {programs['seed'].id} | yes |" in report
    assert "structural:add-manager" in report and "add the supersede manager" in report
    assert "n=40" in report  # every score with its n

    diff = (out / "best.diff").read_text()
    assert "-    TOP_K = 4" in diff and "+    TOP_K = 8" in diff
    assert (out / "config.toml").read_text() == (run / "config.toml").read_text()


def test_a_directory_that_is_not_a_run_is_one_line(summarize, tmp_path, capsys):
    assert summarize.main([str(tmp_path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is not an evolution run" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
