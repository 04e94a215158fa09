"""Stores written with the earlier layout open with their data under the new, unambiguous keys.

Earlier versions keyed a scope by ``sha256(user \\x1f agent \\x1f run-or-"")``,
named a program's files and collections by ``_safe_name`` (every
non-alphanumeric character became ``-``), cut collection names at 120
characters, and ``AgentmemStore`` spelled a namespace ``"/".join(labels)`` for
its memory and ``"\\x1f".join(labels)`` in its table. :class:`LegacyToolkit`
below is that toolkit's storage code as it was; data written through it must
be found by today's :class:`~agentmem.toolkit.Toolkit` and ``AgentmemStore``.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from agentmem import AgentmemStore
from agentmem.toolkit import LAYOUT_STAMP, Stores, Toolkit, _ChromaEmbeddingFunction
from agentmem.types import Event, Query, Scope
from agentmem_baselines import RAGMemory
from agentmem_episodic import EpisodicMemory
from agentmem_semantic import SemanticMemory


def _old_safe_name(name: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in name).strip("-")
    return out or "memory"


def _old_key(scope: Scope) -> str:
    raw = f"{scope.user_id}\x1f{scope.agent_id}\x1f{scope.run_id or ''}"
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


class LegacyToolkit(Toolkit):
    """The toolkit's storage exactly as the earlier layout wrote it (no stamp, old names, old keys)."""

    def collection(self, name: str = "items") -> Any:
        full = f"am_{_old_safe_name(self.namespace)}_{_old_safe_name(name)}_{_old_key(self.scope)}"[:120]
        return self.stores.chroma.get_or_create_collection(
            name=full,
            embedding_function=_ChromaEmbeddingFunction(self.embedder),
            metadata={"hnsw:space": "cosine"},
        )

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            folder = self.stores.root / "scopes" / _old_key(self.scope)
            folder.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(folder / f"{_old_safe_name(self.namespace)}.sqlite", check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.row_factory = sqlite3.Row
        return self._db


def _write_old(
    root: Path, embedder: Any, scope: Scope, text: str, *, namespace: str = "episodic", cls: type = EpisodicMemory
) -> None:
    stores = Stores(root)
    memory = cls(LegacyToolkit(scope=scope, stores=stores, embedder=embedder, namespace=namespace))
    if cls is SemanticMemory:
        memory.import_items([text])
    else:
        memory.observe(Event.message(text, speaker="user", session_id="s1"))
    memory.close()
    stores.close()


def _open_new(
    root: Path, embedder: Any, scope: Scope, *, namespace: str = "episodic", cls: type = EpisodicMemory
) -> Any:
    return cls(Toolkit(scope=scope, stores=Stores(root), embedder=embedder, namespace=namespace))


def _collections(root: Path) -> dict[str, int]:
    stores = Stores(root)
    try:
        function = _ChromaEmbeddingFunction(None)  # type: ignore[arg-type] - never asked to embed here
        return {
            c.name: stores.chroma.get_collection(c.name, embedding_function=function).count()
            for c in stores.chroma.list_collections()
        }
    finally:
        stores.close()


def test_a_plain_scope_keeps_its_key_and_nothing_moves(tmp_path, embedder):
    scope = Scope(user_id="ann", agent_id="helper", run_id="thread-1")
    assert scope.key() == _old_key(scope)  # unambiguous before: the same key, so existing stores stay put
    _write_old(tmp_path, embedder, scope, "Ann keeps her passport in the green drawer.")
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "scopes").rglob("*.sqlite"))
    memory = _open_new(tmp_path, embedder, scope)
    assert "green drawer" in memory.recall(Query(text="where is the passport?")).text()
    memory.close()
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "scopes").rglob("*.sqlite")) == before


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Scope(user_id="a\x1fb", agent_id="c"), Scope(user_id="a", agent_id="b\x1fc")),
        (Scope(user_id="u", agent_id="x\x1fy", run_id="r"), Scope(user_id="u\x1fx", agent_id="y", run_id="r")),
    ],
)
def test_scopes_that_shared_a_key_get_their_own_and_the_writer_keeps_its_data(tmp_path, embedder, first, second):
    assert _old_key(first) == _old_key(second)  # the collision the old encoding had
    assert first.key() != second.key()
    _write_old(tmp_path, embedder, first, "The boiler code is 7731.")
    memory = _open_new(tmp_path, embedder, first)
    assert "7731" in memory.recall(Query(text="what is the boiler code?")).text()
    memory.close()
    assert not (tmp_path / "scopes" / _old_key(first)).exists()  # moved, not copied
    names = _collections(tmp_path)
    assert names == {f"am_episodic_episodes_{first.key()}": 1}
    other = _open_new(tmp_path, embedder, second)  # the other spelling now starts empty
    assert other.recall(Query(text="boiler code")).items == []
    other.close()


