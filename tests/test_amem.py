"""A-MEM: linked notes with keywords, tags and context; a new note evolves its neighbours.

Plumbing (one note call per event, linking bounded by ``link_k``, evolution
bounded by ``evolve_k`` with history, link-following recall, the raw-text
fallback, persistence, scopes, forgetting) runs against a deterministic fake
model and the real offline embedder; note construction and recall of a
stored fact are also shown with the real local model.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from agentmem.errors import DataError, InvalidReply
from agentmem.memory import Forgets
from agentmem.registry import discover, load_memory
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope
from agentmem_amem import AMemMemory, AMemParams


class FakeModel:
    """A deterministic stand-in for the LLM: notes from the text's capitalised words; scripted evolution."""

    def __init__(self, *, evolve: Any = None, fail_notes: bool = False, draft: dict | None = None) -> None:
        self.evolve = evolve  # a reply dict, an exception, or None (no updates)
        self.draft = draft  # a fixed note reply instead of the one made from the text
        self.fail_notes = fail_notes
        self.calls: list[tuple[str, str]] = []
        self.notes: list[tuple[str, str]] = []

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        raise AssertionError("A-MEM makes structured calls only")

    def structured(self, messages: list[dict[str, Any]], schema: type, *, caller: str | None = None) -> Any:
        prompt = messages[-1]["content"]
        self.calls.append((schema.__name__, prompt))
        if schema.__name__ == "NoteDraft":
            if self.fail_notes:
                raise InvalidReply("the reply was not valid JSON twice")
            if self.draft is not None:
                return schema.model_validate(self.draft)
            memory = prompt.split('\n"', 1)[1].rsplit('"\n', 1)[0]
            names = re.findall(r"\b[A-Z][a-z]+\b", memory)
            last = " ".join(memory.rstrip(".").split()[-3:])
            return schema.model_validate(
                {
                    "keywords": names[:4],
                    "tags": ["Talk", "talk", "life"],
                    "context": f"{names[0] if names else 'Someone'} mentions {last}",
                }
            )
        reply = self.evolve
        if isinstance(reply, Exception):
            raise reply
        return schema.model_validate(reply or {"updates": []})

    def note(self, event: str, caller: str) -> None:
        self.notes.append((event, caller))

    def count(self, schema: str) -> int:
        return sum(1 for name, _ in self.calls if name == schema)


LOOSE = {"link_min_similarity": 0.0, "evolve_min_similarity": 0.0}  # link and evolve whatever is nearest


def _memory(root, embedder, llm=None, user: str = "u", **params: Any) -> AMemMemory:
    toolkit = Toolkit(scope=Scope(user_id=user), stores=Stores(root), llm=llm, embedder=embedder, namespace="amem")
    return AMemMemory(toolkit, params)


def _event(text: str, dia: str, speaker: str = "Ann", session: str = "s1") -> Event:
    return Event.message(
        text,
        speaker=speaker,
        session_id=session,
        id=dia,
        timestamp=datetime(2023, 5, 8, tzinfo=UTC),
        when="8 May, 2023",
    )


FACTS = [
    ("I adopted a puppy last week, his name is Biscuit.", "D1:1", "Ann"),
    ("My car broke down on the highway yesterday.", "D1:2", "Bob"),
    ("Biscuit the puppy already knows how to sit.", "D1:3", "Ann"),
    ("I am learning to play the violin.", "D1:4", "Bob"),
]


def _observe_all(memory: AMemMemory, facts=FACTS, session: str = "s1") -> None:
    for text, dia, who in facts:
        memory.observe(_event(text, dia, who, session))


# -- plumbing with a fake model ---------------------------------------------------------------------
def test_every_event_is_one_note_from_one_call_and_links_to_its_nearest(tmp_path, embedder):
    llm = FakeModel()
    memory = _memory(tmp_path, embedder, llm, link_k=2, evolve=False, **LOOSE)
    _observe_all(memory, FACTS[:3])
    first, _, third = memory.notes()
    assert len(third.links) == 2 and first.id in third.links  # its link_k nearest: the other Biscuit note among them
    assert third.id in first.links  # and links run both ways
    _observe_all(memory, FACTS[3:])
    assert llm.count("NoteDraft") == len(FACTS) and llm.count("Evolution") == 0
    assert "8 May, 2023" in llm.calls[0][1] and "Ann: I adopted a puppy" in llm.calls[0][1]
    notes = memory.notes()
    assert [n.event_ids for n in notes] == [["D1:1"], ["D1:2"], ["D1:3"], ["D1:4"]]
    assert len(notes[3].links) == 2 and all(notes[3].id in memory.note(i).links for i in notes[3].links)
    assert first.keywords == ["Ann", "Biscuit"] and first.tags == ["talk", "life"]  # de-duplicated ignoring case
    assert first.context == "Ann mentions name is Biscuit" and not first.fallback
    assert [c.op for c in memory.history(first.id)] == ["ADD"]
    memory.close()


