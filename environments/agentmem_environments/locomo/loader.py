"""Reading files in the format of LoCoMo's ``data/locomo10.json``.

The file is a JSON list of samples. Each sample has a ``sample_id``, a
``conversation`` (``speaker_a``, ``speaker_b``, ``session_N_date_time`` and
``session_N`` lists of turns ``{speaker, dia_id, text, [img_url,
blip_caption, query]}``) and ``qa`` (``{question, answer | adversarial_answer,
evidence, category}``). One sample becomes one :class:`~agentmem.environment.Task`:
its sessions in order, each turn an :class:`~agentmem.types.Event` carrying its
``dia_id``, then its questions.

Upstream quirks are tolerated: integer answers, category-5 questions with
only an ``adversarial_answer``, evidence written as ``"D8:6; D9:17"`` or
``"D:11:26"`` or missing, ``session_N_date_time`` keys without a session.
Anything that makes a sample unusable raises :class:`~agentmem.errors.DataError`
with one line: the file, the place, what is wrong, how to fix it.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentmem.environment import Question, Session, Task
from agentmem.errors import DataError
from agentmem.types import Event
from agentmem_environments.locomo.metrics import canonical_dia_id

log = logging.getLogger(__name__)

ADVERSARIAL_ANSWER = "Not mentioned in the conversation"
"""The reference answer of every category-5 (adversarial) question."""

CATEGORIES = ("1", "2", "3", "4", "5")
CATEGORY_NAMES = {
    "1": "multi-hop",
    "2": "temporal",
    "3": "open-domain",
    "4": "single-hop",
    "5": "adversarial",
}

_FIX = "fix the file or point AGENTMEM_LOCOMO_DATA / --data at a file in the format of LoCoMo's locomo10.json"
_SESSION_KEY = re.compile(r"session_(\d+)")
_DATE = re.compile(
    r"^\s*(\d{1,2}):(\d{2})\s*([ap])\.?\s*m\.?\s+on\s+(\d{1,2})\s+([A-Za-z]+)\.?,?\s+(\d{4})\s*$",
    re.IGNORECASE,
)
_MONTHS = {
    name: i + 1
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ]
    )
    for name in names
}
_FALLBACK_START = datetime(2000, 1, 1, tzinfo=UTC)
_PHOTO_PREFIX = re.compile(r"^\s*(a|an)\s+(photo|photograph|photography|picture|image)\s+of\s+", re.IGNORECASE)


def parse_locomo_date(text: str) -> datetime | None:
    """Parse LoCoMo's session dates ("1:56 pm on 8 May, 2023") as UTC; ``None`` if the text differs."""
    m = _DATE.match(str(text))
    if not m:
        return None
    hour, minute, half, day, month_name, year = m.groups()
    month = _MONTHS.get(month_name.lower())
    h = int(hour) % 12 + (12 if half.lower() == "p" else 0)
    if month is None or int(minute) > 59 or int(hour) > 12:
        return None
    try:
        return datetime(int(year), month, int(day), h, int(minute), tzinfo=UTC)
    except ValueError:
        return None


def photo_text(caption: str) -> str:
    """A shared image as text: "[shares a photo of a dog on a sofa]"."""
    rest = _PHOTO_PREFIX.sub("", caption.strip())
    return f"[shares a photo of {rest}]"


def turn_text(turn: dict[str, Any]) -> str:
    """The text of a turn, with its image (if any) as a bracketed caption."""
    text = str(turn.get("text") or "").strip()
    caption = turn.get("blip_caption")
    if isinstance(caption, str) and caption.strip():
        text = f"{text} {photo_text(caption)}".strip()
    return text


def _kind(value: Any) -> str:
    """A JSON value's kind, with its article ("an object", "a string")."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    for types, name in ((dict, "an object"), (list, "a list"), (str, "a string"), ((int, float), "a number")):
        if isinstance(value, types):
            return name
    return f"a {type(value).__name__}"


class _Where:
    """Builds the one-line DataError messages for one file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def error(self, where: str, what: str, fix: str = _FIX) -> DataError:
        line = f"{self.path}: {where}: {what}; {fix}" if where else f"{self.path}: {what}; {fix}"
        return DataError(" ".join(line.split()))


