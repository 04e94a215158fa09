"""Procedural memory (after ReMe and AWM): lessons distilled from outcomes, recalled by situation and utility."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import BaseModel

from agentmem.errors import DataError, LLMError
from agentmem.tokens import count_tokens
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope
from agentmem_procedural import ProceduralMemory, ProceduralParams
from agentmem_procedural.schema import (
    AdaptedAdvice,
    ComparativeDraft,
    FailureDraft,
    SuccessDraft,
    WorkflowDraft,
)

DATE_ERROR = "Error: invalid date '14/03/2025'. Expected format YYYY-MM-DD."


class ScriptedLLM:
    """A fake LLM for plumbing tests: answers each schema with a scripted instance and records the calls."""

    def __init__(self, answers: dict[type, Any] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        raise AssertionError("procedural memory only makes structured calls")

    def structured(self, messages: list[dict[str, Any]], schema: type[BaseModel], *, caller: str | None = None) -> Any:
        self.calls.append((caller or "", messages))
        answer = self.answers.get(schema)
        if answer is None:
            raise LLMError(f"scripted LLM has no answer for {schema.__name__}")
        return answer

    def ops(self) -> list[str]:
        return [caller.rsplit(".", 1)[-1] for caller, _ in self.calls]


ANSWERS = {
    FailureDraft: FailureDraft(
        situation="booking a restaurant table",
        mistake="The date was given as DD/MM/YYYY and book_table rejected it.",
        fix="Give the date as YYYY-MM-DD.",
    ),
    WorkflowDraft: WorkflowDraft(
        goal="Book a table for 4 people",
        steps=[
            "Find the restaurant with search_restaurants",
            "Call book_table with date 2025-03-14 and party_size 4",
            "Tell the user the booking reference",
        ],
    ),
    SuccessDraft: SuccessDraft(
        situation="booking a restaurant table",
        patterns=["Use the ISO date format YYYY-MM-DD", "Confirm the party size first"],
    ),
    ComparativeDraft: ComparativeDraft(
        situation="booking a restaurant table",
        insight="The success sent the date as YYYY-MM-DD, the failure as DD/MM/YYYY.",
    ),
    AdaptedAdvice: AdaptedAdvice(advice=["For this booking, send next Friday's date as YYYY-MM-DD."]),
}


def _memory(tmp_path, embedder, llm=None, **params) -> ProceduralMemory:
    toolkit = Toolkit(
        scope=Scope(user_id="u"), stores=Stores(tmp_path), llm=llm, embedder=embedder, namespace="procedural"
    )
    return ProceduralMemory(toolkit, params)


def failed_booking(task: str = "Book a table at Luigi's for 4 people on March 14") -> Episode:
    events = [
        Event.message(task, speaker="user", id="D1:1"),
        Event.tool_call("book_table", {"restaurant": "Luigi's", "date": "14/03/2025", "party_size": 4}),
        Event.observation(DATE_ERROR),
        Event.outcome("The table was not booked.", reward=0.0),
    ]
    return Episode(task=task, events=events, outcome="failure: no booking", reward=0.0, success=False)


def successful_booking(task: str = "Book a table at Sakura for 4 people on March 14", retry: bool = False) -> Episode:
    events = [
        Event.message(task, speaker="user"),
        Event.tool_call("search_restaurants", {"name": "Sakura"}),
        Event.observation("Found Sakura (id 17)."),
    ]
    if retry:
        events += [
            Event.tool_call("book_table", {"restaurant": "Sakura", "date": "14/03/2025", "party_size": 4}),
            Event.observation(DATE_ERROR),
        ]
    events += [
        Event.tool_call("book_table", {"restaurant": "Sakura", "date": "2025-03-14", "party_size": 4}),
        Event.observation("Booked: reference BK-2291."),
        Event.outcome("The table is booked.", reward=1.0),
    ]
    return Episode(task=task, events=events, outcome="success: booked", reward=1.0, success=True)


LESSONS = [
    {
        "kind": "failure_trigger",
        "when_to_use": "booking a restaurant table",
        "content": "When booking a restaurant table: give the date as YYYY-MM-DD, not DD/MM.",
        "task": "book a table for 4",
    },
    {
        "kind": "workflow",
        "when_to_use": "reserve a table at a restaurant",
        "content": "Reserve a table: 1. search_restaurants(<name>). 2. book_table(<date>, <party_size>). 3. confirm.",
        "task": "reserve a table at Sakura",
        "metadata": {"event_ids": ["D3:4"]},
    },
    {
        "kind": "success_pattern",
        "when_to_use": "sending an email to a colleague",
        "content": "When sending an email: look up the address with find_contact first.",
        "task": "email Bob the report",
    },
    {
        "kind": "failure_trigger",
        "when_to_use": "setting a thermostat in the smart home",
        "content": "When setting a thermostat: temperatures are in Celsius, not Fahrenheit.",
        "task": "set the heating to 21",
    },
]


# -- discovery and parameters ------------------------------------------------------------


def test_plugin_is_discovered_through_its_entry_point():
    from agentmem.registry import discover, load_memory

    assert load_memory("procedural") is ProceduralMemory
    found = {p.name: p for p in discover("memory")}
    assert found["procedural"].status == "ok"


def test_params_are_bounded():
    assert ProceduralParams().adapt is False
    for bad in ({"top_k": 0}, {"min_similarity": 1.5}, {"merge_threshold": 0.1}, {"nonsense": 1}):
        with pytest.raises(ValueError):
            ProceduralParams(**bad)


# -- what reflect distils ------------------------------------------------------------------


def test_a_failure_is_stored_as_a_failure_trigger_with_its_provenance(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    episode = failed_booking()
    memory.reflect(episode)
    items = memory.items()
    assert [i.kind for i in items] == ["failure_trigger"]
    trigger = items[0]
    assert trigger.when_to_use == "booking a restaurant table"
    assert trigger.content.startswith("When booking a restaurant table:")
    assert "YYYY-MM-DD" in trigger.content
    assert trigger.episode_id == episode.id and trigger.task == episode.task
    assert (trigger.retrieved, trigger.helped) == (0, 0) and trigger.created_at > 0
    assert trigger.metadata["event_ids"][0] == "D1:1"
    assert llm.ops() == ["failure"]  # no similar past episode yet: no comparative call
    prompt = llm.calls[0][1][-1]["content"]
    assert DATE_ERROR in prompt and "FAILED" in prompt
    memory.close()


def test_a_success_yields_a_workflow_with_placeholders_and_success_patterns(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    memory.reflect(successful_booking())
    kinds = sorted(i.kind for i in memory.items())
    assert kinds == ["success_pattern", "success_pattern", "workflow"]
    workflow = memory.items("workflow")[0]
    steps = workflow.metadata["steps"]
    assert 2 <= len(steps) <= 6
    assert "<date>" in steps[1] and "<party_size>" in steps[1]  # concrete values abstracted (AWM)
    assert "2025-03-14" not in workflow.content
    assert workflow.when_to_use == "Book a table for <party_size> people"
    assert "failure_trigger" not in kinds
    memory.close()


def test_copied_trajectory_lines_are_not_kept_as_steps_or_patterns(tmp_path, embedder):
    parrot = {
        WorkflowDraft: WorkflowDraft(
            goal="Book a table",
            steps=[
                "1. call search_restaurants(name='Sakura')",
                "result: Found Sakura (id 17).",
                "2. call book_table(restaurant='Sakura', date='2025-03-14', party_size=4)",
                "outcome (reward 1): The table is booked.",
            ],
        ),
        SuccessDraft: SuccessDraft(
            situation="booking a table",
            patterns=[
                "call book_table(restaurant='Sakura', date='2025-03-14', party_size=4)",
                "Search for the restaurant before booking it",
            ],
        ),
    }
    memory = _memory(tmp_path, embedder, ScriptedLLM(parrot))
    memory.reflect(successful_booking())
    assert memory.items("workflow")[0].metadata["steps"] == [
        "call search_restaurants(name='<name>')",
        "call book_table(restaurant='<name>', date='<date>', party_size=<party_size>)",
    ]
    assert [i.content for i in memory.items("success_pattern")] == [
        "When booking a table: Search for the restaurant before booking it."
    ]
    memory.close()


def test_a_recovered_error_in_a_success_becomes_a_pitfall_without_an_llm_call(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    memory.reflect(successful_booking(retry=True))
    pitfalls = memory.items("failure_trigger")
    assert len(pitfalls) == 1
    assert "date='2025-03-14' worked where date='14/03/2025' failed" in pitfalls[0].content
    assert "failure" not in llm.ops()
    memory.close()


def test_the_error_message_is_kept_when_the_model_misses_the_cause(tmp_path, embedder):
    vague = {FailureDraft: FailureDraft(situation="x", mistake="It did not work.", fix="Try harder.")}
    memory = _memory(tmp_path, embedder, ScriptedLLM(vague))
    memory.reflect(failed_booking())
    trigger = memory.items()[0]
    assert DATE_ERROR in trigger.content
    assert trigger.when_to_use.startswith("Book a table at Luigi's")  # a one-word situation falls back to the task
    memory.close()


def test_without_an_llm_reflect_still_keeps_what_the_events_show(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, llm=None)
    memory.reflect(failed_booking())
    memory.reflect(successful_booking(task="Reserve a table at Sakura for 4 people on March 14"))
    kinds = {i.kind: i for i in memory.items()}
    assert DATE_ERROR in kinds["failure_trigger"].content
    assert kinds["workflow"].metadata["steps"] == [
        "call search_restaurants(name=<name>)",
        "call book_table(restaurant=<restaurant>, date=<date>, party_size=<party_size>)",
    ]
    assert "2025-03-14" in kinds["comparative"].content and "14/03/2025" in kinds["comparative"].content
    memory.close()


def test_an_episode_without_outcome_distils_nothing_and_does_not_crash(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    memory.observe(Event.message("Hi, how are you?", speaker="user"))
    memory.observe(Event.message("Fine, thanks!", speaker="assistant"))
    memory.reflect(Episode(task="", outcome=None, reward=None, success=None))
    memory.reflect(Episode())  # empty, too
    assert memory.items() == [] and llm.calls == []
    memory.close()


def test_observed_events_form_the_trajectory_when_the_episode_carries_none(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    for event in failed_booking().events:
        memory.observe(event)
    memory.reflect(Episode(task="Book a table at Luigi's for 4", success=False))
    assert memory.items("failure_trigger")
    assert "14/03/2025" in llm.calls[0][1][-1]["content"]
    memory.close()


def test_a_similar_past_episode_with_the_opposite_outcome_yields_a_comparative_insight(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    memory.reflect(failed_booking())
    memory.reflect(successful_booking())
    assert "comparative" in llm.ops()
    prompt = next(m for c, m in llm.calls if c.endswith("comparative"))[-1]["content"]
    assert "date='2025-03-14' worked where date='14/03/2025' failed" in prompt
    comparative = memory.items("comparative")
    assert len(comparative) == 1
    assert "YYYY-MM-DD" in comparative[0].content
    assert len(comparative[0].metadata["episode_ids"]) == 2
    # an unrelated past episode with the opposite outcome gives no comparison
    memory.reflect(
        Episode(
            task="Turn on the garden sprinklers at 6am",
            success=True,
            events=[Event.tool_call("sprinkler_on", {"time": "06:00"}), Event.tool_call("notify", {"text": "done"})],
        )
    )
    assert len(memory.items("comparative")) == 1
    memory.close()


def test_max_items_per_episode_caps_distillation(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, ScriptedLLM(ANSWERS), max_items_per_episode=1)
    memory.reflect(successful_booking())
    assert [i.kind for i in memory.items()] == ["workflow"]
    memory.close()


# -- recall ----------------------------------------------------------------------------------


def test_recall_picks_lessons_that_fit_the_task_and_nothing_for_an_unrelated_one(tmp_path, embedder):
    memory = _memory(tmp_path, embedder)
    memory.import_items(LESSONS)
    got = memory.recall(Query(text="Reserve a restaurant table for 2 next Friday", budget_tokens=300))
    assert got.items and "YYYY-MM-DD" in got.text()
    assert "thermostat" not in got.text() and "email" not in got.text()
    assert all(i.source == "procedural" and i.tokens == count_tokens(i.content) for i in got.items)
    assert "D3:4" in [e for i in got.items for e in i.event_ids]
    assert "Workflows that worked:" in got.instructions and "Pitfalls to avoid:" in got.instructions
    assert got.instructions.index("Workflows that worked:") < got.instructions.index("Pitfalls to avoid:")
    for unrelated in ("What is the capital of France?", "Summarise this article about volcanoes"):
        nothing = memory.recall(Query(text=unrelated, budget_tokens=300))
        assert nothing.items == [] and nothing.omitted == 0 and nothing.instructions == ""
    memory.close()


def test_recall_stays_within_the_token_budget_and_reports_what_it_left_out(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, top_k=6, min_similarity=0.0)
    memory.import_items(LESSONS)
    full = memory.recall(Query(text="book a restaurant table", budget_tokens=1000))
    assert len(full.items) == 4 and full.omitted == 0
    tight = memory.recall(Query(text="book a restaurant table", budget_tokens=40))
    assert 0 < len(tight.items) < 4 and tight.tokens <= 40
    assert tight.omitted == 4 - len(tight.items)
    context = tight.instructions.split("\n", 1)[1]
    assert count_tokens(context) <= 40
    assert memory.recall(Query(text="book a restaurant table", budget_tokens=0)).items == []
    memory.close()


def test_higher_utility_items_are_preferred(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, top_k=1, utility_weight=0.8)
    base = {"kind": "success_pattern", "when_to_use": "booking a restaurant table"}
    memory.import_items(
        [
            {**base, "content": "Call the restaurant by phone.", "retrieved": 10, "helped": 1},
            {**base, "content": "Use the book_table tool with an ISO date.", "retrieved": 10, "helped": 9},
        ]
    )
    got = memory.recall(Query(text="book a restaurant table", budget_tokens=200))
    assert "ISO date" in got.text()
    memory.close()


def test_adaptation_rewrites_recalled_items_for_the_task_with_one_call(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm, adapt=True)
    memory.import_items(LESSONS)
    got = memory.recall(Query(text="Reserve a restaurant table for 2 next Friday", budget_tokens=300))
    assert got.items[0].source == "procedural.adapted" and "next Friday" in got.items[0].content
    assert got.instructions.index("Advice for this task:") < got.instructions.index("Pitfalls to avoid:")
    assert llm.ops() == ["adapt"]
    broken = _memory(tmp_path / "b", embedder, ScriptedLLM({}), adapt=True)  # the model fails: originals only
    broken.import_items(LESSONS)
    plain = broken.recall(Query(text="Reserve a restaurant table for 2 next Friday", budget_tokens=300))
    assert plain.items and all(i.source == "procedural" for i in plain.items)
    memory.close()
    broken.close()


def test_recall_uses_no_llm_by_default(tmp_path, embedder):
    llm = ScriptedLLM(ANSWERS)
    memory = _memory(tmp_path, embedder, llm)
    memory.import_items(LESSONS)
    assert memory.recall(Query(text="book a restaurant table", budget_tokens=300)).items
    assert llm.calls == []
    memory.close()


# -- utility tracking, pruning, merging -------------------------------------------------------


def test_utility_counters_follow_the_outcome_of_episodes_that_used_an_item(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, min_uses=50)
    [lesson] = memory.import_items(LESSONS[:1])
    chat = Episode(task="", events=[Event.message("hello")])
    task = Query(text="book a restaurant table for two", budget_tokens=200)

    memory.recall(task)
    memory.reflect(Episode(task="x", success=True))
    assert (memory.get(lesson).retrieved, memory.get(lesson).helped) == (1, 1)
    memory.recall(task)
    memory.reflect(Episode(task="x", success=False))
    assert (memory.get(lesson).retrieved, memory.get(lesson).helped) == (2, 1)
    memory.reflect(Episode(task="x", success=True))  # not recalled in this episode: unchanged
    memory.recall(task)
    memory.reflect(chat)  # unknown outcome: neither helps nor hurts
    assert (memory.get(lesson).retrieved, memory.get(lesson).helped) == (2, 1)
    assert memory.get(lesson).utility == pytest.approx(2 / 4)
    memory.close()


def test_an_item_that_keeps_not_helping_is_pruned_and_logged(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, min_uses=2, prune_below=0.3)
    [bad, good] = memory.import_items([LESSONS[0], {**LESSONS[1], "helped": 5, "retrieved": 5}])
    task = Query(text="book a restaurant table", budget_tokens=300)
    for _ in range(2):
        assert bad in [i.metadata["id"] for i in memory.recall(task).items]
        memory.reflect(Episode(task="x", success=False))
    assert memory.get(bad) is None and memory.get(good) is not None  # good: (5+1)/(7+2) stays above 0.3
    log = memory.history()
    assert [(h["item_id"], h["action"]) for h in log] == [(bad, "pruned")]
    assert log[0]["item"]["content"] == LESSONS[0]["content"]
    assert "DD/MM" not in memory.recall(task).text()
    memory.import_items([{**LESSONS[2], "retrieved": 9}])
    assert len(memory.prune()) == 1  # callable directly
    memory.close()


def test_near_duplicates_of_a_kind_are_merged_with_their_counters_summed(tmp_path, embedder):
    memory = _memory(tmp_path, embedder)
    a, b, c = memory.import_items(
        [
            {**LESSONS[0], "retrieved": 3, "helped": 2, "metadata": {"episode_ids": ["e1"]}},
            {
                **LESSONS[0],
                "content": LESSONS[0]["content"].replace("not DD/MM", "not as DD/MM"),
                "retrieved": 1,
                "helped": 1,
                "metadata": {"episode_ids": ["e2"]},
            },
            {**LESSONS[0], "kind": "success_pattern"},  # same text, another kind: kept apart
        ]
    )
    assert memory.consolidate() == 1
    survivors = {i.id: i for i in memory.items()}
    assert set(survivors) == {a, c}
    assert (survivors[a].retrieved, survivors[a].helped) == (4, 3)
    assert survivors[a].metadata["episode_ids"] == ["e1", "e2"]
    assert memory.history()[0]["action"] == "merged" and memory.history()[0]["item_id"] == b
    assert memory.consolidate() == 0
    memory.close()


def test_reflect_merges_a_lesson_learnt_twice(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, ScriptedLLM(ANSWERS), compare_similarity=1.0)
    memory.reflect(failed_booking())
    memory.reflect(failed_booking(task="Book a table at Luigi's for 6 people on March 14"))
    assert len(memory.items("failure_trigger")) == 1
    assert len(memory.items("failure_trigger")[0].metadata["episode_ids"]) == 2
    memory.close()


# -- storage ------------------------------------------------------------------------------------


def test_import_items_validates_everything_before_writing(tmp_path, embedder):
    memory = _memory(tmp_path, embedder)
    memory.import_items(LESSONS[:1])
    with pytest.raises(DataError, match=r"item 1 is invalid at 'kind'"):
        memory.import_items([LESSONS[1], {**LESSONS[2], "kind": "recipe"}])
    with pytest.raises(DataError, match="when_to_use"):
        memory.import_items([{"kind": "workflow", "when_to_use": "", "content": "x"}])
    assert len(memory.items()) == 1
    memory.close()


def test_items_persist_and_the_index_is_rebuilt_from_sqlite(tmp_path, embedder):
    memory = _memory(tmp_path, embedder)
    ids = memory.import_items(LESSONS)
    memory.store._collection.delete(ids=ids[:2])  # simulate a crash between the SQLite and the Chroma write
    memory.close()
    again = _memory(tmp_path, embedder)
    assert len(again.items()) == 4 and again.store._collection.count() == 4
    assert "YYYY-MM-DD" in again.recall(Query(text="reserve a table at a restaurant", budget_tokens=300)).text()
    again.close()


def test_scopes_do_not_share_lessons(tmp_path, embedder):
    stores = Stores(tmp_path)
    mine = ProceduralMemory(Toolkit(scope=Scope(user_id="a"), stores=stores, embedder=embedder, namespace="procedural"))
    theirs = ProceduralMemory(
        Toolkit(scope=Scope(user_id="b"), stores=stores, embedder=embedder, namespace="procedural")
    )
    mine.import_items(LESSONS)
    assert theirs.recall(Query(text="book a restaurant table", budget_tokens=300)).items == []
    mine.close()
    theirs.close()


# -- the real local model ----------------------------------------------------------------------


@pytest.mark.llm
def test_real_model_learns_a_pitfall_from_a_failure_and_recalls_it_only_for_similar_tasks(
    tmp_path, embedder, local_llm
):
    memory = _memory(tmp_path, embedder, local_llm)
    memory.reflect(failed_booking("Book a table at a restaurant for 4 people on March 14"))
    [trigger] = memory.items("failure_trigger")
    print("\nfailure trigger:", trigger.when_to_use, "|", trigger.content)

    got = memory.recall(Query(text="Reserve a restaurant table for 2 next Friday", budget_tokens=300))
    assert got.items, "the lesson should be recalled for a similar task"
    assert re.search(r"YYYY-MM-DD|date format|format", got.text(), re.IGNORECASE)
    for unrelated in ("What is the capital of France?", "Turn on the living room lights at 7pm"):
        assert memory.recall(Query(text=unrelated, budget_tokens=300)).items == [], unrelated
    memory.close()


@pytest.mark.llm
def test_real_model_distils_a_workflow_from_a_success_and_contrasts_it_with_a_failure(tmp_path, embedder, local_llm):
    memory = _memory(tmp_path, embedder, local_llm, max_items_per_episode=2)  # workflow + comparative: 3 LLM calls
    memory.reflect(failed_booking())
    memory.reflect(successful_booking())
    for item in memory.items():
        print(f"\n{item.kind}: {item.when_to_use} | {item.content}")
    [workflow] = memory.items("workflow")
    steps = workflow.metadata["steps"]
    assert 2 <= len(steps) <= 6 and all(s.strip() for s in steps)
    assert "2025-03-14" not in workflow.content  # concrete values abstracted
    comparative = memory.items("comparative")
    assert len(comparative) == 1 and "2025-03-14" in comparative[0].content
    got = memory.recall(Query(text="Reserve a table at a restaurant for 2 people on Friday", budget_tokens=400))
    assert "Workflows that worked:" in got.instructions