def test_note_turns_groups_consecutive_events_of_one_session_only(tmp_path, embedder):
    llm = FakeModel()
    memory = _memory(tmp_path, embedder, llm, note_turns=2, evolve=False)
    _observe_all(memory, FACTS[:3], session="s1")
    assert llm.count("NoteDraft") == 1  # the first two events; the third waits for its partner
    memory.observe(_event("Hello from the second session.", "D2:1", session="s2"))
    assert llm.count("NoteDraft") == 2  # the session changed: its waiting event became a note on its own
    memory.reflect(Episode())
    assert [n.event_ids for n in memory.notes()] == [["D1:1", "D1:2"], ["D1:3"], ["D2:1"]]
    assert " / Bob: My car" in memory.notes()[0].content
    memory.close()


def test_evolution_updates_at_most_evolve_k_neighbours_and_keeps_history(tmp_path, embedder):
    updates = [
        {"number": n, "context": f"Ann walks Biscuit every morning, update {n}.", "tags": ["Pets", "tags"]}
        for n in range(1, 5)
    ]
    llm = FakeModel()
    memory = _memory(tmp_path, embedder, llm, link_k=3, evolve_k=2, **LOOSE)
    _observe_all(memory, FACTS[:3])  # these evolve nothing (the fake answers with no updates)
    assert llm.count("Evolution") == 2 and all(n.version == 1 for n in memory.notes())
    llm.evolve = {"updates": updates + [{"number": 1, "context": "a second answer", "tags": []}]}
    memory.observe(_event("Ann walks Biscuit every morning.", "D1:9"))
    prompt = llm.calls[-1][1]
    assert llm.calls[-1][0] == "Evolution" and "NEW: Ann: Ann walks Biscuit" in prompt
    assert "OLD 2:" in prompt and "OLD 3:" not in prompt  # three linked, only evolve_k shown
    evolved = [n for n in memory.notes() if n.version > 1]
    assert len(evolved) == 2  # four updates offered, bounded by evolve_k; the repeated number ignored
    for note in evolved:
        assert note.context.startswith("Ann walks Biscuit every morning, update") and note.tags == ["pets"]
        add, change = memory.history(note.id)
        assert (add.op, change.op, change.version) == ("ADD", "EVOLVE", 2)
        assert " mentions " in change.old_text and change.new_text == note.context
        assert change.data["old_tags"] == ["talk", "life"] and change.data["new_tags"] == ["pets"]
        assert change.data["by"] == memory.notes()[-1].id
    # the evolved context is what the note is now found by (it was re-embedded and re-indexed)
    got = memory.recall(Query(text="update", budget_tokens=400))
    assert (
        got.items
        and "every morning, update" in got.items[0].content
        and got.items[0].metadata["item_id"] != memory.notes()[-1].id
    )
    memory.close()


def test_evolution_call_is_skipped_without_a_close_neighbour_and_survives_a_failed_reply(tmp_path, embedder):
    llm = FakeModel(evolve=InvalidReply("bad JSON twice"))
    memory = _memory(tmp_path, embedder, llm, evolve_min_similarity=1.0, link_min_similarity=0.0)
    _observe_all(memory, FACTS[:2])
    assert llm.count("Evolution") == 0  # nothing that close: no call at all
    memory.close()
    memory = _memory(tmp_path / "b", embedder, llm, **LOOSE)
    _observe_all(memory, FACTS[:2])
    assert llm.count("Evolution") == 1 and llm.notes == [("fallback", "amem.evolve")]
    assert all(n.version == 1 for n in memory.notes()) and memory.notes()[1].links  # the link stays
    memory.close()


