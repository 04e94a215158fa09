"""Embeddings computed once per (model, text): the memo, the shared on-disk store, and who may write it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from agentmem.embedding_cache import CachingEmbedder, EmbeddingStore, default_store, shared_embedder, text_key
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Scope
from agentmem_episodic import EpisodicMemory

CONVERSATION = [
    "I adopted a golden retriever named Biscuit.",
    "My sister lives in Lisbon and works as an architect.",
    "I started learning the cello in March.",
    "We are planning a trip to Kyoto in autumn.",
]


class CountingEmbedder:
    """The real embedder, counting the texts that reach it (what the cache must save)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.dim, self.identity = inner.name, inner.dim, inner.identity
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts.extend(texts)
        return self.inner.embed(texts)


def _ingest(root: Path, embedder: CachingEmbedder) -> list[str]:
    """One evaluation's worth of work: a fresh store ingests the conversation, then one recall."""
    toolkit = Toolkit(scope=Scope(user_id="u"), stores=Stores(root), embedder=embedder, namespace="episodic")
    memory = EpisodicMemory(toolkit, {})
    for i, text in enumerate(CONVERSATION):
        memory.observe(
            Event.message(
                text, speaker="Ann", session_id="s1", id=f"D1:{i + 1}", timestamp=datetime(2024, 1, 1 + i, tzinfo=UTC)
            )
        )
    got = memory.recall(Query(text="What is my dog called?", budget_tokens=200))
    return [item.content for item in got.items]


def test_a_second_ingestion_of_the_same_events_makes_no_embedder_call(embedder, tmp_path):
    vectors = tmp_path / "vectors"
    counting = CountingEmbedder(embedder)
    first = _ingest(tmp_path / "run1", CachingEmbedder(counting, store=EmbeddingStore(vectors)))
    assert counting.texts, "the first ingestion embeds"
    assert any("Biscuit" in c for c in first)
    # another process or a later run: an empty memo, the same store on disk
    counting.texts.clear()
    second_embedder = CachingEmbedder(counting, store=EmbeddingStore(vectors))
    second = _ingest(tmp_path / "run2", second_embedder)
    assert counting.texts == []
    assert second == first
    assert second_embedder.computed == 0 and second_embedder.from_store > 0


def test_stored_vectors_are_the_computed_ones_and_keyed_by_model_identity(embedder, tmp_path):
    store = EmbeddingStore(tmp_path / "vectors")
    texts = ["Where does my sister live?", "", "Ünïcödé 東京 😀"]
    computed = CachingEmbedder(embedder, store=store).embed(texts)
    again = CachingEmbedder(CountingEmbedder(embedder), store=store)
    assert again.embed(texts) == computed  # bit for bit: float32 in, float32 out
    assert len(store) == 3
    # a different identity (another model, weights or truncation) never reads these vectors
    other = CountingEmbedder(embedder)
    other.identity = embedder.identity + "-other"
    CachingEmbedder(other, store=store).embed(texts)
    assert other.texts == texts and len(store) == 6
    assert text_key("a", "b") != text_key("a\0", "b") != text_key("ab", "")


def test_an_unnamed_embedder_is_never_stored(tmp_path):
    class Unnamed:
        name, dim = "bag", 3

        def embed(self, texts):
            return [[1.0, 0.0, 0.0] for _ in texts]

    store = EmbeddingStore(tmp_path / "vectors")
    cached = CachingEmbedder(Unnamed(), store=store)
    assert cached.store is None
    cached.embed(["x"])
    assert len(store) == 0


_UNPICKLED: list[str] = []


def _mark_unpickled(what: str) -> list[str]:
    _UNPICKLED.append(what)
    return [what]


class _Planted:
    def __reduce__(self):
        return (_mark_unpickled, ("pwned",))


def test_planted_entries_are_misses_and_never_unpickled(embedder, tmp_path):
    """Someone with write access to the cache plants values: a pickle, a short vector, NaNs. None is used."""
    import diskcache

    directory = tmp_path / "vectors"
    texts = ["pickled", "short", "nan"]
    keys = [text_key(embedder.identity, t) for t in texts]
    raw = diskcache.Cache(str(directory))
    raw.set(keys[0], _Planted())  # stored pickled
    raw.set(keys[1], np.ones(10, dtype=np.float32).tobytes())
    raw.set(keys[2], np.full(384, np.nan, dtype=np.float32).tobytes())
    raw.close()
    counting = CountingEmbedder(embedder)
    got = CachingEmbedder(counting, store=EmbeddingStore(directory)).embed(texts)
    assert _UNPICKLED == []
    assert counting.texts == texts  # all three recomputed
    np.testing.assert_allclose(got, embedder.embed(texts), atol=1e-6)


def test_the_shared_store_is_configurable_and_can_be_off(tmp_path, monkeypatch):
    monkeypatch.setenv("AGENTMEM_EMBEDDING_CACHE", "off")
    assert default_store() is None
    monkeypatch.setenv("AGENTMEM_EMBEDDING_CACHE", str(tmp_path / "mine"))
    store = default_store()
    assert store is not None and store.directory == tmp_path / "mine"
    assert shared_embedder().store is store


def test_a_bad_cache_setting_is_one_clear_line(tmp_path, monkeypatch):
    from agentmem.errors import ConfigError

    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    monkeypatch.setenv("AGENTMEM_EMBEDDING_CACHE", str(not_a_dir))
    with pytest.raises(ConfigError) as err:
        default_store()
    assert "AGENTMEM_EMBEDDING_CACHE" in str(err.value) and "off" in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(autouse=True)
def _no_leftover_marks():
    _UNPICKLED.clear()
