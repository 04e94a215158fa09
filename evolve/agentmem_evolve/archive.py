"""The run's memory: every program, every evaluation, every event, in one SQLite file.

The archive is what makes a run resumable and reportable. Everything the
controller learns goes here the moment it is known, in its own committed
transaction, so a crash (or a kill -9) loses at most the evaluation that
was in flight; reopening the same ``run_dir`` sees everything else. WAL
mode lets `agentmem evolve status` and the report read while a run writes.

Programs are content-addressed (:func:`program_id`): proposing a program
that already exists is a no-op, and "has this program already been scored on
this question set?" is one lookup by ``(program_id, stage, key)``.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agentmem.errors import DataError
from agentmem_evolve.selection import Scored

__all__ = [
    "Archive",
    "EvaluationRecord",
    "EventRecord",
    "ProgramRecord",
    "evaluation_key",
    "program_id",
]

ARCHIVE_FILE = "archive.sqlite"
SCHEMA_VERSION = 1
MAX_TRACES = 8  # transcripts kept per evaluation: enough for a reflective prompt, not a log
MAX_TRACE_STRING = 3000  # characters of any one string inside a trace
MAX_TRACE_JSON = 12_000  # characters of one trace as JSON

Stage = Literal["proxy", "screen", "select", "test"]


def _now() -> datetime:
    return datetime.now(UTC)


def program_id(source: str, params: dict[str, Any] | None = None) -> str:
    """The id of a program: a short sha256 of its source (and of its parameter values, when it has any).

    Parameters take part because a structured mutation may change only them;
    two programs with the same source and no parameters are the same program.
    """
    digest = hashlib.sha256(source.encode("utf-8"))
    if params:
        digest.update(b"\0params\0" + json.dumps(params, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()[:12]


def evaluation_key(split: str, instance_ids: Iterable[str]) -> str:
    """A key naming one question set (a split and its task/question ids, order ignored)."""
    ids = sorted(str(i) for i in instance_ids)
    digest = hashlib.sha256((split + "\0" + "\0".join(ids)).encode("utf-8")).hexdigest()[:16]
    return f"{split}:{len(ids)}:{digest}"


class ProgramRecord(BaseModel):
    """One memory program in the population: its source, where it came from, whether it works."""

    model_config = ConfigDict(extra="forbid")

    id: str = ""
    source: str
    parents: list[str] = Field(default_factory=list)
    operator: str = "seed"
    generation: int = Field(0, ge=0)
    island: int = Field(0, ge=0)
    params: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=_now)
    meta: dict[str, Any] = Field(default_factory=dict)
    status: Literal["valid", "invalid", "pending"] = "pending"
    error: str | None = None

    @model_validator(mode="after")
    def _content_id(self) -> ProgramRecord:
        if not self.id:
            self.id = program_id(self.source, self.params)
        return self


class EvaluationRecord(BaseModel):
    """One program scored on one question set at one cascade stage."""

    model_config = ConfigDict(extra="forbid")

    id: int | None = None
    program_id: str
    stage: Stage
    split: str
    key: str
    metrics: dict[str, float] = Field(default_factory=dict)
    score: float = 0.0
    per_instance: dict[str, float] = Field(default_factory=dict)
    cost: dict[str, float] = Field(default_factory=dict)
    traces: list[dict[str, Any]] = Field(default_factory=list)
    status: Literal["ok", "failed"] = "ok"
    reason: str | None = None
    started_at: datetime = Field(default_factory=_now)
    finished_at: datetime = Field(default_factory=_now)

    @field_validator("traces")
    @classmethod
    def _cap(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return cap_traces(value)

    @property
    def questions(self) -> int:
        """How many questions this evaluation covered (at least 1, for per-question costs)."""
        n = len(self.per_instance) or int(self.metrics.get("questions", 0) or 0)
        return max(1, n)

    @property
    def tokens(self) -> float:
        """All LLM tokens this evaluation spent."""
        if "tokens" in self.cost:
            return float(self.cost["tokens"])
        return float(self.cost.get("prompt_tokens", 0)) + float(self.cost.get("completion_tokens", 0))

    @property
    def program_tokens(self) -> float:
        """The tokens this evaluation's calls take, whether the model or the LLM cache answered them.

        The program's own price, by which selection compares programs: :attr:`tokens` (what was spent) is lower
        for a child whose prompts the cache already holds from its parent, which would make any child that
        changes little look cheaper. An evaluation recorded before calls were counted falls back to ``tokens``.
        """
        if "counted_tokens" in self.cost:
            return float(self.cost["counted_tokens"])
        return self.tokens


class EventRecord(BaseModel):
    """Something that happened in the run (iteration started, child rejected, budget hit, ...)."""

    id: int
    ts: datetime
    kind: str
    payload: dict[str, Any] = Field(default_factory=dict)


def cap_traces(traces: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most :data:`MAX_TRACES` traces, long strings cut, each at most :data:`MAX_TRACE_JSON` characters."""
    out = []
    for trace in traces[:MAX_TRACES]:
        capped = _cap_value(trace)
        text = json.dumps(capped, default=str)
        if len(text) > MAX_TRACE_JSON:
            capped = {"truncated": text[:MAX_TRACE_JSON] + f"... [{len(text) - MAX_TRACE_JSON} characters cut]"}
        out.append(capped)
    return out


