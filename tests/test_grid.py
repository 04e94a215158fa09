"""`agentmem eval` over grids: environments x memory configurations, resumable, with reports."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from agentmem.errors import ConfigError
from agentmem.grid import params_for, parse_configs, run_grid
from agentmem_environments.locomo.demo import DEMO_PATH
from tests.helpers import FixedReplyLLM


def test_configs_split_on_commas_and_compose_on_plus():
    assert parse_configs("none,episodic, episodic+full-context") == [
        ["none"],
        ["episodic"],
        ["episodic", "full-context"],
    ]
    with pytest.raises(ConfigError, match="names no plugin"):
        parse_configs(" , ")


def test_params_go_to_the_members_that_declare_them():
    assert params_for(["episodic", "full-context"], {"top_k": 3}) == {"episodic": {"top_k": 3}}
    with pytest.raises(ConfigError, match="top_kk"):
        params_for(["episodic"], {"top_kk": 3})


def test_a_grid_gives_a_param_to_the_configurations_that_declare_it(tmp_path, embedder):
    """`--memory none,episodic -p top_k=3`: episodic gets it, none runs as it is; a key no cell knows is an error."""
    llm = FixedReplyLLM()
    grid = run_grid(
        ["locomo"],
        [["none"], ["episodic"]],
        llm=llm,
        out_dir=tmp_path / "grid",
        split="all",
        limit=1,
        data=str(DEMO_PATH),
        embedder=embedder,
        params={"top_k": 3},
    )
    assert [c.params for c in grid.cells] == [{}, {"episodic": {"top_k": 3}}]
    with pytest.raises(ConfigError, match="top_kk"):
        run_grid(
            ["locomo"],
            [["none"], ["episodic"]],
            llm=llm,
            out_dir=tmp_path / "bad",
            split="all",
            limit=1,
            data=str(DEMO_PATH),
            embedder=embedder,
            params={"top_kk": 3},
        )
    assert not (tmp_path / "bad" / "cells").exists()  # refused before any cell ran


def test_the_cli_gives_a_grid_param_to_the_configurations_that_declare_it(tmp_path):
    """`agentmem eval --memory none,episodic -p top_k=3` passes the check (none declares no top_k); a typo does not."""
    base = [
        sys.executable,
        "-m",
        "agentmem.cli.main",
        "eval",
        "--env",
        "locomo",
        "--data",
        str(DEMO_PATH),
        "--limit",
        "1",
        "--model",
        "openai/nothing",
        "--api-base",
        "http://127.0.0.1:9/v1",
    ]
    env = dict(os.environ, COLUMNS="200", AGENTMEM_MAX_RETRIES="0")
    typo = subprocess.run(
        [*base, "--memory", "none,episodic", "-p", "top_kk=3", "--out-dir", str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert typo.returncode != 0 and "top_kk" in typo.stdout + typo.stderr and "Traceback" not in typo.stderr
    grid = subprocess.run(
        [*base, "--memory", "none,episodic", "-p", "top_k=3", "--out-dir", str(tmp_path / "b")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert "top_k" not in grid.stdout + grid.stderr  # the check passed: what stops the run is the absent server
    assert "Traceback" not in grid.stderr


def test_grid_runs_every_cell_writes_reports_and_resumes_without_redoing(tmp_path, embedder):
    llm = FixedReplyLLM()
    out = tmp_path / "grid"
    command = ["agentmem", "eval", "--env", "locomo", "--memory", "none,full-context", "--limit", "2"]
    grid = run_grid(
        ["locomo"],
        [["none"], ["full-context"]],
        llm=llm,
        out_dir=out,
        split="all",
        limit=2,
        data=str(DEMO_PATH),
        embedder=embedder,
        command=command,
    )
    assert [c.memory for c in grid.cells] == [["none"], ["full-context"]]
    assert llm.calls == 4 and grid.resumed == []
    for name in (
        "grid.json",
        "grid.csv",
        "report.md",
        "report.html",
        "cells/locomo__none.json",
        "cells/locomo__full-context.json",
    ):
        assert (out / name).is_file(), name
    rows = list(csv.DictReader((out / "grid.csv").open()))
    assert [r["memory"] for r in rows] == ["none", "full-context"]
    assert {"score", "f1", "evidence_recall", "tokens_per_question", "llm_calls", "seconds"} <= set(rows[0])
    md = (out / "report.md").read_text()
    assert "| none |" in md and "| full-context |" in md
    html = (out / "report.html").read_text()
    assert html.count("<svg") == 3 and "full-context" in html
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "") and "<script" not in html
    # provenance: the command as run, agentmem's version and commit, the model, in grid.json, each cell and the report
    import agentmem

    origin = json.loads((out / "grid.json").read_text())["provenance"]
    assert origin["command"] == " ".join(command) and origin["agentmem_version"] == agentmem.__version__
    assert origin["model"] == grid.model and origin["when"] and origin["machine"]["cores"]
    assert {"git_commit", "git_dirty"} <= set(origin)  # None outside a git checkout, never an error
    cell = json.loads((out / "cells" / "locomo__none.json").read_text())
    assert cell["provenance"]["command"] == origin["command"] and cell["provenance"]["when"] == origin["when"]
    assert f"Run: `{origin['command']}`" in md and f"agentmem {agentmem.__version__}" in md
    assert "Run: <code>agentmem eval --env locomo" in html

    # interrupted grid: one cell's file is gone; re-running redoes only that cell
    (out / "cells" / "locomo__full-context.json").unlink()
    again = run_grid(
        ["locomo"],
        [["none"], ["full-context"]],
        llm=llm,
        out_dir=out,
        split="all",
        limit=2,
        data=str(DEMO_PATH),
        embedder=embedder,
    )
    assert again.resumed == ["locomo__none"]
    assert llm.calls == 6  # two more answers, for the one missing cell only
    summary = json.loads((out / "grid.json").read_text())
    assert summary["provenance"]["command"] != origin["command"]  # this run's own command line (sys.argv)
    assert summary["cell_provenance"]["locomo__none"]["when"] == origin["when"]  # the resumed cell keeps its origin
    assert summary["cell_provenance"]["locomo__full-context"]["when"] == summary["provenance"]["when"]
    # a different limit is a different experiment: nothing is reused
    third = run_grid(
        ["locomo"], [["none"]], llm=llm, out_dir=out, split="all", limit=1, data=str(DEMO_PATH), embedder=embedder
    )
    assert third.resumed == [] and llm.calls == 7


def test_a_torn_cell_file_is_run_again_not_trusted(tmp_path, embedder):
    llm = FixedReplyLLM()
    out = tmp_path / "grid"
    (out / "cells").mkdir(parents=True)
    (out / "cells" / "locomo__none.json").write_text('{"env": "loc')
    grid = run_grid(
        ["locomo"], [["none"]], llm=llm, out_dir=out, split="all", limit=1, data=str(DEMO_PATH), embedder=embedder
    )
    assert grid.resumed == [] and llm.calls == 1
    assert json.loads((out / "cells" / "locomo__none.json").read_text())["questions"] == 1


def test_cells_of_different_programs_never_share_a_file(tmp_path, embedder):
    """Two program files with one name (a/notes.py, b/notes.py) are two cells, each with its own result file."""
    from agentmem.grid import GridCell

    assert GridCell(env="locomo", memory=["episodic", "semantic"]).key == "locomo__episodic+semantic"  # unchanged
    keys = {GridCell(env="locomo", memory=m).key for m in (["a/notes.py"], ["b/notes.py"], ["notes"], ["notes.py"])}
    assert len(keys) == 4
    program = (
        "from agentmem.memory import MemoryProgram\nfrom agentmem.types import Recall\n\n"
        "class Notes(MemoryProgram):\n    name = 'notes'\n\n    def recall(self, query):\n        return Recall()\n"
    )
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "notes.py").write_text(program)
    llm = FixedReplyLLM()
    configs = [[str(tmp_path / "a" / "notes.py")], [str(tmp_path / "b" / "notes.py")]]
    grid = run_grid(
        ["locomo"],
        configs,
        llm=llm,
        out_dir=tmp_path / "grid",
        split="all",
        limit=1,
        data=str(DEMO_PATH),
        embedder=embedder,
    )
    assert grid.resumed == [] and llm.calls == 2  # the second is not "resumed" from the first's file
    assert len(list((tmp_path / "grid" / "cells").glob("*.json"))) == 2


@pytest.mark.llm
def test_cli_grid_with_the_local_model_resumes_finished_cells(tmp_path, locomo6):
    out = tmp_path / "grid"
    cmd = [
        sys.executable,
        "-m",
        "agentmem.cli.main",
        "eval",
        "--env",
        "locomo",
        "--memory",
        "none,episodic",
        "--data",
        str(locomo6),
        "--limit",
        "2",
        "--out-dir",
        str(out),
    ]
    env = dict(os.environ, COLUMNS="200")
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 cells" in first.stdout and "report.html" in first.stdout
    rows = {r["memory"]: r for r in csv.DictReader((out / "grid.csv").open())}
    assert set(rows) == {"none", "episodic"}
    assert float(rows["episodic"]["evidence_recall"]) >= float(rows["none"]["evidence_recall"])
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "2 cell(s) resumed" in second.stdout