def test_recall_follows_links_from_the_best_hits_within_bounds(tmp_path, embedder):
    llm = FakeModel()
    memory = _memory(tmp_path, embedder, llm, link_k=1, evolve=False, **LOOSE)
    _observe_all(memory)
    query = Query(text="What did Bob say about his car?", budget_tokens=400)
    alone = _memory(tmp_path, embedder, llm, top_k=1, follow_from=0, **LOOSE).recall(query)
    assert len(alone.items) == 1 and "car broke down" in alone.items[0].content
    got = _memory(tmp_path, embedder, llm, top_k=1, follow_from=1, max_linked=3, **LOOSE).recall(query)
    car = next(n for n in memory.notes() if "car" in n.content)
    assert got.items[0].metadata["item_id"] == car.id or any(i.metadata["item_id"] == car.id for i in got.items)
    related = [i for i in got.items if "linked_from" in i.metadata]
    assert 1 <= len(related) <= 3 and all(i.metadata["linked_from"] == car.id for i in related)
    assert {i.metadata["item_id"] for i in related} <= set(car.links)
    assert all(i.content.startswith("related: [8 May, 2023]") for i in related)
    assert all(r.score < 1.0 for r in related) and "reached through links" in got.instructions
    capped = _memory(tmp_path, embedder, llm, top_k=1, follow_from=1, max_linked=0, **LOOSE).recall(query)
    assert len(capped.items) == 1
    tight = _memory(tmp_path, embedder, llm, top_k=4, follow_from=4, **LOOSE).recall(
        Query(text="What did Bob say about his car?", budget_tokens=25)
    )
    assert tight.omitted > 0 and sum(i.tokens for i in tight.items) <= 25
    memory.close()


def test_what_a_small_model_copies_from_the_prompt_or_the_memory_is_not_kept(tmp_path, embedder):
    copied = {
        "keywords": ["Tom", "Denver", "Biscuit", "names, things, places"],
        "tags": ["Topic labels", "dogs", "Dogs", "memory"],
        "context": "One sentence: Ann: I adopted a puppy last week, his name is Biscuit.",
    }
    memory = _memory(tmp_path, embedder, FakeModel(draft=copied), evolve=False)
    memory.observe(_event(*FACTS[0][:2]))
    (note,) = memory.notes()
    assert note.keywords == ["Biscuit"]  # the example's words and the instructions' are not in the memory
    assert note.tags == ["dogs"] and note.context == ""  # a context that repeats the memory says nothing more
    example = {**copied, "context": "Ann moved to Denver for a new bakery job."}
    other = _memory(tmp_path / "c", embedder, FakeModel(draft=example), evolve=False)
    other.observe(_event(*FACTS[0][:2]))
    assert other.notes()[0].context == "" and other.notes()[0].tags == ["dogs"]  # the example's, not the memory's
    other.close()
    own = {**copied, "context": "Context: Ann adopted a puppy called Biscuit. She is happy."}
    again = _memory(tmp_path / "b", embedder, FakeModel(draft=own), evolve=False)
    again.observe(_event(*FACTS[0][:2]))
    assert again.notes()[0].context == "Ann adopted a puppy called Biscuit."  # its first sentence, label dropped
    memory.close()
    again.close()


def test_a_failed_note_reply_falls_back_to_the_raw_text_and_loses_no_event(tmp_path, embedder):
    llm = FakeModel(fail_notes=True)
    memory = _memory(tmp_path, embedder, llm, evolve=False)
    memory.observe(
        _event("Caroline went to the LGBTQ support group meeting, the support group helped.", "D1:1", "Caroline")
    )
    (note,) = memory.notes()
    assert note.fallback and note.event_ids == ["D1:1"] and note.tags == [] and note.context == ""
    assert set(note.keywords[:3]) == {"caroline", "support", "group"}  # the lexical tokenizer's most frequent words
    assert llm.notes == [("fallback", "amem.note")] and not memory.buffer
    assert memory.history(note.id)[0].reason == "fallback: InvalidReply"
    got = memory.recall(Query(text="Which group did Caroline go to?", budget_tokens=200))
    assert got.items and got.items[0].event_ids == ["D1:1"]
    memory.close()


