"""Hygiene and fixtures shared by every test folder (tests, plugins, environments, evolve).

Hermetic caches. A test session never reads or writes the user's agentmem
cache, config or data: before anything imports agentmem, ``AGENTMEM_CACHE_DIR``,
``AGENTMEM_HOME``, ``AGENTMEM_CONFIG`` and the embedding store point at
directories of this session (subprocesses the tests start inherit them), and
``AGENTMEM_CACHE_PATH`` is cleared so the LLM disk cache lives there too. Three
things are taken from the user's cache dir through symlinks, because they are
large downloads that never depend on the test: the local GGUF models
(``models/``), the embedding model (``embeddings/``; its vector store is
redirected separately) and the llama.cpp server registry (``servers/``, so the
session reuses the one model server of the machine instead of starting its own).

Shared data. Tests that need the LoCoMo subset in ``../shared/data`` ask for it
through :func:`tests.helpers.shared_data` (or the ``locomo6`` fixture): where it is
absent they skip with a reason; under CI (``CI`` set) or with
``AGENTMEM_REQUIRE_SHARED=1`` they fail instead, so a CI run never skips them
silently.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _user_cache_dir() -> Path:
    """The cache dir agentmem would use outside the tests (flags aside), resolved before it is redirected."""
    from agentmem.config import load_settings

    try:
        return load_settings().cache_dir.expanduser()
    except Exception:  # a broken user config must not stop the tests; the default dir still holds the models
        import platformdirs

        return Path(platformdirs.user_cache_dir("agentmem"))


def _hermetic_environment() -> None:
    if os.environ.get("AGENTMEM_TEST_SESSION_DIR"):  # a pytest started by a test: its parent already did this
        return
    session = Path(tempfile.mkdtemp(prefix="agentmem-test-session-"))
    atexit.register(shutil.rmtree, session, ignore_errors=True)
    user_cache = _user_cache_dir()
    cache = session / "cache"
    cache.mkdir()
    for shared in ("models", "embeddings", "servers"):
        real = user_cache / shared
        real.mkdir(parents=True, exist_ok=True)  # so that a first download lands where the next session finds it
        (cache / shared).symlink_to(real, target_is_directory=True)
    os.environ["AGENTMEM_TEST_SESSION_DIR"] = str(session)
    os.environ["AGENTMEM_CACHE_DIR"] = str(cache)
    os.environ["AGENTMEM_HOME"] = str(session / "home")
    # an empty config file of the session stands in for ./agentmem.toml and the user's config.toml (not
    # XDG_CONFIG_HOME: pip, uv and others read their own settings there)
    (session / "agentmem.toml").write_text("", encoding="utf-8")
    os.environ["AGENTMEM_CONFIG"] = str(session / "agentmem.toml")
    os.environ["AGENTMEM_EMBEDDING_CACHE"] = str(session / "vectors")  # vectors of this session only
    os.environ.pop("AGENTMEM_CACHE_PATH", None)


os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
# Tests opt in to the LLM disk cache explicitly (``LLM(..., cache=True)``): a test that counts calls, or
# compares two runs, sees real calls.
os.environ.setdefault("AGENTMEM_CACHE", "0")
_hermetic_environment()

from agentmem.toolkit import Stores  # noqa: E402  (after the environment above is in place)

#: The per-test limit of tests marked ``llm`` that set none of their own (the global one, ``timeout`` in
#: pyproject.toml, is for plumbing); the slowest real-model test takes about 9 minutes on 2 loaded cores.
LLM_TEST_TIMEOUT = 1200


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("llm") is not None and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(LLM_TEST_TIMEOUT))


@pytest.fixture(autouse=True)
def _close_stores_opened_by_the_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every :class:`Stores` a test opened, as the owning application would.

    Tests build stores on throwaway directories and rarely close them; Chroma
    keeps each path's system (SQLite handles, index files) open for the life of
    the process, so a full run would otherwise climb past a thousand open file
    descriptors.
    """
    # strong references: a Stores collected mid-test leaves its Chroma system
    # open in Chroma's process-wide cache, where nothing could close it later
    opened: list[Stores] = []
    original = Stores.__init__

    def tracking_init(self: Stores, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(Stores, "__init__", tracking_init)
    yield
    for stores in opened:
        stores.close()


@pytest.fixture(scope="session")
def local_llm() -> Any:
    """The real embedded local model (fetched and sha256-verified on first use), shared by the session."""
    from agentmem.llm import LLM

    return LLM("local")


@pytest.fixture(scope="session")
def embedder() -> Any:
    """The real offline MiniLM sentence embedder."""
    from agentmem.embeddings import default_embedder

    return default_embedder()


@pytest.fixture(scope="session")
def locomo6() -> Path:
    """The shared LoCoMo subset (six real conversations); skips where it is absent, fails under CI."""
    from tests.helpers import shared_data

    return shared_data("locomo", "locomo6.json")
