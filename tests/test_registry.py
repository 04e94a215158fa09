"""Plugin discovery through entry points, including a broken plugin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agentmem.errors import PluginError
from agentmem.registry import discover, load_memory, load_program_file


def _fake_distribution(root: Path, dist: str, entries: dict[str, str], module_source: dict[str, str]) -> None:
    """An installed distribution on disk: a .dist-info with entry points, plus its modules."""
    info = root / f"{dist.replace('-', '_')}-9.9.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 9.9\n")
    lines = ["[agentmem.memory]"] + [f"{k} = {v}" for k, v in entries.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in module_source.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def third_party(tmp_path, monkeypatch):
    _fake_distribution(
        tmp_path,
        "thirdparty-memory",
        {"thirdparty": "thirdparty_mem:ThirdPartyMemory", "shaky": "shaky_mem:Shaky"},
        {
            "thirdparty_mem": """
                from agentmem.memory import MemoryProgram
                from agentmem.types import Recall
                class ThirdPartyMemory(MemoryProgram):
                    '''A third-party memory that remembers nothing.'''
                    name = "thirdparty"
                    def recall(self, query):
                        return Recall(plugin=self.name)
            """,
            "shaky_mem": "raise ImportError('needs libfoo, which is not installed')\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_first_party_plugins_are_discovered_like_third_party_ones():
    found = {(p.kind, p.name): p for p in discover()}
    assert found[("memory", "episodic")].status == "ok"
    assert found[("memory", "episodic")].distribution == "agentmem-episodic"
    assert found[("memory", "none")].status == "ok"
    assert found[("environment", "locomo")].status == "ok"


def test_broken_plugin_is_reported_and_others_keep_working(third_party):
    found = {p.name: p for p in discover("memory")}
    assert found["shaky"].status == "broken"
    assert "needs libfoo" in found["shaky"].error
    assert "\n" not in found["shaky"].error
    assert found["thirdparty"].status == "ok"
    assert found["thirdparty"].distribution == "thirdparty-memory"
    assert found["episodic"].status == "ok"
    with pytest.raises(PluginError, match="shaky.*broken.*needs libfoo"):
        load_memory("shaky")
    assert load_memory("thirdparty").__name__ == "ThirdPartyMemory"


def test_unknown_plugin_names_what_is_installed():
    with pytest.raises(PluginError, match="no memory plugin named 'nope'.*episodic"):
        load_memory("nope")


def test_cli_plugins_list_json_shows_kind_and_broken(third_party):
    env = dict(os.environ, PYTHONPATH=str(third_party))
    proc = subprocess.run(
        [sys.executable, "-m", "agentmem.cli.main", "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    kinds = {(r["kind"], r["name"]): r["status"] for r in rows}
    assert kinds[("memory", "episodic")] == "ok"
    assert kinds[("environment", "locomo")] == "ok"
    assert kinds[("memory", "shaky")] == "broken"


def test_program_file_loads_and_bad_file_is_one_clear_line(tmp_path):
    good = tmp_path / "mine.py"
    good.write_text(
        "from agentmem.memory import MemoryProgram\nfrom agentmem.types import Recall\n"
        "class Mine(MemoryProgram):\n    name = 'mine'\n    def recall(self, q):\n        return Recall()\n"
    )
    assert load_program_file(good).__name__ == "Mine"
    bad = tmp_path / "bad.py"
    bad.write_text("def broken(:\n")
    with pytest.raises(PluginError, match=r"bad.py failed to import: SyntaxError"):
        load_program_file(bad)
    with pytest.raises(PluginError, match="does not exist"):
        load_program_file(tmp_path / "missing.py")
