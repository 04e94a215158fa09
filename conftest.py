"""Hygiene shared by every test folder (tests, plugins, environments, evolve)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from agentmem.toolkit import Stores

# Vectors computed by tests go to a store of this test process, not the user's shared one
# (agentmem.embedding_cache): a test that counts embedder calls sees only its own.
if "AGENTMEM_EMBEDDING_CACHE" not in os.environ:
    os.environ["AGENTMEM_EMBEDDING_CACHE"] = _VECTORS = tempfile.mkdtemp(prefix="agentmem-test-vectors-")
    atexit.register(shutil.rmtree, _VECTORS, ignore_errors=True)


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

    def tracking_init(self: Stores, *args: object, **kwargs: object) -> None:
        original(self, *args, **kwargs)  # type: ignore[arg-type]
        opened.append(self)

    monkeypatch.setattr(Stores, "__init__", tracking_init)
    yield
    for stores in opened:
        stores.close()
