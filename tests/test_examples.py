"""Every script in examples/ runs: the ten-line agent on the real local model, the slower ones through
their ``main()`` with a scripted model (real SQLite, Chroma and embeddings all the same)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pydantic import BaseModel

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class QuietModel:
    """A scripted ChatModel: never picks a tool, extracts nothing, answers ``answer``."""

    model = "scripted"

    def __init__(self, answer: str = "ok") -> None:
        self.answer = answer
        self.prompts: list[list[dict[str, Any]]] = []

    def complete(self, messages, *, max_tokens=None, temperature=None, response_format=None, caller=None) -> str:
        self.prompts.append(messages)
        return self.answer

    def structured(self, messages, schema: type[BaseModel], *, caller=None, max_tokens=None) -> BaseModel:
        if "tool" in schema.model_fields:
            return schema(tool="none")
        return schema.model_validate({})


def test_ten_line_agent_is_about_ten_lines() -> None:
    lines = [ln for ln in (EXAMPLES / "ten_line_agent.py").read_text().splitlines() if ln.strip()]
    assert len(lines) <= 11


@pytest.mark.llm
@pytest.mark.timeout(900)
def test_ten_line_agent_runs_on_the_local_model(tmp_path: Path) -> None:
    env = {**os.environ, "AGENTMEM_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "ten_line_agent.py")], env=env, capture_output=True, text=True, timeout=850
    )
    assert done.returncode == 0, done.stderr[-2000:]
    out = [ln for ln in done.stdout.splitlines() if ln.strip()]
    assert len(out) >= 2
    assert "23" in done.stdout or "sunny" in done.stdout.lower()  # the weather tool ran and its result was used
    assert (tmp_path / "threads.sqlite").is_file()  # AGENTMEM_HOME is where the agent keeps its threads


def test_custom_plugin_recalls_its_note_in_another_thread(tmp_path: Path) -> None:
    module = _load("custom_plugin")
    model = QuietModel("The password is tangerine42.")
    first, second = module.main(model=model, store_dir=str(tmp_path))
    (detail,) = second.trace.recalls
    assert detail.plugin == "notes" and [i.text for i in detail.items] == ["the wifi password is tangerine42"]
    assert "tangerine42" in model.prompts[-1][0]["content"]  # the note reached the system prompt
    assert second.thread_id == "later"


def test_two_plugins_compose_episodic_and_semantic(tmp_path: Path) -> None:
    module = _load("two_plugins")
    reply = module.main(model=QuietModel("A vegetable curry."), store_dir=str(tmp_path))
    assert [d.plugin for d in reply.trace.recalls] == ["episodic", "semantic"]
    episodic = reply.trace.recalls[0]
    assert any("Lisbon" in item.text for item in episodic.items)
    assert reply.text == "A vegetable curry."


def test_langgraph_store_example_finds_the_right_memory(tmp_path: Path) -> None:
    module = _load("langgraph_store")
    found = module.main(store_dir=str(tmp_path))
    assert found[0] == "My sister lives in Porto"
    assert "I keep chickens" not in found  # bob's memory stays bob's
