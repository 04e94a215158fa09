"""Where results came from (agentmem.provenance): read inside a git checkout, and never an error outside one."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import agentmem
import agentmem.provenance as provenance

ROOT = Path(__file__).resolve().parent.parent


def test_collect_names_the_command_version_model_and_machine():
    origin = provenance.collect(["agentmem", "eval", "--env", "locomo", "--note", "two words"], model="local")
    assert origin.command == "agentmem eval --env locomo --note 'two words'"  # as a shell would take it back
    assert origin.agentmem_version == agentmem.__version__ and origin.model == "local"
    assert origin.machine["cores"] and origin.machine["python"] and origin.when.endswith("+00:00")
    assert f"agentmem {agentmem.__version__}" in origin.short()
    assert provenance.collect().command.split()[0] == sys.argv[0]  # default: this process's own command line


def test_outside_a_git_checkout_there_is_no_commit_and_no_error(tmp_path, monkeypatch):
    assert provenance.git_commit(tmp_path) is None and provenance.git_dirty(tmp_path) is None
    # agentmem installed (its files tracked by no checkout): no commit, not the commit of a repository around it
    monkeypatch.setattr(provenance, "PACKAGE_DIR", tmp_path)
    origin = provenance.collect(["x"])
    assert origin.git_commit is None and origin.git_dirty is None
    assert "no git checkout" in origin.short()
    monkeypatch.setenv("PATH", str(tmp_path))  # no git program at all
    assert provenance.git_commit(ROOT) is None


def test_a_rewritten_result_file_does_not_make_the_tree_dirty(tmp_path):
    """Benchmarks run one after another rewrite committed result files; only a change to code is "dirty"."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "a.json").write_text("{}")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    assert provenance.git_dirty(tmp_path) is False
    (tmp_path / "benchmarks" / "results" / "a.json").write_text('{"p50_ms": 1}')
    assert provenance.git_dirty(tmp_path) is False
    assert provenance.git_dirty(tmp_path / "benchmarks") is False  # from a folder below the top, the same
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.git_dirty(tmp_path) is True
    assert provenance.git_dirty(tmp_path / "benchmarks") is True


def test_a_package_has_a_commit_only_where_its_checkout_tracks_it(tmp_path):
    """A package copied into a checkout that does not track it (a virtual environment inside a repository) is
    not that repository's commit: benchmarks that name the commit of the code they measure must not take it."""
    import subprocess

    for name in ("tracked", "installed"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "tracked"], cwd=tmp_path, check=True)
    assert provenance.package_checkout(tmp_path / "tracked") == tmp_path / "tracked"
    assert provenance.package_checkout(tmp_path / "installed") is None


def test_the_benchmark_header_is_built_from_the_same_facts():
    spec = importlib.util.spec_from_file_location("bench_provenance", ROOT / "benchmarks" / "provenance.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    header = module.provenance("bench_x.py", ["--note", "a note"], "a note", model="m", machine={"lib": "1"})
    assert header["command"] == "python benchmarks/bench_x.py --note 'a note'" and header["model"] == "m"
    assert header["git_commit"] == (provenance.git_commit(ROOT) or "unknown")
    assert header["machine"]["lib"] == "1" and header["machine"]["note"] == "a note"
    assert header["machine"]["cores"] == provenance.machine_facts()["cores"]
    assert header["agentmem_version"] == agentmem.__version__


def test_an_eval_result_file_names_its_command_and_version(tmp_path, monkeypatch):
    """`agentmem eval` (one cell) writes its result file with the command as run and agentmem's version."""
    import json
    from types import SimpleNamespace

    from rich.console import Console

    import agentmem.cli.main as cli
    from agentmem.evaluation import make_environment
    from agentmem_environments.locomo.demo import DEMO_PATH
    from tests.helpers import FixedReplyLLM

    llm = FixedReplyLLM()
    llm.settings = SimpleNamespace(chroma_host=None)  # type: ignore[attr-defined]
    monkeypatch.setattr(cli, "make_llm", lambda model, api_base: llm)
    monkeypatch.setattr(cli, "console", Console(record=True, width=200))
    monkeypatch.setattr(sys, "argv", ["/somewhere/bin/agentmem", "eval", "--memory", "none", "--limit", "1"])
    out = tmp_path / "result.json"
    cli._eval_one(
        make_environment("locomo", data=str(DEMO_PATH)),
        ["none"],
        params={},
        split="all",
        limit=1,
        budget=512,
        out=out,
        model=None,
        api_base=None,
    )
    origin = json.loads(out.read_text())["provenance"]
    assert origin["command"] == "agentmem eval --memory none --limit 1"
    assert origin["agentmem_version"] == agentmem.__version__ and origin["model"] == "scripted"
