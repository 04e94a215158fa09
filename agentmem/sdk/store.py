"""``AgentmemStore``: any agentmem memory behind LangGraph's ``BaseStore`` interface.

An existing LangGraph app that keeps long-term memory with ``store.put`` and
``store.search`` can switch to agentmem's plugins by compiling its graph with
``store=AgentmemStore(memory="episodic+semantic")``; its nodes do not change.

How the operations map:

* ``put(namespace, key, value)`` records the value in a small SQLite table
  (so ``get`` and key listing are exact) **and** hands it to the memory as an
  observed :class:`~agentmem.types.Event` (``value["content"]`` or
  ``value["text"]`` when present, else the value as JSON). ``put(..., None)``
  / ``delete`` removes the key: it no longer comes back from ``get`` or
  ``search``.
* ``search(prefix, query=...)`` goes through ``memory.recall`` of every
  namespace under the prefix and maps what was recalled back to the stored
  items (their current values, with the recall score). Without a query it
  lists the stored items, newest first. ``filter`` matches values by equality.
* ``list_namespaces`` lists the namespaces holding items (prefix/suffix
  conditions with ``*`` wildcards, ``max_depth``).

Each namespace is a memory scope of its own (``Scope(user_id, run_id=<the
namespace as a JSON list>)``), so ``("memories", "ann")`` never recalls what
was put under ``("memories", "bob")``, nor ``("acme", "ann", "notes")`` what was
put under ``("acme", "ann/notes")``. The table keys namespaces by the same JSON
list. Stores written by earlier versions (which joined labels with ``/`` for
the memory and with ``\x1f`` for the table) are migrated when opened: the
table once, each namespace's memory the first time it is used.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from langgraph.store.base import (
    BaseStore,
    GetOp,
    Item,
    ListNamespacesOp,
    MatchCondition,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from agentmem.composition import ComposedMemory
from agentmem.errors import ConfigError
from agentmem.memory import MemoryProgram
from agentmem.toolkit import ChatModel, Stores
from agentmem.types import Event, Query, Scope

__all__ = ["AgentmemStore"]

_LEGACY_SEP = "\x1f"  # how versions before TABLE_VERSION joined namespace labels in the table
#: ``PRAGMA user_version`` of the table once namespaces are stored as JSON lists
TABLE_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    event_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX IF NOT EXISTS kv_event ON kv (event_id);
"""


