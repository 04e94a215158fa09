"""The core retrievers and stages: dense, lexical, hybrid (RRF, similarity floor), recency, near-duplicates,
neighbours, utility.
"""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from agentmem.errors import ConfigError
from agentmem.modules import module_class, modules
from agentmem.retrievers import (
    DenseRetriever,
    HybridParams,
    HybridRetriever,
    LexicalRetriever,
    NearDuplicateFilter,
    NeighbourWidening,
    Probe,
    RecencyBlend,
    Retrieval,
    UtilityBlend,
    fuse,
)
from agentmem.store import Store, StoredItem
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Scope

DAY = 86400.0


def _store(tmp_path, embedder, texts, **fields) -> Store:
    store = Store(Toolkit(scope=Scope(), stores=Stores(tmp_path), embedder=embedder, namespace="probe"), "items")
    store.add([StoredItem(text=t, ts=i * DAY, **{k: v[i] for k, v in fields.items()}) for i, t in enumerate(texts)])
    return store


def _texts(store, hits):
    found = store.get([h.id for h in hits])
    return [found[h.id].text for h in hits]


FILLER = [
    "We talked about the weather.",
    "The train was late again.",
    "I tried a new soup recipe.",
    "My neighbour plays the piano.",
    "The storage locker code is QZ4817.",
    "Our team won the quiz night.",
]


def test_dense_finds_paraphrases_lexical_exact_words_hybrid_both(tmp_path, embedder):
    store = _store(tmp_path, embedder, FILLER)
    assert _texts(store, DenseRetriever().search(store, Probe("music at home next door"), 1)) == [FILLER[3]]
    assert _texts(store, LexicalRetriever().search(store, Probe("QZ4817"), 1)) == [FILLER[4]]
    hybrid = HybridRetriever().search(store, Probe("what is the QZ4817 locker code"), 6)
    assert _texts(store, hybrid)[0] == FILLER[4] and 0 < hybrid[0].score <= 1.0
    assert [h.score for h in hybrid] == sorted((h.score for h in hybrid), reverse=True)
    words_only = HybridRetriever(dense_weight=0.0).search(store, Probe("QZ4817"), 6)
    assert _texts(store, words_only) == [FILLER[4]] and words_only[0].score == pytest.approx(1.0)


def test_a_similarity_floor_gives_an_unrelated_query_nothing(tmp_path, embedder):
    store = _store(tmp_path, embedder, FILLER)
    floored = HybridRetriever(min_similarity=0.5)
    assert floored.search(store, Probe("volcanic eruptions in Iceland"), 6) == []
    assert _texts(store, floored.search(store, Probe("the locker code"), 6))[0] == FILLER[4]


def test_fuse_scores_against_the_best_possible():
    hits = fuse([["a", "b"], ["a", "c"]], [1.0, 1.0])
    assert hits[0].id == "a" and hits[0].score == pytest.approx(1.0) and {h.id for h in hits} == {"a", "b", "c"}


def test_recency_prefers_the_newer_of_two_and_normalises_without_weight(tmp_path, embedder):
    store = _store(tmp_path, embedder, ["My favourite colour is blue.", "My favourite colour is green."])
    for newer_first in (True, False):
        hits, _ = Retrieval(HybridRetriever(), RecencyBlend(recency_weight=0.9 if newer_first else 0.0)).run(
            store, "What is my favourite colour?", 2
        )
        assert max(h.score for h in hits) <= 1.0
        if newer_first:
            assert _texts(store, hits)[0] == "My favourite colour is green."


def test_near_duplicates_are_dropped_and_the_list_cut_to_k(tmp_path, embedder):
    store = _store(
        tmp_path,
        embedder,
        [
            "I love hiking in the mountains.",
            "I love hiking in the mountains!!",
            "My brother prefers cycling by the sea.",
        ],
    )
    hits, _ = Retrieval(HybridRetriever(), NearDuplicateFilter()).run(store, "hiking mountains cycling", 2)
    assert sum("hiking" in t for t in _texts(store, hits)) == 1 and len(hits) == 2
    off, _ = Retrieval(HybridRetriever(bm25_weight=0.0), NearDuplicateFilter(dedup_threshold=1.0)).run(
        store, "hiking in the mountains", 2
    )
    assert sum("hiking" in t for t in _texts(store, off)) == 2


def test_neighbours_come_along_just_below_their_hit(tmp_path, embedder):
    store = _store(tmp_path, embedder, FILLER)
    hits, _ = Retrieval(LexicalRetriever(), NeighbourWidening(neighbors=1)).run(store, "QZ4817", 1)
    assert sorted(_texts(store, hits)) == sorted(FILLER[3:6]) and hits[0].score > max(h.score for h in hits[1:])


def test_utility_lifts_items_that_helped(tmp_path, embedder):
    store = _store(
        tmp_path,
        embedder,
        ["Call the restaurant by phone.", "Use the booking tool with an ISO date."],
        retrieved=[10, 10],
        helped=[1, 9],
    )
    hits, _ = Retrieval(HybridRetriever(), UtilityBlend(utility_weight=0.8)).run(store, "book a restaurant table", 1)
    assert _texts(store, hits) == ["Use the booking tool with an ISO date."]


