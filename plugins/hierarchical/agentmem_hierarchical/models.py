"""The data shapes of hierarchical memory: its knobs, its three tiers of nodes, its edges, its LLM answers.

G-Memory keeps three graphs: an **insight graph** (general lessons), a
**query graph** (tasks seen before, linked to similar tasks) and
**interaction graphs** (the condensed trajectory of each task). Here the
tiers are rows in SQLite - the source of truth - and these models are what
crosses a boundary: what ``import_items`` accepts, what ``graph()`` returns
for the chat inspector, what the LLM must answer at write time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "HierarchicalParams",
    "HierarchyGraph",
    "ImportItem",
    "InsightNode",
    "InteractionNode",
    "KeySteps",
    "Lessons",
    "QueryEdge",
    "QueryNode",
    "Step",
    "SupportEdge",
]


class HierarchicalParams(BaseModel):
    """Knobs of hierarchical memory; their bounds are the space evolution searches."""

    model_config = ConfigDict(extra="forbid")

    k_queries: int = Field(5, ge=1, le=20, description="query nodes found directly by similarity to the new query")
    hops: int = Field(1, ge=0, le=2, description="query-graph hops expanded from those nodes (G-Memory's traversal)")
    k_insights: int = Field(3, ge=0, le=10, description="insights recalled (the upper tier)")
    k_trajectories: int = Field(4, ge=0, le=10, description="condensed prior trajectories recalled (the lower tier)")
    insight_budget_share: float = Field(
        0.3, ge=0.0, le=1.0, description="share of the token budget reserved for insights (unused share flows on)"
    )
    edge_threshold: float = Field(
        0.5, ge=0.0, le=1.0, description="cosine similarity above which a new query node links to an earlier one"
    )
    edge_k: int = Field(3, ge=0, le=10, description="most query edges a new node makes")
    condense: Literal["extractive", "llm"] = Field(
        "extractive", description="how a trajectory is condensed: LLM-free selection, or one LLM call picking key steps"
    )
    max_steps: int = Field(16, ge=2, le=64, description="most steps kept in a condensed trajectory")
    step_tokens: int = Field(60, ge=8, le=200, description="a kept step is cut to this many tokens")
    insights_from: Literal["outcomes", "all", "none"] = Field(
        "outcomes", description="which episodes are distilled into insights (an LLM call each)"
    )
    dedup_threshold: float = Field(
        0.85, ge=0.5, le=1.0, description="cosine similarity at which a new insight merges into an existing one"
    )
    min_similarity: float = Field(
        0.3, ge=0.0, le=1.0, description="an insight found only by similarity must be at least this close to the query"
    )
    prefer_success: float = Field(
        0.3, ge=0.0, le=1.0, description="score discount of a failed trajectory against a successful one"
    )
    step_index: bool = Field(
        False,
        description="also embed each condensed step, so a query can match a task by one step (4x the embedding work)",
    )


class Step(BaseModel):
    """One kept step of a condensed trajectory, with the events it came from."""

    text: str
    kind: Literal["message", "tool_call", "observation", "outcome", "note"] = "message"
    event_ids: list[str] = Field(default_factory=list)


class QueryNode(BaseModel):
    """A task seen before (one per episode): what was asked, how it ended, when."""

    id: str
    task: str
    outcome: str | None = None
    success: bool | None = None
    reward: float | None = None
    date: str = ""
    session_id: str = ""


class InteractionNode(BaseModel):
    """The condensed trajectory of one query node's episode."""

    query_id: str
    steps: list[Step]


class InsightNode(BaseModel):
    """A general lesson; ``support`` counts the tasks it came from, ``utility`` its track record."""

    id: str
    text: str
    support: int = 0
    utility: float = 0.0
    created: str = ""


class QueryEdge(BaseModel):
    """Two similar tasks (the query graph is undirected; ``src`` is the newer)."""

    src: str
    dst: str
    weight: float


class SupportEdge(BaseModel):
    """An insight and a task it came from or applies to (``weight`` 1 for the source task)."""

    insight_id: str
    query_id: str
    weight: float = 1.0


class HierarchyGraph(BaseModel):
    """A snapshot of all three tiers and their edges (for the chat inspector and tests)."""

    queries: list[QueryNode] = Field(default_factory=list)
    interactions: list[InteractionNode] = Field(default_factory=list)
    insights: list[InsightNode] = Field(default_factory=list)
    query_edges: list[QueryEdge] = Field(default_factory=list)
    support_edges: list[SupportEdge] = Field(default_factory=list)


class ImportItem(BaseModel):
    """One task to bulk-insert without any LLM call: its query node, trajectory and optional insights.

    ``steps`` may be plain strings (their source event ids then go in
    ``event_ids``, one per step or shared by all) or :class:`Step` objects.
    """

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    task: str
    steps: list[Step | str] = Field(default_factory=list)
    outcome: str | None = None
    success: bool | None = None
    reward: float | None = None
    date: str = ""
    session_id: str = ""
    event_ids: list[str] = Field(default_factory=list)
    insights: list[str] = Field(default_factory=list)


# -- what the LLM answers at write time (flat and small, for a 0.5B model) -------------------
class KeySteps(BaseModel):
    """The numbers of the steps that mattered, as the condense prompt asks for them."""

    steps: list[int] = Field(default_factory=list)


class Lessons(BaseModel):
    """Zero to two short general lessons drawn from a finished task."""

    lessons: list[str] = Field(default_factory=list)
