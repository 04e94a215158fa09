"""Hierarchical memory (after G-Memory): insight, query and interaction tiers, traversed up and down."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from agentmem.errors import DataError, LLMError
from agentmem.registry import discover, load_memory
from agentmem.tokens import count_tokens
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope
from agentmem_hierarchical import HierarchicalMemory, HierarchyGraph, ImportItem
from agentmem_hierarchical.models import KeySteps, Lessons

KEY_LESSON = "Take the key before you try to open a locked door or chest."


class ScriptedLLM:
    """A fake LLM for plumbing tests: answers each schema from a script and records every call."""

    def __init__(
        self, lessons: list[list[str]] | None = None, steps: list[int] | None = None, fail: bool = False
    ) -> None:
        self.lessons = list(lessons or [])
        self.steps = steps
        self.fail = fail
        self.calls: list[tuple[str, list[dict[str, Any]]]] = []

    def complete(self, messages, **kw) -> str:  # pragma: no cover - the program never calls it
        raise AssertionError("hierarchical memory should only make structured calls")

    def structured(self, messages, schema, *, caller=None):
        self.calls.append((schema.__name__, messages))
        if self.fail:
            raise LLMError("scripted failure")
        if schema is Lessons:
            return Lessons(lessons=self.lessons.pop(0) if self.lessons else [])
        if schema is KeySteps:
            return KeySteps(steps=self.steps or [])
        raise AssertionError(f"unexpected schema {schema.__name__}")


def _memory(tmp_path, embedder, llm=None, **params) -> HierarchicalMemory:
    toolkit = Toolkit(
        scope=Scope(user_id="u"), stores=Stores(tmp_path), llm=llm, embedder=embedder, namespace="hierarchical"
    )
    return HierarchicalMemory(toolkit, params)


def _t(minute: int) -> datetime:
    return datetime(2024, 5, 1, 10, minute, tzinfo=UTC)


def chest_episode() -> Episode:
    events = [
        Event.observation(
            "You are in a cellar. A locked chest stands here and a key lies on the table.", timestamp=_t(0)
        ),
        Event.tool_call("take", {"object": "key"}, timestamp=_t(1)),
        Event.observation("You take the key.", timestamp=_t(2)),
        Event.tool_call("unlock", {"object": "chest", "with": "key"}, timestamp=_t(3)),
        Event.tool_call("open", {"object": "chest"}, timestamp=_t(4)),
        Event.outcome("You open the chest and find the gold.", reward=1.0, timestamp=_t(5)),
    ]
    return Episode(task="find the key and open the chest", events=events, success=True, reward=1.0)


def door_episode() -> Episode:
    events = [
        Event.observation(
            "You are in a hall. A locked door leads north and a key lies on the floor.", timestamp=_t(10)
        ),
        Event.tool_call("open", {"object": "door"}, timestamp=_t(11)),
        Event.observation("The door is locked.", timestamp=_t(12)),
        Event.tool_call("go", {"direction": "north"}, timestamp=_t(13)),
        Event.observation("You can't go that way: the door is locked.", timestamp=_t(14)),
        Event.outcome(
            "Failed: the door stayed locked because the key was not taken first.", reward=0.0, timestamp=_t(15)
        ),
    ]
    return Episode(task="open the locked door", events=events, success=False, reward=0.0)


def _live(memory: HierarchicalMemory, episode: Episode) -> None:
    """What an environment does: every event observed, then the episode reflected."""
    for event in episode.events:
        memory.observe(event)
    memory.reflect(episode)


# -- discovery ---------------------------------------------------------------------------------------
def test_the_plugin_is_discovered_through_its_entry_point():
    assert load_memory("hierarchical") is HierarchicalMemory
    info = {p.name: p for p in discover("memory")}
    assert info["hierarchical"].status == "ok"


# -- plumbing with a scripted LLM -------------------------------------------------------------------------
def test_reflect_builds_query_interaction_and_insight_nodes_with_edges(tmp_path, embedder):
    llm = ScriptedLLM(lessons=[[KEY_LESSON], ["Take the key before opening a locked door or chest."]])
    memory = _memory(tmp_path, embedder, llm, edge_threshold=0.2)
    _live(memory, chest_episode())
    _live(memory, door_episode())
    g = memory.graph()
    assert isinstance(g, HierarchyGraph)
    tasks = {q.task: q for q in g.queries}
    assert set(tasks) == {"find the key and open the chest", "open the locked door"}
    assert tasks["find the key and open the chest"].success is True
    assert tasks["open the locked door"].success is False
    assert "key was not taken" in (tasks["open the locked door"].outcome or "")
    # the query graph: the door task links to the similar chest task
    assert [(e.src, e.dst) for e in g.query_edges] == [
        (tasks["open the locked door"].id, tasks["find the key and open the chest"].id)
    ]
    # the interaction tier: condensed steps keep tool calls and their event ids
    chest_steps = next(i.steps for i in g.interactions if i.query_id == tasks["find the key and open the chest"].id)
    assert "take(object=key)" in [s.text for s in chest_steps]
    assert all(s.event_ids for s in chest_steps)
    # the near-duplicate second lesson merged into the first: one insight supported by both tasks
    assert [i.text for i in g.insights] == [KEY_LESSON]
    supported = {e.query_id for e in g.support_edges if e.insight_id == g.insights[0].id}
    assert supported == {q.id for q in g.queries}
    # the insight call saw the related earlier task and its outcome
    second_prompt = llm.calls[-1][1][-1]["content"]
    assert "find the key and open the chest" in second_prompt and "succeeded" in second_prompt
    memory.close()


def test_a_distinct_lesson_becomes_a_new_insight(tmp_path, embedder):
    llm = ScriptedLLM(lessons=[[KEY_LESSON], ["Read the map in the library before you travel north."]])
    memory = _memory(tmp_path, embedder, llm)
    _live(memory, chest_episode())
    _live(memory, door_episode())
    assert len(memory.graph().insights) == 2
    memory.close()


def test_recall_returns_both_tiers_labelled_without_calling_the_llm(tmp_path, embedder):
    llm = ScriptedLLM(lessons=[[KEY_LESSON], []])
    memory = _memory(tmp_path, embedder, llm)
    _live(memory, chest_episode())
    _live(memory, door_episode())
    calls = len(llm.calls)
    got = memory.recall(Query(text="open the locked gate", budget_tokens=400))
    assert len(llm.calls) == calls
    tiers = [i.metadata["tier"] for i in got.items]
    assert tiers[0] == "insight" and "trajectory" in tiers
    assert got.items[0].content == f"Insight: {KEY_LESSON}"
    traj = [i for i in got.items if i.metadata["tier"] == "trajectory"]
    assert any(t.content.startswith('Past task "find the key and open the chest" (succeeded') for t in traj)
    assert all(t.event_ids for t in traj)
    assert "Lessons learned" in got.instructions and "Similar past tasks" in got.instructions
    memory.close()


def test_traversal_along_the_query_graph_reaches_a_neighbours_trajectory(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, k_queries=1, hops=1, k_trajectories=3, edge_k=1, edge_threshold=0.0)
    memory.import_items(
        [
            {
                "task": "bake sourdough bread",
                "steps": ["mix flour and starter", "bake at 230C for 40 minutes"],
                "success": True,
            },
            {
                "task": "preheat the oven for baking",
                "steps": ["turn the dial to 230C", "wait 20 minutes"],
                "success": True,
            },
            {"task": "repair a flat bicycle tyre", "steps": ["remove the wheel", "patch the tube"], "success": True},
        ]
    )
    g = memory.graph()
    ids = {q.task: q.id for q in g.queries}
    bread = ids["bake sourdough bread"]
    neighbours = {e.dst if e.src == bread else e.src for e in g.query_edges if bread in (e.src, e.dst)}
    assert neighbours  # the bread task is linked in the query graph
    query = Query(text="how long should sourdough bread bake", budget_tokens=500)
    with_hop = {i.metadata["query_id"] for i in memory.recall(query).items}
    assert bread in with_hop and neighbours <= with_hop
    memory.params = memory.Params.model_validate({**memory.params.model_dump(), "hops": 0})
    without = {i.metadata["query_id"] for i in memory.recall(query).items}
    assert without == {bread}
    memory.close()


def test_recall_prefers_successful_trajectories(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, k_trajectories=1, prefer_success=0.9)
    memory.import_items(
        [
            {"task": "open the locked door", "steps": ["open(object=door)"], "success": False},
            {"task": "open the locked door", "steps": ["take(object=key)", "unlock(object=door)"], "success": True},
        ]
    )
    got = memory.recall(Query(text="open the locked door", budget_tokens=300))
    assert len(got.items) == 1 and "(succeeded" in got.items[0].content
    memory.close()


def test_recall_stays_within_the_token_budget_and_reports_what_it_cut(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, k_queries=5, k_trajectories=5, k_insights=4, insight_budget_share=0.3)
    memory.import_items(
        [
            {
                "task": f"cook recipe number {n} with tomatoes",
                "steps": [
                    f"chop {n} tomatoes finely",
                    "simmer the sauce for twenty minutes",
                    "season with salt and basil",
                ],
                "success": True,
                "insights": [f"Taste the sauce before serving recipe {n}."],
            }
            for n in range(8)
        ]
    )
    for budget in (40, 80, 150):
        got = memory.recall(Query(text="how do I cook a tomato sauce", budget_tokens=budget))
        assert got.tokens <= budget
        assert sum(count_tokens(i.content) for i in got.items) <= budget
        assert all(i.tokens == count_tokens(i.content) for i in got.items)
        assert got.omitted >= 1
        assert got.items
    roomy = memory.recall(Query(text="how do I cook a tomato sauce", budget_tokens=2000))
    assert {i.metadata["tier"] for i in roomy.items} == {"insight", "trajectory"}
    assert memory.recall(Query(text="anything", budget_tokens=0)).items == []
    memory.close()


def test_a_long_trajectory_is_cut_to_its_most_relevant_steps_when_the_budget_is_tight(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, k_insights=0, k_trajectories=1)
    steps = [f"walk past painting number {n} in the gallery" for n in range(12)] + [
        "the guard said the vault code is 4512"
    ]
    memory.import_items([{"task": "museum visit", "steps": steps}])
    got = memory.recall(Query(text="what is the vault code", budget_tokens=40))
    assert len(got.items) == 1 and got.tokens <= 40
    assert "4512" in got.text()
    memory.close()


def test_a_conversation_session_without_outcome_keeps_its_event_ids_and_costs_no_llm_call(tmp_path, embedder):
    llm = ScriptedLLM(lessons=[["This lesson must never be asked for."]])
    memory = _memory(tmp_path, embedder, llm)
    turns = [
        ("Caroline", "I went to the LGBTQ support group yesterday, it was so powerful.", "D1:1"),
        ("Melanie", "That sounds great! I painted a sunrise over the lake last week.", "D1:2"),
        ("Caroline", "I'm thinking about studying counseling next year.", "D1:3"),
    ]
    events = [Event.message(text, speaker=who, session_id="s1", id=dia, when="8 May 2023") for who, text, dia in turns]
    _live(memory, Episode(id="s1", task="conv-26", events=events, metadata={"date_time": "8 May 2023"}))
    assert llm.calls == []
    g = memory.graph()
    assert len(g.queries) == 1 and g.insights == []
    assert g.queries[0].date == "8 May 2023"
    got = memory.recall(Query(text="What did Melanie paint?", budget_tokens=300))
    assert "sunrise" in got.text() and "8 May 2023" in got.text()
    assert got.items[0].content.startswith('Past session "conv-26"')
    assert "D1:2" in [e for i in got.items for e in i.event_ids]
    memory.close()


def test_llm_condensing_keeps_the_picked_steps_and_falls_back_when_the_pick_is_useless(tmp_path, embedder):
    llm = ScriptedLLM(lessons=[[], []], steps=[2, 4, 99])
    memory = _memory(tmp_path, embedder, llm, condense="llm")
    _live(memory, chest_episode())
    steps = memory.graph().interactions[0].steps
    assert [s.text for s in steps] == ["take(object=key)", "unlock(object=chest, with=key)"]
    llm.steps = [0, 42]  # nothing valid: the LLM-free condensing takes over
    _live(memory, door_episode())
    door = memory.graph().interactions[1].steps
    assert "open(object=door)" in [s.text for s in door]
    memory.close()


def test_a_failing_llm_loses_no_task_and_no_trajectory(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, ScriptedLLM(fail=True), condense="llm")
    _live(memory, chest_episode())
    g = memory.graph()
    assert len(g.queries) == 1 and g.interactions[0].steps and g.insights == []
    memory.close()


def test_everything_survives_reopening_including_events_not_yet_reflected(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, ScriptedLLM(lessons=[[KEY_LESSON]]), step_index=True)
    _live(memory, chest_episode())
    door = door_episode()
    for event in door.events:
        memory.observe(event)
    memory.close()
    again = _memory(tmp_path, embedder, ScriptedLLM(lessons=[[]]), step_index=True)
    assert [q.task for q in again.graph().queries] == ["find the key and open the chest"]
    again.reflect(door.model_copy(update={"events": []}))  # the observed events were kept on disk
    g = again.graph()
    assert len(g.queries) == 2 and len(g.interactions[1].steps) >= 3
    got = again.recall(Query(text="open a locked chest", budget_tokens=400))
    assert KEY_LESSON in got.text() and "take(object=key)" in got.text()
    again.close()


def test_import_items_rejects_bad_input_in_one_line_and_keeps_what_was_stored(tmp_path, embedder):
    memory = _memory(tmp_path, embedder)
    memory.import_items([ImportItem(task="water the plants", steps=["fill the can", "water the roses"])])
    with pytest.raises(DataError) as err:
        memory.import_items([{"task": "fine"}, {"steps": ["no task"]}])
    assert "item 1" in str(err.value) and "task" in str(err.value) and "\n" not in str(err.value)
    assert [q.task for q in memory.graph().queries] == ["water the plants"]
    memory.close()


def test_import_items_links_tasks_of_one_batch_and_merges_identical_insights(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, edge_threshold=0.3)
    ids = memory.import_items(
        [
            {
                "task": "open the red door",
                "steps": ["take key", "unlock door"],
                "success": True,
                "insights": [KEY_LESSON],
            },
            {
                "task": "open the blue door",
                "steps": ["take key", "unlock door"],
                "success": True,
                "insights": [KEY_LESSON],
            },
        ]
    )
    g = memory.graph()
    assert [(e.src, e.dst) for e in g.query_edges] == [(ids[1], ids[0])]
    assert len(g.insights) == 1 and g.insights[0].support == 2
    memory.close()


def test_served_insights_gain_and_lose_utility_with_outcomes(tmp_path, embedder):
    memory = _memory(tmp_path, embedder, ScriptedLLM(lessons=[[], []]))
    memory.import_items(
        [{"task": "open the red door", "steps": ["take key"], "success": True, "insights": [KEY_LESSON]}]
    )
    memory.recall(Query(text="open the green door", budget_tokens=300))
    memory.reflect(Episode(task="open the green door", success=False))
    assert memory.graph().insights[0].utility == -1.0
    memory.recall(Query(text="open the green door", budget_tokens=300))
    memory.reflect(Episode(task="open the yellow door", success=True))
    assert memory.graph().insights[0].utility == 0.0
    memory.close()


def test_params_are_bounded():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        HierarchicalMemory.Params.model_validate({"hops": 3})
    with pytest.raises(ValidationError):
        HierarchicalMemory.Params.model_validate({"condense": "magic"})


# -- the behaviour G-Memory is about, with the real local model ------------------------------------------------
@pytest.mark.llm
def test_real_model_a_new_similar_task_gets_an_insight_and_a_concrete_prior_trajectory(tmp_path, embedder, local_llm):
    memory = _memory(tmp_path, embedder, local_llm, edge_threshold=0.3)
    _live(memory, chest_episode())
    _live(memory, door_episode())
    g = memory.graph()
    assert len(g.queries) == 2 and len(g.query_edges) == 1
    assert g.insights, "the local model distilled no usable insight from two episodes"
    got = memory.recall(Query(text="open the locked gate to the garden", budget_tokens=500))
    insights = [i for i in got.items if i.metadata["tier"] == "insight"]
    trajectories = [i for i in got.items if i.metadata["tier"] == "trajectory"]
    assert insights and trajectories
    # the upper tier: a lesson drawn from these tasks (it speaks of the key, the door/chest or locks)
    assert any(word in insights[0].content.lower() for word in ("key", "lock", "door", "chest", "unlock"))
    # the lower tier: a concrete prior trajectory, the successful one first, with its steps
    assert trajectories[0].content.startswith('Past task "find the key and open the chest" (succeeded')
    assert "take(object=key)" in trajectories[0].content
    memory.close()