def test_modules_declare_bounded_params_and_are_found_by_name():
    with pytest.raises(ValidationError):
        HybridRetriever(bm25_weight=5.0)
    with pytest.raises(ValidationError):
        NeighbourWidening(neighbors=9)

    class ProgramParams(HybridParams):
        top_k: int = 3

    module = HybridRetriever.from_params(ProgramParams(bm25_weight=0.5, top_k=7))
    assert module.params.bm25_weight == 0.5 and not hasattr(module.params, "top_k")
    assert set(modules("retriever")) == {"dense", "lexical", "hybrid"}
    assert {"recency", "dedup", "neighbours", "utility"} <= set(modules("stage"))
    assert module_class("hybrid", "retriever") is HybridRetriever
    with pytest.raises(ConfigError, match="no retriever module named 'bm42'.*dense, hybrid, lexical"):
        module_class("bm42", "retriever")


def test_an_empty_store_or_blank_query_retrieves_nothing(tmp_path, embedder):
    store = _store(tmp_path, embedder, [])
    assert Retrieval(HybridRetriever()).run(store, "anything", 5)[0] == []
    store.add([StoredItem(text="something")])
    assert Retrieval(HybridRetriever()).run(store, "   ", 5)[0] == []


class _ThreadRecordingEmbedder:
    """Wraps an embedder and records which thread embedded each text."""

    def __init__(self, inner) -> None:
        import threading

        self.inner, self.name, self.dim = inner, getattr(inner, "name", "recording"), inner.dim
        self.releases_gil = True  # as the real embedder it stands for
        self.threads: dict[str, int] = {}
        self._ident = threading.get_ident

    def embed(self, texts):
        for t in texts:
            self.threads[t] = self._ident()
        return self.inner.embed(texts)


def test_hybrid_embeds_the_query_while_bm25_searches_and_ranks_as_before(tmp_path, embedder):
    import threading

    recording = _ThreadRecordingEmbedder(embedder)
    store = _store(tmp_path, recording, FILLER)
    ask = "what is the QZ4817 locker code"
    hybrid = HybridRetriever().search(store, Probe(ask), 6)
    assert recording.threads[ask] != threading.get_ident()  # embedded off the calling thread
    # the same ranking as embedding first, then searching words, one after the other
    probe = Probe(ask)
    probe.vector(store)
    assert HybridRetriever().search(store, probe, 6) == hybrid
    floored = HybridRetriever(min_similarity=0.05).search(store, Probe(ask + "?"), 6)
    assert _texts(store, floored)[0] == FILLER[4]


def test_an_embedder_that_holds_the_gil_embeds_in_the_caller(tmp_path, embedder):
    """A thread cannot overlap a pure-Python embedder with the word search: it would only take turns."""
    import threading

    recording = _ThreadRecordingEmbedder(embedder)
    recording.releases_gil = False
    store = _store(tmp_path, recording, FILLER)
    hits = HybridRetriever().search(store, Probe("the QZ4817 code"), 6)
    assert _texts(store, hits)[0] == FILLER[4]
    assert recording.threads["the QZ4817 code"] == threading.get_ident()


def test_a_probe_embeds_in_the_caller_when_no_thread_can_start(tmp_path, embedder, monkeypatch):
    import threading

    import agentmem.retrievers as retrievers

    def refuse():
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(retrievers, "_embedding_pool", refuse)
    recording = _ThreadRecordingEmbedder(embedder)
    store = _store(tmp_path, recording, FILLER)
    hits = HybridRetriever().search(store, Probe("QZ4817"), 6)
    assert _texts(store, hits)[0] == FILLER[4]
    assert recording.threads["QZ4817"] == threading.get_ident()


def test_background_embedding_can_be_turned_off_for_hosts_that_forbid_threads(tmp_path, embedder):
    import threading

    from agentmem.retrievers import allow_background_embedding

    recording = _ThreadRecordingEmbedder(embedder)
    store = _store(tmp_path, recording, FILLER)
    allow_background_embedding(False)  # what evolution's sandbox worker does before its policy
    try:
        hits = HybridRetriever().search(store, Probe("the QZ4817 code"), 6)
    finally:
        allow_background_embedding(True)
    assert _texts(store, hits)[0] == FILLER[4]
    assert recording.threads["the QZ4817 code"] == threading.get_ident()


def test_a_forked_child_gets_its_own_embedding_thread(tmp_path, embedder):
    import multiprocessing

    store = _store(tmp_path, embedder, FILLER)
    probe = Probe("the piano next door")
    probe.prefetch(store)
    probe.vector(store)  # the parent's worker thread now exists

    def child(queue) -> None:
        fresh = Probe("music at home")
        fresh.prefetch(store)
        queue.put(len(fresh.vector(store)))

    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    proc.join(60)
    alive = proc.is_alive()
    if alive:
        proc.kill()
    assert not alive, "the forked child waited forever on its parent's embedding thread"
    assert queue.get(timeout=5) == embedder.dim


def test_recalls_from_several_threads_embed_in_parallel(tmp_path, embedder):
    import threading

    if (os.cpu_count() or 1) < 2:
        pytest.skip("one core: the pool has one worker")
    both_in_flight = threading.Barrier(2, timeout=10)

    class MeetingEmbedder(_ThreadRecordingEmbedder):
        meet = False

        def embed(self, texts):
            if self.meet:
                both_in_flight.wait()  # broken (and the search fails) if the two embeddings were serialised
            return super().embed(texts)

    meeting = MeetingEmbedder(embedder)
    store = _store(tmp_path, meeting, FILLER)
    meeting.meet = True
    results: list[list] = []
    callers = [
        threading.Thread(target=lambda n=n: results.append(HybridRetriever().search(store, Probe(f"code {n}"), 3)))
        for n in range(2)
    ]
    for c in callers:
        c.start()
    for c in callers:
        c.join(30)
    assert len(results) == 2 and not both_in_flight.broken
