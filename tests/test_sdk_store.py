"""``AgentmemStore``: an agentmem memory as LangGraph's ``BaseStore``, used from a plain LangGraph graph."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TypedDict

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore, GetOp, ListNamespacesOp, PutOp, SearchOp

from agentmem import AgentmemStore
from agentmem.errors import AgentmemError


class _State(TypedDict, total=False):
    user: str
    text: str
    found: list[str]


def _remember(state: _State, *, store: BaseStore) -> dict:
    store.put(("memories", state["user"]), uuid.uuid4().hex, {"content": state["text"]})
    return {}


def _lookup(state: _State, *, store: BaseStore) -> dict:
    hits = store.search(("memories", state["user"]), query=state["text"], limit=3)
    return {"found": [h.value["content"] for h in hits]}


def _app(store: AgentmemStore):
    graph = StateGraph(_State)
    graph.add_node("remember", _remember)
    graph.add_node("lookup", _lookup)
    graph.add_edge(START, "remember")
    graph.add_edge("remember", "lookup")
    graph.add_edge("lookup", END)
    return graph.compile(store=store)


@pytest.fixture
def store(tmp_path: Path):
    with AgentmemStore("episodic", store_dir=tmp_path, model=None) as s:
        yield s


def test_plain_langgraph_graph_puts_and_searches(store: AgentmemStore) -> None:
    app = _app(store)
    app.invoke({"user": "ann", "text": "Ann is allergic to peanuts"})
    app.invoke({"user": "ann", "text": "Ann flies to Lisbon in May"})
    out = app.invoke({"user": "bob", "text": "Bob plays the trumpet in a jazz band"})
    assert out["found"] == ["Bob plays the trumpet in a jazz band"]  # bob's namespace holds only his memory
    hits = store.search(("memories", "ann"), query="which food is Ann allergic to?")
    assert hits[0].value == {"content": "Ann is allergic to peanuts"} and hits[0].score is not None
    assert all(h.namespace == ("memories", "ann") for h in hits)
    # a prefix search reaches every namespace under it
    everyone = store.search(("memories",), query="music band")
    assert {h.namespace for h in everyone} == {("memories", "ann"), ("memories", "bob")}


def test_get_list_delete_and_overwrite_are_exact(store: AgentmemStore) -> None:
    ns = ("prefs", "ann")
    store.put(ns, "seat", {"content": "Ann prefers aisle seats", "kind": "travel"})
    store.put(ns, "drink", {"content": "Ann drinks green tea", "kind": "food"})
    store.put(("prefs", "bob"), "seat", {"content": "Bob prefers window seats"})
    assert store.get(ns, "seat").value == {"content": "Ann prefers aisle seats", "kind": "travel"}
    assert store.get(ns, "missing") is None
    assert [i.key for i in store.search(ns, filter={"kind": "food"})] == ["drink"]
    assert store.list_namespaces() == [("prefs", "ann"), ("prefs", "bob")]
    assert store.list_namespaces(prefix=("prefs",), max_depth=1) == [("prefs",)]
    assert store.list_namespaces(suffix=("bob",)) == [("prefs", "bob")]
    # overwriting a key: the old value no longer comes back from search
    store.put(ns, "seat", {"content": "Ann now prefers window seats on long flights"})
    texts = [h.value["content"] for h in store.search(ns, query="which seats does Ann prefer?")]
    assert "Ann prefers aisle seats" not in texts and "Ann now prefers window seats on long flights" in texts
    store.delete(ns, "drink")
    assert store.get(ns, "drink") is None
    assert all(h.key != "drink" for h in store.search(ns, query="green tea"))


def test_batch_and_abatch_keep_order(store: AgentmemStore) -> None:
    ns = ("notes",)
    results = store.batch(
        [
            PutOp(ns, "a", {"text": "the boiler was serviced in March"}),
            GetOp(ns, "a"),
            SearchOp(ns, query="boiler service"),
            ListNamespacesOp(),
        ]
    )
    assert results[0] is None and results[1].value["text"].startswith("the boiler")
    assert [i.key for i in results[2]] == ["a"] and results[3] == [("notes",)]

    async def go():
        await store.aput(ns, "b", {"text": "the car needs new tyres"})
        return await store.asearch(ns, query="tyres for the car"), await store.aget(ns, "b")

    hits, item = asyncio.run(go())
    assert hits[0].key == "b" and item.value == {"text": "the car needs new tyres"}


def test_items_survive_a_new_store_object(tmp_path: Path) -> None:
    with AgentmemStore("episodic", store_dir=tmp_path, model=None) as first:
        first.put(("m",), "k", {"content": "the spare key is under the blue pot"})
    with AgentmemStore("episodic", store_dir=tmp_path, model=None) as second:
        assert second.get(("m",), "k").value["content"].startswith("the spare key")
        assert second.search(("m",), query="where is the spare key?")[0].key == "k"


def test_unknown_plugin_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AgentmemError, match="no-such-memory") as err:
        AgentmemStore("no-such-memory", store_dir=tmp_path, model=None)
    assert "\n" not in str(err.value)
