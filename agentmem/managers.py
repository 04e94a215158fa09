"""Manage: what happens to stored items after they are written - supersede, merge, prune, forget, credit.

Managers change items only through the :class:`~agentmem.store.Store` and
leave a history row for every change, so nothing a manager does is lost:

* :class:`Supersede` - a later statement replaces an item's text (a new
  version; the old text stays in history and in ``data["previous"]``);
  :meth:`Supersede.put` does it by slot: a new item whose ``key`` matches an
  active one updates it instead of standing beside it.
* :class:`Correction` - a statement that says it changes something ("from
  now on", "switched", "not X anymore") hides the earlier statement of the
  same speaker it is closest to in meaning (a soft delete, history kept):
  supersede without a slot key, LLM-free.
* :class:`Consolidate` - near-duplicates found through the vector index
  (cosine, or word overlap) are merged: counters summed, sources united, the
  dropped item logged.
* :class:`UsageTracker` and :class:`Prune` - items recalled during an
  episode are credited with its outcome (``retrieved``, ``helped``); items
  whose utility stays low are deleted (their last state kept in history).
* :class:`Forget` - a soft delete on request: the item leaves recall and the
  indexes, its rows stay.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentmem.modules import Module, NoParams
from agentmem.retrieval import jaccard
from agentmem.store import Store, StoredItem

__all__ = [
    "Consolidate",
    "ConsolidateParams",
    "Correction",
    "CorrectionParams",
    "Forget",
    "Prune",
    "PruneParams",
    "Supersede",
    "UsageTracker",
]


class Manager(Module[Any]):
    kind = "manager"


class Supersede(Manager):
    """A later item on the same slot hides the earlier one, keeping its history."""

    name = "supersede"
    Params = NoParams

    def replace(
        self,
        store: Store,
        item_id: str,
        text: str,
        *,
        reason: str = "",
        op: str = "UPDATE",
        event_ids: Sequence[str] | None = None,
        history: dict[str, Any] | None = None,
        **changes: Any,
    ) -> StoredItem | None:
        """Give ``item_id`` a new version with ``text`` (and other field ``changes``); ``None`` if it is not stored.

        ``history`` is extra data for the history row (a dataset date, say).
        """
        current = store.get_one(item_id)
        if current is None:
            return None
        data = {**current.data, **changes.pop("data", {}), "previous": current.text}
        sources = list(current.event_ids if event_ids is None else event_ids)
        updated = store.update(item_id, text=text, version=current.version + 1, event_ids=sources, data=data, **changes)
        store.record(
            item_id,
            op,
            version=current.version + 1,
            old_text=current.text,
            new_text=text,
            event_ids=sources,
            reason=reason,
            data=history,
        )
        return updated

    def put(self, store: Store, item: StoredItem, *, reason: str = "") -> tuple[str, StoredItem]:
        """Store ``item``, or - when an active item holds its ``key`` - supersede that one; returns (op, item)."""
        if item.key:
            held = store.by_key(item.key, limit=1)
            if held:
                done = self.replace(
                    store,
                    held[0].id,
                    item.text,
                    reason=reason or "same slot",
                    event_ids=item.event_ids,
                    ts=item.ts,
                    data=item.data,
                )
                assert done is not None
                return "UPDATE", done
        (added,) = store.add([item])
        store.record(added.id, "ADD", new_text=added.text, event_ids=added.event_ids, reason=reason or "new")
        return "ADD", added


class Forget(Manager):
    """A soft delete on request: the item leaves recall, its text and history stay."""

    name = "forget"
    Params = NoParams

    def forget(
        self,
        store: Store,
        item_id: str,
        *,
        reason: str = "forgotten on request",
        op: str = "DELETE",
        event_ids: Sequence[str] = (),
        data: dict[str, Any] | None = None,
        new_text: str | None = None,
    ) -> bool:
        """Soft-delete ``item_id``; ``True`` when the store holds it (a second call changes nothing).

        ``new_text`` is what replaced it, for the history row (a correction's text, say).
        """
        current = store.get_one(item_id)
        if current is None:
            return False
        if current.status == "deleted":
            return True
        store.update(item_id, status="deleted", version=current.version + 1)
        store.record(
            item_id,
            op,
            version=current.version + 1,
            old_text=current.text,
            new_text=new_text,
            event_ids=event_ids,
            reason=reason,
            data=data,
        )
        return True


_CHANGE_CUE = re.compile(
    r"\b(now|from now on|anymore|any more|no longer|instead|actually|switch\w*|chang\w*|moved|forget|"
    r"update\w*|tired of|gone off|not)\b",
    re.IGNORECASE,
)


def says_it_changes(text: str) -> bool:
    """Whether ``text`` announces a change of something said before ("from now on", "switched", "not X")."""
    return bool(_CHANGE_CUE.search(text))


class CorrectionParams(BaseModel):
    """Knobs of correction."""

    model_config = ConfigDict(extra="forbid")

    correction_similarity: float = Field(
        0.5,
        ge=0.2,
        le=0.95,
        description="cosine at which a correction hides the earlier statement it is closest to",
    )


class Correction(Manager):
    """A later statement that announces a change hides the closest earlier statement of its speaker.

    Supersede needs a slot key the two statements share; people correct
    themselves in other words ("My back is better now, so a twin bed is what I
    want in hotels" replaces "In hotels I sleep best in a king bed"). Here the
    new statement must carry a change cue (:func:`says_it_changes`) and the
    earlier one must be the nearest active item of the same speaker, at least
    ``correction_similarity`` close: it is soft-deleted with a ``CORRECT``
    history row naming the correction, so nothing is lost.
    """

    name = "correct"
    Params = CorrectionParams
    params: CorrectionParams

    def correct(self, store: Store, item: StoredItem, *, same: Callable[[StoredItem], bool]) -> str | None:
        """Hide the earlier statement ``item`` (already stored) corrects; its id, or ``None``.

        Only a statement with a change cue is embedded and searched, so most items cost nothing here.
        """
        if not says_it_changes(item.text):
            return None
        for other_id, sim in store.nearest(store.embed([item.dense])[0], 4):
            if other_id == item.id:
                continue
            if sim < self.params.correction_similarity:
                return None
            other = store.get_one(other_id)
            if other is None or other.ts > item.ts or not same(other):
                continue
            Forget().forget(
                store,
                other_id,
                op="CORRECT",
                reason=f"corrected by {item.id}",
                event_ids=item.event_ids,
                new_text=item.text,
            )
            return other_id
        return None


class ConsolidateParams(BaseModel):
    """Knobs of consolidation."""

    model_config = ConfigDict(extra="forbid")

    merge_threshold: float = Field(
        0.85,
        ge=0.5,
        le=1.0,
        description="similarity (cosine or word jaccard) above which two items of a kind are merged",
    )


class Consolidate(Manager):
    """Near-duplicates merged: the survivor takes the other's counters and sources; the other is logged and deleted."""

    name = "consolidate"
    Params = ConsolidateParams
    params: ConsolidateParams

    def duplicate_of(
        self,
        store: Store,
        text: str,
        vector: Sequence[float],
        *,
        k: int = 3,
        where: dict[str, Any] | None = None,
        exclude: str | None = None,
        jaccard_threshold: float | None = None,
        same: Callable[[StoredItem], bool] | None = None,
    ) -> str | None:
        """The id of a stored item that says the same as ``text``: among the ``k`` nearest to ``vector``, the first
        at least ``merge_threshold`` close (cosine) - or sharing ``jaccard_threshold`` of its words, if given - that
        also passes ``same``."""
        hits = [(i, sim) for i, sim in store.nearest(vector, k + (exclude is not None), where=where) if i != exclude][
            :k
        ]
        found = store.get([i for i, _ in hits])
        for item_id, sim in hits:
            item = found.get(item_id)
            if item is None:
                continue
            close = sim >= self.params.merge_threshold or (
                jaccard_threshold is not None and jaccard(text, item.dense) >= jaccard_threshold
            )
            if close and (same is None or same(item)):
                return item_id
        return None

    def absorb(self, store: Store, items: Sequence[StoredItem], *, note: str = "repeats") -> list[StoredItem]:
        """Store ``items``; one whose ``key`` a stored active item (or an earlier item of the batch) holds is merged
        into it instead - its event ids added, its ``data["when"]`` appended to ``data[note]`` - so an exact repeat
        is kept once with every source. Returns the items written new."""
        fresh: list[StoredItem] = []
        place: dict[str, int] = {}  # key -> index in fresh
        merged: dict[str, StoredItem] = {}
        for item in items:
            if not item.key:
                fresh.append(item)
                continue
            if item.key in place:
                prior: StoredItem | None = fresh[place[item.key]]
            else:
                held = store.by_key(item.key, limit=1)
                prior = (merged.get(held[0].id) or held[0]) if held else None
            if prior is None:
                place[item.key] = len(fresh)
                fresh.append(item)
                continue
            joined = prior.model_copy(
                update={
                    "event_ids": [*prior.event_ids, *item.event_ids],
                    "data": {**prior.data, note: [*prior.data.get(note, []), item.data.get("when", "")]},
                }
            )
            if item.key in place:
                fresh[place[item.key]] = joined
            else:
                merged[joined.id] = joined
        added = store.add(fresh)
        for joined in merged.values():
            store.update(joined.id, event_ids=joined.event_ids, data=joined.data)
        return added

    def merge(
        self,
        store: Store,
        keep: StoredItem,
        drop: StoredItem,
        *,
        data: dict[str, Any] | None = None,
        cap: int = 200,
        reason: str = "",
    ) -> StoredItem | None:
        """Merge ``drop`` into ``keep``: counters summed, event ids united (at most ``cap``), ``data`` as given
        (else ``keep``'s); ``drop`` is logged with its last state and deleted."""
        sources = list(dict.fromkeys([*keep.event_ids, *drop.event_ids]))[:cap]
        merged = store.update(
            keep.id,
            retrieved=keep.retrieved + drop.retrieved,
            helped=keep.helped + drop.helped,
            event_ids=sources,
            data=keep.data if data is None else data,
        )
        store.record(
            drop.id,
            "merged",
            old_text=drop.text,
            reason=reason or f"near-duplicate of {keep.id}",
            data=drop.model_dump(mode="json"),
        )
        store.delete([drop.id])
        return merged


class UsageTracker(Manager):
    """Which items a program served since the last outcome, kept in SQLite; ``credit`` books the outcome on them."""

    name = "usage"
    Params = NoParams

    def __init__(self, store: Store) -> None:
        super().__init__()
        self.store = store
        self.table = f"{store.table}_served"
        store.toolkit.db.execute(f"CREATE TABLE IF NOT EXISTS {self.table} (item_id TEXT PRIMARY KEY)")
        store.toolkit.db.commit()

    def served(self, ids: Sequence[str]) -> None:
        """Remember that ``ids`` were recalled (credited at the next :meth:`credit`).

        Not committed here - recall stays free of disk syncs; the next write, ``credit`` or the owner's close commits
        it.
        """
        if ids:
            self.store.toolkit.db.executemany(
                f"INSERT OR IGNORE INTO {self.table} (item_id) VALUES (?)", [(i,) for i in ids]
            )

    def pending(self) -> list[str]:
        return [r[0] for r in self.store.toolkit.db.execute(f"SELECT item_id FROM {self.table}")]

    def transfer(self, from_id: str, to_id: str) -> None:
        """A merged item's pending credit goes to its survivor."""
        db = self.store.toolkit.db
        with db:
            db.execute(
                f"INSERT OR IGNORE INTO {self.table} (item_id) SELECT ? FROM {self.table} WHERE item_id = ?",
                (to_id, from_id),
            )
            db.execute(f"DELETE FROM {self.table} WHERE item_id = ?", (from_id,))

    def credit(self, success: bool | None) -> list[str]:
        """Every served item was retrieved once more, and helped if the episode succeeded; an unknown outcome
        books nothing.
        """
        ids = self.pending()
        db = self.store.toolkit.db
        with db:
            if success is not None and ids:
                db.execute(
                    f"UPDATE {self.store.table} SET retrieved = retrieved + 1, helped = helped + ?"
                    f" WHERE id IN (SELECT item_id FROM {self.table})",
                    (int(success),),
                )
            db.execute(f"DELETE FROM {self.table}")
        return ids if success is not None else []


class PruneParams(BaseModel):
    """Knobs of pruning by utility."""

    model_config = ConfigDict(extra="forbid")

    min_uses: int = Field(
        3, ge=1, le=50, description="retrievals before an item's utility is trusted enough to prune it"
    )
    prune_below: float = Field(
        0.25, ge=0.0, le=1.0, description="items used at least min_uses times with a utility below this are deleted"
    )


class Prune(Manager):
    """Items used at least ``min_uses`` times whose utility (helped+1)/(retrieved+2) stays below ``prune_below`` go."""

    name = "prune"
    Params = PruneParams
    params: PruneParams

    def prune(self, store: Store) -> list[StoredItem]:
        """Delete the useless items (each logged with its last state); returns them."""
        p = self.params
        victims = list(
            store.items(
                where="retrieved >= ? AND (helped + 1.0) / (retrieved + 2.0) < ?", args=(p.min_uses, p.prune_below)
            )
        )
        for item in victims:
            store.record(
                item.id,
                "pruned",
                old_text=item.text,
                data=item.model_dump(mode="json"),
                reason=f"utility {item.utility:.2f} < {p.prune_below} after {item.retrieved} uses",
            )
        store.delete([i.id for i in victims])
        return victims