def _cap_value(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_TRACE_STRING:
        return value[:MAX_TRACE_STRING] + f"... [{len(value) - MAX_TRACE_STRING} characters cut]"
    if isinstance(value, dict):
        return {str(k): _cap_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_cap_value(v) for v in value[:50]]
    return value


_SCHEMA = """
CREATE TABLE IF NOT EXISTS programs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    parents TEXT NOT NULL,
    operator TEXT NOT NULL,
    generation INTEGER NOT NULL,
    island INTEGER NOT NULL,
    params TEXT NOT NULL,
    created_at TEXT NOT NULL,
    meta TEXT NOT NULL,
    status TEXT NOT NULL,
    error TEXT
);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    program_id TEXT NOT NULL REFERENCES programs(id),
    stage TEXT NOT NULL,
    split TEXT NOT NULL,
    key TEXT NOT NULL,
    metrics TEXT NOT NULL,
    score REAL NOT NULL,
    per_instance TEXT NOT NULL,
    cost TEXT NOT NULL,
    traces TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT NOT NULL,
    UNIQUE (program_id, stage, key)
);
CREATE INDEX IF NOT EXISTS evaluations_by_stage ON evaluations(stage, status);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class _Written(NamedTuple):
    rowcount: int
    lastrowid: int | None
    rows: list[Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


class Archive:
    """The SQLite archive of one run directory (``run_dir/archive.sqlite``).

    Safe to share between threads (one connection behind a lock) and to open
    from several processes at once (WAL; writers wait for each other).
    """

    def __init__(self, run_dir: Path | str) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ARCHIVE_FILE
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise DataError(f"run directory {self.run_dir} is a file: give a directory for the run")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db: sqlite3.Connection | None = sqlite3.connect(
                self.path, timeout=30.0, check_same_thread=False, isolation_level=None
            )
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed evaluation survives power loss too
            self._db.execute("PRAGMA foreign_keys=ON")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise DataError(
                    f"archive {self.path} was written by a newer agentmem-evolve (schema {version}); upgrade "
                    "agentmem-evolve"
                )
            self._db.executescript(_SCHEMA)
            if version != SCHEMA_VERSION:  # a read-only use (status, report) leaves the file as it was
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"archive {self.path} cannot be opened ({exc}): it is not an agentmem-evolve archive; use "
                "another run directory"
            ) from None

    # -- plumbing -------------------------------------------------------------------
    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise DataError(f"archive {self.path} is closed: open a new Archive on {self.run_dir}")
        return self._db

    def _write(self, sql: str, args: tuple[Any, ...] = ()) -> _Written:
        """Run one statement in its own committed transaction (durable once this returns)."""
        with self._lock:
            db = self.db
            db.execute("BEGIN IMMEDIATE")
            try:
                cur = db.execute(sql, args)
                rows = cur.fetchall() if cur.description else []
                done = _Written(cur.rowcount, cur.lastrowid, rows)
                cur.close()
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
            return done

    def _read(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self.db.execute(sql, args).fetchall()

    def close(self) -> None:
        """Close the connection; everything already written stays (each write was committed)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- programs -------------------------------------------------------------------
    def add_program(self, rec: ProgramRecord) -> bool:
        """Store a program; False (and nothing changes) when the same program is already there."""
        cur = self._write(
            "INSERT OR IGNORE INTO programs (id, source, parents, operator, generation, island, params,"
            " created_at, meta, status, error) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                rec.id,
                rec.source,
                _dumps(rec.parents),
                rec.operator,
                rec.generation,
                rec.island,
                _dumps(rec.params),
                rec.created_at.isoformat(),
                _dumps(rec.meta),
                rec.status,
                rec.error,
            ),
        )
        return cur.rowcount == 1

    def set_status(
        self, program_id: str, status: Literal["valid", "invalid", "pending"], error: str | None = None
    ) -> None:
        """Record whether a program passed validation (import, interface, smoke run), and why not."""
        cur = self._write("UPDATE programs SET status = ?, error = ? WHERE id = ?", (status, error, program_id))
        if cur.rowcount == 0:
            raise KeyError(program_id)

    def update_meta(self, program_id: str, **meta: Any) -> None:
        """Merge ``meta`` into a program's meta (e.g. the repair attempts it needed)."""
        with self._lock:
            current = self.program(program_id)
            if current is None:
                raise KeyError(program_id)
            self._write("UPDATE programs SET meta = ? WHERE id = ?", (_dumps({**current.meta, **meta}), program_id))

    def program(self, program_id: str) -> ProgramRecord | None:
        rows = self._read("SELECT * FROM programs WHERE id = ?", (program_id,))
        return _program(rows[0]) if rows else None

    def programs(self, status: str | None = None) -> list[ProgramRecord]:
        """Programs in creation order, optionally only those with ``status``."""
        if status is None:
            rows = self._read("SELECT * FROM programs ORDER BY seq")
        else:
            rows = self._read("SELECT * FROM programs WHERE status = ? ORDER BY seq", (status,))
        return [_program(r) for r in rows]

    def lineage(self, program_id: str) -> list[ProgramRecord]:
        """The program's ancestors through every parent, oldest first, ending with the program itself."""
        seen: dict[str, ProgramRecord] = {}
        todo = [program_id]
        while todo:
            pid = todo.pop()
            if pid in seen:
                continue
            rec = self.program(pid)
            if rec is None:
                if pid == program_id:
                    raise KeyError(program_id)
                continue  # a parent outside this archive (should not happen, but never crash a report)
            seen[pid] = rec
            todo.extend(rec.parents)
        order = {r["id"]: r["seq"] for r in self._read("SELECT id, seq FROM programs")}
        return sorted(seen.values(), key=lambda r: order.get(r.id, 0))

    def children(self, program_id: str) -> list[ProgramRecord]:
        """Programs that name ``program_id`` among their parents, in creation order."""
        return [p for p in self.programs() if program_id in p.parents]

    # -- evaluations ----------------------------------------------------------------
    def record_evaluation(self, rec: EvaluationRecord) -> EvaluationRecord:
        """Store an evaluation (replacing an earlier one of the same program, stage and key); returns it with its id."""
        if self.program(rec.program_id) is None:
            raise KeyError(f"program {rec.program_id} is not in the archive; add_program it first")
        cur = self._write(
            "INSERT INTO evaluations (program_id, stage, split, key, metrics, score, per_instance, cost, traces,"
            " status, reason, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(program_id, stage, key) DO UPDATE SET split=excluded.split, metrics=excluded.metrics,"
            " score=excluded.score, per_instance=excluded.per_instance, cost=excluded.cost, traces=excluded.traces,"
            " status=excluded.status, reason=excluded.reason, started_at=excluded.started_at,"
            " finished_at=excluded.finished_at RETURNING id",
            (
                rec.program_id,
                rec.stage,
                rec.split,
                rec.key,
                _dumps(rec.metrics),
                float(rec.score),
                _dumps(rec.per_instance),
                _dumps(rec.cost),
                _dumps(rec.traces),
                rec.status,
                rec.reason,
                rec.started_at.isoformat(),
                rec.finished_at.isoformat(),
            ),
        )
        new_id = cur.rows[0][0] if cur.rows else cur.lastrowid
        return rec.model_copy(update={"id": new_id})

    def evaluation(self, program_id: str, stage: str, key: str) -> EvaluationRecord | None:
        """The evaluation of ``program_id`` at ``stage`` on question set ``key``, if it was done."""
        rows = self._read(
            "SELECT * FROM evaluations WHERE program_id = ? AND stage = ? AND key = ?", (program_id, stage, key)
        )
        return _evaluation(rows[0]) if rows else None

    def evaluations(
        self, program_id: str | None = None, stage: str | None = None, status: str | None = None
    ) -> list[EvaluationRecord]:
        """Evaluations in the order they were recorded, filtered by any of program, stage, status."""
        where, args = [], []
        for column, value in (("program_id", program_id), ("stage", stage), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT * FROM evaluations" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        return [_evaluation(r) for r in self._read(sql, tuple(args))]

    # -- events and state -----------------------------------------------------------
    def log_event(self, kind: str, **payload: Any) -> int:
        """Append an event (what the controller did and why); returns its id."""
        cur = self._write(
            "INSERT INTO events (ts, kind, payload) VALUES (?,?,?)", (_now().isoformat(), kind, _dumps(payload))
        )
        return int(cur.lastrowid or 0)

    def events(self, since: int | None = None, kind: str | None = None) -> list[EventRecord]:
        """Events after event id ``since`` (all when None), oldest first, optionally of one kind."""
        sql = "SELECT * FROM events WHERE id > ?"
        args: list[int | str] = [since or 0]
        if kind is not None:
            sql += " AND kind = ?"
            args.append(kind)
        rows = self._read(sql + " ORDER BY id", tuple(args))
        return [
            EventRecord(
                id=r["id"], ts=datetime.fromisoformat(r["ts"]), kind=r["kind"], payload=json.loads(r["payload"])
            )
            for r in rows
        ]

    def get_state(self, key: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM state WHERE key = ?", (key,))
        return json.loads(rows[0]["value"]) if rows else default

    def set_state(self, key: str, value: Any) -> None:
        """Store a JSON value (iteration counter, rng state, spend so far) under ``key``."""
        text = json.dumps(value)  # not default=str: state must round-trip exactly
        self._write(
            "INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, text),
        )

    def state(self) -> dict[str, Any]:
        """All stored state values."""
        return {r["key"]: json.loads(r["value"]) for r in self._read("SELECT key, value FROM state")}

    # -- views ----------------------------------------------------------------------
    def scored(self, stage: str = "select", key: str | None = None) -> list[Scored]:
        """Valid programs with an ok evaluation at ``stage`` (on ``key`` if given), as selection sees them.

        A program evaluated on several question sets at the stage is merged:
        per-instance scores are united, the score is the instance-weighted
        mean, and tokens/seconds are per question over all of them.
        """
        evals = [e for e in self.evaluations(stage=stage, status="ok") if key is None or e.key == key]
        by_program: dict[str, list[EvaluationRecord]] = {}
        for e in evals:
            by_program.setdefault(e.program_id, []).append(e)
        out: list[Scored] = []
        for prog in self.programs(status="valid"):
            group = by_program.get(prog.id)
            if not group:
                continue
            out.append(_scored(prog, group))
        return out

    def best(self, stage: str = "select", key: str | None = None) -> tuple[ProgramRecord, EvaluationRecord] | None:
        """The valid program with the highest score at ``stage`` (fewer tokens, then older, on ties) and its
        evaluation.
        """
        pool = self.scored(stage, key)
        if not pool:
            return None
        order = {p.id: i for i, p in enumerate(self.programs())}
        top = max(pool, key=lambda s: (_finite(s.score), -s.tokens, -order.get(s.program_id, 0)))
        prog = self.program(top.program_id)
        assert prog is not None
        evals = [e for e in self.evaluations(top.program_id, stage, status="ok") if key is None or e.key == key]
        return prog, evals[-1]


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _program(row: sqlite3.Row) -> ProgramRecord:
    return ProgramRecord(
        id=row["id"],
        source=row["source"],
        parents=json.loads(row["parents"]),
        operator=row["operator"],
        generation=row["generation"],
        island=row["island"],
        params=json.loads(row["params"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        meta=json.loads(row["meta"]),
        status=row["status"],
        error=row["error"],
    )


def _evaluation(row: sqlite3.Row) -> EvaluationRecord:
    return EvaluationRecord.model_construct(  # already validated when written; traces already capped
        id=row["id"],
        program_id=row["program_id"],
        stage=row["stage"],
        split=row["split"],
        key=row["key"],
        metrics=json.loads(row["metrics"]),
        score=float(row["score"]),
        per_instance=json.loads(row["per_instance"]),
        cost=json.loads(row["cost"]),
        traces=json.loads(row["traces"]),
        status=row["status"],
        reason=row["reason"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=datetime.fromisoformat(row["finished_at"]),
    )


def _scored(prog: ProgramRecord, group: list[EvaluationRecord]) -> Scored:
    per_instance: dict[str, float] = {}
    for e in group:
        per_instance.update(e.per_instance)
    weights = [e.questions for e in group]
    total = sum(weights)
    score = sum(e.score * w for e, w in zip(group, weights)) / total
    tokens = sum(e.program_tokens for e in group) / total
    seconds = sum(float(e.cost.get("seconds", 0.0)) for e in group) / total
    calls = sum(float(e.cost.get("llm_calls", 0.0)) for e in group) / total
    metrics: dict[str, float] = {}
    for e in group:  # the latest evaluation's metrics describe the behaviour
        metrics.update({k: float(v) for k, v in e.metrics.items() if isinstance(v, (int, float))})
    descriptors = dict(metrics)
    if "recall_items" not in descriptors and "recalled_items" in descriptors:
        descriptors["recall_items"] = descriptors["recalled_items"]
    descriptors.update(
        tokens=tokens,
        seconds=seconds,
        llm_calls=calls,
        score=score,
        code_lines=float(sum(1 for line in prog.source.splitlines() if line.strip())),
    )
    return Scored(
        program_id=prog.id,
        score=score,
        tokens=tokens,
        seconds=seconds,
        per_instance=per_instance,
        island=prog.island,
        generation=prog.generation,
        descriptors=descriptors,
        operator=prog.operator,
        parents=list(prog.parents),
    )
