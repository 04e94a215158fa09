"""The data shapes of A-MEM: its knobs, the stored note, and what the LLM is asked to fill.

``NoteDraft`` (a new note's keywords, tags and context) and ``Evolution``
(which linked neighbours get a new context and tags) are deliberately flat
and small - short strings, short lists, small ints - so that a 0.5B model
under a JSON-schema grammar fills them, and so that the structured-call
machinery can bound the reply's length from the schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, StringConstraints

from agentmem.retrievers import HybridParams

__all__ = ["AMemParams", "Evolution", "Note", "NoteChange", "NeighbourUpdate", "NoteDraft"]

Word = Annotated[str, StringConstraints(max_length=24)]


class AMemParams(HybridParams):
    """Knobs of A-MEM: its hybrid retriever's plus its own; the bounds are the space evolution searches."""

    note_turns: int = Field(
        1,
        ge=1,
        le=8,
        # The paper writes one note per interaction, so the default is 1. Each note costs one LLM call (plus at
        # most one evolution call); on a long conversation with a small CPU model that is the dominant cost, and
        # grouping 2-4 consecutive turns of a session into one note divides it accordingly.
        description="consecutive events of one session written as one note (1: one note per event, as in the paper)",
    )
    link_k: int = Field(3, ge=0, le=10, description="a new note links to at most this many nearest existing notes")
    link_min_similarity: float = Field(
        0.3, ge=0.0, le=1.0, description="cosine below which a near note is not linked (0: always the k nearest)"
    )
    max_links: int = Field(
        8, ge=1, le=30, description="links kept per note (backlinks from newer notes included; newest kept)"
    )
    evolve: bool = Field(
        True, description="let a new note rewrite its linked neighbours' context and tags (one LLM call)"
    )
    evolve_k: int = Field(
        3,
        ge=0,
        le=5,
        description="at most this many linked neighbours are shown to, and updated by, one evolution call",
    )
    evolve_min_similarity: float = Field(
        0.45,
        ge=0.0,
        le=1.0,
        description="only neighbours at least this close to the new note may evolve (none: no call)",
    )
    max_keywords: int = Field(5, ge=1, le=8, description="keywords kept per note")
    max_tags: int = Field(3, ge=1, le=6, description="tags kept per note")
    top_k: int = Field(6, ge=1, le=50, description="how many notes retrieval returns before links are followed")
    follow_from: int = Field(
        3, ge=0, le=20, description="the best hits whose links are followed (0: no link following)"
    )
    max_linked: int = Field(4, ge=0, le=20, description="at most this many extra notes reached through links")
    link_weight: float = Field(
        0.5, ge=0.0, le=1.0, description="a linked note's score as a share of the hit that led to it"
    )
    show_context: bool = Field(True, description="show each recalled note's context line after its content")
    flush_on_recall: bool = Field(
        True, description="write notes for waiting events before a recall (LLM calls only if events wait)"
    )


class NoteDraft(BaseModel):
    """What the note-construction call returns for one memory."""

    keywords: list[Word] = Field(
        default_factory=list,
        max_length=6,
        description="the memory's most important words: names, things, places, dates",
    )
    tags: list[Word] = Field(default_factory=list, max_length=4, description="short topic labels")
    context: str = Field("", max_length=120, description="one sentence: what the memory is about and why it matters")


class NeighbourUpdate(BaseModel):
    """The evolution call's new context and tags for one older note (by its number in the prompt)."""

    number: int = Field(description="number of the older memory")
    context: str = Field("", max_length=120, description="its new context sentence")
    tags: list[Word] = Field(default_factory=list, max_length=4, description="its new tags")


class Evolution(BaseModel):
    """The evolution call's reply: updates for some of the shown neighbours (possibly none)."""

    updates: list[NeighbourUpdate] = Field(default_factory=list, max_length=5)


class Note(BaseModel):
    """One stored note as the public API shows it."""

    id: str
    content: str
    keywords: list[str] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    context: str = ""
    links: list[str] = Field(
        default_factory=list,
        description="ids of related notes (its nearest at write time, and newer notes that linked to it)",
    )
    when: str = Field("", description="the date of its events as the source states it")
    session_id: str = ""
    event_ids: list[str] = Field(default_factory=list)
    status: Literal["active", "deleted"] = "active"
    version: int = 1
    fallback: bool = Field(False, description="built from the raw text because the model's reply failed")
    created_at: datetime
    updated_at: datetime


class NoteChange(BaseModel):
    """One change of one note, as its history keeps it."""

    note_id: str
    version: int
    op: str
    old_text: str | None = None
    new_text: str | None = None
    reason: str = ""
    at: datetime
    data: dict[str, object] = Field(default_factory=dict)
