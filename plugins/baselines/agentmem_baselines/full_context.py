"""Full context: every observed event, verbatim and in order, truncated to the budget.

The simplest memory that forgets nothing: each event is appended to a
:class:`~agentmem.store.Store` (no vector or word index: nothing is ever
searched), so it survives a reopen and belongs to one scope. Recall ignores
the query: the packer takes the newest events while they fit the token
budget (a contiguous window), presents them oldest first, and the recall
says how many older events were cut. It is the yardstick of "just put the
history in the prompt": any real memory should beat it at equal budget.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentmem.encode import event_text, event_when
from agentmem.memory import MemoryProgram
from agentmem.packer import Packer, candidate
from agentmem.store import StoredItem
from agentmem.types import Event, Query, Recall

__all__ = ["FullContextMemory", "FullContextParams"]


class FullContextParams(BaseModel):
    """Knobs of full-context memory; their bounds are the space evolution searches."""

    model_config = ConfigDict(extra="forbid")

    max_events: int = Field(
        0,
        ge=0,
        le=100_000,
        description="recall at most this many of the newest events (0: as many as the budget holds)",
    )
    with_dates: bool = Field(True, description="prefix each event with its date")


class FullContextMemory(MemoryProgram[FullContextParams]):
    """Every event kept in order; recall returns the newest that fit the budget."""

    name: ClassVar[str] = "full-context"
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "The conversation so far, oldest first{% if omitted %} ({{ omitted }} older events cut to fit){% endif %}:"
            "\n{{ context }}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.store = self.open_store("events", dense=False, lexical=False, sync_every=64)
        self.packer = Packer(order="position", contiguous=True, limit=self.params.max_events or None)

    def observe(self, event: Event) -> None:
        self.store.add(
            [
                StoredItem(
                    text=event_text(event),
                    group=event.session_id or "",
                    ts=event.timestamp.timestamp(),
                    event_ids=[event.id],
                    data={"when": event_when(event), "event": event.model_dump(mode="json")},
                )
            ]
        )

    def recall(self, query: Query) -> Recall:
        total = self.store.count()
        if total == 0:
            return Recall(plugin=self.name)
        with_dates = self.params.with_dates
        newest_first = (
            candidate(e, f"[{e.data['when']}] {e.text}" if with_dates else e.text, 1.0, self.name, session=e.group)
            for e in self.store.items(order="seq DESC")
        )
        packed = self.packer.pack(newest_first, query.budget_tokens)
        return self.recalled(packed._replace(omitted=total - len(packed.items)))

    def events(self) -> list[Event]:
        """Every stored event, oldest first (for inspection and export)."""
        return [Event.model_validate(item.data["event"]) for item in self.store.items()]
