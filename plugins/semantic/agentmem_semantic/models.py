"""The data shapes of semantic memory: stored facts, their history, and the LLM's replies.

``Fact`` is a MemOS-style versioned unit: its content plus provenance (which
events, which dataset date) and version metadata. ``FactChange`` is one row of
its history. ``Extraction`` and ``Decisions`` are what the LLM is asked to
fill; they are deliberately flat and small (short strings, small ints, a
``Literal``) so that a 0.5B model under a JSON-schema grammar fills them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from agentmem.retrievers import HybridParams

__all__ = [
    "Decision",
    "Decisions",
    "ExtractedFact",
    "Extraction",
    "Fact",
    "FactChange",
    "FactIn",
    "Op",
    "SemanticParams",
]

Op = Literal["ADD", "UPDATE", "DELETE", "NOOP"]


class SemanticParams(HybridParams):
    """Knobs of semantic memory (its retriever's plus its own); their bounds are the space evolution searches."""

    batch_turns: int = Field(
        6, ge=1, le=40, description="message events buffered per session before one extraction call"
    )
    context_turns: int = Field(2, ge=0, le=8, description="earlier turns of the session shown to extraction as context")
    max_facts: int = Field(6, ge=1, le=8, description="at most this many facts kept from one extraction call")
    grounding: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="share of a fact's words that must occur in the turns (drops invented or copied facts)",
    )
    candidates: int = Field(3, ge=1, le=8, description="similar stored facts compared with each new fact")
    dedup_threshold: float = Field(
        0.75, ge=0.3, le=1.0, description="word overlap at which a new fact is a duplicate (NOOP, no LLM)"
    )
    llm_reconcile: bool = Field(
        True, description="ask the LLM for ADD/UPDATE/DELETE/NOOP (else the rule guards alone decide)"
    )
    key_update: bool = Field(True, description="a new fact with the same subject and topic key updates the stored one")
    related_min_sim: float = Field(
        0.45, ge=0.0, le=1.0, description="cosine below which an LLM UPDATE/DELETE of a stored fact is refused"
    )
    top_k: int = Field(8, ge=1, le=50, description="how many facts to recall")
    dense_weight: float = Field(1.0, ge=0.0, le=2.0, description="weight of embedding similarity in the rank fusion")
    bm25_weight: float = Field(1.0, ge=0.0, le=2.0, description="weight of BM25 word match in the rank fusion")
    show_superseded: bool = Field(True, description="show the value a fact replaced: '(updated; earlier: ...)'")
    show_dates: bool = Field(True, description="prefix each recalled fact with the date it was last stated")
    flush_on_recall: bool = Field(
        True, description="extract pending events before a recall (an LLM call only if events are pending)"
    )


class ExtractedFact(BaseModel):
    """One fact as the LLM states it (the subject is read off the text and the speaker, not asked for)."""

    fact: str = Field(max_length=160, description="one short sentence that starts with the person's name")
    key: str = Field(max_length=40, description="1-3 word topic without the value, e.g. 'seat preference'")


class Extraction(BaseModel):
    """The extraction call's reply: a small list of facts (possibly empty).

    The length bounds become grammar limits for local models, so a runaway
    answer is cut rather than waited for.
    """

    facts: list[ExtractedFact] = Field(default_factory=list, max_length=8)


class Decision(BaseModel):
    """The reconciliation call's verdict on one new fact."""

    new: int = Field(description="number of the NEW fact")
    action: Op
    old: int = Field(0, description="number of the OLD fact it updates, deletes or repeats; 0 for ADD")


class Decisions(BaseModel):
    """The reconciliation call's reply: one decision per new fact."""

    decisions: list[Decision] = Field(default_factory=list, max_length=12)


class FactIn(BaseModel):
    """A fact given directly (``add_fact`` / ``import_items``), with optional provenance."""

    text: str = Field(min_length=1)
    subject: str = ""
    key: str = ""
    date: str = ""
    timestamp: datetime | None = None
    session_id: str | None = None
    event_ids: list[str] = Field(default_factory=list)


class Fact(BaseModel):
    """One versioned memory unit: the current text of a fact plus its provenance."""

    id: str
    subject: str = ""
    key: str = ""
    text: str
    status: Literal["active", "deleted"] = "active"
    version: int = 1
    previous: str | None = Field(None, description="the text this version replaced, if it was updated")
    date: str = Field("", description="the dataset's date of the events behind the current version")
    ts: float = Field(0.0, description="the events' own time (epoch seconds) of the current version, for ordering")
    created_at: datetime
    updated_at: datetime
    session_id: str | None = None
    event_ids: list[str] = Field(default_factory=list)


class FactChange(BaseModel):
    """One change of one fact, as its history keeps it (MemOS provenance)."""

    fact_id: str
    version: int
    op: Literal["ADD", "UPDATE", "DELETE"]
    old_text: str | None = None
    new_text: str | None = None
    event_ids: list[str] = Field(default_factory=list)
    date: str = ""
    at: datetime
    reason: str = ""
