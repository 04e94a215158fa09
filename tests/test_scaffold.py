"""`agentmem plugin new`: a scaffolded package installs, is discovered, passes its tests, and runs in eval."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from agentmem.cli.plugin_new import register
from agentmem.errors import ConfigError
from agentmem.scaffold import plugin_names, scaffold_plugin

BIN = Path(sys.executable).parent
AGENTMEM = str(BIN / "agentmem")


def _install(path: Path) -> None:
    uv = shutil.which("uv")
    cmd = [uv, "pip", "install", "--python", sys.executable] if uv else [sys.executable, "-m", "pip", "install"]
    subprocess.run([*cmd, "--no-deps", "-e", str(path)], check=True, capture_output=True, text=True, timeout=300)


def _uninstall(dist: str) -> None:
    uv = shutil.which("uv")
    cmd = (
        [uv, "pip", "uninstall", "--python", sys.executable] if uv else [sys.executable, "-m", "pip", "uninstall", "-y"]
    )
    subprocess.run([*cmd, dist], capture_output=True, text=True, timeout=120)


def _pytest(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(path / "tests")],
        cwd=path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_names_are_derived_and_bad_names_get_one_clear_line(tmp_path):
    names = plugin_names("keyword-notes")
    assert (names.dist, names.module, names.cls) == (
        "agentmem-keyword-notes",
        "agentmem_keyword_notes",
        "KeywordNotesMemory",
    )
    for bad in ("Notes", "2notes", "my notes", "notes-", "a--b", "x" * 41, "", "notes.py"):
        with pytest.raises(ConfigError) as err:
            scaffold_plugin(bad, tmp_path)
        assert "\n" not in str(err.value) and "not a valid plugin name" in str(err.value)
    with pytest.raises(ConfigError, match="should not start with 'agentmem-'.*'notes'"):
        scaffold_plugin("agentmem-notes", tmp_path)
    with pytest.raises(ConfigError, match="'episodic' is already installed"):
        scaffold_plugin("episodic", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_never_overwritten(tmp_path):
    root = scaffold_plugin("notes", tmp_path)
    module = root / "agentmem_notes" / "__init__.py"
    module.write_text("# my work\n")
    with pytest.raises(ConfigError, match="already exists.*nothing was overwritten"):
        scaffold_plugin("notes", tmp_path)
    assert module.read_text() == "# my work\n"


def test_the_scaffold_is_a_complete_package_whose_tests_pass(tmp_path):
    root = scaffold_plugin("keyword-notes", tmp_path)
    assert root == tmp_path / "agentmem-keyword-notes"
    pyproject = (root / "pyproject.toml").read_text()
    assert '[project.entry-points."agentmem.memory"]' in pyproject
    assert '"keyword-notes" = "agentmem_keyword_notes:KeywordNotesMemory"' in pyproject
    assert 'dependencies = ["agentmem"]' in pyproject and "hatchling" in pyproject
    assert "[tool.uv.sources]" not in pyproject  # outside the workspace: a plain package
    assert "agentmem eval --env locomo --memory keyword-notes --limit 20" in (root / "README.md").read_text()
    proc = _pytest(root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "4 passed, 1 skipped" in proc.stdout  # the registration check waits for the install


def test_a_scaffold_inside_the_workspace_uses_the_workspace_agentmem(tmp_path):
    # a copy of the workspace root's markers, so that the real repository is never touched
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "agentmem"\n\n[tool.uv.workspace]\nmembers = ["plugins/*"]\n'
    )
    root = scaffold_plugin("inside", tmp_path / "plugins")
    assert "agentmem = { workspace = true }" in (root / "pyproject.toml").read_text()


def test_cli_plugin_new_prints_the_next_steps(tmp_path):
    app = typer.Typer()
    app.add_typer(typer.Typer(), name="plugins")
    register(app)
    runner = CliRunner()
    got = runner.invoke(app, ["plugin", "new", "travel-log", "--dir", str(tmp_path)])
    assert got.exit_code == 0, got.output
    root = tmp_path / "agentmem-travel-log"
    assert (root / "agentmem_travel_log" / "__init__.py").is_file()
    out = " ".join(got.output.split())
    assert f"uv pip install -e {root}" in out and f"pip install -e {root}" in out
    assert "--memory travel-log" in out
    again = runner.invoke(app, ["plugins", "new", "travel-log", "--dir", str(tmp_path)])
    assert isinstance(again.exception, ConfigError) and "already exists" in str(again.exception)


def test_the_agentmem_command_reports_a_bad_name_in_one_line(tmp_path):
    proc = subprocess.run(
        [AGENTMEM, "plugin", "new", "Bad Name", "--dir", str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2
    assert "not a valid plugin name" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2  # one line (rich may wrap it once)


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    """A freshly scaffolded plugin installed (editable) into this environment; uninstalled afterwards."""
    name = f"probe-{uuid.uuid4().hex[:6]}"
    root = scaffold_plugin(name, tmp_path_factory.mktemp("scaffold"))
    dist = plugin_names(name).dist
    try:
        _install(root)
        yield name, root
    finally:
        _uninstall(dist)


def test_an_installed_scaffold_is_discovered_and_its_tests_pass(installed_plugin):
    name, root = installed_plugin
    proc = subprocess.run([AGENTMEM, "plugins", "list", "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = {p["name"]: p for p in json.loads(proc.stdout)}
    assert found[name]["status"] == "ok", found.get(name)
    assert found[name]["distribution"] == plugin_names(name).dist
    tests = _pytest(root)
    assert tests.returncode == 0 and "5 passed" in tests.stdout, tests.stdout + tests.stderr


@pytest.mark.llm
def test_an_installed_scaffold_runs_in_eval(installed_plugin, tmp_path):
    name, _ = installed_plugin
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [AGENTMEM, "eval", "--env", "locomo", "--memory", name, "--limit", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, AGENTMEM_MODEL="local"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["memory"] == [name] and result["questions"] == 2
    assert result["cost"]["llm_calls"] >= 2
