"""Baselines: full context (newest that fit, what was cut) and vanilla RAG (windows, overlap, top-k)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from agentmem.registry import discover, load_memory
from agentmem.tokens import _PIECES, count_tokens
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Scope
from agentmem_baselines import FullContextMemory, RAGMemory, RAGParams
from tests.helpers import FACTS


def _event(i: int, fact: str) -> Event:
    return Event.message(
        fact,
        speaker="Ann",
        session_id=f"s{i // 2}",
        timestamp=datetime(2024, 1, 1 + i, tzinfo=UTC),
        id=f"D{i // 2 + 1}:{i % 2 + 1}",
        when=f"{1 + i} January 2024",
    )


def evidence(recall) -> list[str]:
    """The ids of the events recalled items came from (events here carry their turn id as their id)."""
    return [e for item in recall.items for e in item.event_ids]


def _open(cls, tmp_path, embedder=None, user="ann", **params):
    toolkit = Toolkit(scope=Scope(user_id=user), stores=Stores(tmp_path), embedder=embedder, namespace=cls.name)
    return cls(toolkit, params)


def _fill(memory):
    for i, fact in enumerate(FACTS):
        memory.observe(_event(i, fact))
    return memory


def _pieces(text: str) -> list[str]:
    return _PIECES.findall(text)


# -- full context ---------------------------------------------------------------------
def test_full_context_keeps_the_newest_events_that_fit_oldest_first(tmp_path):
    memory = _fill(_open(FullContextMemory, tmp_path))
    everything = memory.recall(Query(text="anything", budget_tokens=10_000))
    assert [i.content.split("] ", 1)[1] for i in everything.items] == [f"Ann: {f}" for f in FACTS]
    assert everything.omitted == 0
    assert everything.items[0].content.startswith("[1 January 2024] ")
    assert evidence(everything) == ["D1:1", "D1:2", "D2:1", "D2:2", "D3:1", "D3:2"]

    last_two = sum(count_tokens(i.content) for i in everything.items[-2:])
    got = memory.recall(Query(text="what is my dog called?", budget_tokens=last_two + 3))
    assert "Kyoto" in got.items[-1].content and "peanuts" in got.items[0].content  # newest, oldest first
    assert len(got.items) == 2 and got.omitted == 4
    assert got.tokens <= last_two + 3 and got.tokens == sum(count_tokens(i.content) for i in got.items)
    assert "4 older events cut" in got.instructions
    assert memory.recall(Query(text="x", budget_tokens=0)).omitted == 6
    memory.close()


def test_full_context_persists_across_reopen_and_keeps_scopes_apart(tmp_path):
    _fill(_open(FullContextMemory, tmp_path)).close()
    reopened = _open(FullContextMemory, tmp_path)
    reopened.observe(Event.message("I sold my bike.", speaker="Ann"))
    got = reopened.recall(Query(text="", budget_tokens=10_000))
    assert len(got.items) == 7 and "Biscuit" in got.items[0].content and "bike" in got.items[-1].content
    reopened.close()
    stranger = _open(FullContextMemory, tmp_path, user="bob")
    assert stranger.recall(Query(text="", budget_tokens=10_000)).items == []
    stranger.close()


def test_full_context_max_events_caps_what_is_returned(tmp_path):
    memory = _fill(_open(FullContextMemory, tmp_path, max_events=3))
    got = memory.recall(Query(text="", budget_tokens=10_000))
    assert len(got.items) == 3 and got.omitted == 3 and "Kyoto" in got.items[-1].content
    memory.close()


# -- rag --------------------------------------------------------------------------------
def test_rag_finds_the_chunk_that_answers_with_its_event_ids(tmp_path, embedder):
    memory = _fill(_open(RAGMemory, tmp_path, embedder, chunk_tokens=24, overlap_tokens=8, top_k=1))
    got = memory.recall(Query(text="What is the name of my dog?", budget_tokens=200))
    assert len(got.items) == 1
    assert "Biscuit" in got.text()
    assert "D1:1" in evidence(got)
    assert got.items[0].source == "rag" and got.items[0].content.startswith("[1 January 2024]")
    got = memory.recall(Query(text="Which city does my sister live in?", budget_tokens=200))
    assert "Lisbon" in got.text() and "D1:2" in evidence(got)
    memory.close()


def test_rag_windows_overlap_and_cover_every_event(tmp_path, embedder):
    memory = _fill(_open(RAGMemory, tmp_path, embedder, chunk_tokens=32, overlap_tokens=16, top_k=3))
    chunks = list(memory.chunks().values())
    assert len(chunks) >= 3
    for a, b in zip(chunks, chunks[1:]):
        assert b.start - a.start == 16
        assert _pieces(a.text)[-16:] == _pieces(b.text)[:16]  # consecutive windows share 16 tokens
    for c in chunks[:-1]:
        assert len(_pieces(c.text)) == 32
    # every event (<= 17 tokens here) lies whole inside at least one window
    for fact in FACTS:
        assert any(f"Ann: {fact}" in c.text for c in chunks), fact
    assert sorted({d for c in chunks for d in c.event_ids}) == ["D1:1", "D1:2", "D2:1", "D2:2", "D3:1", "D3:2"]
    memory.close()


def test_rag_respects_the_budget_and_reports_what_it_cut(tmp_path, embedder):
    memory = _fill(_open(RAGMemory, tmp_path, embedder, chunk_tokens=24, overlap_tokens=0, top_k=3))
    got = memory.recall(Query(text="my family and my travel plans", budget_tokens=40))
    assert 1 <= len(got.items) and got.tokens <= 40
    assert got.omitted >= 1 and len(got.items) + got.omitted == 3
    assert [i.metadata["chunk"] for i in got.items] == sorted(i.metadata["chunk"] for i in got.items)
    assert memory.recall(Query(text="x", budget_tokens=0)).omitted == 3
    memory.close()


def test_rag_what_was_just_said_is_searchable(tmp_path, embedder):
    memory = _open(RAGMemory, tmp_path, embedder, chunk_tokens=128)
    memory.observe(Event.message("My locker code is 4417.", speaker="Ann"))
    assert "4417" in memory.recall(Query(text="locker code", budget_tokens=100)).text()
    memory.observe(Event.message("Tomorrow I fly to Oslo.", speaker="Ann"))
    assert "Oslo" in memory.recall(Query(text="Where am I flying?", budget_tokens=100)).text()
    memory.close()


def test_rag_persists_across_reopen_rechunks_on_new_sizes_and_keeps_scopes_apart(tmp_path, embedder):
    _fill(_open(RAGMemory, tmp_path, embedder, chunk_tokens=24, overlap_tokens=8)).close()
    reopened = _open(RAGMemory, tmp_path, embedder, chunk_tokens=24, overlap_tokens=8, top_k=1)
    assert "Kyoto" in reopened.recall(Query(text="Where are we travelling in autumn?", budget_tokens=200)).text()
    reopened.close()
    resized = _open(RAGMemory, tmp_path, embedder, chunk_tokens=64, overlap_tokens=0, top_k=1)
    chunks = list(resized.chunks().values())
    assert [c.start for c in chunks] == [64 * n for n in range(len(chunks))]
    assert len(_pieces(chunks[0].text)) == 64
    assert "Biscuit" in resized.recall(Query(text="golden retriever", budget_tokens=200)).text()
    resized.close()
    stranger = _open(RAGMemory, tmp_path, embedder, user="bob")
    assert stranger.recall(Query(text="golden retriever", budget_tokens=200)).items == []
    stranger.close()


def test_rag_params_are_bounded_and_overlap_is_capped():
    with pytest.raises(ValidationError):
        RAGParams(chunk_tokens=8)
    with pytest.raises(ValidationError):
        RAGParams(top_k=0)
    assert RAGParams(chunk_tokens=32, overlap_tokens=200).stride == 16  # overlap at most half a window
    assert RAGParams(chunk_tokens=100, overlap_tokens=0).stride == 100


def test_baselines_are_discovered_through_entry_points():
    found = {p.name: p for p in discover("memory")}
    for name in ("none", "full-context", "rag"):
        assert found[name].status == "ok" and found[name].distribution == "agentmem-baselines"
    assert load_memory("full-context") is FullContextMemory
    assert load_memory("rag") is RAGMemory
