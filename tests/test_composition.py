"""Composition: fan-out, budget split by weight, leftover redistribution, merged sources, routing."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import ClassVar

import pytest

from agentmem.composition import ComposedMemory, IntentRouter, Router, split_budget
from agentmem.errors import ConfigError
from agentmem.memory import MemoryProgram
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Recall, RecallItem, Scope
from agentmem_baselines import FullContextMemory, RAGMemory
from tests.helpers import FACTS

TURNS = [
    *FACTS,
    "My favourite dish is mushroom risotto.",
    "I run five kilometres every Sunday morning.",
] * 3


class ProceduralNotes(FullContextMemory):
    """Full context under a procedural name (to exercise routing with real storage)."""

    name: ClassVar[str] = "procedural"


class Overspender(MemoryProgram):
    """A buggy member that ignores the budget (plumbing only)."""

    name: ClassVar[str] = "overspender"

    def recall(self, query: Query) -> Recall:
        return Recall(
            items=[RecallItem(content="word " * 30, tokens=30, source="") for _ in range(5)], plugin=self.name
        )


def _toolkit(tmp_path, namespace, embedder=None, user="ann"):
    return Toolkit(scope=Scope(user_id=user), stores=Stores(tmp_path), embedder=embedder, namespace=namespace)


def _events(n: int | None = None):
    n = len(TURNS) if n is None else n
    return [
        Event.message(
            t,
            speaker="Ann",
            session_id=f"s{i // 4}",
            timestamp=datetime(2024, 1, 1 + i, tzinfo=UTC),
            metadata={"dia_id": f"D{i // 4 + 1}:{i % 4 + 1}"},
        )
        for i, t in enumerate(TURNS[:n])
    ]


def test_split_budget_is_proportional_and_whole():
    assert split_budget(100, [1, 1, 1]) == [34, 33, 33]
    assert split_budget(100, [3, 1]) == [75, 25]
    assert split_budget(7, [0, 0]) == [4, 3]
    assert sum(split_budget(1023, [0.2, 0.5, 0.3])) == 1023


def test_observe_and_reflect_fan_out_and_sources_are_kept(tmp_path, embedder):
    full = FullContextMemory(_toolkit(tmp_path, "full-context"))
    rag = RAGMemory(_toolkit(tmp_path, "rag", embedder), {"chunk_tokens": 24, "overlap_tokens": 8, "top_k": 1})
    memory = ComposedMemory([full, rag])
    for event in _events(6):
        memory.observe(event)
    memory.reflect(Episode(task="chat"))
    got = memory.recall(Query(text="What is my dog called?", budget_tokens=1000))
    assert {i.source for i in got.items} == {"full-context", "rag"}
    assert got.plugin == "full-context+rag" and memory.label == "full-context+rag"
    assert set(memory.last_recalls) == {"full-context", "rag"}
    assert len(memory.last_recalls["full-context"].items) == 6  # every member saw every event
    assert "Biscuit" in memory.last_recalls["rag"].text()
    assert got.items == memory.last_recalls["full-context"].items + memory.last_recalls["rag"].items
    assert "Passages retrieved" in got.instructions and "The conversation so far" in got.instructions
    memory.close()


def test_budget_left_unused_goes_to_the_member_that_had_to_cut(tmp_path, embedder):
    full = FullContextMemory(_toolkit(tmp_path, "full-context"))  # wants everything: will cut
    rag = RAGMemory(
        _toolkit(tmp_path, "rag", embedder), {"chunk_tokens": 24, "overlap_tokens": 0, "top_k": 1}
    )  # modest
    memory = ComposedMemory([full, rag])
    for event in _events():
        memory.observe(event)
    alone_at_half = full.recall(Query(text="dog", budget_tokens=150))
    got = memory.recall(Query(text="What is my dog called?", budget_tokens=300))
    rag_used = memory.last_recalls["rag"].tokens
    assert rag_used < 150  # the modest member left budget over ...
    assert memory.last_budgets["full-context"] == 300 - rag_used  # ... which went to the one that cut
    assert memory.last_recalls["full-context"].tokens > alone_at_half.tokens
    assert len(memory.last_recalls["full-context"].items) > len(alone_at_half.items)
    assert got.tokens <= 300
    assert got.omitted == memory.last_recalls["full-context"].omitted > 0
    memory.close()


def test_weights_split_the_budget(tmp_path):
    a = FullContextMemory(_toolkit(tmp_path, "a"))
    b = ProceduralNotes(_toolkit(tmp_path, "b"))
    memory = ComposedMemory([a, b], weights={"procedural": 3})
    for event in _events():
        memory.observe(event)
    got = memory.recall(Query(text="anything", budget_tokens=400))
    # 1:3 split; both cut, so neither leaves budget to the other
    assert memory.last_budgets == {"full-context": 100, "procedural": 300}
    assert memory.last_recalls["procedural"].tokens > 2 * memory.last_recalls["full-context"].tokens
    assert got.tokens <= 400
    with pytest.raises(ConfigError, match="episodic.*members: full-context, procedural"):
        ComposedMemory([a, b], weights={"episodic": 1})
    memory.close()


def test_a_member_that_overspends_is_held_to_its_share(tmp_path):
    full = FullContextMemory(_toolkit(tmp_path, "full-context"))
    rogue = Overspender(_toolkit(tmp_path, "overspender"))
    memory = ComposedMemory([full, rogue])
    got = memory.recall(Query(text="x", budget_tokens=100))
    assert got.tokens <= 100
    assert (
        memory.last_recalls["overspender"].omitted == 2
    )  # 5 items of 30 tokens, held to 100 (the empty member left its 50)
    assert all(i.source == "overspender" for i in got.items)
    memory.close()


def test_intent_router_follows_memflow_tiers():
    router = IntentRouter()
    assert isinstance(router, Router)
    names = ["episodic", "semantic", "procedural", "rag", "my-notes"]
    assert router.select("How do I reset the router?", names) == ["procedural", "my-notes"]
    assert router.select("When did Ann adopt Biscuit?", names) == ["episodic", "semantic", "rag", "my-notes"]
    assert router.select("What is my favourite food?", names) == ["semantic", "my-notes"]
    assert router.select("Tell me a joke", names) == names
    # nobody serves the intent: ask everyone rather than no one
    assert router.select("How do I reset the router?", ["episodic", "rag"]) == ["episodic", "rag"]


def test_composed_memory_consults_only_what_the_router_picks(tmp_path):
    full = FullContextMemory(_toolkit(tmp_path, "full-context"))
    procedural = ProceduralNotes(_toolkit(tmp_path, "procedural"))
    memory = ComposedMemory([full, procedural], router=IntentRouter())
    for event in _events(4):
        memory.observe(event)
    got = memory.recall(Query(text="How do I prepare the quarterly report?", budget_tokens=500))
    assert memory.last_selected == ["procedural"] and set(memory.last_recalls) == {"procedural"}
    assert memory.last_budgets == {"procedural": 500}
    assert {i.source for i in got.items} == {"procedural"}
    memory.recall(Query(text="When is the report due?", budget_tokens=500))
    assert memory.last_selected == ["full-context"]
    memory.recall(Query(text="Say something nice", budget_tokens=500))
    assert memory.last_selected == ["full-context", "procedural"]
    memory.close()