def test_notes_links_and_waiting_events_persist_across_reopen(tmp_path, embedder):
    llm = FakeModel()
    memory = _memory(tmp_path, embedder, llm, note_turns=2, evolve=False, **LOOSE)
    _observe_all(memory, FACTS[:3])  # the third event waits in the buffer
    before = {n.id: n.links for n in memory.notes()}
    memory.close()
    again = _memory(tmp_path, embedder, llm, note_turns=2, evolve=False, **LOOSE)
    assert {n.id: n.links for n in again.notes()} == before
    got = again.recall(Query(text="What does Biscuit know how to do?", budget_tokens=300))
    assert any("knows how to sit" in i.content for i in got.items)  # the waiting event became a note first
    assert len(again.notes()) == 2 and again.notes()[1].links == [again.notes()[0].id]
    again.close()


def test_scopes_are_isolated(tmp_path, embedder):
    llm = FakeModel()
    ann = _memory(tmp_path, embedder, llm, user="ann")
    bob = _memory(tmp_path, embedder, llm, user="bob")
    ann.observe(_event("My secret code word is pineapple.", "A1"))
    bob.observe(_event("I like trains.", "B1", "Bob"))
    assert [n.event_ids for n in bob.notes()] == [["B1"]]
    got = bob.recall(Query(text="What is the secret code word?", budget_tokens=300))
    assert all("pineapple" not in i.content for i in got.items)
    assert not bob.forget(ann.notes()[0].id)  # another user's id is not bob's to forget
    assert ann.notes()[0].status == "active"
    ann.close()
    bob.close()


def test_forget_removes_a_note_from_recall_and_from_link_following(tmp_path, embedder):
    llm = FakeModel()
    memory = _memory(tmp_path, embedder, llm, evolve=False, **LOOSE)
    assert isinstance(memory, Forgets)
    _observe_all(memory)
    puppy = memory.notes()[0]
    assert memory.forget(puppy.id) and memory.forget(puppy.id)  # a second call changes nothing
    assert not memory.forget("no-such-note")
    got = memory.recall(Query(text="What is the name of Ann's puppy?", budget_tokens=500))
    assert puppy.id not in {i.metadata["item_id"] for i in got.items}
    assert memory.note(puppy.id).status == "deleted" and memory.history(puppy.id)[-1].op == "DELETE"
    with pytest.raises(DataError, match="no note with id"):
        memory.history("nope")
    memory.close()


def test_import_items_makes_linked_notes_without_the_model(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, None, **LOOSE)  # no model configured: asking for one would fail
    assert memory.import_items([_event(t, d, w) for t, d, w in FACTS]) == len(FACTS)
    assert all(n.keywords and not n.fallback for n in memory.notes())
    assert memory.notes()[2].links
    assert memory.recall(Query(text="puppy Biscuit", budget_tokens=0)).items == []
    memory.close()


def test_params_are_bounded_and_the_plugin_is_registered():
    assert AMemMemory.Params is AMemParams
    with pytest.raises(ValueError):
        AMemParams(evolve_k=6)
    with pytest.raises(ValueError):
        AMemParams(evolve_k=-1)
    with pytest.raises(ValueError):
        AMemParams(no_such_knob=1)
    found = {(p.kind, p.name): p for p in discover("memory")}
    assert found[("memory", "amem")].status == "ok"
    assert found[("memory", "amem")].distribution == "agentmem-amem"
    assert load_memory("amem") is AMemMemory


# -- with the real local model -------------------------------------------------------------------------
@pytest.mark.llm
def test_real_model_writes_notes_with_keywords_tags_and_context_and_recall_finds_the_fact(
    tmp_path, embedder, local_llm
):
    memory = _memory(tmp_path, embedder, local_llm)
    turns = [
        ("Guess what, I adopted a golden retriever! His name is Biscuit.", "D1:1", "Ann"),
        ("Congrats! How is your sister doing?", "D1:2", "Bob"),
        ("She is great. She moved to Lisbon and works as an architect there.", "D1:3", "Ann"),
    ]
    _observe_all(memory, turns)
    memory.reflect(Episode())
    notes = memory.notes()
    assert [n.event_ids for n in notes] == [["D1:1"], ["D1:2"], ["D1:3"]]
    dog = notes[0]
    assert not dog.fallback, "the model's note reply failed"
    assert dog.keywords and dog.tags and dog.context, dog
    got = memory.recall(Query(text="What is the name of Ann's dog?", budget_tokens=200))
    assert any("Biscuit" in i.content and "D1:1" in i.event_ids for i in got.items), got.text()
    memory.close()
