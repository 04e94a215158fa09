"""Store: SQLite rows as the truth, a Chroma mirror for meaning, a BM25 index for words.

Every first-party memory keeps its items the same way, through one
:class:`Store` per kind of item (episodic chunks, semantic facts,
procedural lessons, hierarchical tasks and insights):

* **SQLite is the source of truth.** One table per store, in the program's
  own database (so the items belong to one scope), holds every item with its
  text, kind, group, lookup key, time, version, status, usage counters,
  source event ids and the program's own payload (``data``). A table of
  history rows records what managers did to an item (superseded, merged,
  pruned, forgotten).
* **A Chroma collection mirrors the active items**, embedded through the
  toolkit's embedder (the one embedding path) in batches of :data:`BATCH`.
  It is derived: on open, one resync rule (counts differ -> the ids are
  compared, extras deleted, missing ones embedded) repairs a crash between
  the two writes.
* **A BM25 index over the active items' words** is built from SQLite on
  first use and kept up to date incrementally by every write. (SQLite FTS5
  was measured as the alternative: ``benchmarks/bench_lexical.py`` found it
  some 13x slower to search at 100k items, so the in-memory index stays.)

The store does no ranking of its own: retrievers (:mod:`agentmem.retrievers`)
ask it for nearest vectors and BM25 hits, managers (:mod:`agentmem.managers`)
change items through :meth:`Store.update` and record history.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from agentmem.encode import _ident
from agentmem.retrieval import BM25Index

__all__ = ["BATCH", "HistoryRow", "Store", "StoredItem"]

#: items per embedding call, Chroma write and SQL ``IN (...)`` list
BATCH = 1000

_COLUMNS = (
    "seq",
    "id",
    "kind",
    "grp",
    "key",
    "text",
    "dense_text",
    "lexical_text",
    "ts",
    "status",
    "version",
    "event_ids",
    "retrieved",
    "helped",
    "data",
    "created",
    "updated",
)


def new_id() -> str:
    return uuid.uuid4().hex[:16]


class StoredItem(BaseModel):
    """One item of a store: what is shown, how it is found, where it came from, and the program's own payload.

    ``text`` is what recall shows and, unless ``dense_text`` / ``lexical_text``
    say otherwise, what the vector and word indexes see. ``group`` partitions
    a scope (a session, a subject, a parent node) and ``key`` is a lookup key
    managers match on (a normalised text, a subject-and-topic slot). ``ts``
    is when it happened (epoch seconds); ``seq`` its place in insertion order
    (given by the store). ``retrieved`` / ``helped`` count the episodes that
    used it and those that succeeded (its utility).
    """

    id: str = Field(default_factory=new_id)
    text: str
    kind: str = ""
    group: str = ""
    key: str = ""
    ts: float = 0.0
    seq: int = 0
    status: Literal["active", "deleted"] = "active"
    version: int = 1
    event_ids: list[str] = Field(default_factory=list)
    retrieved: int = 0
    helped: int = 0
    dense_text: str | None = None
    lexical_text: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    created: float = 0.0
    updated: float = 0.0

    @property
    def utility(self) -> float:
        """Laplace-smoothed success rate of the episodes that used the item: (helped+1)/(retrieved+2)."""
        return (self.helped + 1) / (self.retrieved + 2)

    @property
    def dense(self) -> str:
        return self.text if self.dense_text is None else self.dense_text

    @property
    def lexical(self) -> str:
        return self.text if self.lexical_text is None else self.lexical_text


class HistoryRow(BaseModel):
    """One thing a manager did to an item: its op, the text before and after, the sources, why, when."""

    item_id: str
    version: int
    op: str
    old_text: str | None = None
    new_text: str | None = None
    event_ids: list[str] = Field(default_factory=list)
    reason: str = ""
    at: float
    data: dict[str, Any] = Field(default_factory=dict)


class Store:
    """Items of one kind in one program's scope: SQLite truth, Chroma mirror (``dense``), BM25 (``lexical``)."""

    def __init__(
        self, toolkit: Any, name: str = "items", *, dense: bool = True, lexical: bool = True, sync_every: int = 1
    ) -> None:
        self.toolkit = toolkit
        self.sync_every = max(1, sync_every)
        self._unsynced = 0
        self.name = name
        self.table = f"store_{_ident(name)}"
        self.dense_enabled = dense
        self.lexical_enabled = lexical
        db = toolkit.db
        t = self.table
        db.executescript(
            f"""
            CREATE TABLE IF NOT EXISTS {t} (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, kind TEXT NOT NULL DEFAULT '',
                grp TEXT NOT NULL DEFAULT '', key TEXT NOT NULL DEFAULT '', text TEXT NOT NULL, dense_text TEXT,
                lexical_text TEXT, ts REAL NOT NULL DEFAULT 0, status TEXT NOT NULL DEFAULT 'active',
                version INTEGER NOT NULL DEFAULT 1, event_ids TEXT NOT NULL DEFAULT '[]',
                retrieved INTEGER NOT NULL DEFAULT 0, helped INTEGER NOT NULL DEFAULT 0,
                data TEXT NOT NULL DEFAULT '{{}}', created REAL NOT NULL DEFAULT 0, updated REAL NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS {t}_key ON {t} (key, status);
            CREATE INDEX IF NOT EXISTS {t}_grp ON {t} (grp);
            CREATE TABLE IF NOT EXISTS {t}_history (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, version INTEGER NOT NULL,
                op TEXT NOT NULL,
                old_text TEXT, new_text TEXT, event_ids TEXT NOT NULL DEFAULT '[]', reason TEXT NOT NULL DEFAULT '',
                at REAL NOT NULL, data TEXT NOT NULL DEFAULT '{{}}');
            CREATE INDEX IF NOT EXISTS {t}_history_item ON {t}_history (item_id, seq);
            """
        )
        db.commit()
        self._collection: Any = toolkit.collection(name) if dense else None
        self._bm25: BM25Index | None = None  # keyed by the zero-padded seq: ties rank in insertion order
        self._seqs: dict[str, int] | None = None  # id -> seq of the active items, once some ranking needed it
        self._at: dict[int, str] = {}  # and back: seq -> id
        self._counts: dict[tuple[str | None, bool], int] = {}
        if dense:
            self.resync()

    # -- write ---------------------------------------------------------------------------------
    def add(self, items: Sequence[StoredItem], *, replace: bool = False) -> list[StoredItem]:
        """Store new items (SQLite first, in one transaction), then mirror the active ones; returns them with ``seq``.

        With ``replace`` an item whose id is stored already replaces it.
        """
        if not items:
            return []
        now = time.time()
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        if replace and self._seqs is not None:  # a replaced item gets a new seq: its old word-index entry goes
            self._unindex([i.id for i in items if i.id in self._seqs], mirror=False)
        db = self.toolkit.db
        out: list[StoredItem] = []
        try:
            for item in items:
                item = item.model_copy(update={"created": item.created or now, "updated": item.updated or now})
                cur = db.execute(
                    f"{verb} INTO {self.table} (id, kind, grp, key, text, dense_text, lexical_text, ts, "
                    "status, version,"
                    " event_ids, retrieved, helped, data, created, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    self._values(item),
                )
                out.append(item.model_copy(update={"seq": int(cur.lastrowid or 0)}))
        except Exception:
            db.rollback()
            raise
        self._synced(len(out))
        self._counts.clear()
        self._index(out, fresh=not replace)
        return out

    def update(self, item_id: str, **changes: Any) -> StoredItem | None:
        """Change fields of one item (``text``, ``status``, ``version``, ``data``, counters...) and keep the
        indexes in step.
        """
        current = self.get_one(item_id)
        if current is None:
            return None
        changed = current.model_copy(update={**changes, "updated": time.time()})
        db = self.toolkit.db
        with db:
            db.execute(
                f"UPDATE {self.table} SET kind=?, grp=?, key=?, text=?, dense_text=?, lexical_text=?, ts=?, status=?,"
                " version=?, event_ids=?, retrieved=?, helped=?, data=?, created=?, updated=? WHERE id=?",
                (*self._values(changed)[1:], item_id),
            )
        if "status" in changes:
            self._counts.clear()
        indexed = {"text", "dense_text", "lexical_text", "status", "kind", "group"}
        if indexed & set(changes):
            self._index([changed])
        return changed

    def delete(self, ids: Iterable[str]) -> int:
        """Remove items for good (rows and index entries); returns how many were stored."""
        ids = list(dict.fromkeys(ids))
        if not ids:
            return 0
        db = self.toolkit.db
        gone = 0
        with db:
            for part in _batches(ids):
                gone += db.execute(f"DELETE FROM {self.table} WHERE id IN ({_marks(part)})", part).rowcount
        self._counts.clear()
        self._unindex(ids)
        return gone

    def record(
        self,
        item_id: str,
        op: str,
        *,
        version: int = 1,
        old_text: str | None = None,
        new_text: str | None = None,
        event_ids: Sequence[str] = (),
        reason: str = "",
        data: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> None:
        """Append one history row for ``item_id`` (what a manager did, and why)."""
        self.record_many(
            [
                HistoryRow(
                    item_id=item_id,
                    version=version,
                    op=op,
                    old_text=old_text,
                    new_text=new_text,
                    event_ids=list(event_ids),
                    reason=reason,
                    at=time.time() if at is None else at,
                    data=data or {},
                )
            ]
        )

    def record_many(self, rows: Sequence[HistoryRow]) -> None:
        db = self.toolkit.db
        with db:
            db.executemany(
                f"INSERT INTO {self.table}_history (item_id, version, op, old_text, new_text, event_ids, "
                "reason, at, data)"
                " VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        r.item_id,
                        r.version,
                        r.op,
                        r.old_text,
                        r.new_text,
                        json.dumps(r.event_ids),
                        r.reason,
                        r.at,
                        json.dumps(r.data, default=str),
                    )
                    for r in rows
                ],
            )

    def history(self, item_id: str | None = None) -> list[HistoryRow]:
        """History rows (of one item, or all), oldest first."""
        sql = f"SELECT item_id, version, op, old_text, new_text, event_ids, reason, at, data FROM {self.table}_history"
        rows = self.toolkit.db.execute(
            sql + (" WHERE item_id = ?" if item_id else "") + " ORDER BY seq", (item_id,) if item_id else ()
        ).fetchall()
        return [
            HistoryRow(
                item_id=r[0],
                version=r[1],
                op=r[2],
                old_text=r[3],
                new_text=r[4],
                event_ids=json.loads(r[5]),
                reason=r[6],
                at=r[7],
                data=json.loads(r[8]),
            )
            for r in rows
        ]

    # -- read ------------------------------------------------------------------------------------
    def get(self, ids: Iterable[str]) -> dict[str, StoredItem]:
        """Items by id (missing ids are left out), in the order asked."""
        wanted = list(dict.fromkeys(i for i in ids if i))
        found: dict[str, StoredItem] = {}
        for part in _batches(wanted):
            for row in self.toolkit.db.execute(f"SELECT * FROM {self.table} WHERE id IN ({_marks(part)})", part):
                found[row["id"]] = _item(row)
        return {i: found[i] for i in wanted if i in found}

    def data_values(self, ids: Iterable[str], field: str) -> dict[str, Any]:
        """One field of the payload (``data[field]``) of many items, read by SQLite without decoding the rest.

        For ranking: hierarchical weighs every task its graph walk reached by
        its ``success`` flag but shows only the few best, with their steps;
        decoding each reached task's whole payload made its recall slower than
        before the store existed (``benchmarks/bench_recall.py`` at 100k
        items). Every item found is in the result, in the order asked, with
        ``None`` where its payload lacks the field; missing ids are left out.
        """
        wanted = list(dict.fromkeys(i for i in ids if i))
        path = "$." + json.dumps(field)  # quoted: any key is one path step
        found: dict[str, Any] = {}
        for part in _batches(wanted):
            sql = f"SELECT id, json_extract(data, ?), json_type(data, ?) FROM {self.table} WHERE id IN ({_marks(part)})"
            for item_id, value, kind in self.toolkit.db.execute(sql, [path, path, *part]):
                if kind in ("true", "false"):
                    value = kind == "true"  # SQLite gives JSON booleans as 1 and 0
                elif kind in ("object", "array"):
                    value = json.loads(value)
                found[item_id] = value
        return {i: found[i] for i in wanted if i in found}

    def get_one(self, item_id: str) -> StoredItem | None:
        return self.get([item_id]).get(item_id)

    def at_seq(self, seqs: Iterable[int]) -> dict[int, StoredItem]:
        """Active items by their place in insertion order (for neighbour widening)."""
        wanted = sorted(set(int(s) for s in seqs))
        out: dict[int, StoredItem] = {}
        for part in _batches(wanted):
            for row in self.toolkit.db.execute(
                f"SELECT * FROM {self.table} WHERE status = 'active' AND seq IN ({_marks(part)})", part
            ):
                out[int(row["seq"])] = _item(row)
        return out

    def by_key(self, key: str, *, limit: int | None = None, group: str | None = None) -> list[StoredItem]:
        """Active items with lookup ``key`` (of ``group`` if given), newest first."""
        sql = f"SELECT * FROM {self.table} WHERE key = ? AND status = 'active'"
        args: list[Any] = [key]
        if group is not None:
            sql += " AND grp = ?"
            args.append(group)
        sql += " ORDER BY seq DESC" + (" LIMIT ?" if limit else "")
        if limit:
            args.append(limit)
        return [_item(r) for r in self.toolkit.db.execute(sql, args)]

    def items(
        self,
        *,
        kind: str | None = None,
        include_deleted: bool = False,
        where: str = "",
        args: Sequence[Any] = (),
        order: str = "seq",
    ) -> Iterator[StoredItem]:
        """Every item (of ``kind``; active only unless ``include_deleted``; an extra SQL ``where``), in ``order``."""
        clauses = [] if include_deleted else ["status = 'active'"]
        params: list[Any] = []
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if where:
            clauses.append(f"({where})")
            params.extend(args)
        sql = (
            f"SELECT * FROM {self.table}"
            + (" WHERE " + " AND ".join(clauses) if clauses else "")
            + f" ORDER BY {order}"
        )
        for row in self.toolkit.db.execute(sql, params):
            yield _item(row)

    def count(self, *, kind: str | None = None, active: bool = True) -> int:
        """How many items (of ``kind``; active only unless ``active=False``), cached between writes."""
        key = (kind, active)
        if key not in self._counts:
            clauses = ["status = 'active'"] if active else []
            params: list[Any] = []
            if kind is not None:
                clauses.append("kind = ?")
                params.append(kind)
            where = (" WHERE " + " AND ".join(clauses)) if clauses else ""
            self._counts[key] = int(
                self.toolkit.db.execute(f"SELECT COUNT(*) FROM {self.table}{where}", params).fetchone()[0]
            )
        return self._counts[key]

    def newest_ts(self) -> float:
        """The time of the newest active item (0 when empty)."""
        row = self.toolkit.db.execute(f"SELECT MAX(ts) FROM {self.table} WHERE status = 'active'").fetchone()
        return float(row[0] or 0.0)

    # -- search ------------------------------------------------------------------------------------
    def embed(self, texts: list[str]) -> list[list[float]]:
        """Vectors through the toolkit's embedder, in batches of :data:`BATCH`."""
        out: list[list[float]] = []
        for part in _batches(texts):
            out.extend(self.toolkit.embed(part))
        return out

    def nearest(
        self, vector: Sequence[float], k: int, *, where: dict[str, Any] | None = None
    ) -> list[tuple[str, float]]:
        """The ``k`` active items nearest to ``vector`` with their cosine similarity, best first.

        ``where`` filters on ``kind`` and ``group`` (Chroma's metadata syntax).
        """
        return self.nearest_many([vector], k, where=where)[0]

    def nearest_many(
        self, vectors: Sequence[Sequence[float]], k: int, *, where: dict[str, Any] | None = None
    ) -> list[list[tuple[str, float]]]:
        """:meth:`nearest` for several vectors in one call."""
        total = self.count() if self._collection is not None else 0
        if total == 0 or k <= 0 or not vectors:
            return [[] for _ in vectors]
        out: list[list[tuple[str, float]]] = []
        for part in _batches(list(vectors)):
            try:
                hits = self._collection.query(
                    query_embeddings=[np.asarray(v, dtype=np.float32).tolist() for v in part],
                    n_results=min(k, total),
                    where=where,
                    include=["distances"],
                )
            except Exception:
                out.extend([] for _ in part)
                continue
            out.extend(
                [(i, 1.0 - float(d)) for i, d in zip(ids, dists)] for ids, dists in zip(hits["ids"], hits["distances"])
            )
        return out

    def vectors(self, ids: Sequence[str]) -> dict[str, Any]:
        """The stored vectors (float32 arrays) of active items (missing ids are left out)."""
        if self._collection is None or not ids:
            return {}
        out: dict[str, Any] = {}
        for part in _batches(list(ids)):
            got = self._collection.get(ids=part, include=["embeddings"])
            for i, emb in zip(got["ids"], got["embeddings"]):
                out[i] = np.asarray(emb, dtype=np.float32)
        return out

    def lexical(self, text: str, k: int) -> list[tuple[str, float]]:
        """The ``k`` best BM25 ``(id, score)`` pairs for ``text`` among active items, best first (ties: older first)."""
        if not self.lexical_enabled:
            return []
        index = self._index_words()
        self._seq_map()
        return [(self._at[int(doc)], score) for doc, score in index.search(text, k) if int(doc) in self._at]

    def order(self, ids: Iterable[str]) -> dict[str, int]:
        """The insertion order (``seq``) of active items, for rankings to break ties by: older first."""
        seqs = self._seq_map()
        return {i: seqs[i] for i in ids if i in seqs}

    # -- keeping the mirrors in step -----------------------------------------------------------------
    def resync(self) -> None:
        """Make the Chroma mirror hold exactly the active items (SQLite wins after a crash between two writes)."""
        if self._collection is None:
            return
        if self._collection.count() == self.count():
            return
        in_chroma = set(self._collection.get(include=[])["ids"])
        active = {r[0] for r in self.toolkit.db.execute(f"SELECT id FROM {self.table} WHERE status = 'active'")}
        extra = sorted(in_chroma - active)
        for part in _batches(extra):
            self._collection.delete(ids=part)
        missing = sorted(active - in_chroma)
        if missing:
            self._mirror(list(self.get(missing).values()), fresh=True)

    def rebuild(self) -> None:
        """Drop and rebuild both mirrors from SQLite (after items were rewritten wholesale)."""
        if self._collection is not None:
            ids = self._collection.get(include=[])["ids"]
            for part in _batches(ids):
                self._collection.delete(ids=part)
        self._bm25 = None
        self._seqs, self._at = None, {}
        self.resync()

    def close(self) -> None:
        """Commit what is not yet; the toolkit's database itself is closed by the owner."""
        if self._unsynced:
            self.toolkit.db.commit()
            self._unsynced = 0
        self._bm25 = None
        self._seqs, self._at = None, {}

    def _synced(self, writes: int) -> None:
        """Commit once ``sync_every`` rows were written (1: every write is committed at once)."""
        self._unsynced += writes
        if self._unsynced >= self.sync_every:
            self.toolkit.db.commit()
            self._unsynced = 0

    def _index(self, items: Sequence[StoredItem], *, fresh: bool = False) -> None:
        active = [i for i in items if i.status == "active"]
        gone = [i.id for i in items if i.status != "active"]
        if gone:
            self._unindex(gone)
        if not active:
            return
        if self._collection is not None:
            self._mirror(active, fresh=fresh)
        if self._seqs is not None:
            for item in active:
                self._seqs[item.id] = item.seq
                self._at[item.seq] = item.id
        if self._bm25 is not None:
            for item in active:
                self._bm25.add(_doc(item.seq), item.lexical)

    def _mirror(self, items: Sequence[StoredItem], *, fresh: bool) -> None:
        """Embed and write items to Chroma in batches (``fresh``: ids never stored there, so the cheaper ``add``)."""
        write = self._collection.add if fresh else self._collection.upsert
        for part in _batches(list(items)):
            docs = [i.dense for i in part]
            write(
                ids=[i.id for i in part],
                documents=docs,
                embeddings=self.embed(docs),
                metadatas=[{"kind": i.kind, "group": i.group, "seq": i.seq} for i in part],
            )

    def _unindex(self, ids: Sequence[str], *, mirror: bool = True) -> None:
        if mirror and self._collection is not None:
            for part in _batches(list(ids)):
                self._collection.delete(ids=part)
        if self._seqs is not None:
            for item_id in ids:
                seq = self._seqs.pop(item_id, None)
                if seq is not None:
                    self._at.pop(seq, None)
                    if self._bm25 is not None:
                        self._bm25.remove(_doc(seq))
        elif self._bm25 is not None:  # pragma: no cover - the index is always built with the seq map
            self._bm25 = None

    def _index_words(self) -> BM25Index:
        if self._bm25 is None:
            self._seq_map()
            index = BM25Index()
            rows = self.toolkit.db.execute(
                f"SELECT seq, COALESCE(lexical_text, text) FROM {self.table} WHERE status = 'active' ORDER BY seq"
            )
            index.add_many((_doc(r[0]), r[1]) for r in rows)
            self._bm25 = index
        return self._bm25

    def _seq_map(self) -> dict[str, int]:
        if self._seqs is None:
            rows = self.toolkit.db.execute(f"SELECT id, seq FROM {self.table} WHERE status = 'active'")
            self._seqs = {r[0]: int(r[1]) for r in rows}
            self._at = {seq: item_id for item_id, seq in self._seqs.items()}
        return self._seqs

    def _values(self, item: StoredItem) -> tuple[Any, ...]:
        return (
            item.id,
            item.kind,
            item.group,
            item.key,
            item.text,
            item.dense_text,
            item.lexical_text,
            item.ts,
            item.status,
            item.version,
            json.dumps(item.event_ids),
            item.retrieved,
            item.helped,
            json.dumps(item.data, default=str),
            item.created,
            item.updated,
        )


def _item(row: Any) -> StoredItem:
    """A row as an item, without re-validating what the store itself wrote (recall reads many per query)."""
    return StoredItem.model_construct(
        seq=row["seq"],
        id=row["id"],
        kind=row["kind"],
        group=row["grp"],
        key=row["key"],
        text=row["text"],
        dense_text=row["dense_text"],
        lexical_text=row["lexical_text"],
        ts=row["ts"],
        status=row["status"],
        version=row["version"],
        event_ids=json.loads(row["event_ids"]),
        retrieved=row["retrieved"],
        helped=row["helped"],
        data=json.loads(row["data"]),
        created=row["created"],
        updated=row["updated"],
    )


def _doc(seq: int) -> str:
    """An item's key in the BM25 index: its seq, zero-padded so that ties sort in insertion order."""
    return f"{seq:012d}"


def _batches(values: Sequence[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), BATCH):
        yield list(values[start : start + BATCH])


def _marks(part: Sequence[Any]) -> str:
    return ",".join("?" * len(part))
