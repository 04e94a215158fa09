"""Episodic memory: token-budgeted, time-stamped recall."""

from __future__ import annotations

from datetime import datetime, timezone

from agentmem.tokens import count_tokens
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Scope
from agentmem_episodic import EpisodicMemory

FACTS = [
    "I adopted a golden retriever named Biscuit.",
    "My sister lives in Lisbon and works as an architect.",
    "I started learning the cello in March.",
    "The quarterly report is due on Friday.",
    "I am allergic to peanuts.",
    "We are planning a trip to Kyoto in autumn.",
]


def _fill(tmp_path, embedder, **params):
    toolkit = Toolkit(scope=Scope(user_id="u"), stores=Stores(tmp_path), embedder=embedder, namespace="episodic")
    memory = EpisodicMemory(toolkit, params)
    for i, fact in enumerate(FACTS):
        memory.observe(
            Event.message(fact, speaker="Ann", session_id=f"s{i // 2}", timestamp=datetime(2024, 1, 1 + i, tzinfo=timezone.utc),
                          metadata={"dia_id": f"D{i // 2 + 1}:{i % 2 + 1}"})
        )
    return memory


def test_recall_finds_the_relevant_event_with_its_date_and_ids(tmp_path, embedder):
    memory = _fill(tmp_path, embedder, top_k=2)
    got = memory.recall(Query(text="What is the name of my dog?", budget_tokens=200))
    assert "Biscuit" in got.items[0].content or "Biscuit" in got.text()
    assert "2024-01-01" in got.text()
    assert "D1:1" in got.metadata_values("dia_id")
    assert len(got.items) <= 2
    memory.close()


def test_recall_respects_the_token_budget_and_reports_what_it_left_out(tmp_path, embedder):
    memory = _fill(tmp_path, embedder, top_k=6)
    got = memory.recall(Query(text="Tell me about my family and my plans", budget_tokens=30))
    assert got.tokens <= 30
    assert sum(count_tokens(i.content) for i in got.items) <= 30
    assert got.omitted >= 1
    assert len(got.items) + got.omitted == 6
    assert memory.recall(Query(text="anything", budget_tokens=0)).items == []
    memory.close()


def test_chunking_groups_consecutive_turns_of_a_session(tmp_path, embedder):
    memory = _fill(tmp_path, embedder, chunk_turns=2, top_k=1)
    got = memory.recall(Query(text="Where does my sister live?", budget_tokens=200))
    assert len(got.items) == 1
    assert "Lisbon" in got.text() and "Biscuit" in got.text()  # same session, same chunk
    memory.close()
