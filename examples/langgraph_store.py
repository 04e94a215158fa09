"""An existing LangGraph app whose long-term memory becomes an agentmem plugin.

The graph below is ordinary LangGraph: one node saves what the user says with
``store.put``, another looks things up with ``store.search``. Compiled with
``store=AgentmemStore("episodic")``, the saving becomes agentmem observation
and the search becomes agentmem recall (hybrid dense + BM25 retrieval here);
swap in ``"episodic+semantic"`` or your own plugin without touching the nodes.
No LLM is needed for the episodic plugin.

    python examples/langgraph_store.py
"""

from __future__ import annotations

import tempfile
import uuid
from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.store.base import BaseStore

from agentmem import AgentmemStore


class State(TypedDict, total=False):
    user: str
    message: str
    memories: list[str]


def save(state: State, *, store: BaseStore) -> dict:
    if not state["message"].endswith("?"):
        store.put(("memories", state["user"]), uuid.uuid4().hex, {"content": state["message"]})
    return {}


def look_up(state: State, *, store: BaseStore) -> dict:
    hits = store.search(("memories", state["user"]), query=state["message"], limit=2)
    return {"memories": [hit.value["content"] for hit in hits]}


def build(store: BaseStore):
    graph = StateGraph(State)
    graph.add_node("save", save)
    graph.add_node("look_up", look_up)
    graph.add_edge(START, "save")
    graph.add_edge("save", "look_up")
    graph.add_edge("look_up", END)
    return graph.compile(store=store)


def main(store_dir: str | None = None) -> list[str]:
    """Save two facts for Ann and one for Bob, then ask for Ann; returns what was found."""
    store_dir = store_dir or tempfile.mkdtemp(prefix="agentmem-store-")
    with AgentmemStore("episodic", store_dir=store_dir, model=None) as store:
        app = build(store)
        for user, message in [
            ("ann", "I keep bees in my garden"),
            ("ann", "My sister lives in Porto"),
            ("bob", "I keep chickens"),
        ]:
            app.invoke({"user": user, "message": message})
        found = app.invoke({"user": "ann", "message": "Where does my sister live?"})["memories"]
        print("found for ann:", found)
        print("namespaces:", store.list_namespaces())
        return found


if __name__ == "__main__":
    main()