class AgentmemStore(BaseStore):
    """A LangGraph ``BaseStore`` whose search is an agentmem memory's recall (see the module's notes).

    ``memory``: plugin names (``"episodic"``, ``"episodic+semantic"``, a list,
    or ``.py`` program paths). ``model``: the LLM the plugins may use
    (``"local"``, a litellm string or a ChatModel; only plugins that extract
    or distil call it). ``store_dir``: where the table and memories live
    (default: the user data dir, as for :class:`agentmem.Agent`).
    """

    def __init__(
        self,
        memory: str | list[str] = "episodic",
        *,
        store_dir: str | Path | None = None,
        model: str | ChatModel | None = "local",
        user_id: str = "default",
        budget_tokens: int | None = None,
        params: dict[str, dict[str, Any]] | None = None,
        api_base: str | None = None,
    ) -> None:
        from agentmem.config import recall_budget
        from agentmem.sdk.agent import default_store_dir

        names = memory if isinstance(memory, list) else [memory]
        self.memory_names: list[str] = [n.strip() for spec in names for n in str(spec).split("+") if n.strip()]
        if not self.memory_names:
            raise ConfigError('AgentmemStore(memory=...) is empty: name at least one plugin, e.g. memory="episodic"')
        from agentmem.registry import load_memory

        for name in self.memory_names:  # a misspelt plugin fails here, before anything is stored
            load_memory(name)
        self.store_dir = Path(store_dir).expanduser() if store_dir is not None else default_store_dir()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.user_id = user_id
        self.budget_tokens = recall_budget(budget_tokens)  # None: the recall_budget setting
        self.params = params
        if isinstance(model, str):
            from agentmem.llm import LLM

            self.llm: ChatModel | None = LLM(model, api_base=api_base)
        else:
            self.llm = model
        self.stores = Stores(self.store_dir / "memory")
        self._memories: dict[tuple[str, ...], ComposedMemory] = {}
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.store_dir / "langgraph-store.sqlite", check_same_thread=False)
        self._conn.executescript(_SCHEMA)
        self._conn.commit()
        _upgrade_table(self._conn)

    # -- memory per namespace --------------------------------------------------------------
    def memory_for(self, namespace: tuple[str, ...]) -> ComposedMemory:
        """The memory that holds what was put under ``namespace`` (created on first use)."""
        namespace = tuple(namespace)
        found = self._memories.get(namespace)
        if found is None:
            from agentmem.agent.graph import build_memory_stack

            scope = Scope(user_id=self.user_id, agent_id="langgraph-store", run_id=_ns(namespace))
            # earlier versions joined the labels with "/": move what they stored to the new scope
            self.stores.adopt_scope(
                Scope(user_id=self.user_id, agent_id="langgraph-store", run_id="/".join(namespace)), scope
            )
            programs: list[MemoryProgram] = build_memory_stack(
                self.memory_names, scope=scope, stores=self.stores, llm=self.llm, params=self.params
            )
            found = self._memories[namespace] = ComposedMemory(programs)
        return found

    # -- the BaseStore interface -----------------------------------------------------------------
    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run ``ops`` in order (puts before a later search in the same batch are visible to it)."""
        results: list[Result] = []
        with self._lock:
            for op in ops:
                if isinstance(op, GetOp):
                    results.append(self._get(op))
                elif isinstance(op, PutOp):
                    self._put(op)
                    results.append(None)
                elif isinstance(op, SearchOp):
                    results.append(self._search(op))
                elif isinstance(op, ListNamespacesOp):
                    results.append(self._list_namespaces(op))
                else:
                    raise ConfigError(
                        f"AgentmemStore cannot run a {type(op).__name__}: use get, put, search or list_namespaces"
                    )
        return results

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """:meth:`batch` in a worker thread (memory and SQLite calls block)."""
        return await asyncio.to_thread(self.batch, list(ops))

    # -- operations ----------------------------------------------------------------------------
    def _get(self, op: GetOp) -> Item | None:
        row = self._conn.execute(
            "SELECT namespace, key, value, created_at, updated_at FROM kv WHERE namespace = ? AND key = ?",
            (_ns(op.namespace), op.key),
        ).fetchone()
        return None if row is None else _item(row)

    def _put(self, op: PutOp) -> None:
        ns = _ns(op.namespace)
        if op.value is None:
            self._conn.execute("DELETE FROM kv WHERE namespace = ? AND key = ?", (ns, op.key))
            self._conn.commit()
            return
        value = dict(op.value)
        now = datetime.now(UTC).isoformat()
        event = Event.message(
            _text_of(value, op.index),
            speaker=str(value.get("speaker") or "user"),
            session_id="/".join(op.namespace),
            metadata={"namespace": list(op.namespace), "key": op.key},
            id=uuid.uuid4().hex[:16],
        )
        old = self._conn.execute("SELECT created_at FROM kv WHERE namespace = ? AND key = ?", (ns, op.key)).fetchone()
        self._conn.execute(
            "INSERT OR REPLACE INTO kv (namespace, key, value, event_id, created_at, updated_at) VALUES (?,?,?,?,?,?)",
            (ns, op.key, json.dumps(value, default=str), event.id, old[0] if old else now, now),
        )
        self._conn.commit()
        if op.index is not False:  # index=False: kept for get/list, not for recall
            self.memory_for(tuple(op.namespace)).observe(event)

    def _rows(self, prefix: tuple[str, ...]) -> list[tuple[Any, ...]]:
        rows = self._conn.execute(
            "SELECT namespace, key, value, created_at, updated_at, event_id FROM kv ORDER BY updated_at DESC"
        ).fetchall()
        return [r for r in rows if _split(r[0])[: len(prefix)] == tuple(prefix)]

    def _search(self, op: SearchOp) -> list[SearchItem]:
        rows = [r for r in self._rows(op.namespace_prefix) if _matches(json.loads(r[2]), op.filter)]
        if not op.query:
            return [_search_item(r, None) for r in rows[op.offset : op.offset + op.limit]]
        by_event = {r[5]: r for r in rows}
        scored: dict[tuple[str, str], tuple[float, tuple[Any, ...]]] = {}
        for namespace in dict.fromkeys(_split(r[0]) for r in rows):
            memory = self.memory_for(namespace)
            recall = memory.recall(Query(text=op.query, budget_tokens=self.budget_tokens))
            for item in recall.items:
                for event_id in item.event_ids:
                    row = by_event.get(event_id)  # a value replaced since is no longer its key's value
                    if row is None:
                        continue
                    best = scored.get((row[0], row[1]))
                    if best is None or item.score > best[0]:
                        scored[(row[0], row[1])] = (float(item.score), row)
        ranked = sorted(scored.values(), key=lambda pair: -pair[0])
        return [_search_item(row, score) for score, row in ranked[op.offset : op.offset + op.limit]]

    def _list_namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        spaces = [_split(r[0]) for r in self._conn.execute("SELECT DISTINCT namespace FROM kv").fetchall()]
        for condition in op.match_conditions or ():
            spaces = [s for s in spaces if _match_condition(s, condition)]
        if op.max_depth is not None:
            spaces = [s[: op.max_depth] for s in spaces]
        unique = sorted(set(spaces))
        return unique[op.offset : op.offset + op.limit]

    # -- lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush and close every namespace's memory and the table (stored data stays)."""
        with self._lock:
            for memory in self._memories.values():
                memory.close()
            self._memories.clear()
            self._conn.close()
            self.stores.close()

    def __enter__(self) -> AgentmemStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- helpers ---------------------------------------------------------------------------------------
