"""Data shapes of procedural memory: stored items, tunable params, and the small LLM answer schemas.

The LLM schemas are deliberately flat (short strings, lists of short
strings): the default local model is a 0.5B instruct model that only emits
valid JSON reliably under a JSON-schema grammar, and only for small schemas.
No length limits are declared on them, because a limit the grammar cannot
enforce would turn a usable, slightly long answer into a validation failure;
the program trims answers itself instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from agentmem.managers import ConsolidateParams, PruneParams
from agentmem.retrievers import HybridParams, UtilityParams

__all__ = [
    "AdaptedAdvice",
    "ComparativeDraft",
    "FailureDraft",
    "ItemKind",
    "ProceduralItem",
    "ProceduralParams",
    "SuccessDraft",
    "WorkflowDraft",
]

ItemKind = Literal["success_pattern", "failure_trigger", "comparative", "workflow"]
KINDS: tuple[str, ...] = ("workflow", "success_pattern", "comparative", "failure_trigger")


class ProceduralParams(HybridParams, UtilityParams, PruneParams, ConsolidateParams):
    """Knobs of procedural memory: its modules' (hybrid retrieval with a similarity floor, utility blend,
    pruning, consolidation) plus its own; their bounds are the space evolution searches."""

    top_k: int = Field(4, ge=1, le=20, description="most items recalled for one task")
    min_similarity: float = Field(
        0.4,
        ge=0.0,
        le=1.0,
        description="cosine similarity between the task and an item's situation below which the item is never recalled",
    )
    bm25_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="weight of keyword (BM25) ranking against dense ranking"
    )
    compare_similarity: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="how similar a past task must be for its opposite outcome to yield a comparative insight",
    )
    adapt: bool = Field(
        False, description="rewrite recalled items for the new task with one LLM call (ReMe's adaptation)"
    )
    max_items_per_episode: int = Field(4, ge=1, le=10, description="most items distilled from one episode")


class ProceduralItem(BaseModel):
    """One unit of procedural memory, indexed by the situation it applies to.

    ``when_to_use`` is the scenario text retrieval matches the new task
    against; ``content`` is the advice itself. ``retrieved`` counts the
    episodes with a known outcome in which the item was recalled, ``helped``
    those of them that succeeded. ``metadata`` keeps provenance lists
    (``episode_ids``, ``event_ids``) and, for workflows, ``steps``.
    """

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    kind: ItemKind
    when_to_use: str = Field(min_length=1)
    content: str = Field(min_length=1)
    task: str = ""
    episode_id: str = ""
    retrieved: int = Field(0, ge=0)
    helped: int = Field(0, ge=0)
    created_at: float = 0.0
    metadata: dict[str, Any] = Field(default_factory=dict)

    @property
    def utility(self) -> float:
        """Laplace-smoothed success rate of the episodes that used the item: (helped+1)/(retrieved+2)."""
        return (self.helped + 1) / (self.retrieved + 2)


# -- what the LLM is asked to fill in ------------------------------------------------


class SuccessDraft(BaseModel):
    """Success patterns of one successful episode."""

    situation: str = ""
    patterns: list[str] = Field(default_factory=list)


class WorkflowDraft(BaseModel):
    """An AWM workflow: a goal and a few abstract, reusable steps."""

    goal: str = ""
    steps: list[str] = Field(default_factory=list)


class FailureDraft(BaseModel):
    """A failure trigger: the situation, what went wrong, what to do instead."""

    situation: str = ""
    mistake: str = ""
    fix: str = ""


class ComparativeDraft(BaseModel):
    """What a success did that a similar failure did not."""

    situation: str = ""
    insight: str = ""


class AdaptedAdvice(BaseModel):
    """Recalled items rewritten for the task at hand."""

    advice: list[str] = Field(default_factory=list)
