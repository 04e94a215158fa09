"""Reading files in LongMemEval's JSON format (``longmemeval_s.json``, ``_m``, ``_oracle``, the cleaned releases).

The file is a JSON list of instances, each with exactly these fields:

``question_id``, ``question_type``, ``question``, ``answer``, ``question_date``,
``haystack_session_ids``, ``haystack_dates``, ``haystack_sessions``,
``answer_session_ids``;

each session in ``haystack_sessions`` is a list of turns ``{"role": "user" |
"assistant", "content": ..., "has_answer": true}`` (``has_answer`` only on
the turns that hold the evidence). A ``question_id`` ending in ``_abs`` marks
an abstention question (it cannot be answered from the history).

One instance becomes one :class:`~agentmem.environment.Task`: its sessions in
the file's order (sorted by date in ``_s``/``_m``), each turn an
:class:`~agentmem.types.Event` whose id ``<question_id>:<session index>:<turn
index>`` and metadata (``session``, ``has_answer``) let the scorer tell which
sessions and turns memory recalled. Upstream quirks tolerated: numeric
answers, dates with or without the weekday and time, ``has_answer`` missing.
Anything that makes an instance unusable raises
:class:`~agentmem.errors.DataError` with one line naming the file, the place
and the fix.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentmem.environment import Question, Session, Task
from agentmem.errors import DataError
from agentmem.types import Event

__all__ = [
    "FIELDS",
    "QUESTION_TYPES",
    "TURN_FIELDS",
    "is_abstention_id",
    "load_tasks",
    "parse_date",
    "read_instances",
]

FIELDS: tuple[str, ...] = (
    "question_id",
    "question_type",
    "question",
    "answer",
    "question_date",
    "haystack_session_ids",
    "haystack_dates",
    "haystack_sessions",
    "answer_session_ids",
)
"""The fields of one LongMemEval instance, as the official files spell them."""

TURN_FIELDS: tuple[str, ...] = ("role", "content", "has_answer")
"""The fields of one turn (``has_answer`` appears only on evidence turns)."""

QUESTION_TYPES: tuple[str, ...] = (
    "single-session-user",
    "single-session-assistant",
    "single-session-preference",
    "temporal-reasoning",
    "knowledge-update",
    "multi-session",
)

_FIX = "fix the file or point --data / AGENTMEM_LONGMEMEVAL_DATA at a file in LongMemEval's format"
_DATE = re.compile(r"^\s*(\d{4})[/-](\d{1,2})[/-](\d{1,2})(?:\s*\((\w+)\))?(?:\s+(\d{1,2}):(\d{2}))?\s*$")


def is_abstention_id(question_id: str) -> bool:
    """LongMemEval's rule: an id ending in ``_abs`` is an abstention question."""
    return str(question_id).endswith("_abs")


def parse_date(text: Any) -> datetime | None:
    """``"2023/05/20 (Sat) 02:21"`` (weekday and time optional) as UTC; ``None`` if it is not such a date."""
    m = _DATE.match(str(text))
    if not m:
        return None
    year, month, day, _, hour, minute = m.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), tzinfo=UTC)
    except ValueError:
        return None


def _err(path: Path, where: str, what: str, fix: str = _FIX) -> DataError:
    line = f"{path}: {where}: {what}; {fix}" if where else f"{path}: {what}; {fix}"
    return DataError(" ".join(line.split()))


def read_instances(path: str | Path) -> list[dict[str, Any]]:
    """The JSON list of a LongMemEval-format file, minimally checked."""
    p = Path(path)
    if not p.is_file():
        raise _err(p, "", "file not found" if not p.exists() else "is not a file", "check the path")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(p, "", f"cannot be read ({type(exc).__name__})", "check that it is UTF-8 JSON") from None
    except json.JSONDecodeError as exc:
        raise _err(p, f"line {exc.lineno} column {exc.colno}", f"not valid JSON ({exc.msg})") from None
    if not isinstance(data, list) or not data:
        raise _err(p, "top level", "expected a non-empty JSON list of instances")
    return data


def load_tasks(path: str | Path) -> list[Task]:
    """Every instance of a LongMemEval-format file as a :class:`Task` (file order)."""
    p = Path(path)
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(read_instances(p)):
        task = _instance_to_task(raw, index, p)
        if task.id in seen:
            raise _err(
                p,
                f"instance {index}",
                f"question_id {task.id!r} repeats instance {seen[task.id]}",
                "give every instance a distinct question_id",
            )
        seen[task.id] = index
        tasks.append(task)
    return tasks