def read_samples(path: str | Path) -> list[dict[str, Any]]:
    """Read and minimally check the JSON list of a LoCoMo-format file."""
    p = Path(path)
    w = _Where(str(p))
    if not p.exists():
        raise w.error("", "file not found", "check the path (or unset AGENTMEM_LOCOMO_DATA to use the default data)")
    if p.is_dir():
        raise w.error("", "is a directory, not a JSON file", "give the path of the .json file itself")
    try:
        raw = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise w.error(
            "",
            f"cannot be read ({type(exc).__name__}: {exc})",
            "check the file's permissions and that it is UTF-8 JSON",
        ) from exc
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise w.error(f"line {exc.lineno} column {exc.colno}", f"not valid JSON ({exc.msg})", _FIX) from exc
    if not isinstance(data, list):
        raise w.error("top level", f"expected a JSON list of samples, found {_kind(data)}", _FIX)
    if not data:
        raise w.error("top level", "the list of samples is empty", _FIX)
    return data


def load_tasks(path: str | Path) -> list[Task]:
    """Load every sample of a LoCoMo-format file as a :class:`Task` (file order)."""
    samples = read_samples(path)
    w = _Where(str(path))
    tasks: list[Task] = []
    seen: dict[str, int] = {}
    for index, sample in enumerate(samples):
        task = _sample_to_task(sample, index, w)
        if task.id in seen:
            raise w.error(
                f"sample {index} ({task.id})",
                f"sample_id repeats the one of sample {seen[task.id]}",
                "give every sample a distinct sample_id",
            )
        seen[task.id] = index
        tasks.append(task)
    return tasks


def _sample_to_task(sample: Any, index: int, w: _Where) -> Task:
    where = f"sample {index}"
    if not isinstance(sample, dict):
        raise w.error(where, f"expected an object, found {_kind(sample)}", _FIX)
    sample_id = sample.get("sample_id")
    if not isinstance(sample_id, (str, int)) or isinstance(sample_id, bool) or not str(sample_id).strip():
        raise w.error(where, "key 'sample_id' is missing or empty", "give every sample a unique string 'sample_id'")
    sample_id = str(sample_id).strip()
    where = f"sample {index} ({sample_id})"
    conversation = sample.get("conversation")
    if conversation is None:
        raise w.error(where, "key 'conversation' is missing", _FIX)
    if not isinstance(conversation, dict):
        raise w.error(f"{where} 'conversation'", f"expected an object, found {_kind(conversation)}", _FIX)
    sessions, dia_ids = _sessions(conversation, sample_id, where, w)
    if not sessions:
        raise w.error(f"{where} 'conversation'", "has no 'session_N' lists of turns", _FIX)
    questions = _questions(sample.get("qa", None), sample_id, dia_ids, where, w)
    return Task(
        id=sample_id,
        sessions=sessions,
        questions=questions,
        metadata={
            "speaker_a": conversation.get("speaker_a"),
            "speaker_b": conversation.get("speaker_b"),
            "sessions": len(sessions),
            "turns": sum(len(s.events) for s in sessions),
            "last_date_time": sessions[-1].when,
        },
    )


