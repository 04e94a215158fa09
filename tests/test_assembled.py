"""A memory assembled from declared module choices (the unit structural operators rewrite), with the real embedder."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agentmem.assembled import AssembledMemory, Design, check_design, extract_facts, session_summary, subject_key
from agentmem.errors import ConfigError
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope
from agentmem_episodic import EpisodicMemory
from tests.helpers import FACTS


def assembled(design: dict[str, Any]) -> type[AssembledMemory]:
    return type("Designed", (AssembledMemory,), {"design": design})


def fill(memory: Any, lines: list[str] | list[tuple[str, str]], *, speaker: str = "Ann", per_session: int = 2) -> Any:
    """Each line (or ``(speaker, line)``) as one message, a day apart, ``per_session`` to a session."""
    for i, said in enumerate(lines):
        who, line = said if isinstance(said, tuple) else (speaker, said)
        memory.observe(
            Event.message(
                line,
                speaker=who,
                session_id=f"s{i // per_session}",
                timestamp=datetime(2024, 1, 1 + i, tzinfo=UTC),
                id=f"e{i}",
            )
        )
    return memory


def toolkit(tmp_path, embedder, name: str) -> Toolkit:
    return Toolkit(scope=Scope(user_id="u"), stores=Stores(tmp_path), embedder=embedder, namespace=name)


def contents(recall) -> list[str]:
    return [i.content for i in recall.items]


def test_the_episodic_design_recalls_what_episodic_recalls(tmp_path, embedder):
    """Lifting a seeded episodic program into modules changes nothing before an operator does."""
    design = {"encode": "turn", "retriever": "hybrid", "neighbours": False, "dedup": True, "managers": ["consolidate"]}
    with (
        fill(EpisodicMemory(toolkit(tmp_path / "a", embedder, "episodic")), FACTS) as plugin,
        fill(assembled(design)(toolkit(tmp_path / "b", embedder, "assembled")), FACTS) as modules,
    ):
        for question in ("What is Ann allergic to?", "Where does her sister live?", "When did the cello start?"):
            query = Query(text=question, budget_tokens=120)
            assert contents(modules.recall(query)) == contents(plugin.recall(query))


def test_each_retriever_finds_the_fact(tmp_path, embedder):
    for kind in ("dense", "lexical", "hybrid", "recency"):
        with fill(
            assembled({"retriever": kind})(
                toolkit(tmp_path / kind, embedder, kind), {"recency_weight": 0.2, "top_k": 1}
            ),
            FACTS,
        ) as memory:
            (found,) = contents(memory.recall(Query(text="allergic to peanuts", budget_tokens=60)))
            assert "peanuts" in found, kind


def test_turn_with_session_summary_is_found_by_what_its_session_was_about(tmp_path, embedder):
    lines = [
        "We talked about the kitchen renovation budget and the kitchen tiles.",
        "Yes, that one, the blue kind.",
        "The dentist appointment is on Monday.",
        "Sure, see you then.",
    ]
    with fill(assembled({"encode": "turn+summary"})(toolkit(tmp_path, embedder, "summary")), lines) as memory:
        got = contents(memory.recall(Query(text="kitchen", budget_tokens=400)))
    blue = next(c for c in got if "blue kind" in c)  # a turn without the word is found through its session's summary
    assert "session about: kitchen" in blue
    assert session_summary(lines[:2], 2) == "kitchen, talked"


def test_fact_encoding_keeps_statements_about_the_speaker_and_drops_chatter(tmp_path, embedder):
    assert extract_facts("Nice weather today. I am allergic to peanuts! See you.") == ["I am allergic to peanuts!"]
    with fill(
        assembled({"encode": "fact"})(toolkit(tmp_path, embedder, "facts")),
        ["Hello there, how was the weekend?", "Nice weather today. I am allergic to peanuts."],
    ) as memory:
        (item,) = memory.recall(Query(text="allergies", budget_tokens=100)).items
        assert memory.store.count() == 1
    assert item.content.endswith("Ann: I am allergic to peanuts.") and item.event_ids == ["e1"]


def test_without_own_turns_only_what_the_others_said_is_stored(tmp_path, embedder):
    """The assistant's acknowledgements take no recall slot the user's statements need."""
    said = [("user", "I always want a window seat."), ("assistant", "Got it."), ("Assistant", "Noted, window seat.")]
    with fill(assembled({"own_turns": False})(toolkit(tmp_path, embedder, "others")), said, per_session=3) as memory:
        got = memory.recall(Query(text="window seat", budget_tokens=200))
        assert contents(got) and all("user: I always want a window seat." in c for c in contents(got))
        assert memory.store.count() == 1


def test_without_dates_a_memory_is_its_text_alone(tmp_path, embedder):
    with fill(assembled({"dates": False})(toolkit(tmp_path, embedder, "undated")), FACTS[:2]) as memory:
        got = contents(memory.recall(Query(text=FACTS[0], budget_tokens=300)))
    assert got and all(not c.startswith("[") and c.startswith("Ann: ") for c in got)


def test_notes_show_the_same_memories_as_bullets_with_the_user_unnamed(tmp_path, embedder):
    said = [("user", "I always want a window seat."), ("Ann", "Window seats are cold."), ("user", "I fly on Mondays.")]
    shown = {}
    for style in ("transcript", "notes"):
        memory = assembled({"style": style, "dates": False})(toolkit(tmp_path / style, embedder, style))
        with fill(memory, said, per_session=3) as memory:
            shown[style] = memory.recall(Query(text="window seat", budget_tokens=400)).items
    assert [i.event_ids for i in shown["notes"]] == [i.event_ids for i in shown["transcript"]]  # the same recall
    notes = {i.event_ids[0]: i.content for i in shown["notes"]}
    assert notes["e0"] == "- I always want a window seat." and notes["e1"] == "- Ann: Window seats are cold."
    assert {i.event_ids[0]: i.content for i in shown["transcript"]}["e0"] == "user: I always want a window seat."


def test_order_shows_the_same_memories_oldest_first_best_first_or_best_last(tmp_path, embedder):
    shown = {}
    for order in ("time", "best-first", "best-last"):
        memory = assembled({"order": order})(toolkit(tmp_path / order, embedder, order))
        with fill(memory, FACTS) as memory:
            shown[order] = memory.recall(Query(text=FACTS[3], budget_tokens=2000)).items
    assert len({frozenset(i.content for i in items) for items in shown.values()}) == 1  # the same items
    told = [next(k for k, fact in enumerate(FACTS) if fact in i.content) for i in shown["time"]]
    assert told == sorted(told)  # oldest first: FACTS were said one a day, in list order
    assert shown["best-first"][0].score == max(i.score for i in shown["best-first"])
    assert [i.content for i in shown["best-last"]] == [i.content for i in reversed(shown["best-first"])]
    assert FACTS[3] in shown["best-last"][-1].content


def test_supersede_by_subject_keeps_only_the_newest_value_with_its_history(tmp_path, embedder):
    lines = ["I prefer 22 degrees in the living room.", "Actually make it 24 degrees in the living room."]
    assert subject_key("Ann", lines[0]) == subject_key("Ann", lines[1]) != ""
    query = Query(text="living room temperature degrees", budget_tokens=200)
    with fill(
        assembled({"managers": ["supersede"]})(toolkit(tmp_path / "on", embedder, "sup")), lines, per_session=1
    ) as memory:
        got = contents(memory.recall(query))
        (row,) = [h for h in memory.store.history() if h.op == "UPDATE"]
    assert len(got) == 1 and "24 degrees" in got[0] and "22 degrees" in row.old_text
    with fill(
        assembled({"managers": []})(toolkit(tmp_path / "off", embedder, "plain")), lines, per_session=1
    ) as memory:
        assert len(memory.recall(query).items) == 2


def test_a_correction_in_other_words_hides_the_statement_it_changes(tmp_path, embedder):
    """No slot key links "king bed" and "twin bed ... now": the change cue and closeness in meaning do."""
    said = [
        ("user", "In hotels I sleep best in a king bed."),
        ("user", "At home the thermostat should be set to 18 degrees."),
        ("guest", "From now on I want a sofa bed in hotels."),  # another speaker's change hides nothing of ours
        ("user", "I also like quiet rooms in hotels."),  # no change cue: hides nothing
        ("user", "My back is better now, so a twin bed is what I want in hotels."),
    ]
    with fill(
        assembled({"managers": ["consolidate", "correct"]})(toolkit(tmp_path, embedder, "correct")), said, per_session=1
    ) as memory:
        got = " ".join(contents(memory.recall(Query(text="Book me a hotel room", budget_tokens=400))))
        (row,) = [h for h in memory.store.history() if h.op == "CORRECT"]
        assert memory.store.count() == 4
    assert "twin bed" in got and "king bed" not in got and "sofa bed" in got and "quiet rooms" in got
    assert "king bed" in row.old_text and "twin bed" in row.new_text and row.event_ids == ["e4"]


def test_prune_drops_items_recalled_in_episodes_that_keep_failing(tmp_path, embedder):
    params = {"min_uses": 2, "prune_below": 0.5, "top_k": 1}
    with fill(assembled({"managers": ["prune"]})(toolkit(tmp_path, embedder, "prune"), params), FACTS[:2]) as memory:
        for _ in range(2):
            assert "Biscuit" in contents(memory.recall(Query(text="golden retriever Biscuit", budget_tokens=200)))[0]
            memory.reflect(Episode(success=False))
        assert all(
            "Biscuit" not in c
            for c in contents(memory.recall(Query(text="golden retriever Biscuit", budget_tokens=200)))
        )
        assert memory.store.count() == 1


def test_compose_recalls_another_plugin_beside_its_own_under_a_weight(tmp_path, embedder):
    with fill(assembled({"compose": {"full-context": 1.0}})(toolkit(tmp_path, embedder, "composed")), FACTS) as memory:
        recall = memory.recall(Query(text="allergic to peanuts", budget_tokens=80))
    sources = {i.source for i in recall.items}
    assert sources == {"assembled", "full-context"}
    assert sum(i.tokens for i in recall.items) <= 80 and "peanuts" in recall.instructions


def test_a_wrong_design_is_one_clear_error():
    with pytest.raises(ValidationError, match="retriever"):
        Design.model_validate({"retriever": "psychic"})
    with pytest.raises(ValidationError, match="weight"):
        Design.model_validate({"compose": {"semantic": 9.0}})
    assert Design.model_validate({"managers": ["prune", "supersede", "prune"]}).managers == ["supersede", "prune"]
    with pytest.raises(ConfigError, match=r"^Mine's DESIGN: managers\.0: Input should be .* \(given 'forget'\); fix"):
        check_design({"managers": ["forget"]}, "Mine")


def test_a_composed_plugin_announced_by_the_sandbox_is_found_without_the_registry(monkeypatch):
    import agentmem.assembled as assembled_module
    from agentmem_baselines import FullContextMemory

    monkeypatch.setattr(assembled_module, "_KNOWN_PLUGINS", {})
    assembled_module.know_plugins({"everything": "agentmem_baselines:FullContextMemory"})
    assert assembled_module.plugin_class("everything") is FullContextMemory
    assert assembled_module.plugin_class("full-context") is FullContextMemory  # not announced: the registry's
