"""The core Store: SQLite rows as the truth, a Chroma mirror and a BM25 index kept in step, scoped, resynced."""

from __future__ import annotations

import sqlite3

import pytest

from agentmem.store import Store, StoredItem
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Scope

TEXTS = [
    "Ann adopted a golden retriever named Biscuit.",
    "The storage locker code is QZ4817.",
    "Bo is learning the cello in Lisbon.",
    "The quarterly report is due on Friday.",
]


def _toolkit(tmp_path, embedder, user="ann") -> Toolkit:
    return Toolkit(scope=Scope(user_id=user), stores=Stores(tmp_path), embedder=embedder, namespace="probe")


def _filled(tmp_path, embedder, **options) -> Store:
    store = Store(_toolkit(tmp_path, embedder), "notes", **options)
    store.add(
        [
            StoredItem(text=t, kind="note", group=f"s{i % 2}", ts=float(i), event_ids=[f"e{i}"], data={"n": i})
            for i, t in enumerate(TEXTS)
        ]
    )
    return store


def test_items_round_trip_in_insertion_order_with_their_payload(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    items = list(store.items())
    assert [i.text for i in items] == TEXTS and [i.seq for i in items] == sorted(i.seq for i in items)
    assert items[1].event_ids == ["e1"] and items[1].data == {"n": 1} and items[1].group == "s1"
    assert store.count() == 4 and store.count(kind="note") == 4 and store.count(kind="other") == 0
    assert store.get([items[2].id, "missing"]) == {items[2].id: items[2]}
    assert store.at_seq([items[0].seq + 1]) == {items[1].seq: items[1]}
    assert store.newest_ts() == 3.0


def test_one_payload_field_is_read_for_many_items_without_their_whole_payload(tmp_path, embedder):
    store = Store(_toolkit(tmp_path, embedder), "tasks")
    payloads = [
        {"success": True, "steps": [1, 2]},
        {"success": False},
        {"steps": []},
        {"success": None, "a.b": {"x": 1}},
    ]
    ids = [i.id for i in store.add([StoredItem(text=f"task {n}", kind="task", data=d) for n, d in enumerate(payloads)])]
    assert store.data_values([ids[3], "missing", *ids[:3]], "success") == {
        ids[3]: None,
        ids[0]: True,
        ids[1]: False,
        ids[2]: None,
    }
    assert store.data_values(ids, "steps") == {ids[0]: [1, 2], ids[1]: None, ids[2]: [], ids[3]: None}
    assert store.data_values(ids[3:], "a.b") == {ids[3]: {"x": 1}}  # a key with a dot is one key


def test_the_dense_mirror_finds_meaning_and_bm25_finds_exact_words(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    (best, sim), *_ = store.nearest(store.embed(["Which dog did Ann get?"])[0], 2)
    assert store.get_one(best).text == TEXTS[0] and 0 < sim <= 1
    assert store.get_one(store.lexical("QZ4817", 1)[0][0]).text == TEXTS[1]
    assert store.nearest(store.embed(["a dog"])[0], 4, where={"group": "s1"})[0][0] != best  # filtered by group


def test_a_deleted_or_soft_deleted_item_leaves_both_indexes(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    code = store.get_one(store.lexical("QZ4817", 1)[0][0])
    store.update(code.id, status="deleted")
    assert store.lexical("QZ4817", 1) == [] and code.id not in dict(store.nearest(store.embed(["locker code"])[0], 4))
    assert store.count() == 3 and store.count(active=False) == 4  # the row stays
    assert store.get_one(code.id).status == "deleted"
    dog = next(store.items())
    assert store.delete([dog.id]) == 1 and store.get_one(dog.id) is None and store.count(active=False) == 3


def test_changing_an_items_text_reindexes_it(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    report = list(store.items())[3]
    store.update(report.id, text="The quarterly report moved to Monday.", version=2)
    assert store.get_one(report.id).version == 2
    assert store.lexical("Monday", 1)[0][0] == report.id and store.lexical("Friday", 1) == []


def test_the_mirror_is_resynced_from_sqlite_on_open(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    ids = [i.id for i in store.items()]
    store._collection.delete(ids=ids[:2])  # a crash between the SQLite and the Chroma write
    store._collection.add(ids=["stray"], documents=["x"], embeddings=store.embed(["x"]))
    store.toolkit.close()
    again = Store(_toolkit(tmp_path, embedder), "notes")
    assert sorted(again._collection.get(include=[])["ids"]) == sorted(ids)


def test_scopes_and_store_names_are_apart(tmp_path, embedder):
    _filled(tmp_path, embedder).toolkit.close()
    assert Store(_toolkit(tmp_path, embedder, user="bob"), "notes").count() == 0
    assert Store(_toolkit(tmp_path, embedder), "other").count() == 0
    assert Store(_toolkit(tmp_path, embedder), "notes").count() == 4


def test_history_rows_are_kept_per_item(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    item = next(store.items())
    store.record(
        item.id, "UPDATE", version=2, old_text="a", new_text="b", event_ids=["e9"], reason="why", data={"d": 1}
    )
    store.record("other", "ADD")
    (row,) = store.history(item.id)
    assert (row.op, row.version, row.old_text, row.new_text, row.event_ids, row.reason, row.data) == (
        "UPDATE",
        2,
        "a",
        "b",
        ["e9"],
        "why",
        {"d": 1},
    )
    assert len(store.history()) == 2


def test_a_store_without_indexes_searches_nothing(tmp_path, embedder):
    store = _filled(tmp_path, embedder, dense=False, lexical=False)
    assert store.count() == 4
    assert store.nearest([0.1] * 384, 3) == [] and store.lexical("QZ4817", 3) == [] and store.vectors(["x"]) == {}


def test_replace_keeps_one_item_per_id(tmp_path, embedder):
    store = _filled(tmp_path, embedder)
    store.add([StoredItem(id="w1", text="first window")], replace=True)
    store.add([StoredItem(id="w1", text="first window, grown")], replace=True)
    assert store.get_one("w1").text == "first window, grown" and store.count() == 5
    with pytest.raises(sqlite3.IntegrityError):
        store.add([StoredItem(id="w1", text="a clash")])
    assert store.get_one("w1").text == "first window, grown"  # the failed write left nothing behind


def test_sync_every_batches_commits_until_close(tmp_path, embedder):
    toolkit = _toolkit(tmp_path, embedder)
    store = Store(toolkit, "log", dense=False, lexical=False, sync_every=3)
    store.add([StoredItem(text="one")])
    assert toolkit.db.in_transaction  # not committed yet
    store.add([StoredItem(text="two"), StoredItem(text="three")])
    assert not toolkit.db.in_transaction
    store.add([StoredItem(text="four")])
    store.close()
    assert not toolkit.db.in_transaction
