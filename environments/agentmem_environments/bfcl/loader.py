"""Reading BFCL v4's memory category from a ``bfcl_eval`` package's data folder.

The files (JSON lines, one object per line), under ``bfcl_eval/data/``:

- ``BFCL_v4_memory.json``: the questions, ``{id, question: [[{role, content}]],
  involved_classes, scenario}``, e.g. ``memory_0-customer-0`` "What is my
  first name?";
- ``possible_answer/BFCL_v4_memory.json``: aligned by id, ``{id,
  ground_truth: [accepted strings], source: the quoted user statement}``;
- ``memory_prereq_conversation/memory_<scenario>.json``: the prerequisite
  conversations, ``{id, topic, question: [[{role: user, content}], ...],
  scenario}``, one user message per turn, which BFCL plays to the model
  (with a kv, vector or recursive-summary memory API as tools) before any
  question of that scenario is asked.

One scenario (one simulated user: customer, finance, healthcare, notetaker,
student) becomes one :class:`~agentmem.environment.Task`: its prerequisite
conversations in file order as sessions, each user message an
:class:`~agentmem.types.Event` (speaker ``user``), then its questions. The
data carry no dates; events get increasing synthetic timestamps (one day per
conversation, one minute per turn) so that recency-aware memories see the
true order. Each question's ``source`` is located in the turn that holds all
of its words (exactly one turn, for every question of this release): that
turn's ``dia_id`` is the question's evidence.
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

__all__ = ["QUESTIONS_FILE", "ANSWERS_FILE", "PREREQ_DIR", "data_dir", "load_tasks", "read_jsonl", "locate_source"]

QUESTIONS_FILE = "BFCL_v4_memory.json"
ANSWERS_FILE = Path("possible_answer") / "BFCL_v4_memory.json"
PREREQ_DIR = "memory_prereq_conversation"
_START = datetime(2025, 1, 6, 9, 0, tzinfo=UTC)
_WORD = re.compile(r"[a-z0-9]+")
_FIX = "reinstall bfcl-eval (delete the folder to let agentmem install it again) or point bfcl_dir at an intact install"


def data_dir(root: Path) -> Path:
    """``<root>/bfcl_eval/data``."""
    return Path(root) / "bfcl_eval" / "data"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every JSON object of a JSON-lines file (BFCL's data format), blank lines skipped."""
    if not path.is_file():
        raise DataError(f"bfcl-memory: {path} not found; {_FIX}")
    rows: list[dict[str, Any]] = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"bfcl-memory: {path} cannot be read ({exc}); {_FIX}") from None
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"bfcl-memory: {path} line {n}: not valid JSON ({exc.msg}); {_FIX}") from None
        if not isinstance(row, dict):
            raise DataError(f"bfcl-memory: {path} line {n}: expected a JSON object; {_FIX}")
        rows.append(row)
    return rows


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _user_text(entry: dict[str, Any], where: str) -> list[str]:
    """The user messages of each turn of a BFCL ``question`` field (a list of turns of messages)."""
    turns = entry.get("question")
    if not isinstance(turns, list) or not turns:
        raise DataError(f"bfcl-memory: {where}: 'question' is not a non-empty list of turns; {_FIX}")
    out: list[str] = []
    for t, turn in enumerate(turns):
        messages = turn if isinstance(turn, list) else [turn]
        texts = [str(m.get("content", "")).strip() for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        text = "\n".join(x for x in texts if x)
        if not text:
            raise DataError(f"bfcl-memory: {where} turn {t}: no user message; {_FIX}")
        out.append(text)
    return out


def locate_source(source: str, turns: list[tuple[str, str]]) -> list[str]:
    """The ``dia_id``s of the turns that hold every word of ``source`` (BFCL's quoted evidence).

    Sources are quotes trimmed with "..." or lightly re-punctuated, so the
    match is on words, not characters. Empty when no turn holds them all.
    """
    wanted = _words(source)
    if not wanted:
        return []
    return [dia_id for dia_id, text in turns if set(wanted) <= set(_words(text))]


def load_tasks(root: Path) -> list[Task]:
    """One task per scenario, in order of first appearance in the question file."""
    data = data_dir(root)
    questions = read_jsonl(data / QUESTIONS_FILE)
    answers = {str(a.get("id")): a for a in read_jsonl(data / ANSWERS_FILE)}
    scenarios: list[str] = []
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for q in questions:
        scenario = str(q.get("scenario") or "").strip()
        if not scenario or not q.get("id"):
            raise DataError(
                f"bfcl-memory: {data / QUESTIONS_FILE}: entry {q.get('id')!r} lacks an id or a scenario; {_FIX}"
            )
        if scenario not in by_scenario:
            scenarios.append(scenario)
            by_scenario[scenario] = []
        by_scenario[scenario].append(q)
    return [_task(data, scenario, by_scenario[scenario], answers) for scenario in scenarios]


def _task(data: Path, scenario: str, questions: list[dict[str, Any]], answers: dict[str, dict[str, Any]]) -> Task:
    prereq_path = data / PREREQ_DIR / f"memory_{scenario}.json"
    conversations = read_jsonl(prereq_path)
    if not conversations:
        raise DataError(f"bfcl-memory: {prereq_path} holds no prerequisite conversation; {_FIX}")
    sessions: list[Session] = []
    located: list[tuple[str, str]] = []
    for k, conv in enumerate(conversations):
        conv_id = str(conv.get("id") or f"memory_prereq-{scenario}-{k}")
        topic = str(conv.get("topic") or "")
        day = _START + timedelta(days=k)
        events: list[Event] = []
        for t, text in enumerate(_user_text(conv, f"{prereq_path} {conv_id}")):
            dia_id = f"{scenario}-{k}:{t + 1}"
            located.append((dia_id, text))
            events.append(
                Event.message(
                    text,
                    speaker="user",
                    id=f"{conv_id}:{t + 1}",
                    session_id=conv_id,
                    timestamp=day + timedelta(minutes=t),
                    metadata={"dia_id": dia_id, "conversation": conv_id, "topic": topic, "turn": t + 1},
                )
            )
        sessions.append(Session(id=conv_id, events=events))
    out: list[Question] = []
    for q in questions:
        qid = str(q["id"])
        answer = answers.get(qid)
        truth = answer.get("ground_truth") if answer else None
        if not isinstance(truth, list) or not truth or not all(isinstance(x, (str, int, float)) for x in truth):
            raise DataError(f"bfcl-memory: {data / ANSWERS_FILE}: no ground_truth list for {qid}; {_FIX}")
        truth = [str(x) for x in truth]
        source = str(answer.get("source") or "") if answer else ""
        text = _user_text(q, f"{data / QUESTIONS_FILE} {qid}")[-1]
        out.append(
            Question(
                id=qid,
                text=text,
                answer=truth[0],
                category=scenario,
                evidence=locate_source(source, located),
                metadata={"ground_truth": truth, "source": source},
            )
        )
    return Task(
        id=scenario,
        sessions=sessions,
        questions=out,
        metadata={
            "scenario": scenario,
            "conversations": len(sessions),
            "turns": sum(len(s.events) for s in sessions),
            "topics": [str(c.get("topic") or "") for c in conversations],
        },
    )
