"""Reading MemoryAgentBench data: the official parquet splits, or JSON files in the same row format.

The Hugging Face dataset ``ai-hyz/MemoryAgentBench`` has four splits, one per
competency (``Accurate_Retrieval``, ``Test_Time_Learning``,
``Long_Range_Understanding``, ``Conflict_Resolution``), stored as
``data/<Split>-00000-of-00001.parquet``. Each row is one long context with
several questions:

* ``context`` (string): the text the agent must memorise, fed in chunks;
* ``questions`` (list of strings);
* ``answers`` (list of lists of strings): the accepted answers of each question;
* ``metadata`` (object): ``source`` (the sub-dataset, e.g. ``eventqa_full``,
  ``ruler_qa1_197K``, ``icl_banking77_5900shot_balance``, ``recsys_redial_full``,
  ``infbench_sum_eng_shots2``, ``detective_qa``, ``factconsolidation_sh_6k``),
  ``qa_pair_ids``, ``question_ids``, ``question_types``, ``question_dates``,
  ``previous_events``, ``keypoints``, ``demo``, ``haystack_sessions``.

Accepted here: a directory holding the parquet files (directly or under
``data/``; reading them needs ``pyarrow``), one ``.parquet`` file, a ``.json``
file mapping split names to lists of rows (the layout of the generated
fixture; an optional top-level ``entity2id`` object maps movie names to the
ids recsys answers use), or a ``.json`` / ``.jsonl`` list of rows (their
competency then follows from ``metadata.source``). One row becomes one
:class:`~agentmem.environment.Task` whose context is split into chunks of at
most ``chunk_tokens`` tokens at sentence boundaries, each chunk one observed
event, in order.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agentmem.environment import Question, Session, Task
from agentmem.errors import DataError
from agentmem.tokens import count_tokens, truncate_to_tokens
from agentmem.types import Event

__all__ = [
    "COMPETENCIES",
    "METADATA_FIELDS",
    "ROW_FIELDS",
    "SPLITS",
    "chunk_text",
    "competency_of_source",
    "family_of",
    "load_rows",
    "rows_to_tasks",
]

ROW_FIELDS: tuple[str, ...] = ("context", "questions", "answers", "metadata")
"""The columns of one official row."""

METADATA_FIELDS: tuple[str, ...] = (
    "demo",
    "haystack_sessions",
    "keypoints",
    "previous_events",
    "qa_pair_ids",
    "question_dates",
    "question_ids",
    "question_types",
    "source",
)
"""The fields of ``metadata`` in the official dataset card."""

SPLITS: dict[str, str] = {
    "Accurate_Retrieval": "AR",
    "Test_Time_Learning": "TTL",
    "Long_Range_Understanding": "LRU",
    "Conflict_Resolution": "CR",
}
"""Official split names and the paper's short names for the four competencies."""

COMPETENCIES: dict[str, str] = {v: k for k, v in SPLITS.items()}

# source prefix -> (family, competency)
_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("eventqa", "eventqa", "AR"),
    ("ruler_qa", "ruler_qa", "AR"),
    ("longmemeval", "longmemeval", "AR"),
    ("icl_", "icl", "TTL"),
    ("recsys", "recsys", "TTL"),
    ("infbench_sum", "infbench_sum", "LRU"),
    ("detective", "detective_qa", "LRU"),
    ("factconsolidation", "factconsolidation", "CR"),
)