def test_no_run_and_an_empty_run_are_different_scopes_and_old_data_stays_with_no_run(tmp_path, embedder):
    none_run, empty_run = Scope(user_id="u", run_id=None), Scope(user_id="u", run_id="")
    assert none_run.key() != empty_run.key()
    _write_old(tmp_path, embedder, empty_run, "The spare key hangs behind the calendar.")
    empty = _open_new(tmp_path, embedder, empty_run)  # the old key is no-run's key: it stays there
    assert empty.recall(Query(text="spare key")).items == []
    empty.close()
    memory = _open_new(tmp_path, embedder, none_run)
    assert "calendar" in memory.recall(Query(text="where is the spare key?")).text()
    memory.close()


def test_a_program_name_with_other_characters_moves_to_its_own_files(tmp_path, embedder):
    scope = Scope(user_id="ann")
    _write_old(tmp_path, embedder, scope, "Ann's dentist is Dr. Okafor.", namespace="my_notes")
    old_db = tmp_path / "scopes" / scope.key() / "my-notes.sqlite"
    assert old_db.exists()
    memory = _open_new(tmp_path, embedder, scope, namespace="my_notes")
    assert "Okafor" in memory.recall(Query(text="who is the dentist?")).text()
    memory.close()
    assert not old_db.exists()
    files = [p.name for p in (tmp_path / "scopes" / scope.key()).glob("*.sqlite")]
    assert len(files) == 1 and files[0].startswith("my-notes.") and files[0] != "my-notes.sqlite"
    assert list(_collections(tmp_path).values()) == [1]
    # "my-notes", the name the old spelling now belongs to, starts empty
    twin = _open_new(tmp_path, embedder, scope, namespace="my-notes")
    assert twin.recall(Query(text="dentist")).items == []
    twin.close()


def test_a_name_in_use_under_the_new_layout_is_never_taken_over(tmp_path, embedder):
    """Once "my-notes" has opened its files, the old spelling of "my_notes" is its data, not a migration source."""
    scope = Scope(user_id="ann")
    _write_old(tmp_path, embedder, scope, "The gate code is 1290.", namespace="my-notes")
    owner = _open_new(tmp_path, embedder, scope, namespace="my-notes")
    assert "1290" in owner.recall(Query(text="gate code")).text()
    owner.close()
    db = tmp_path / "scopes" / scope.key() / "my-notes.sqlite"
    assert sqlite3.connect(db).execute("PRAGMA application_id").fetchone()[0] == LAYOUT_STAMP
    newcomer = _open_new(tmp_path, embedder, scope, namespace="my_notes")
    assert newcomer.recall(Query(text="gate code")).items == []
    newcomer.close()
    again = _open_new(tmp_path, embedder, scope, namespace="my-notes")
    assert "1290" in again.recall(Query(text="gate code")).text()
    again.close()


