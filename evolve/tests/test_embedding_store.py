"""The embedding store shared by candidates: a re-ingestion pays no embedding time, and no candidate can write it.

Sandboxed candidates ask the controller for vectors over their channel; the controller's
CachingEmbedder answers from its memo, then the on-disk store, then the model. The store
lives in the user's cache directory, outside every jail.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentmem.embedding_cache import CachingEmbedder, EmbeddingStore, text_key
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Scope
from agentmem_evolve.jail import available_backends
from agentmem_evolve.sandbox import CandidateFailed, SandboxedProgram, SandboxLimits
from tests.helpers import BagEmbedder

HERE = Path(__file__).resolve().parent
LIMITS = SandboxLimits(
    op_seconds=10, startup_seconds=60, cpu_seconds=60, memory_mb=512, address_space_mb=2048, output_bytes=256 << 10
)
JAIL_MODES = [b for b, reason in available_backends().items() if reason is None] + ["none"]

pytestmark = pytest.mark.timeout(180)

INGESTING = '''
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Ingest(MemoryProgram):
    """Keeps every message with its vector, recalls the closest one."""

    def observe(self, event):
        self.toolkit.embed([event.content])

    def recall(self, query):
        vector = self.toolkit.embed([query.text])[0]
        return Recall(items=[RecallItem(content=f"{len(vector)}")])
'''


class IdentifiedBag(BagEmbedder):
    """The bag-of-letters plumbing fake with an identity (so the store keeps its vectors), counting texts."""

    identity = "bag-of-letters/v1"

    def __init__(self) -> None:
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return super().embed(texts)


def _candidate(
    source: str,
    tmp_path: Path,
    embedder: CachingEmbedder,
    name: str,
    *,
    jail: str = JAIL_MODES[0],
    params: dict[str, Any] | None = None,
    audit_hook: bool = True,
) -> SandboxedProgram:
    toolkit = Toolkit(
        scope=Scope(user_id="t"), stores=Stores(tmp_path / name), llm=None, embedder=embedder, namespace="candidate"
    )
    limits = LIMITS.model_copy(update={"jail": jail, "allow_unjailed": jail == "none", "audit_hook": audit_hook})
    return SandboxedProgram(source, toolkit, params, limits)


def _ingest_once(tmp_path: Path, store_dir: Path, name: str) -> IdentifiedBag:
    """One evaluation in a fresh process: a new memo, the shared store, a sandboxed candidate ingesting."""
    model = IdentifiedBag()
    program = _candidate(INGESTING, tmp_path, CachingEmbedder(model, store=EmbeddingStore(store_dir)), name)
    try:
        for text in ("I adopted a dog named Biscuit.", "My sister lives in Lisbon.", "I play the cello."):
            program.observe(Event.message(text))
        assert program.recall(Query(text="What is my dog called?")).text() == "26"
        program.close()
    finally:
        program._finalizer()
    return model


def test_a_candidate_re_ingesting_the_same_events_makes_no_embedder_call(tmp_path):
    store_dir = tmp_path / "vectors"
    first = _ingest_once(tmp_path, store_dir, "first")
    assert len(first.texts) == 4
    second = _ingest_once(tmp_path, store_dir, "second")  # another candidate, process or run
    assert second.texts == []


def _store_vectors(store_dir: Path, identity: str, texts: list[str], dim: int) -> dict[str, list[float]]:
    store = EmbeddingStore(store_dir)
    try:
        found = store.get_many([text_key(identity, t) for t in texts], dim)
        return {t: found[text_key(identity, t)].tolist() for t in texts if text_key(identity, t) in found}
    finally:
        store.close()


def _poison_modes() -> list[Any]:
    """Each jail with its audit hook, each jail alone (the private root must hold by itself), the hook alone."""
    modes = [pytest.param(jail, True, id=jail) for jail in JAIL_MODES]
    return modes + [pytest.param(jail, False, id=f"{jail}-no-hook") for jail in JAIL_MODES if jail != "none"]


@pytest.mark.parametrize(("jail", "audit_hook"), _poison_modes())
def test_a_candidate_cannot_write_the_embedding_store(jail, audit_hook, tmp_path):
    store_dir = tmp_path / "vectors"
    victim = "My sister lives in Lisbon."
    model = IdentifiedBag()
    shared = CachingEmbedder(model, store=EmbeddingStore(store_dir))
    truth = shared.embed([victim, "another text already stored"])
    before = _store_vectors(store_dir, model.identity, [victim, "another text already stored"], model.dim)
    program = _candidate(
        (HERE / "hostile" / "poison_embedding_store.py").read_text(),
        tmp_path,
        shared,
        "hostile",
        jail=jail,
        params={"store": str(store_dir), "victim": victim},
        audit_hook=audit_hook,
    )
    try:
        with pytest.raises(CandidateFailed) as failed:
            program.recall(Query(text="hello"))
    finally:
        program._finalizer()
    # stopped: by a denial (the audit hook), or at the latest by its made-up "put" request
    assert failed.value.kind in ("denied", "invalid"), str(failed.value)
    if not audit_hook:  # the jail alone: every write failed for want of the file, then "put" was refused
        assert "the worker asked for 'put'" in str(failed.value), str(failed.value)
    after = _store_vectors(store_dir, model.identity, [victim, "another text already stored"], model.dim)
    assert after == before
    fresh = IdentifiedBag()
    reread = CachingEmbedder(fresh, store=EmbeddingStore(store_dir)).embed([victim, "another text already stored"])
    assert fresh.texts == [] and reread == truth  # a new process reads the true vectors from the store
    np.testing.assert_allclose(np.linalg.norm(reread, axis=1), 1.0, atol=1e-6)
    assert os.access(store_dir / "cache.db", os.R_OK)
