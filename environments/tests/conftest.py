"""Fixtures for the environment tests (tests/conftest.py does not apply under environments/).

``local_llm`` is the real embedded local model (Qwen2.5-Coder-0.5B through
llama.cpp) for tests marked ``llm``; ``embedder`` the real offline MiniLM.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("AGENTMEM_CACHE", "0")  # tests opt in to the LLM disk cache explicitly


@pytest.fixture(scope="session")
def local_llm():
    """The real embedded local model, shared by every test in the session."""
    from agentmem.llm import LLM

    llm = LLM("local")
    yield llm


@pytest.fixture(scope="session")
def embedder():
    """The real offline MiniLM sentence embedder."""
    from agentmem.embeddings import default_embedder

    return default_embedder()
