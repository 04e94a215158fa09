"""Fixtures for the evolution engine's tests (tests/conftest.py does not apply under evolve/).

``local_llm`` is the real embedded local model for tests marked ``llm``.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


@pytest.fixture(scope="session")
def local_llm():
    """The real embedded local model (fetched and sha256-verified on first use)."""
    from agentmem.llm import LLM

    yield LLM("local")