@pytest.mark.parametrize("cls", [SemanticMemory, EpisodicMemory, RAGMemory], ids=["semantic", "episodic", "rag"])
def test_a_long_program_name_no_longer_loses_the_scope_key(tmp_path, embedder, cls):
    """The old 120-character cut dropped the scope key of long names: every scope shared one collection."""
    long_name = "memory-" + "x" * 110
    ann, bob = Scope(user_id="ann"), Scope(user_id="bob")
    _write_old(tmp_path, embedder, ann, "Ann drinks oat milk.", namespace=long_name, cls=cls)
    _write_old(tmp_path, embedder, bob, "Bob drinks soy milk.", namespace=long_name, cls=cls)
    assert len(_collections(tmp_path)) == 1  # the leak: one collection for both users
    for scope, mine, theirs in ((ann, "oat milk", "soy"), (bob, "soy milk", "oat")):
        memory = _open_new(tmp_path, embedder, scope, namespace=long_name, cls=cls)
        text = memory.recall(Query(text="what milk is drunk?")).text()
        assert mine in text and theirs not in text  # the SQLite rows (the truth) moved; the shared mirror did not
        # the shared collection is not claimed: each rebuilds its vectors from its own SQLite rows
        # (episodic and rag turn buffered events into items at their first recall, so count after it)
        assert (
            memory.toolkit.collection(
                {SemanticMemory: "facts", EpisodicMemory: "episodes", RAGMemory: "windows"}[cls]
            ).count()
            == 1
        )
        memory.close()
    names = _collections(tmp_path)
    assert len(names) == 3 and all(len(n) <= 512 for n in names)
    assert sum(1 for n in names if n.endswith(ann.key()) or n.endswith(bob.key())) == 2


def test_agentmem_store_written_by_the_earlier_layout_is_found_under_the_new_one(tmp_path, embedder):
    """Old table rows (labels joined by \\x1f) and old memories (scope run_id "/".join) both come back."""
    puts = [
        (("acme", "ann", "notes"), "k1", "Ann's locker is number 14."),
        (("acme", "ann/notes"), "k2", "The ann/notes label holds the wiki password hint: tulips."),
        (("acme", "bob"), "k3", "Bob's locker is number 52."),
    ]
    table = tmp_path / "langgraph-store.sqlite"
    conn = sqlite3.connect(table)
    conn.executescript("""CREATE TABLE kv (namespace TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        event_id TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (namespace, key));
        CREATE INDEX kv_event ON kv (event_id);""")
    stores = Stores(tmp_path / "memory")
    for n, (namespace, key, text) in enumerate(puts):
        event_id = f"event{n:011d}"
        conn.execute(
            "INSERT INTO kv VALUES (?,?,?,?,?,?)",
            (
                "\x1f".join(namespace),
                key,
                json.dumps({"content": text}),
                event_id,
                "2025-01-01T00:00:00+00:00",
                "2025-01-01T00:00:00+00:00",
            ),
        )
        scope = Scope(user_id="default", agent_id="langgraph-store", run_id="/".join(namespace))
        memory = EpisodicMemory(LegacyToolkit(scope=scope, stores=stores, embedder=embedder, namespace="episodic"))
        memory.observe(
            Event.message(
                text, session_id="/".join(namespace), id=event_id, metadata={"namespace": list(namespace), "key": key}
            )
        )
        memory.close()
    conn.commit()
    conn.close()
    stores.close()

    with AgentmemStore("episodic", store_dir=tmp_path, model=None) as store:
        assert store.get(("acme", "ann", "notes"), "k1").value == {"content": "Ann's locker is number 14."}
        assert store.get(("acme", "ann/notes"), "k2") is not None
        assert store.get(("acme", "ann/notes"), "k1") is None  # the two namespaces are told apart now
        assert sorted(store.list_namespaces()) == [("acme", "ann", "notes"), ("acme", "ann/notes"), ("acme", "bob")]
        hits = store.search(("acme", "bob"), query="which locker is Bob's?")
        assert [h.key for h in hits] == ["k3"]
        hits = store.search(("acme", "ann", "notes"), query="locker number")
        assert [h.key for h in hits] == ["k1"]
    # a second open neither repeats the migration nor loses anything
    with AgentmemStore("episodic", store_dir=tmp_path, model=None) as store:
        assert store.get(("acme", "ann", "notes"), "k1") is not None
        assert [h.key for h in store.search(("acme", "bob"), query="locker")] == ["k3"]
        store.put(("acme", "ann/notes"), "k4", {"content": "A new note after the upgrade."})
        assert {h.key for h in store.search(("acme", "ann/notes"))} == {"k2", "k4"}
        assert {h.key for h in store.search(("acme", "ann", "notes"))} == {"k1"}
