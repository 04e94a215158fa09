"""Episodic memory: token-budgeted, time-stamped recall."""

from __future__ import annotations

from datetime import UTC, datetime

from agentmem.tokens import count_tokens
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Query, Scope
from agentmem_episodic import EpisodicMemory
from tests.helpers import FACTS


def evidence(recall):
    """The ids of the events recalled items came from (events here carry their turn id as their id)."""
    return [e for item in recall.items for e in item.event_ids]


def _fill(tmp_path, embedder, **params):
    toolkit = Toolkit(scope=Scope(user_id="u"), stores=Stores(tmp_path), embedder=embedder, namespace="episodic")
    memory = EpisodicMemory(toolkit, params)
    for i, fact in enumerate(FACTS):
        memory.observe(
            Event.message(
                fact,
                speaker="Ann",
                session_id=f"s{i // 2}",
                timestamp=datetime(2024, 1, 1 + i, tzinfo=UTC),
                id=f"D{i // 2 + 1}:{i % 2 + 1}",
            )
        )
    return memory


def test_recall_finds_the_relevant_event_with_its_date_and_ids(tmp_path, embedder):
    memory = _fill(tmp_path, embedder, top_k=2)
    got = memory.recall(Query(text="What is the name of my dog?", budget_tokens=200))
    assert "Biscuit" in got.items[0].content or "Biscuit" in got.text()
    assert "2024-01-01" in got.text()
    assert "D1:1" in evidence(got)
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


# -- hybrid retrieval, de-duplication, recency --------------------------------------------
FILLER = [
    "We talked about the weather and the long winter.",
    "The train to the city was late again this morning.",
    "I tried a new recipe for lentil soup yesterday.",
    "My neighbour plays the piano in the evenings.",
    "The office moved to the third floor last month.",
    "I read a novel about sailors and storms.",
    "Our team won the quiz night at the pub.",
    "The garden needs watering twice a week in summer.",
]


def _open(tmp_path, embedder, **params):
    toolkit = Toolkit(scope=Scope(user_id="u"), stores=Stores(tmp_path), embedder=embedder, namespace="episodic")
    return EpisodicMemory(toolkit, params)


def _say(memory, text, i, session="s1", year=2024, dia=None):
    memory.observe(
        Event.message(
            text,
            speaker="Ann",
            session_id=session,
            timestamp=datetime(year, 1, 1 + i % 28, tzinfo=UTC),
            id=dia or f"D1:{i + 1}",
        )
    )


def test_bm25_finds_an_exact_code_that_embeddings_blur(tmp_path, embedder):
    memory = _open(tmp_path, embedder, top_k=1)
    for i, text in enumerate([*FILLER, "The storage locker code is QZ4817."]):
        _say(memory, text, i)
    got = memory.recall(Query(text="QZ4817", budget_tokens=100))
    assert "QZ4817" in got.text()
    # BM25 alone (no embeddings asked) still answers an exact-word query
    lexical = _open(tmp_path, embedder, top_k=1, dense_weight=0.0)
    assert "QZ4817" in lexical.recall(Query(text="what is the QZ4817 locker", budget_tokens=100)).text()
    memory.close()
    lexical.close()


def test_word_for_word_repeats_are_stored_once_with_every_evidence_id(tmp_path, embedder):
    memory = _open(tmp_path, embedder, top_k=5)
    for i, text in enumerate(FILLER[:3]):
        _say(memory, text, i)
    for n, session in enumerate(["s2", "s3", "s4"]):
        _say(memory, "Haha, same here!", 10 + n, session=session, dia=f"D{n + 2}:1")
    assert memory.import_items([]) == 0
    got = memory.recall(Query(text="same here haha", budget_tokens=300))
    same = [i for i in got.items if "same here" in i.content.lower()]
    assert len(same) == 1
    assert set(same[0].event_ids) == {"D2:1", "D3:1", "D4:1"}
    memory.close()
    # the merge is stored, not just cached: a reopened memory sees it too
    again = _open(tmp_path, embedder, top_k=5)
    assert evidence(again.recall(Query(text="same here haha", budget_tokens=300))).count("D3:1") == 1
    again.close()


def test_near_duplicate_hits_do_not_fill_the_budget_twice(tmp_path, embedder):
    memory = _open(tmp_path, embedder, top_k=2)
    _say(memory, "I love hiking in the mountains.", 0)
    _say(memory, "I love hiking in the mountains!!", 1, session="s2")
    _say(memory, "My brother prefers cycling by the sea.", 2, session="s3")
    got = memory.recall(Query(text="What outdoor activities do we like?", budget_tokens=300))
    assert sum("hiking" in i.content for i in got.items) == 1
    assert any("cycling" in i.content for i in got.items)
    off = _open(tmp_path, embedder, top_k=2, dedup_threshold=1.0, bm25_weight=0.0)
    assert (
        sum("hiking" in i.content for i in off.recall(Query(text="hiking in the mountains", budget_tokens=300)).items)
        == 2
    )
    memory.close()
    off.close()


def test_recency_prefers_the_newer_of_two_conflicting_statements(tmp_path, embedder):
    memory = _open(tmp_path, embedder, top_k=1, recency_weight=0.6, recency_half_life_days=90)
    _say(memory, "My favourite colour is green.", 0, session="new", year=2024)
    _say(memory, "My favourite colour is blue.", 1, session="old", year=2019)
    got = memory.recall(Query(text="What is my favourite colour?", budget_tokens=100))
    assert "green" in got.text()
    memory.close()


def test_recall_says_what_did_not_fit(tmp_path, embedder):
    memory = _fill(tmp_path, embedder, top_k=6)
    got = memory.recall(Query(text="Tell me about my family and my plans", budget_tokens=30))
    assert got.omitted >= 1
    assert f"{got.omitted} more matching excerpt" in got.instructions