def _list(raw: dict[str, Any], key: str, where: str, path: Path) -> list[Any]:
    value = raw.get(key)
    if not isinstance(value, list):
        raise _err(path, where, f"field {key!r} must be a list (found {type(value).__name__})")
    return value


def _instance_to_task(raw: Any, index: int, path: Path) -> Task:
    where = f"instance {index}"
    if not isinstance(raw, dict):
        raise _err(path, where, f"expected an object, found {type(raw).__name__}")
    missing = [f for f in FIELDS if f not in raw and f != "answer_session_ids"]
    if missing:
        raise _err(path, where, f"missing field(s) {', '.join(missing)} (LongMemEval fields: {', '.join(FIELDS)})")
    qid = str(raw["question_id"]).strip()
    if not qid:
        raise _err(path, where, "question_id is empty")
    where = f"instance {index} ({qid})"
    qtype = str(raw["question_type"]).strip()
    question = str(raw["question"]).strip()
    if not question:
        raise _err(path, where, "question is empty")
    if raw["answer"] is None or str(raw["answer"]).strip() == "":
        raise _err(path, where, "answer is empty")
    ids = [str(x) for x in _list(raw, "haystack_session_ids", where, path)]
    dates = _list(raw, "haystack_dates", where, path)
    sessions_raw = _list(raw, "haystack_sessions", where, path)
    if not (len(ids) == len(dates) == len(sessions_raw)):
        raise _err(
            path,
            where,
            f"haystack_session_ids, haystack_dates and haystack_sessions differ in length "
            f"({len(ids)}, {len(dates)}, {len(sessions_raw)})",
        )
    answer_sessions = [str(x) for x in (raw.get("answer_session_ids") or [])]
    sessions: list[Session] = []
    evidence_turns: list[str] = []
    fallback = datetime(2023, 1, 1, tzinfo=UTC)
    for s, (sid, date_text, turns) in enumerate(zip(ids, dates, sessions_raw)):
        at = f"{where} session {s} ({sid})"
        if not isinstance(turns, list):
            raise _err(path, at, f"expected a list of turns, found {type(turns).__name__}")
        when = parse_date(date_text)
        if when is None:
            raise _err(path, at, f"date {date_text!r} is not like '2023/05/20 (Sat) 02:21'")
        fallback = when
        events: list[Event] = []
        for t, turn in enumerate(turns):
            if not isinstance(turn, dict):
                raise _err(
                    path, f"{at} turn {t}", f"expected an object with role and content, found {type(turn).__name__}"
                )
            role, content = turn.get("role"), turn.get("content")
            if role not in ("user", "assistant"):
                raise _err(path, f"{at} turn {t}", f"role must be 'user' or 'assistant' (found {role!r})")
            if not isinstance(content, str):
                raise _err(path, f"{at} turn {t}", "content must be a string")
            if not content.strip():
                continue  # upstream has a few empty turns; they carry nothing to remember
            has_answer = bool(turn.get("has_answer", False))
            event_id = f"{qid}:{s}:{t}"
            if has_answer:
                evidence_turns.append(event_id)
            events.append(
                Event.message(
                    content,
                    id=event_id,
                    speaker=role,
                    session_id=sid,
                    timestamp=when + timedelta(seconds=t),  # turns of one session keep their order
                    when=str(date_text),
                    metadata={"session": sid, "turn": t, "has_answer": has_answer, "date_time": str(date_text)},
                )
            )
        sessions.append(Session(id=sid, when=str(date_text), events=events))
    qdate = str(raw.get("question_date") or "")
    if parse_date(qdate) is None:
        raise _err(path, where, f"question_date {qdate!r} is not like '2023/05/30 (Tue) 23:40'")
    abstention = is_abstention_id(qid)
    question_obj = Question(
        id=qid,
        text=question,
        answer=str(raw["answer"]),
        category=qtype,
        evidence=[] if abstention else answer_sessions,
        metadata={
            "question_date": qdate,
            "abstention": abstention,
            "evidence_turns": evidence_turns,
            "answer_session_ids": answer_sessions,
        },
    )
    return Task(
        id=qid,
        sessions=sessions,
        questions=[question_obj],
        metadata={
            "question_type": qtype,
            "sessions": len(sessions),
            "turns": sum(len(s.events) for s in sessions),
            "abstention": abstention,
            "last_date": str(fallback.date()),
        },
    )
