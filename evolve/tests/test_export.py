"""Exporting an evolved program: the `agentmem plugin new` layout, the evolved code, and it installs."""

from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentmem.errors import ConfigError
from agentmem.scaffold import scaffold_plugin
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import RunConfig
from agentmem_evolve.export import export_program, find_program_class


@pytest.fixture(scope="module")
def seed_source(tmp_path_factory) -> str:
    """A real, working memory program: the one `agentmem plugin new` writes."""
    root = scaffold_plugin("seednotes", tmp_path_factory.mktemp("seed"), check_installed=False)
    return (root / "agentmem_seednotes" / "__init__.py").read_text()


@pytest.fixture
def run(tmp_path, seed_source):
    run_dir = tmp_path / "run"
    RunConfig.model_validate({"seeds": ["seednotes"], "environment": {"name": "toolprefs"}}).write(
        run_dir / "config.toml"
    )
    archive = Archive(run_dir)
    seed = ProgramRecord(source=seed_source, status="valid", meta={"seed": "seednotes"})
    evolved_src = seed_source.replace(
        '        self.packer = Packer(order="position")',
        '        self.packer = Packer(order="position")  # evolved: keep the turn id for evidence',
    )
    assert evolved_src != seed_source
    child = ProgramRecord(
        source=evolved_src,
        parents=[seed.id],
        operator="reflective",
        generation=1,
        status="valid",
        params={"top_k": 3, "with_dates": False},
        meta={"rationale": "fewer, undated items"},
    )
    broken = ProgramRecord(
        source="x = (\n", parents=[seed.id], operator="mutate", status="invalid", error="SyntaxError"
    )
    for p in (seed, child, broken):
        archive.add_program(p)
    for pid, score in ((seed.id, 0.41), (child.id, 0.63)):
        archive.record_evaluation(
            EvaluationRecord(
                program_id=pid,
                stage="select",
                split="validation",
                key="v",
                score=score,
                metrics={"param_accuracy": score},
                per_instance={"q1": score, "q2": score},
                cost={"prompt_tokens": 300, "completion_tokens": 20},
            )
        )
    archive.record_evaluation(
        EvaluationRecord(
            program_id=child.id,
            stage="test",
            split="test",
            key="t",
            score=0.6,
            per_instance={"q9": 0.6},
            cost={"prompt_tokens": 150},
        )
    )
    yield archive, seed, child, broken
    archive.close()


def exported_module(root: Path, module: str):
    sys.path.insert(0, str(root))
    try:
        sys.modules.pop(module, None)
        return importlib.import_module(module)
    finally:
        sys.path.remove(str(root))


def test_export_writes_the_scaffold_layout_with_the_evolved_program(run, tmp_path):
    archive, seed, child, _ = run
    root = export_program(archive, child.id[:6], tmp_path / "out", "evolved-notes")  # a unique prefix is enough
    assert root == tmp_path / "out" / "agentmem-evolved-notes"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "agentmem_evolved_notes/__init__.py",
        "agentmem_evolved_notes/evolution.json",
        "pyproject.toml",
        "tests/test_evolved_notes.py",
    ]
    pyproject = (root / "pyproject.toml").read_text()
    # the class keeps its evolved name; the entry point (named after the plugin) points at it
    assert '"evolved-notes" = "agentmem_evolved_notes:SeednotesMemory"' in pyproject
    assert 'name = "agentmem-evolved-notes"' in pyproject
    module_src = (root / "agentmem_evolved_notes" / "__init__.py").read_text()
    assert "evolved: keep the turn id for evidence" in module_src
    assert 'name: ClassVar[str] = "evolved-notes"' in module_src and '"seednotes"' not in module_src

    module = exported_module(root, "agentmem_evolved_notes")
    cls = module.SeednotesMemory
    assert cls.name == "evolved-notes"
    params = cls.Params()
    assert params.top_k == 3 and params.with_dates is False  # evolution's values are the defaults
    assert cls.Params(top_k=9).top_k == 9
    with pytest.raises(ValueError):
        cls.Params(top_k=0)  # bounds kept

    readme = (root / "README.md").read_text()
    for fact in (
        child.id,
        seed.id,
        str(archive.run_dir.resolve()),
        "0.6300",
        "test score",
        "toolprefs",
        "reflective",
        "fewer, undated items",
        "`top_k` | `3`",
    ):
        assert fact in readme, fact
    provenance = json.loads((root / "agentmem_evolved_notes" / "evolution.json").read_text())
    assert provenance["program"]["id"] == child.id and [x["id"] for x in provenance["lineage"]] == [seed.id, child.id]
    assert [e.kind for e in archive.events()] == ["export"]


def test_the_exported_package_passes_its_own_tests(run, tmp_path):
    archive, _seed, child, _ = run
    root = export_program(archive, child.id, tmp_path / "out", "evolved-notes")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "tests"],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "2 passed, 1 skipped" in proc.stdout  # the entry-point test skips: not installed in this venv


