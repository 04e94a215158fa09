"""Encode helpers: one spelling of an event, its source's own date, chunks of turns, a persisted event buffer."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from agentmem.encode import EventBuffer, event_text, event_when, group_turns, merge_events
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Event, Scope

T = datetime(2024, 5, 1, 13, 56, tzinfo=UTC)


def test_an_event_reads_as_one_line_and_shows_its_sources_date():
    assert event_text(Event.message("hi", speaker="Ann")) == "Ann: hi"
    assert event_text(Event.tool_call("book", {"date": "2024-05-01"})) == "called book with {'date': '2024-05-01'}"
    assert event_text(Event.outcome("booked", reward=1.0)) == "outcome (reward 1): booked"
    assert event_when(Event.message("x", timestamp=T)) == "2024-05-01 13:56"
    assert event_when(Event.message("x", timestamp=T, when="1:56 pm on 1 May, 2024")) == "1:56 pm on 1 May, 2024"


def test_turns_group_within_a_session_and_merged_events_appear_once():
    events = [Event.message(str(i), session_id="a" if i < 3 else "b") for i in range(5)]
    assert [[e.content for e in g] for g in group_turns(events, 2)] == [["0", "1"], ["2"], ["3", "4"]]
    assert [e.content for e in merge_events(events[:3], events[1:4])] == ["0", "1", "2", "3"]


def test_the_buffer_survives_a_reopen_and_is_taken_per_session(tmp_path):
    toolkit = Toolkit(scope=Scope(), stores=Stores(tmp_path), namespace="probe")
    buffer = EventBuffer(toolkit, "pending", sync_every=100)
    for i in range(3):
        buffer.add(Event.message(f"m{i}", session_id="s1" if i < 2 else "s2"))
    buffer.close()
    toolkit.close()
    again = EventBuffer(Toolkit(scope=Scope(), stores=Stores(tmp_path), namespace="probe"), "pending")
    assert len(again) == 3 and again.sessions() == ["s1", "s2"]
    assert [e.content for e in again.take("s1")] == ["m0", "m1"] and [e.content for e in again.peek()] == ["m2"]
    assert [e.content for e in again.take()] == ["m2"] and not again


def test_drain_hands_each_session_over_and_keeps_what_a_failed_handler_saw(tmp_path):
    toolkit = Toolkit(scope=Scope(), stores=Stores(tmp_path), namespace="probe")
    buffer = EventBuffer(toolkit, "pending")
    for i, session in enumerate(["s1", "s2", "s1", "s3"]):
        buffer.add(Event.message(f"m{i}", session_id=session))
    seen: list[tuple[str, list[str]]] = []

    def keep(session: str, events: list[Event]) -> None:
        seen.append((session, [e.content for e in events]))

    buffer.drain(keep, skip="s1")  # every other session, in arrival order
    assert seen == [("s2", ["m1"]), ("s3", ["m3"])] and buffer.sessions() == ["s1"]

    def fail(session: str, events: list[Event]) -> None:
        raise RuntimeError("the model is down")

    with pytest.raises(RuntimeError):
        buffer.drain(fail, "s1")
    assert [e.content for e in buffer.peek("s1")] == ["m0", "m2"]  # a failure keeps the events waiting
    buffer.drain(keep)
    assert seen[-1] == ("s1", ["m0", "m2"]) and not buffer
    toolkit.close()
