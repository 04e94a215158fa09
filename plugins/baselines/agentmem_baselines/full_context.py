"""Full context: every observed event, verbatim and in order, truncated to the budget.

The simplest memory that forgets nothing: each event is appended to an
SQLite log (through the toolkit, so it survives a reopen and belongs to one
scope). Recall ignores the query and returns the longest run of the newest
events that fits the token budget, presented oldest first, and says how many
older events were cut. It is the yardstick of "just put the history in the
prompt": any real memory should beat it at equal budget.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from agentmem.memory import MemoryProgram
from agentmem.types import Event, Query, Recall, RecallItem
from agentmem_baselines._common import body, dia_id, when

__all__ = ["FullContextMemory", "FullContextParams"]


class FullContextParams(BaseModel):
    """Knobs of full-context memory; their bounds are the space evolution searches."""

    model_config = ConfigDict(extra="forbid")

    max_events: int = Field(
        0, ge=0, le=100_000,
        description="recall at most this many of the newest events (0: as many as the budget holds)",
    )
    with_dates: bool = Field(True, description="prefix each event with its date")


class FullContextMemory(MemoryProgram):
    """Every event kept in order; recall returns the newest that fit the budget."""

    name: ClassVar[str] = "full-context"
    Params: ClassVar[type[BaseModel]] = FullContextParams
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "The conversation so far, oldest first{% if omitted %} ({{ omitted }} older events cut to fit){% endif %}:"
            "\n{{ context }}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        db = self.toolkit.db
        db.execute(
            "CREATE TABLE IF NOT EXISTS events (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT, session_id TEXT,"
            " event_when TEXT, body TEXT, dia_id TEXT, event TEXT)"
        )
        db.commit()
        self._dirty = 0

    # -- encode / store ---------------------------------------------------------
    def observe(self, event: Event) -> None:
        self.toolkit.db.execute(
            "INSERT INTO events (id, session_id, event_when, body, dia_id, event) VALUES (?, ?, ?, ?, ?, ?)",
            (event.id, event.session_id or "", when(event), body(event), dia_id(event), event.model_dump_json()),
        )
        self._dirty += 1
        if self._dirty >= 64:
            self._commit()

    def reflect(self, episode: Any) -> None:
        self._commit()

    def close(self) -> None:
        self._commit()
        self.toolkit.close()

    def _commit(self) -> None:
        if self._dirty:
            self.toolkit.db.commit()
            self._dirty = 0

    # -- retrieve -----------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        db = self.toolkit.db
        total = int(db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        if total == 0:
            return Recall(plugin=self.name)
        cap = self.params.max_events or total
        kept: list[RecallItem] = []
        used = 0
        # newest first, stopping at the first event that no longer fits: a contiguous recent window
        for row in db.execute("SELECT id, session_id, event_when, body, dia_id FROM events ORDER BY seq DESC"):
            if len(kept) >= cap:
                break
            text = f"[{row['event_when']}] {row['body']}" if self.params.with_dates else row["body"]
            cost = self.toolkit.count_tokens(text)
            if used + cost > query.budget_tokens:
                break
            used += cost
            kept.append(
                RecallItem(
                    content=text,
                    score=1.0,
                    source=self.name,
                    tokens=cost,
                    event_ids=[row["id"]],
                    metadata={"dia_id": [row["dia_id"]] if row["dia_id"] else [], "session": row["session_id"]},
                )
            )
        kept.reverse()
        omitted = total - len(kept)
        context = "\n".join(i.content for i in kept)
        return Recall(
            items=kept,
            omitted=omitted,
            plugin=self.name,
            instructions=self.instructions(context=context, omitted=omitted) if kept else "",
        )

    def events(self) -> list[Event]:
        """Every stored event, oldest first (for inspection and export)."""
        rows = self.toolkit.db.execute("SELECT event FROM events ORDER BY seq").fetchall()
        return [Event.model_validate(json.loads(r[0])) for r in rows]