def test_the_exported_package_installs_into_its_own_venv(run, tmp_path):
    """`uv pip install` into a fresh venv in tmp_path (never the shared one) registers the entry point."""
    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    archive, _seed, child, _ = run
    root = export_program(archive, child.id, tmp_path / "out", "evolved-notes")
    venv = tmp_path / "venv"
    subprocess.run(
        [uv, "venv", "--offline", "--python", sys.executable, str(venv)], check=True, capture_output=True, timeout=120
    )
    python = venv / "bin" / "python"
    install = [uv, "pip", "install", "--no-deps", "--python", str(python), str(root)]
    proc = subprocess.run([*install, "--offline"], capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:  # the build backend (hatchling) is not in uv's cache: the registry has it
        proc = subprocess.run(install, capture_output=True, text=True, timeout=300)
    if (
        proc.returncode != 0
        and "hatchling" in proc.stderr
        and ("network" in proc.stderr.lower() or "offline" in proc.stderr.lower())
    ):
        pytest.skip("cannot build the package: hatchling is neither cached nor downloadable here")
    assert proc.returncode == 0, proc.stderr[-2000:]
    check = (
        "import json; from importlib.metadata import entry_points, distribution;"
        "print(json.dumps({'eps': [[e.name, e.value] for e in entry_points(group='agentmem.memory')],"
        " 'files': sorted(str(f) for f in distribution('agentmem-evolved-notes').files)}))"
    )
    out = json.loads(
        subprocess.run([str(python), "-c", check], check=True, capture_output=True, text=True, timeout=60).stdout
    )
    assert out["eps"] == [["evolved-notes", "agentmem_evolved_notes:SeednotesMemory"]]
    assert "agentmem_evolved_notes/evolution.json" in out["files"]


def test_export_refuses_what_it_cannot_export(run, tmp_path):
    archive, _seed, child, broken = run
    out = tmp_path / "out"
    cases = [
        (broken.id, "evolved-notes", "failed validation"),
        ("nope", "evolved-notes", "no program 'nope'"),
        ("", "evolved-notes", "no program ''"),
        (child.id, "Bad Name", "not a valid plugin name"),
        (child.id, "episodic", "already installed"),
    ]
    for pid, name, message in cases:
        with pytest.raises(ConfigError, match=message) as info:
            export_program(archive, pid, out, name)
        assert "\n" not in str(info.value)
    assert not out.exists() or not any(out.iterdir())  # nothing half-written
    export_program(archive, child.id, out, "evolved-notes")
    with pytest.raises(ConfigError, match="already exists"):
        export_program(archive, child.id, out, "evolved-notes")


def test_find_program_class_reads_the_source_without_running_it():
    assert find_program_class("from agentmem.memory import MemoryProgram\nclass A(MemoryProgram):\n    pass\n") == "A"
    two = "class Base(MemoryProgram): pass\nclass Mine(Base): pass\nclass Other: pass\n"
    assert find_program_class(two) == "Mine"
    assert find_program_class("class A(MemoryProgram): pass\nclass B(MemoryProgram): pass\nPROGRAM = B\n") == "B"
    with pytest.raises(ConfigError, match="exactly one MemoryProgram subclass"):
        find_program_class("class A(MemoryProgram): pass\nclass B(MemoryProgram): pass\n")
    with pytest.raises(ConfigError, match="not valid Python"):
        find_program_class("class (:\n")


def test_imports_become_dependencies_and_relative_imports_are_refused(tmp_path):
    with Archive(tmp_path / "run") as archive:
        src = (
            "import numpy\nimport yaml\nfrom agentmem.memory import MemoryProgram\nfrom agentmem_episodic "
            "import EpisodicMemory\n"
            "class Better(EpisodicMemory):\n    '''An episodic memory with a twist.'''\n"
        )
        good = ProgramRecord(source=src, status="valid")
        relative = ProgramRecord(source="from .models import X\nclass A(MemoryProgram): pass\n", status="valid")
        archive.add_program(good)
        archive.add_program(relative)
        with pytest.raises(ConfigError, match="relative import"):
            export_program(archive, relative.id, tmp_path / "out", "twisted")
        root = export_program(archive, good.id, tmp_path / "out", "twisted")
        pyproject = (root / "pyproject.toml").read_text()
        # numpy comes with agentmem itself; PyYAML and the episodic plugin must be declared
        assert 'dependencies = ["agentmem", "agentmem-episodic", "PyYAML"]' in pyproject
        assert '"twisted" = "agentmem_twisted:Better"' in pyproject
        module_src = (root / "agentmem_twisted" / "__init__.py").read_text()
        assert "'''An episodic memory with a twist.'''\n    name = \"twisted\"\n" in module_src
