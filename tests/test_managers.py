"""The core managers: supersede with history, correction, forget, consolidate/merge, usage credit, prune by utility."""

from __future__ import annotations

from agentmem.managers import Consolidate, Correction, Forget, Prune, Supersede, UsageTracker, says_it_changes
from agentmem.store import Store, StoredItem
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Scope


def _store(tmp_path, embedder) -> Store:
    return Store(Toolkit(scope=Scope(), stores=Stores(tmp_path), embedder=embedder, namespace="probe"), "items")


def test_supersede_makes_a_new_version_and_keeps_the_old_text(tmp_path, embedder):
    store = _store(tmp_path, embedder)
    op, seat = Supersede().put(store, StoredItem(text="Ann prefers window seats", key="ann|seat", event_ids=["e1"]))
    assert op == "ADD"
    op, again = Supersede().put(store, StoredItem(text="Ann prefers aisle seats", key="ann|seat", event_ids=["e2"]))
    assert op == "UPDATE" and again.id == seat.id and again.version == 2
    assert again.text == "Ann prefers aisle seats" and again.data["previous"] == "Ann prefers window seats"
    assert again.event_ids == ["e2"] and store.count() == 1
    assert [(h.op, h.old_text, h.new_text) for h in store.history(seat.id)] == [
        ("ADD", None, "Ann prefers window seats"),
        ("UPDATE", "Ann prefers window seats", "Ann prefers aisle seats"),
    ]
    assert store.lexical("aisle", 1)[0][0] == seat.id and store.lexical("window", 1) == []
    assert Supersede().replace(store, "missing", "x") is None


def test_forget_is_soft_idempotent_and_says_whose_id_it_was(tmp_path, embedder):
    store = _store(tmp_path, embedder)
    (item,) = store.add([StoredItem(text="Ann is allergic to peanuts")])
    assert Forget().forget(store, item.id, reason="asked") is True
    assert store.count() == 0 and store.get_one(item.id).status == "deleted" and store.lexical("peanuts", 1) == []
    assert Forget().forget(store, item.id) is True and store.get_one(item.id).version == 2  # nothing changes twice
    assert Forget().forget(store, "not-mine") is False
    assert [h.op for h in store.history(item.id)] == ["DELETE"]


def test_exact_repeats_are_absorbed_with_every_source(tmp_path, embedder):
    store = _store(tmp_path, embedder)
    merge = Consolidate()
    merge.absorb(
        store,
        [
            StoredItem(text="haha same", key="haha same", event_ids=["e1"], data={"when": "d1"}),
            StoredItem(text="haha same", key="haha same", event_ids=["e2"], data={"when": "d2"}),
        ],
    )
    merge.absorb(store, [StoredItem(text="haha same", key="haha same", event_ids=["e3"], data={"when": "d3"})])
    (item,) = store.items()
    assert item.event_ids == ["e1", "e2", "e3"] and item.data["repeats"] == ["d2", "d3"]


def test_near_duplicates_are_found_and_merged_with_counters_summed(tmp_path, embedder):
    store = _store(tmp_path, embedder)
    a, b, c = store.add(
        [
            StoredItem(
                text="Give the date as YYYY-MM-DD when booking.", kind="tip", retrieved=3, helped=2, event_ids=["e1"]
            ),
            StoredItem(
                text="Give the date as YYYY-MM-DD when you book.", kind="tip", retrieved=1, helped=1, event_ids=["e2"]
            ),
            StoredItem(text="Give the date as YYYY-MM-DD when booking.", kind="other"),
        ]
    )
    merge = Consolidate(merge_threshold=0.7)
    vec = store.vectors([a.id])[a.id]
    assert merge.duplicate_of(store, a.text, vec, exclude=a.id, where={"kind": "tip"}) == b.id
    assert merge.duplicate_of(store, a.text, vec, exclude=a.id, where={"kind": "tip"}, same=lambda item: False) is None
    kept = merge.merge(store, a, b)
    assert (kept.retrieved, kept.helped, kept.event_ids) == (4, 3, ["e1", "e2"])
    assert store.get_one(b.id) is None and store.history(b.id)[0].op == "merged"
    assert store.history(b.id)[0].data["text"] == b.text and store.get_one(c.id) is not None


def test_usage_is_credited_with_the_outcome_and_low_utility_is_pruned(tmp_path, embedder):
    store = _store(tmp_path, embedder)
    good, bad = store.add([StoredItem(text="helpful"), StoredItem(text="useless")])
    usage = UsageTracker(store)
    usage.served([good.id, bad.id])
    assert set(usage.credit(True)) == {good.id, bad.id} and usage.pending() == []
    usage.served([bad.id])
    usage.credit(False)
    usage.served([bad.id])
    assert usage.credit(None) == [] and usage.pending() == []  # an unknown outcome books nothing
    usage.served([bad.id])
    usage.credit(False)
    assert (store.get_one(good.id).retrieved, store.get_one(good.id).helped) == (1, 1)
    assert (store.get_one(bad.id).retrieved, store.get_one(bad.id).helped) == (3, 1)
    gone = Prune(min_uses=3, prune_below=0.45).prune(store)
    assert [g.id for g in gone] == [bad.id] and store.get_one(bad.id) is None
    assert store.history(bad.id)[0].op == "pruned" and "utility 0.40" in store.history(bad.id)[0].reason
    usage.served([good.id])
    usage.transfer(good.id, "survivor")
    assert usage.pending() == ["survivor"]


def test_correction_hides_the_nearest_earlier_statement_only_when_told_of_a_change(tmp_path, embedder):
    assert says_it_changes("For flights, change my meal to halal from now on.")
    assert not says_it_changes("On flights please always order me the vegan meal.")
    store = _store(tmp_path, embedder)
    old, other = store.add(
        [
            StoredItem(text="On flights please always order me the vegan meal.", ts=1.0),
            StoredItem(text="My airline of choice is KLM.", ts=2.0),
        ]
    )
    correction = Correction(correction_similarity=0.3)
    (plain,) = store.add([StoredItem(text="I like the vegetarian meal on flights too.", ts=3.0)])
    assert correction.correct(store, plain, same=lambda o: True) is None
    (new,) = store.add([StoredItem(text="For flights, change my meal to halal from now on.", ts=4.0, event_ids=["e4"])])
    assert correction.correct(store, new, same=lambda o: o.id != plain.id) == old.id
    assert store.get_one(old.id).status == "deleted" and store.get_one(other.id).status == "active"
    assert [h.op for h in store.history(old.id)] == ["CORRECT"] and store.count() == 3
    strict = Correction(correction_similarity=0.95)  # nothing that close: nothing hidden
    (again,) = store.add([StoredItem(text="Switch my airline to SAS from now on.", ts=5.0)])
    assert strict.correct(store, again, same=lambda o: True) is None
