"""Semantic memory: extracted facts kept current by ADD/UPDATE/DELETE/NOOP, with versioned history.

Plumbing runs against a scripted fake LLM; the behaviour the design is about
(a later contradiction wins, history keeps both versions, plain facts are
extracted and recalled) is also shown with the real local model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from agentmem.errors import DataError, LLMError
from agentmem.registry import discover, load_memory
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope
from agentmem_semantic import SemanticMemory, SemanticParams


class ScriptedLLM:
    """A fake LLM for plumbing tests: scripted replies per schema; callables see the prompt."""

    def __init__(
        self, extract: list[Any] | None = None, decide: Callable[[str], dict] | list[Any] | None = None
    ) -> None:
        self.extract = list(extract or [])
        self.decide = decide
        self.calls: list[tuple[str, str]] = []

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        raise AssertionError("semantic memory should only make structured calls")

    def structured(self, messages: list[dict[str, Any]], schema: type, *, caller: str | None = None) -> Any:
        prompt = messages[-1]["content"]
        self.calls.append((schema.__name__, prompt))
        if schema.__name__ == "Extraction":
            reply = self.extract.pop(0) if self.extract else {"facts": []}
        else:
            if callable(self.decide):
                reply = self.decide(prompt)
            elif self.decide:
                reply = self.decide.pop(0)
            else:
                reply = {"decisions": []}
        if isinstance(reply, Exception):
            raise reply
        return schema.model_validate(reply)


def _memory(tmp_path, embedder, llm=None, **params) -> SemanticMemory:
    toolkit = Toolkit(
        scope=Scope(user_id="u"), stores=Stores(tmp_path), llm=llm, embedder=embedder, namespace="semantic"
    )
    return SemanticMemory(toolkit, params)


def _event(
    text: str, dia: str, speaker: str = "Ann", session: str = "s1", date: str = "1:56 pm on 8 May, 2023"
) -> Event:
    return Event.message(
        text,
        speaker=speaker,
        session_id=session,
        timestamp=datetime(2023, 5, 8, tzinfo=UTC) if session == "s1" else datetime(2023, 6, 1, tzinfo=UTC),
        id=dia,
        when=date,
    )


def evidence(recall) -> list[str]:
    """The ids of the events recalled items came from (events here carry their turn id as their id)."""
    return [e for item in recall.items for e in item.event_ids]


def _fact(text: str, key: str) -> dict[str, str]:
    return {"key": key, "fact": text}


def _decider(rules: dict[str, tuple[str, str]]) -> Callable[[str], dict]:
    """Decide by reading the prompt: NEW text containing a word -> (action, word in the OLD fact to point at)."""

    def decide(prompt: str) -> dict:
        decisions = []
        blocks = re.split(r"(?m)^NEW ", prompt)[1:]
        for block in blocks:
            number = int(block.split(":", 1)[0])
            new_text = block.splitlines()[0]
            olds = {int(n): t for n, t in re.findall(r"OLD (\d+): (.*)", block)}
            for word, (action, old_word) in rules.items():
                if word in new_text:
                    old = next((n for n, t in olds.items() if old_word and old_word in t), 0)
                    decisions.append({"new": number, "action": action, "old": old})
                    break
        return {"decisions": decisions}

    return decide


# -- plumbing with a scripted LLM ----------------------------------------------------------
def test_extraction_runs_per_batch_and_keeps_provenance(tmp_path, embedder):
    llm = ScriptedLLM(extract=[{"facts": [_fact("Ann's dog is named Biscuit", "dog name"), _fact("hi?", "x")]}])
    memory = _memory(tmp_path, embedder, llm, batch_turns=3)
    memory.observe(_event("Hi Bob, how are you?", "D1:1"))
    memory.observe(_event("Fine!", "D1:2", speaker="Bob"))
    assert llm.calls == [] and memory.facts() == []  # buffered until the batch is full
    memory.observe(_event("I just adopted a puppy, his name is Biscuit.", "D1:3"))
    assert [c[0] for c in llm.calls] == ["Extraction"]  # nothing similar stored: ADD without asking
    assert "I just adopted a puppy" in llm.calls[0][1] and "8 May 2023" in llm.calls[0][1]
    (fact,) = memory.facts()  # the question-shaped "fact" was dropped
    assert fact.text == "Ann's dog is named Biscuit" and fact.key == "dog name" and fact.version == 1
    assert fact.event_ids == ["D1:3"] and fact.date == "1:56 pm on 8 May, 2023"
    (change,) = memory.history(fact.id)
    assert change.op == "ADD" and change.new_text == fact.text and change.event_ids == ["D1:3"]
    assert change.event_ids == fact.event_ids and len(change.event_ids) == 1

    got = memory.recall(Query(text="What is the name of Ann's dog?", budget_tokens=100))
    assert got.items[0].content == "[8 May 2023] Ann's dog is named Biscuit"
    assert evidence(got) == ["D1:3"] and got.items[0].source == "semantic"
    assert got.items[0].tokens > 0 and "Biscuit" in got.instructions
    memory.close()


def test_a_batch_that_does_not_fit_the_context_is_halved_not_skipped(tmp_path, embedder):
    from agentmem.errors import NoRoomForReply

    llm = ScriptedLLM(
        extract=[
            NoRoomForReply("the prompt leaves 20 of the model's 512 context tokens: give a smaller input", room=20),
            {"facts": [_fact("Ann adopted a puppy named Biscuit", "pet")]},
            {"facts": [_fact("Ann moved to Lisbon in June", "home city")]},
        ]
    )
    memory = _memory(tmp_path, embedder, llm, batch_turns=4)
    memory.observe(_event("Hi Bob, I adopted a puppy!", "D1:1"))
    memory.observe(_event("His name is Biscuit.", "D1:2"))
    memory.observe(_event("Also I moved to Lisbon.", "D1:3"))
    memory.observe(_event("That was in June.", "D1:4"))
    assert [c[0] for c in llm.calls] == ["Extraction"] * 3  # the whole batch, then each half
    assert "Biscuit" in llm.calls[1][1] and "Biscuit" not in llm.calls[2][1].split("Also I moved")[1]
    assert sorted(f.text for f in memory.facts()) == [
        "Ann adopted a puppy named Biscuit",
        "Ann moved to Lisbon in June",
    ]
    memory.close()


def test_add_update_delete_noop_are_applied_with_history(tmp_path, embedder):
    llm = ScriptedLLM(
        extract=[
            {
                "facts": [
                    _fact("Ann now prefers aisle seats on flights", "seat preference"),
                    _fact("Ann no longer has a car", "car"),
                    _fact("Ann lives in Paris", "home city"),
                    _fact("Ann's favorite sport is tennis", "favorite sport"),
                ]
            }
        ],
        decide=_decider({"aisle": ("UPDATE", "window"), "car": ("DELETE", "car"), "tennis": ("ADD", "")}),
    )
    memory = _memory(tmp_path, embedder, llm, batch_turns=4)
    seats = memory.add_fact(
        "Ann prefers window seats on flights", subject="Ann", key="seat preference", event_ids=["D0:1"]
    )
    car = memory.add_fact("Ann has a red car", subject="Ann", key="car")
    paris = memory.add_fact("Ann lives in Paris", subject="Ann", key="home city")
    assert llm.calls == []  # add_fact never asks the LLM
    for i, text in enumerate(
        [
            "Actually I now prefer aisle seats.",
            "I sold my car last week.",
            "Still living in Paris!",
            "Tennis is my favorite sport now.",
        ]
    ):
        memory.observe(_event(text, f"D2:{i + 1}", session="s2", date="2:00 pm on 1 June, 2023"))
    assert [c[0] for c in llm.calls] == ["Extraction", "Decisions"]
    assert not re.search(r"NEW \d+: Ann lives in Paris", llm.calls[1][1])  # the duplicate never reached the LLM

    by_id = {f.id: f for f in memory.facts(include_deleted=True)}
    assert len(by_id) == 4
    updated = by_id[seats.id]
    assert updated.text == "Ann now prefers aisle seats on flights" and updated.version == 2
    assert updated.previous == "Ann prefers window seats on flights" and updated.event_ids == ["D2:1"]
    assert by_id[car.id].status == "deleted"
    assert by_id[paris.id].version == 1  # NOOP changes nothing
    tennis = next(f for f in by_id.values() if "tennis" in f.text)
    assert tennis.version == 1 and tennis.event_ids == ["D2:4"]

    hist = memory.history(seats.id)
    assert [h.op for h in hist] == ["ADD", "UPDATE"]
    assert hist[1].old_text == "Ann prefers window seats on flights" and hist[1].new_text == updated.text
    assert hist[1].event_ids == ["D2:1"] and hist[1].date == "2:00 pm on 1 June, 2023" and hist[0].event_ids == ["D0:1"]
    deleted = memory.history(car.id)
    assert [h.op for h in deleted] == ["ADD", "DELETE"] and "no longer has a car" in deleted[1].reason

    got = memory.recall(Query(text="Which seat does Ann prefer on flights?", budget_tokens=200))
    assert "aisle seats on flights (updated; earlier: window seats on flights)" in got.items[0].content
    assert "red car" not in got.text()
    assert "D2:1" in evidence(got)
    memory.close()


def test_bad_llm_decisions_fall_back_to_rules_and_lose_nothing(tmp_path, embedder):
    llm = ScriptedLLM(
        extract=[
            {
                "facts": [
                    _fact("Ann prefers aisle seats", "seat preference"),  # LLM: ADD -> same key: UPDATE
                    _fact("Ann's cat is named Tom", "cat name"),  # LLM: UPDATE of an id never shown -> ADD
                    _fact("Ann works as a nurse", "job"),  # LLM: DELETE of the seat fact without negation
                    _fact("Ann enjoys hiking", "hobby"),  # LLM: NOOP of a fact saying something else -> ADD
                ]
            }
        ],
        decide=lambda prompt: {
            "decisions": [
                {"new": 1, "action": "ADD", "old": 0},
                {"new": 2, "action": "UPDATE", "old": 99},
                {"new": 3, "action": "DELETE", "old": 1},
                {"new": 4, "action": "NOOP", "old": 1},
                {"new": 9, "action": "DELETE", "old": 1},
            ]
        },
    )
    memory = _memory(tmp_path, embedder, llm, batch_turns=4)
    seats = memory.add_fact("Ann prefers window seats", subject="Ann", key="seat preference")
    dog = memory.add_fact("Ann's dog is named Biscuit", subject="Ann", key="dog name")
    job = memory.add_fact("Ann works as a teacher", subject="Ann", key="job")
    for i, text in enumerate(
        ["I prefer aisle seats.", "My cat Tom is cute.", "I work as a nurse now.", "I enjoy hiking."]
    ):
        memory.observe(_event(text, f"D3:{i + 1}", session="s3"))
    assert [c[0] for c in llm.calls] == ["Extraction", "Decisions"]
    facts = {f.id: f for f in memory.facts(include_deleted=True)}
    assert all(f.status == "active" for f in facts.values())  # nothing deleted on a bad verdict
    assert facts[seats.id].text == "Ann prefers aisle seats" and facts[seats.id].previous == "Ann prefers window seats"
    assert facts[dog.id].text == "Ann's dog is named Biscuit"
    assert facts[job.id].text == "Ann works as a nurse"  # same key wins over a DELETE of the wrong fact
    texts = {f.text for f in facts.values()}
    assert {"Ann's cat is named Tom", "Ann enjoys hiking"} <= texts and len(facts) == 5

    # an LLM that fails outright: the batch is skipped, stored facts are untouched, nothing stays pending
    llm.extract = [LLMError("model returned garbage twice")]
    for i in range(4):
        memory.observe(_event(f"more {i}", f"D4:{i + 1}", session="s4"))
    assert len(memory.facts()) == 5
    assert len(memory.buffer) == 0
    memory.close()


def test_same_batch_contradiction_and_duplicates_resolve_in_order(tmp_path, embedder):
    llm = ScriptedLLM(
        extract=[
            {
                "facts": [
                    _fact("Ann prefers window seats", "seat preference"),
                    _fact("Ann prefers window seats", "seat preference"),
                    _fact("Ann prefers aisle seats", "preferred seat"),
                ]
            }
        ]
    )
    memory = _memory(tmp_path, embedder, llm, batch_turns=2)
    memory.observe(_event("I like window seats.", "D1:1"))
    memory.observe(_event("Hmm, no, aisle seats are better for me.", "D1:2"))
    (fact,) = memory.facts()
    assert fact.text == "Ann prefers aisle seats" and fact.version == 2 and fact.event_ids == ["D1:2"]
    assert [h.op for h in memory.history(fact.id)] == ["ADD", "UPDATE"]
    memory.close()


def test_recall_respects_the_budget_and_never_calls_the_llm(tmp_path, embedder):
    llm = ScriptedLLM()
    memory = _memory(tmp_path, embedder, llm, top_k=6)
    stored = memory.import_items(
        [
            {
                "text": f"Ann visited city number {i} and liked its museum",
                "subject": "Ann",
                "key": f"trip {i}",
                "event_ids": [f"D{i}:1"],
                "date": f"{i + 1} May 2023",
            }
            for i in range(30)
        ]
        + ["Ann's dog is named Biscuit"]
    )
    assert len(stored) == 31 and len(memory.facts()) == 31
    assert all(memory.history(f.id)[0].reason == "imported" for f in stored[:2])
    got = memory.recall(Query(text="Which museums did Ann like?", budget_tokens=40))
    assert got.tokens <= 40 and sum(memory.toolkit.count_tokens(i.content) for i in got.items) <= 40
    assert got.omitted >= 1 and len(got.items) + got.omitted == 6
    assert all(i.event_ids for i in got.items)
    assert memory.recall(Query(text="anything", budget_tokens=0)).items == []
    hit = memory.recall(Query(text="dog name Biscuit", budget_tokens=500))
    assert any("Biscuit" in i.content for i in hit.items)
    assert llm.calls == []
    with pytest.raises(DataError, match="item 1"):
        memory.import_items(["fine", {"subject": "no text"}])
    assert len(memory.facts()) == 31  # a bad batch writes nothing
    memory.close()


def test_forget_is_soft_and_recorded(tmp_path, embedder):
    memory = _memory(tmp_path, embedder)
    fact = memory.add_fact("Ann is allergic to peanuts", subject="Ann", key="allergy")
    assert memory.forget(fact.id, reason="user asked") is True  # it was this memory's fact
    (gone,) = memory.facts(include_deleted=True)
    assert gone.status == "deleted" and memory.facts() == []
    assert memory.facts(include_deleted=True)[0].text == "Ann is allergic to peanuts"
    assert [(h.op, h.reason) for h in memory.history(fact.id)] == [("ADD", "new"), ("DELETE", "user asked")]
    assert memory.recall(Query(text="allergy", budget_tokens=100)).items == []
    assert memory.forget(fact.id) and memory.facts(include_deleted=True)[0].version == gone.version  # idempotent
    assert memory.forget("nope") is False  # not its fact: no exception to interpret
    with pytest.raises(DataError, match="no fact with id 'nope'"):
        memory.history("nope")
    memory.close()


def test_facts_history_and_pending_events_survive_reopening(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, batch_turns=6)
    fact = memory.add_fact("Ann prefers window seats", subject="Ann", key="seat preference")
    memory.add_fact("Ann prefers aisle seats", subject="Ann", key="seat preference")  # rules: same key -> UPDATE
    memory.observe(_event("My sister lives in Lisbon.", "D5:1", session="s5"))
    memory.close()

    llm = ScriptedLLM(extract=[{"facts": [_fact("Ann's sister lives in Lisbon", "sister home city")]}])
    again = _memory(tmp_path, embedder, llm, batch_turns=6)
    (kept,) = [f for f in again.facts() if "seat" in f.text]
    assert kept.id == fact.id and kept.version == 2 and kept.text == "Ann prefers aisle seats"
    assert [h.op for h in again.history(fact.id)] == ["ADD", "UPDATE"]
    again.reflect(Episode(id="s5"))  # the event buffered before the reopen is extracted now
    assert "Ann's sister lives in Lisbon" in {f.text for f in again.facts()}
    got = again.recall(Query(text="Where does Ann's sister live?", budget_tokens=100))
    assert "Lisbon" in got.items[0].content and got.items[0].event_ids == ["D5:1"]
    again.close()


def test_params_are_bounded_and_the_plugin_is_discovered():
    with pytest.raises(ValidationError):
        SemanticParams(batch_turns=0)
    with pytest.raises(ValidationError):
        SemanticParams(dedup_threshold=1.5)
    assert load_memory("semantic") is SemanticMemory
    info = {p.name: p for p in discover("memory")}
    assert info["semantic"].status == "ok"


# -- the real local model ---------------------------------------------------------------------
def _say(memory: SemanticMemory, session: str, when: datetime, lines: list[tuple[str, str]], start: int) -> None:
    for i, (speaker, text) in enumerate(lines):
        memory.observe(Event.message(text, speaker=speaker, session_id=session, timestamp=when, id=f"D{start}:{i + 1}"))
    memory.reflect(Episode(id=session))


@pytest.mark.llm
def test_real_model_a_later_contradiction_wins_and_history_keeps_both(tmp_path, embedder, local_llm):
    memory = _memory(tmp_path, embedder, local_llm)
    _say(
        memory,
        "trip-1",
        datetime(2024, 3, 1, tzinfo=UTC),
        [
            ("user", "Please book me a flight to Rome next month."),
            ("assistant", "Sure. Any seat preference?"),
            ("user", "I prefer window seats on flights."),
        ],
        1,
    )
    first = [f for f in memory.facts() if "window" in f.text.lower()]
    assert first, f"no window-seat fact extracted: {[f.text for f in memory.facts()]}"
    _say(
        memory,
        "trip-2",
        datetime(2024, 6, 1, tzinfo=UTC),
        [
            ("user", "Book another flight, to Oslo this time."),
            ("assistant", "Window seat as usual?"),
            ("user", "Actually I now prefer aisle seats on flights."),
        ],
        2,
    )
    got = memory.recall(Query(text="Which seat does the user prefer on flights?", budget_tokens=120))
    seat_lines = [i.content for i in got.items if "seat" in i.content.lower()]
    assert seat_lines and "aisle" in seat_lines[0].lower(), got.text()
    current = [f for f in memory.facts() if "seat" in f.text.lower()]
    assert all("window" not in f.text.lower() for f in current), [f.text for f in current]
    aisle = next(f for f in current if "aisle" in f.text.lower())
    hist = memory.history(aisle.id)
    assert [h.op for h in hist] == ["ADD", "UPDATE"]
    assert "window" in (hist[0].new_text or "").lower() and "aisle" in (hist[1].new_text or "").lower()
    assert hist[1].event_ids == ["D2:3"] and "earlier: " in seat_lines[0] and "window" in seat_lines[0].lower()
    memory.close()


@pytest.mark.llm
def test_real_model_extracts_plain_facts_and_recalls_them(tmp_path, embedder, local_llm):
    memory = _memory(tmp_path, embedder, local_llm)
    _say(
        memory,
        "chat",
        datetime(2023, 5, 8, tzinfo=UTC),
        [
            ("Ann", "Guess what, I adopted a golden retriever! His name is Biscuit."),
            ("Bob", "Congrats! How is your sister doing?"),
            ("Ann", "She is great. She moved to Lisbon and works as an architect there."),
            ("Bob", "Nice, have a good day!"),
        ],
        1,
    )
    texts = [f.text for f in memory.facts()]
    assert any("Biscuit" in t for t in texts), texts
    dog = memory.recall(Query(text="What is the name of Ann's dog?", budget_tokens=60))
    assert "Biscuit" in dog.items[0].content and "D1:1" in dog.items[0].event_ids, dog.text()  # best first
    sister = memory.recall(Query(text="Where does Ann's sister live?", budget_tokens=60))
    assert "Lisbon" in sister.text(), (sister.text(), texts)
    memory.close()