def _ns(namespace: tuple[str, ...]) -> str:
    """A namespace as one string it can be read back from (labels may hold any character)."""
    return json.dumps(list(namespace), ensure_ascii=False)


def _split(ns: str) -> tuple[str, ...]:
    return tuple(json.loads(ns))


def _upgrade_table(conn: sqlite3.Connection) -> None:
    """Re-spell an earlier version's namespaces (labels joined by ``\\x1f``) as JSON lists, once, in one transaction."""
    if conn.execute("PRAGMA user_version").fetchone()[0] >= TABLE_VERSION:
        return
    with conn:
        conn.execute("BEGIN IMMEDIATE")  # another process may be upgrading the same table
        if conn.execute("PRAGMA user_version").fetchone()[0] >= TABLE_VERSION:
            return
        # all rows out and back in: re-spelling in place could meet a row not re-spelled yet
        rows = conn.execute("SELECT namespace, key, value, event_id, created_at, updated_at FROM kv").fetchall()
        conn.execute("DELETE FROM kv")
        conn.executemany(
            "INSERT INTO kv (namespace, key, value, event_id, created_at, updated_at) VALUES (?,?,?,?,?,?)",
            [(_ns(tuple(r[0].split(_LEGACY_SEP)) if r[0] else ()), *r[1:]) for r in rows],
        )
        conn.execute(f"PRAGMA user_version = {TABLE_VERSION}")


def _item(row: tuple[Any, ...]) -> Item:
    return Item(
        value=json.loads(row[2]),
        key=row[1],
        namespace=_split(row[0]),
        created_at=datetime.fromisoformat(row[3]),
        updated_at=datetime.fromisoformat(row[4]),
    )


def _search_item(row: tuple[Any, ...], score: float | None) -> SearchItem:
    return SearchItem(
        namespace=_split(row[0]),
        key=row[1],
        value=json.loads(row[2]),
        created_at=datetime.fromisoformat(row[3]),
        updated_at=datetime.fromisoformat(row[4]),
        score=score,
    )


def _text_of(value: dict[str, Any], index: Any) -> str:
    """What memory should read of a value: the ``index`` fields if given, else content/text/memory, else JSON."""
    if isinstance(index, list) and index:
        parts = [str(value[f]) for f in index if f in value]
        if parts:
            return "\n".join(parts)
    for field in ("content", "text", "memory", "data"):
        if isinstance(value.get(field), str) and value[field].strip():
            return value[field]
    return json.dumps(value, default=str, ensure_ascii=False)


def _matches(value: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    return all(value.get(k) == v for k, v in (filter or {}).items())


def _match_condition(namespace: tuple[str, ...], condition: MatchCondition) -> bool:
    path = tuple(condition.path)
    if len(path) > len(namespace):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[len(namespace) - len(path) :]
    return all(p == "*" or p == n for p, n in zip(path, part))
