"""Encode: what an event becomes before it is stored, and where events wait until then.

* :func:`event_text` - one event as one line of memory (``speaker: content``,
  tool calls and outcomes spelled out): the single spelling every memory
  uses, so that what one plugin stores reads like what another stores.
* :func:`event_when` - the event's time as its source states it
  (``Event.when``), else its timestamp: memories show the dataset's own
  dates without knowing any dataset.
* :class:`EventBuffer` - events kept in SQLite until a program processes
  them (a batch for extraction, an episode for distillation, a chunk), so a
  crash or a forgotten ``close`` loses none.
* :func:`group_turns` - consecutive events of one session grouped into
  chunks of ``n`` turns (verbatim episodic chunks); :func:`merge_events` -
  an episode's events and the observed ones, each once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from agentmem.types import Event

__all__ = ["EventBuffer", "event_text", "event_when", "group_turns", "merge_events"]

_TIME_FORMAT = "%Y-%m-%d %H:%M"


def event_text(event: Event) -> str:
    """The event without its date: ``speaker: content`` (tool calls and outcomes spelled out)."""
    if event.kind == "tool_call":
        who = f"{event.speaker} " if event.speaker else ""
        return f"{who}called {event.tool_name} with {event.arguments}"
    if event.kind == "outcome":
        reward = "" if event.reward is None else f" (reward {event.reward:g})"
        return f"outcome{reward}: {event.content}"
    return f"{event.speaker}: {event.content}" if event.speaker else event.content


def event_when(event: Event, fmt: str = _TIME_FORMAT) -> str:
    """The event's time as its source states it (``Event.when``), else its timestamp in ``fmt``."""
    return event.when or event.timestamp.strftime(fmt)


def group_turns(events: Iterable[Event], n: int) -> list[list[Event]]:
    """Consecutive events in chunks of at most ``n``; a chunk never spans two sessions."""
    groups: list[list[Event]] = []
    for event in events:
        if groups and len(groups[-1]) < n and groups[-1][-1].session_id == event.session_id:
            groups[-1].append(event)
        else:
            groups.append([event])
    return groups


def merge_events(*lists: Iterable[Event]) -> list[Event]:
    """The events of several lists (observed ones, those an episode carries), each once, in order."""
    seen: set[str] = set()
    out: list[Event] = []
    for events in lists:
        for event in events:
            if event.id not in seen:
                seen.add(event.id)
                out.append(event)
    return out


class EventBuffer:
    """Events waiting in the program's SQLite database until it processes them, per session.

    ``add`` writes the event at once (committed every ``sync_every`` events
    and when the owner closes), so the buffer survives a crash or a reopen;
    ``take`` returns and removes what waits (of one session, or all).
    """

    def __init__(self, toolkit: Any, name: str = "pending", *, sync_every: int = 1) -> None:
        self.toolkit = toolkit
        self.table = f"buffer_{_ident(name)}"
        self.sync_every = max(1, sync_every)
        self._unsynced = 0
        db = toolkit.db
        db.execute(
            f"CREATE TABLE IF NOT EXISTS {self.table} (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " id TEXT, session_id TEXT NOT NULL, event TEXT NOT NULL)"
        )
        db.execute(f"CREATE INDEX IF NOT EXISTS {self.table}_session ON {self.table} (session_id, seq)")
        db.commit()

    def add(self, event: Event) -> int:
        """Keep ``event``; returns how many events of its session now wait."""
        session = event.session_id or ""
        db = self.toolkit.db
        db.execute(
            f"INSERT INTO {self.table} (id, session_id, event) VALUES (?, ?, ?)",
            (event.id, session, event.model_dump_json()),
        )
        self._unsynced += 1
        if self._unsynced >= self.sync_every:
            db.commit()
            self._unsynced = 0
        return int(db.execute(f"SELECT COUNT(*) FROM {self.table} WHERE session_id = ?", (session,)).fetchone()[0])

    def sessions(self) -> list[str]:
        """Sessions with waiting events, in the order their first event arrived."""
        rows = self.toolkit.db.execute(f"SELECT session_id FROM {self.table} ORDER BY seq").fetchall()
        return list(dict.fromkeys(r[0] for r in rows))

    def peek(self, session: str | None = None) -> list[Event]:
        """The waiting events (of ``session``, or all), oldest first, left in place."""
        return [event for _, event in self._rows(session)]

    def take(self, session: str | None = None) -> list[Event]:
        """The waiting events (of ``session``, or all), oldest first, removed from the buffer."""
        rows = self._rows(session)
        if rows:
            self._remove(session, rows[-1][0])
        return [event for _, event in rows]

    def drain(
        self, handle: Callable[[str, list[Event]], object], session: str | None = None, *, skip: str | None = None
    ) -> None:
        """Hand the waiting events of each session to ``handle(session, events)``, then remove them.

        Sessions go in the order their first event arrived (only ``session``
        when given; never ``skip``). A session's events leave the buffer only
        once ``handle`` returns, so an exception (a crash, a failed LLM call
        that the program lets through) keeps them waiting for the next flush;
        events added while ``handle`` ran stay too.
        """
        for name in [session] if session is not None else self.sessions():
            if name == skip:
                continue
            rows = self._rows(name)
            if not rows:
                continue
            handle(name, [event for _, event in rows])
            self._remove(name, rows[-1][0])

    def __len__(self) -> int:
        return int(self.toolkit.db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0])

    def __bool__(self) -> bool:
        return self.toolkit.db.execute(f"SELECT 1 FROM {self.table} LIMIT 1").fetchone() is not None

    def close(self) -> None:
        """Commit what was added since the last sync (the owner's close calls it)."""
        if self._unsynced:
            self.toolkit.db.commit()
            self._unsynced = 0

    def _remove(self, session: str | None, last: int) -> None:
        """Delete the events (of ``session``, or all) up to sequence number ``last``, and commit."""
        if session is None:
            self.toolkit.db.execute(f"DELETE FROM {self.table} WHERE seq <= ?", (last,))
        else:
            self.toolkit.db.execute(f"DELETE FROM {self.table} WHERE session_id = ? AND seq <= ?", (session, last))
        self.toolkit.db.commit()
        self._unsynced = 0

    def _rows(self, session: str | None) -> list[tuple[int, Event]]:
        if session is None:
            rows = self.toolkit.db.execute(f"SELECT seq, event FROM {self.table} ORDER BY seq").fetchall()
        else:
            rows = self.toolkit.db.execute(
                f"SELECT seq, event FROM {self.table} WHERE session_id = ? ORDER BY seq", (session,)
            ).fetchall()
        return [(int(r[0]), Event.model_validate_json(r[1])) for r in rows]


def _ident(name: str) -> str:
    """``name`` as a safe SQL identifier part."""
    out = "".join(c if c.isalnum() else "_" for c in name).strip("_")
    return out or "items"
