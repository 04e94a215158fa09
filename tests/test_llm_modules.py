"""The LLM layer's modules: each imports on its own, and none imports another that imports it back.

``agentmem/llm/client.py`` once did transport, cache, retries, metering,
streaming, structured output and llama.cpp format translation, and formed an
import cycle with ``tools.py`` (kept apart only by imports inside functions).
It is now split into transport, middleware and the local backend, with the
JSON/schema helpers in ``schemas.py``; these tests keep it that way.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LLM_PACKAGE = Path(__file__).resolve().parents[1] / "agentmem" / "llm"
MODULES = sorted(p.stem for p in LLM_PACKAGE.glob("*.py") if p.stem != "__init__")


def _imports_of(module: str) -> set[str]:
    """The sibling modules ``module`` imports anywhere: at the top, inside functions, or for type checking only."""
    tree = ast.parse((LLM_PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.startswith("agentmem.llm."):
                found.add(node.module.split(".")[2])
            elif node.module == "agentmem.llm":  # from agentmem.llm import schemas
                found |= {alias.name for alias in node.names if alias.name in MODULES}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[2] for a in node.names if a.name.startswith("agentmem.llm.")}
    return found - {module}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (as a path that ends where it starts), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycle_between_llm_modules():
    graph = {module: _imports_of(module) for module in MODULES}
    assert {"client", "transport", "middleware", "local", "schemas", "tools", "structured"} <= set(MODULES)
    cycle = _cycle(graph)
    assert cycle is None, "import cycle in agentmem.llm: " + " -> ".join(cycle or [])
    # the layering the split is for: the bottom layers know nothing of the client or the tools
    assert not graph["transport"] and not graph["schemas"]
    for lower in ("transport", "middleware", "local", "schemas", "structured", "tools"):
        assert "client" not in graph[lower], f"{lower} imports the client"
    assert "tools" not in graph["structured"]


def test_the_schema_format_helper_is_written_once():
    """The ``json_schema`` / llama.cpp ``json_object`` response format is built in ``schemas.py`` only."""
    writers = [m for m in MODULES if '"json_schema": {' in (LLM_PACKAGE / f"{m}.py").read_text(encoding="utf-8")]
    assert writers == ["schemas"]


@pytest.mark.parametrize("module", MODULES)
def test_each_llm_module_imports_alone(module: str):
    """A fresh interpreter imports the module with nothing imported before it (no order-dependent cycle)."""
    done = subprocess.run(
        [sys.executable, "-c", f"import agentmem.llm.{module}"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:] or done.stdout