def _sessions(conversation: dict[str, Any], sample_id: str, where: str, w: _Where) -> tuple[list[Session], set[str]]:
    numbers = sorted(int(m.group(1)) for key in conversation if (m := _SESSION_KEY.fullmatch(str(key))))
    sessions: list[Session] = []
    dia_ids: set[str] = set()
    event_ids: set[str] = set()  # event ids given so far (deterministic: sample + dia_id)
    last_when: datetime | None = None
    for n in numbers:
        key = f"session_{n}"
        turns = conversation[key]
        if turns is None:
            continue
        if not isinstance(turns, list):
            raise w.error(f"{where} '{key}'", f"expected a list of turns, found {_kind(turns)}", _FIX)
        if not turns:
            continue
        raw_date = conversation.get(f"{key}_date_time")
        date_text = str(raw_date).strip() if raw_date not in (None, "") else None
        when = parse_locomo_date(date_text) if date_text else None
        if when is None:
            when = (last_when + timedelta(days=1)) if last_when else _FALLBACK_START
            log.warning(
                "%s: %s %s: date %r not understood; using %s for its events",
                w.path,
                where,
                key,
                date_text,
                when.isoformat(),
            )
        last_when = when
        session_id = f"{sample_id}:{key}"
        events: list[Event] = []
        for t, turn in enumerate(turns):
            at = f"{where} '{key}' turn {t}"
            if not isinstance(turn, dict):
                raise w.error(at, f"expected an object, found {_kind(turn)}", _FIX)
            speaker = turn.get("speaker")
            if not isinstance(speaker, str) or not speaker.strip():
                raise w.error(at, "key 'speaker' is missing or empty", _FIX)
            text = turn_text(turn)
            if not text:
                raise w.error(at, "has neither 'text' nor 'blip_caption'", _FIX)
            found = canonical_dia_id(turn.get("dia_id", ""))
            dia_id = found[0] if found else f"D{n}:{t + 1}"
            event_id = f"{sample_id}:{dia_id}"
            if event_id in event_ids:
                event_id = f"{session_id}:{t + 1}"
            event_ids.add(event_id)
            dia_ids.add(dia_id)
            events.append(
                Event.message(
                    text,
                    id=event_id,
                    speaker=speaker.strip(),
                    session_id=session_id,
                    timestamp=when,
                    when=date_text,
                    metadata={"dia_id": dia_id, "session": n, "date_time": date_text},
                )
            )
        sessions.append(Session(id=session_id, when=date_text, events=events))
    return sessions, dia_ids


def _questions(qa: Any, sample_id: str, dia_ids: set[str], where: str, w: _Where) -> list[Question]:
    if qa is None:
        raise w.error(where, "key 'qa' is missing", _FIX)
    if not isinstance(qa, list):
        raise w.error(f"{where} 'qa'", f"expected a list of questions, found {_kind(qa)}", _FIX)
    questions: list[Question] = []
    for i, item in enumerate(qa):
        at = f"{where} qa[{i}]"
        if not isinstance(item, dict):
            raise w.error(at, f"expected an object, found {_kind(item)}", _FIX)
        text = item.get("question")
        if not isinstance(text, str) or not text.strip():
            raise w.error(at, "key 'question' is missing or empty", _FIX)
        category = _category(item.get("category"))
        if category is None:
            raise w.error(at, f"'category' must be 1-5, found {item.get('category')!r}", _FIX)
        metadata: dict[str, Any] = {"sample_id": sample_id, "index": i, "category_name": CATEGORY_NAMES[category]}
        if category == "5":
            answer = ADVERSARIAL_ANSWER
            if "adversarial_answer" in item:
                metadata["adversarial_answer"] = str(item["adversarial_answer"])
        else:
            if item.get("answer") is None or str(item.get("answer")).strip() == "":
                raise w.error(at, f"category {category} question has no 'answer'", _FIX)
            answer = str(item["answer"])
        evidence, dropped = _evidence(item.get("evidence"), dia_ids)
        if dropped:
            metadata["unknown_evidence"] = dropped
            log.debug("%s: %s: evidence %s names no turn of the conversation", w.path, at, dropped)
        questions.append(
            Question(
                id=f"{sample_id}:q{i}",
                text=text.strip(),
                answer=answer,
                category=category,
                evidence=evidence,
                metadata=metadata,
            )
        )
    return questions


def _category(value: Any) -> str | None:
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    text = str(number)
    return text if text in CATEGORIES else None


def _evidence(value: Any, dia_ids: set[str]) -> tuple[list[str], list[str]]:
    """Evidence dia_ids (canonical, in order, no repeats) and those naming no turn."""
    if value is None:
        return [], []
    items = value if isinstance(value, list) else [value]
    found: list[str] = []
    for item in items:
        for dia in canonical_dia_id(item):
            if dia not in found:
                found.append(dia)
    return [d for d in found if d in dia_ids], [d for d in found if d not in dia_ids]