_FIX = (
    "point --data at the MemoryAgentBench parquet files, or a JSON file of rows with context, questions, "
    "answers, metadata"
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_BASE_TIME = datetime(2025, 1, 1, tzinfo=UTC)


def family_of(source: str) -> str:
    """The sub-dataset family of a ``metadata.source`` (decides the prompt and the metric); ``"other"`` if unknown."""
    for prefix, family, _ in _FAMILIES:
        if str(source).startswith(prefix):
            return family
    return "other"


def competency_of_source(source: str) -> str | None:
    for prefix, _, competency in _FAMILIES:
        if str(source).startswith(prefix):
            return competency
    return None


def chunk_text(text: str, chunk_tokens: int) -> list[str]:
    """``text`` in chunks of at most ``chunk_tokens`` tokens, cut at sentence or line ends where possible."""
    pieces = [p.strip() for p in _SENTENCE.split(text) if p and p.strip()]
    chunks: list[str] = []
    current: list[str] = []
    used = 0
    for piece in pieces:
        cost = count_tokens(piece)
        while cost > chunk_tokens:  # one sentence longer than a chunk: cut it
            head = truncate_to_tokens(piece, chunk_tokens)
            if not head:
                break
            if current:
                chunks.append(" ".join(current))
                current, used = [], 0
            chunks.append(head)
            piece = piece[len(head) :].strip()
            cost = count_tokens(piece)
        if not piece:
            continue
        if used + cost > chunk_tokens and current:
            chunks.append(" ".join(current))
            current, used = [], 0
        current.append(piece)
        used += cost
    if current:
        chunks.append(" ".join(current))
    return chunks


def _err(path: Path, where: str, what: str) -> DataError:
    return DataError(" ".join(f"{path}: {where + ': ' if where else ''}{what}; {_FIX}".split()))


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError(
            f"{path}: reading MemoryAgentBench's parquet files needs pyarrow; "
            "pip install 'agentmem-environments[memoryagentbench]' (or pyarrow)"
        ) from None
    try:
        return pq.read_table(path).to_pylist()
    except Exception as exc:
        raise _err(
            path, "", f"not a readable parquet file ({type(exc).__name__}: {' '.join(str(exc).split())[:120]})"
        ) from None


def _split_of_file(path: Path) -> str | None:
    for split in SPLITS:
        if path.name.startswith(split):
            return split
    return None


def load_rows(path: str | Path) -> tuple[dict[str, list[dict[str, Any]]], dict[str, int] | None]:
    """Rows by official split name, and the ``entity2id`` map if the data carries one."""
    p = Path(path).expanduser()
    if not p.exists():
        raise _err(p, "", "not found")
    by_split: dict[str, list[dict[str, Any]]] = {}
    entity2id: dict[str, int] | None = None
    if p.is_dir():
        files = sorted(p.glob("*.parquet")) or sorted((p / "data").glob("*.parquet"))
        if not files:
            raise _err(p, "", "holds no <Split>-00000-of-00001.parquet files")
        for f in files:
            split = _split_of_file(f)
            if split is None:
                continue
            by_split.setdefault(split, []).extend(_read_parquet(f))
        for name in (p / "entity2id.json", p.parent / "entity2id.json"):
            if name.is_file():
                entity2id = _read_json(name)
                break
    elif p.suffix == ".parquet":
        split = _split_of_file(p)
        by_split["" if split is None else split] = _read_parquet(p)
    else:
        if p.suffix == ".jsonl":
            try:
                data: Any = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
            except json.JSONDecodeError as exc:
                raise _err(p, f"line {exc.lineno}", f"not valid JSON lines ({exc.msg})") from None
        else:
            data = _read_json(p)
        if isinstance(data, dict):
            entity2id = data.get("entity2id")
            unknown = sorted(k for k in data if k not in SPLITS and k != "entity2id")
            if unknown:
                raise _err(p, "top level", f"unknown split(s) {', '.join(unknown)}; use {', '.join(SPLITS)}")
            by_split = {k: v for k, v in data.items() if k in SPLITS}
        elif isinstance(data, list):
            by_split[""] = data
        else:
            raise _err(p, "top level", f"expected an object of splits or a list of rows, found {type(data).__name__}")
    if not any(by_split.values()):
        raise _err(p, "", "holds no rows")
    return by_split, entity2id


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(path, "", f"cannot be read ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise _err(path, f"line {exc.lineno} column {exc.colno}", f"not valid JSON ({exc.msg})") from None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, list):
        return value
    if hasattr(value, "tolist"):  # numpy arrays from some parquet readers
        return list(value.tolist())
    return [value]


def rows_to_tasks(by_split: dict[str, list[dict[str, Any]]], *, chunk_tokens: int, origin: str) -> list[Task]:
    """Every row as a :class:`Task` (split order, then row order)."""
    path = Path(origin)
    tasks: list[Task] = []
    order = [s for s in SPLITS if s in by_split] + [s for s in by_split if s not in SPLITS]
    for split in order:
        for index, row in enumerate(by_split[split]):
            tasks.append(_row_to_task(row, split, index, chunk_tokens, path))
    ids = [t.id for t in tasks]
    if len(set(ids)) != len(ids):
        raise _err(path, "", "two rows share a source and position")
    return tasks


def _row_to_task(row: Any, split: str, index: int, chunk_tokens: int, path: Path) -> Task:
    where = f"{split or 'rows'}[{index}]"
    if not isinstance(row, dict):
        raise _err(path, where, f"expected an object, found {type(row).__name__}")
    missing = [f for f in ROW_FIELDS if f not in row]
    if missing:
        raise _err(path, where, f"missing field(s) {', '.join(missing)} (a row has {', '.join(ROW_FIELDS)})")
    context = row["context"]
    if not isinstance(context, str) or not context.strip():
        raise _err(path, where, "context is empty")
    meta = row["metadata"] if isinstance(row["metadata"], dict) else {}
    source = str(meta.get("source") or "")
    competency = SPLITS.get(split) or competency_of_source(source)
    if competency is None:
        raise _err(path, where, f"cannot tell the competency of source {source!r}; put the row under a split name")
    questions = [str(q) for q in _as_list(row["questions"])]
    answers = [_as_list(a) for a in _as_list(row["answers"])]
    if not questions:
        raise _err(path, where, "has no questions")
    if len(questions) > 1 and len(answers) != len(questions):
        raise _err(path, where, f"{len(questions)} questions but {len(answers)} answer lists")
    if len(questions) == 1 and len(answers) != 1:
        answers = [[a for sub in answers for a in (sub if isinstance(sub, list) else [sub])]]
    qa_ids = [str(x) for x in _as_list(meta.get("qa_pair_ids"))]
    qtypes = [str(x) for x in _as_list(meta.get("question_types"))]
    qdates = [str(x) for x in _as_list(meta.get("question_dates"))]
    keypoints = [str(x) for x in _as_list(meta.get("keypoints"))]
    family = family_of(source)
    task_id = f"{competency}:{source or 'row'}:{index}"
    chunks = chunk_text(context, chunk_tokens)
    events = [
        Event.message(
            chunk,
            speaker="user",
            id=f"{task_id}:c{i}",
            session_id=task_id,
            timestamp=_BASE_TIME + timedelta(seconds=i),
            metadata={"chunk": i},
        )
        for i, chunk in enumerate(chunks)
    ]
    out: list[Question] = []
    for i, (text, refs) in enumerate(zip(questions, answers)):
        flat = [str(a) for a in refs if str(a).strip()]
        if not flat:
            raise _err(path, f"{where} question {i}", "has no answer")
        out.append(
            Question(
                id=f"{task_id}:{qa_ids[i] if i < len(qa_ids) and qa_ids[i] else f'q{i}'}",
                text=text.strip(),
                answer=flat[0],
                category=competency,
                metadata={
                    "answers": flat,
                    "source": source,
                    "family": family,
                    "question_type": qtypes[i] if i < len(qtypes) else "",
                    "question_date": qdates[i] if i < len(qdates) else "",
                    "keypoints": keypoints if family == "infbench_sum" else [],
                },
            )
        )
    return Task(
        id=task_id,
        sessions=[Session(id=task_id, events=events)],
        questions=out,
        metadata={
            "competency": competency,
            "split_name": split,
            "source": source,
            "family": family,
            "chunks": len(chunks),
            "context_tokens": count_tokens(context),
        },
    )
