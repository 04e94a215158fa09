"""Procedural memory for agentmem: insights, failure triggers and workflows distilled from trajectories, with utility tracking (after ReMe and Agent Workflow Memory).

What an agent should carry from one task to the next is not what was said
but what worked. At the end of each episode (``reflect``) this memory reads
the trajectory and its outcome and distils, with small LLM calls:

* from a success: **success patterns** and, after Agent Workflow Memory, a
  **workflow** (a goal and 2-6 abstract steps with concrete values replaced
  by ``<placeholders>``);
* from a failure: a **failure trigger** ("when <situation>: <what went wrong>.
  Instead, <what to do>"), kept with the tool's own error message;
* when a similar past task (found by retrieval over stored task
  descriptions) had the opposite outcome: one **comparative insight** (ReMe).

Each item is indexed by ``when_to_use`` (the situation it applies to) in
ChromaDB and BM25, with SQLite as the source of truth. ``recall`` is LLM-free
by default: hybrid retrieval over situations, a minimum cosine similarity so
an unrelated task gets nothing, a preference for items of higher utility
``(helped+1)/(retrieved+2)``, packed into the token budget and rendered by
kind. Items recalled during an episode are credited at the next ``reflect``
(``retrieved += 1``, ``helped += 1`` if it succeeded); items that keep not
helping are pruned and near-duplicates merged, with a history table kept.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from agentmem.errors import AgentmemError, DataError
from agentmem.memory import MemoryProgram
from agentmem.retrieval import BM25Index, jaccard, reciprocal_rank_fusion, tokenize
from agentmem.types import Episode, Event, Query, Recall, RecallItem

from agentmem_procedural import trajectory as tj
from agentmem_procedural.schema import (
    KINDS,
    AdaptedAdvice,
    ComparativeDraft,
    FailureDraft,
    ItemKind,
    ProceduralItem,
    ProceduralParams,
    SuccessDraft,
    WorkflowDraft,
)

__all__ = ["ProceduralItem", "ProceduralMemory", "ProceduralParams"]

_SYSTEM = (
    "You turn an agent's past attempt at a task into short, reusable advice for future tasks. "
    "Be concrete: keep exact formats, tool names and error details. Plain English, no markdown."
)

_HEADERS: dict[str, str] = {
    "workflow": "Workflows that worked:",
    "success_pattern": "What worked before:",
    "comparative": "Insights from comparing attempts:",
    "failure_trigger": "Pitfalls to avoid:",
}
_TAGS: dict[str, str] = {
    "workflow": "Workflow",
    "success_pattern": "Worked before",
    "comparative": "Insight",
    "failure_trigger": "Pitfall to avoid",
}
_ADAPTED_HEADER = "Advice for this task:"
_BATCH = 512  # rows per Chroma upsert / embedding batch


class ProceduralMemory(MemoryProgram):
    """Success patterns, failure triggers, comparative insights and workflows, recalled by situation and utility."""

    name: ClassVar[str] = "procedural"
    Params: ClassVar[type[BaseModel]] = ProceduralParams
    Item: ClassVar[type[BaseModel]] = ProceduralItem
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Lessons from earlier tasks similar to this one. Follow a workflow where it fits, replacing each "
            "<placeholder> with this task's value, and avoid the pitfalls.\n{{ context }}"
        ),
        "system": _SYSTEM,
        "success": (
            "Task: {{ task }}\n"
            "What the agent did:\n{{ trajectory }}\n"
            "Result: SUCCEEDED. {{ outcome }}\n\n"
            "Fill in:\n"
            "- situation: the kind of task this applies to, in general words (under 12 words)\n"
            "- patterns: 1 to {{ n }} short tips that made it work"
        ),
        "workflow": (
            "Task: {{ task }}\n"
            "What the agent did:\n{{ trajectory }}\n"
            "Result: SUCCEEDED. {{ outcome }}\n\n"
            "Write a reusable workflow for similar tasks:\n"
            "- goal: the general goal (under 10 words)\n"
            "- steps: 2 to 6 short actions in order, each starting with a verb. Do not copy results. "
            "Write <date>, <name>, <number> instead of specific values."
        ),
        "failure": (
            "Task: {{ task }}\n"
            "What the agent did:\n{{ trajectory }}\n"
            "Result: FAILED. {{ outcome }}\n"
            "{% if errors %}Error messages:\n{% for e in errors %}- {{ e }}\n{% endfor %}{% endif %}\n"
            "Fill in:\n"
            "- situation: the kind of task this applies to, in general words (under 12 words)\n"
            "- mistake: what went wrong, one sentence, naming the exact cause from the error\n"
            "- fix: what to do instead next time, one sentence"
        ),
        "comparative": (
            "Two similar tasks: one succeeded, one failed.\n"
            "SUCCEEDED - task: {{ good_task }}\n{{ good_trajectory }}\n\n"
            "FAILED - task: {{ bad_task }}\n{{ bad_trajectory }}\n"
            "{% if diffs %}\nDifferences in tool arguments:\n{% for d in diffs %}- {{ d }}\n{% endfor %}{% endif %}\n"
            "Fill in:\n"
            "- situation: the kind of task both are, in general words (under 12 words)\n"
            "- insight: one sentence: what the successful attempt did that the failed one did not"
        ),
        "adapt": (
            "New task: {{ task }}\n"
            "Advice from similar past tasks:\n{% for a in advice %}- {{ a }}\n{% endfor %}\n"
            "Rewrite the advice so it fits the new task. Keep exact formats, names and numbers.\n"
            "- advice: 1 to {{ n }} short sentences"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self._buffer: list[Event] = []
        db = self.toolkit.db
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS items (
                id TEXT PRIMARY KEY, kind TEXT NOT NULL, when_to_use TEXT NOT NULL, content TEXT NOT NULL,
                task TEXT NOT NULL DEFAULT '', episode_id TEXT NOT NULL DEFAULT '',
                retrieved INTEGER NOT NULL DEFAULT 0, helped INTEGER NOT NULL DEFAULT 0,
                created_at REAL NOT NULL, metadata TEXT NOT NULL DEFAULT '{}');
            CREATE INDEX IF NOT EXISTS items_kind ON items(kind);
            CREATE TABLE IF NOT EXISTS episodes (
                id TEXT PRIMARY KEY, task TEXT NOT NULL, success INTEGER NOT NULL, reward REAL,
                trajectory TEXT NOT NULL, calls TEXT NOT NULL, errors TEXT NOT NULL, created_at REAL NOT NULL);
            CREATE TABLE IF NOT EXISTS pending (item_id TEXT PRIMARY KEY);
            CREATE TABLE IF NOT EXISTS history (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, item_id TEXT NOT NULL, action TEXT NOT NULL,
                reason TEXT NOT NULL, item TEXT NOT NULL, at REAL NOT NULL);
            """
        )
        db.commit()
        self._items = self.toolkit.collection("items")
        self._episodes = self.toolkit.collection("episodes")
        self._bm25: BM25Index | None = None
        self._sync_index()

    # -- public API ---------------------------------------------------------------
    def items(self, kind: ItemKind | None = None) -> list[ProceduralItem]:
        """Every stored item (of ``kind`` if given), oldest first."""
        sql = "SELECT * FROM items" + (" WHERE kind = ?" if kind else "") + " ORDER BY created_at, id"
        return [_row_item(r) for r in self.toolkit.db.execute(sql, (kind,) if kind else ())]

    def get(self, item_id: str) -> ProceduralItem | None:
        """One item by id, or ``None``."""
        row = self.toolkit.db.execute("SELECT * FROM items WHERE id = ?", (item_id,)).fetchone()
        return _row_item(row) if row else None

    def history(self) -> list[dict[str, Any]]:
        """The log of pruned and merged items: ``{item_id, action, reason, item, at}``, oldest first."""
        rows = self.toolkit.db.execute("SELECT item_id, action, reason, item, at FROM history ORDER BY seq").fetchall()
        return [
            {"item_id": r[0], "action": r[1], "reason": r[2], "item": json.loads(r[3]), "at": r[4]} for r in rows
        ]

    def import_items(self, items: Iterable[ProceduralItem | Mapping[str, Any]]) -> list[str]:
        """Insert items without any LLM call (bulk loads, tests, benchmarks); returns their ids.

        Every item is validated before anything is written, so one bad item
        leaves the store untouched. Embeddings are computed in batches and
        rows written with ``executemany``. Items keep a given ``id`` (an
        existing item with that id is replaced); others get a fresh one.
        """
        parsed: list[ProceduralItem] = []
        now = self._now()
        for n, raw in enumerate(items):
            try:
                item = raw if isinstance(raw, ProceduralItem) else ProceduralItem.model_validate(dict(raw))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err.get("loc", ())) or "item"
                raise DataError(
                    f"import_items: item {n} is invalid at '{where}': {err.get('msg')}; each item needs kind "
                    f"({' | '.join(KINDS)}), a non-empty when_to_use and content"
                ) from None
            except (TypeError, ValueError):
                raise DataError(f"import_items: item {n} is not a mapping of fields; pass dicts or ProceduralItem") from None
            parsed.append(item.model_copy(update={"id": item.id or _new_id(), "created_at": item.created_at or now}))
        return [i.id for i in self._store(parsed)]

    def prune(self) -> list[str]:
        """Delete items used at least ``min_uses`` times whose utility is below ``prune_below``; returns their ids.

        The deleted items stay readable in :meth:`history`.
        """
        p = self.params
        rows = self.toolkit.db.execute(
            "SELECT * FROM items WHERE retrieved >= ? AND (helped + 1.0) / (retrieved + 2.0) < ?",
            (p.min_uses, p.prune_below),
        ).fetchall()
        victims = [_row_item(r) for r in rows]
        for item in victims:
            self._log(item, "pruned", f"utility {item.utility:.2f} < {p.prune_below} after {item.retrieved} uses")
        self._delete([i.id for i in victims])
        return [i.id for i in victims]

    def consolidate(self, ids: list[str] | None = None) -> int:
        """Merge near-duplicate items of the same kind (all items, or those in ``ids`` against all); returns how many were merged away.

        Candidates are each item's nearest neighbours in the situation index
        (so no all-pairs loop); a pair is a duplicate when its situations are
        at least ``merge_threshold`` similar (cosine) and its contents too
        (cosine or word jaccard). The survivor is the more used (then older)
        item; it takes the other's counters and provenance.
        """
        threshold = self.params.merge_threshold
        total = self._items.count()
        if total < 2:
            return 0
        merged = 0
        alive = {r[0] for r in self.toolkit.db.execute("SELECT id FROM items")}
        if ids is None:
            targets = sorted(alive)
        else:
            targets = [i for i in ids if i in alive]
        for start in range(0, len(targets), _BATCH):
            batch = [t for t in targets[start:start + _BATCH] if t in alive]
            if not batch:
                continue
            got = self._items.get(ids=batch, include=["embeddings", "metadatas"])
            by_kind: dict[str, list[tuple[str, list[float]]]] = {}
            for item_id, emb, meta in zip(got["ids"], got["embeddings"], got["metadatas"]):
                by_kind.setdefault(meta["kind"], []).append((item_id, [float(x) for x in emb]))
            for kind, members in by_kind.items():  # one batched neighbour query per kind
                hits = self._items.query(
                    query_embeddings=[emb for _, emb in members], n_results=min(4, total),
                    where={"kind": kind}, include=["distances"],
                )
                for (item_id, _), ids_, dists in zip(members, hits["ids"], hits["distances"]):
                    for other, dist in zip(ids_, dists):
                        if item_id not in alive:
                            break
                        if other == item_id or other not in alive or 1.0 - float(dist) < threshold:
                            continue
                        a, b = self.get(item_id), self.get(other)
                        if a is None or b is None or not self._same_content(a, b):
                            continue
                        keep, drop = (a, b) if (a.retrieved, -a.created_at) >= (b.retrieved, -b.created_at) else (b, a)
                        self._merge_into(keep, drop)
                        alive.discard(drop.id)
                        merged += 1
        return merged

    # -- lifecycle -------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Collect the current episode's trajectory (the last 500 events are kept)."""
        self._buffer.append(event)
        if len(self._buffer) > 500:
            del self._buffer[: len(self._buffer) - 500]

    def reflect(self, episode: Episode) -> None:
        """Credit recalled items with the outcome, distil new items, merge duplicates, prune the useless."""
        events = _merge_events(episode.events, self._buffer)
        self._buffer = []
        success = _success_of(episode, events)
        self._credit(success)
        if success is not None and events:
            task = tj.task_of(episode.task, events)
            new = self._distil(episode, task, events, success)
            if new:
                stored = self._store(new)
                self.consolidate([i.id for i in stored])
            if task:
                self._remember_episode(episode, task, events, success)
        self.prune()

    def recall(self, query: Query) -> Recall:
        """LLM-free by default: hybrid retrieval over situations, a similarity floor, utility, the token budget."""
        total = self._items.count()
        if total == 0 or query.budget_tokens <= 0 or not query.text.strip():
            return Recall(plugin=self.name, instructions="")
        ranked = self._rank(query.text, total)
        if not ranked:
            return Recall(plugin=self.name, instructions="")
        adapted = self._adapt(query.text, [item for item, _ in ranked]) if self.params.adapt else []
        return self._pack(query, ranked, adapted)

    def close(self) -> None:
        self.toolkit.close()

    # -- retrieval ---------------------------------------------------------------------
    def _rank(self, text: str, total: int) -> list[tuple[ProceduralItem, float]]:
        """The ``top_k`` items above the similarity floor, best first, with their scores."""
        p = self.params
        fetch = min(total, max(p.top_k * 4, 20))
        qvec = self.toolkit.embed([text])[0]
        hits = self._items.query(query_embeddings=[qvec], n_results=fetch, include=["distances"])
        cosine = {i: 1.0 - float(d) for i, d in zip(hits["ids"][0], hits["distances"][0])}
        keyword = [i for i, _ in self._bm25_index().search(text, k=fetch)] if p.bm25_weight > 0 else []
        extra = [i for i in keyword if i not in cosine]
        if extra:  # keyword-only hits still have to pass the similarity floor
            got = self._items.get(ids=extra, include=["embeddings"])
            for i, emb in zip(got["ids"], got["embeddings"]):
                cosine[i] = float(sum(a * b for a, b in zip(qvec, emb)))
        eligible = {i for i, s in cosine.items() if s >= p.min_similarity}
        if not eligible:
            return []
        dense = [i for i in sorted(cosine, key=lambda i: -cosine[i]) if i in eligible]
        fused = reciprocal_rank_fusion([dense, [i for i in keyword if i in eligible]], weights=[1.0, p.bm25_weight])
        best = (1.0 + p.bm25_weight) / 61.0  # rank 1 in both lists
        rows = self._fetch(list(eligible))
        scored = []
        for item_id, item in rows.items():
            relevance = fused.get(item_id, 0.0) / best
            score = (1.0 - p.utility_weight) * relevance + p.utility_weight * item.utility
            scored.append((item, round(score, 4), cosine[item_id]))
        scored.sort(key=lambda t: (-t[1], -t[2], t[0].id))
        return [(item, score) for item, score, _ in scored[: p.top_k]]

    def _pack(self, query: Query, ranked: list[tuple[ProceduralItem, float]], adapted: list[str]) -> Recall:
        """Fit the best items into the budget (group headers included) and render them grouped by kind."""
        budget = query.budget_tokens
        count = self.toolkit.count_tokens
        used = 0
        out: list[RecallItem] = []
        kept: list[ProceduralItem] = []
        omitted = 0
        if adapted:
            text = f"{_ADAPTED_HEADER} " + " ".join(adapted)
            cost = count(text)
            if cost <= budget:
                used += cost
                out.append(RecallItem(content=text, score=ranked[0][1], source=f"{self.name}.adapted", tokens=cost,
                                      metadata={"kind": "adapted", "from": [i.id for i, _ in ranked]}))
        groups_seen: set[str] = set()
        for item, score in ranked:
            content = f"{_TAGS[item.kind]}: {item.content}"
            cost = count(content) + 1
            if item.kind not in groups_seen:
                cost += count(_HEADERS[item.kind])
            if used + cost > budget:
                omitted += 1
                continue
            used += cost
            groups_seen.add(item.kind)
            kept.append(item)
            out.append(
                RecallItem(
                    content=content, score=score, source=self.name, tokens=count(content),
                    event_ids=list(item.metadata.get("event_ids", [])),
                    metadata={"dia_id": list(item.metadata.get("dia_id", [])), "kind": item.kind, "id": item.id,
                              "when_to_use": item.when_to_use, "utility": round(item.utility, 3)},
                )
            )
        context = _render_grouped(kept, adapted if out and out[0].source.endswith(".adapted") else [])
        while out and count(context) > budget:  # the rendering must fit too, whatever the tokenizer's rounding
            dropped = out.pop()
            omitted += 1
            kept = [k for k in kept if k.id != dropped.metadata.get("id")]
            context = _render_grouped(kept, adapted if out and out[0].source.endswith(".adapted") else [])
        if kept:
            self._mark_pending([i.id for i in kept])
        return Recall(items=out, omitted=omitted, plugin=self.name,
                      instructions=self.instructions(context=context) if out else "")

    def _adapt(self, task: str, items: list[ProceduralItem]) -> list[str]:
        """ReMe's context-adaptive reuse: one LLM call rewriting the recalled items for this task (else none)."""
        n = min(4, len(items))
        draft = self._ask("adapt", AdaptedAdvice, op="adapt", task=tj.short(task, 300),
                          advice=[tj.short(i.content, 300) for i in items], n=n)
        if draft is None:
            return []
        return [tj.short(a, 240) for a in draft.advice if len(a.split()) >= 3][:n]

    def _bm25_index(self) -> BM25Index:
        """The keyword index over situations, built from SQLite on first use."""
        if self._bm25 is None:
            index = BM25Index()
            index.add_many((r[0], _index_text(r[1], r[2])) for r in
                           self.toolkit.db.execute("SELECT id, when_to_use, task FROM items"))
            self._bm25 = index
        return self._bm25

    # -- distillation ------------------------------------------------------------------
    def _distil(self, episode: Episode, task: str, events: list[Event], success: bool) -> list[ProceduralItem]:
        """New items from one episode with a known outcome, most valuable first, at most ``max_items_per_episode``."""
        traj = tj.render_trajectory(events)
        outcome = tj.short(episode.outcome or _last_outcome(events), 200)
        cap = self.params.max_items_per_episode
        out: list[ProceduralItem] = []
        base = {"task": task, "episode_id": episode.id, "metadata": _provenance(episode, events)}
        if success:
            out.extend(self._workflow(task, traj, outcome, events, base))
            out.extend(self._recovered(task, events, base))
        else:
            out.extend(self._failure(task, traj, outcome, events, base))
        out.extend(self._comparative(task, events, success, base))
        if success and len(out) < cap:
            out.extend(self._patterns(task, traj, outcome, events, base, cap - len(out)))
        return out[:cap]

    def _workflow(self, task: str, traj: str, outcome: str, events: list[Event], base: dict) -> list[ProceduralItem]:
        draft = self._ask("workflow", WorkflowDraft, op="workflow", task=task, trajectory=traj, outcome=outcome)
        steps = [tj.short(tj.placeholderize(_unnumbered(s), events), 140) for s in (draft.steps if draft else [])]
        steps = _dedupe([s for s in steps if s and not _is_copied(s, events, actions_ok=True)])[:6]
        if len(steps) < 2:  # the model gave no usable steps: the tool calls, abstracted, are the workflow
            steps = tj.abstract_steps(events)
        if len(steps) < 2:
            return []
        goal = tj.short(tj.placeholderize(draft.goal, events), 100) if draft and draft.goal.strip() else ""
        goal = goal or tj.short(tj.placeholderize(task, events), 100)
        content = f"{goal}: " + " ".join(f"{n}. {s.rstrip('.')}." for n, s in enumerate(steps, 1))
        meta = {**base["metadata"], "steps": steps, "goal": goal}
        return [ProceduralItem(kind="workflow", when_to_use=goal, content=content, **{**base, "metadata": meta})]

    def _recovered(self, task: str, events: list[Event], base: dict) -> list[ProceduralItem]:
        """Failure triggers a successful episode recovered from (no LLM: the changed arguments are the lesson)."""
        out = []
        for tool, failed, diff in tj.recoveries(events, limit=1):
            content = f"When calling {tool}: {failed}. Then {diff}."
            out.append(ProceduralItem(kind="failure_trigger", when_to_use=f"{task} (using {tool})", content=content, **base))
        return out

    def _failure(self, task: str, traj: str, outcome: str, events: list[Event], base: dict) -> list[ProceduralItem]:
        errors = tj.error_messages(events)
        draft = self._ask("failure", FailureDraft, op="failure", task=task, trajectory=traj, outcome=outcome,
                          errors=errors)
        situation = _situation(draft.situation if draft else "", task)
        parts = []
        if draft and draft.mistake.strip():
            parts.append(_sentence(draft.mistake))
        if draft and draft.fix.strip():
            parts.append("Instead: " + _sentence(draft.fix))
        if errors and not _mentions(" ".join(parts), errors[-1]):
            parts.append(f'Error seen: "{errors[-1]}"')  # the exact cause, whatever the model wrote
        if not parts:
            parts.append(f"the attempt failed ({outcome or 'no details'}); try a different approach")
        content = f"When {situation}: " + " ".join(parts)
        return [ProceduralItem(kind="failure_trigger", when_to_use=situation, content=tj.short(content, 500), **base)]

    def _patterns(self, task: str, traj: str, outcome: str, events: list[Event], base: dict, n: int) -> list[ProceduralItem]:
        draft = self._ask("success", SuccessDraft, op="success", task=task, trajectory=traj, outcome=outcome, n=min(3, n))
        if draft is None:
            return []
        situation = _situation(draft.situation, task)
        tips = _dedupe([tj.short(_unnumbered(t), 200) for t in draft.patterns
                        if len(t.split()) >= 3 and not _is_copied(t, events)])[:n]
        return [
            ProceduralItem(kind="success_pattern", when_to_use=situation, content=f"When {situation}: {_sentence(t)}", **base)
            for t in tips
        ]

    def _comparative(self, task: str, events: list[Event], success: bool, base: dict) -> list[ProceduralItem]:
        """One insight contrasting this episode with the most similar past one that had the opposite outcome."""
        if self._episodes.count() == 0:
            return []
        hits = self._episodes.query(query_texts=[task], n_results=1, where={"success": int(not success)},
                                    include=["distances"])
        if not hits["ids"] or not hits["ids"][0]:
            return []
        other_id, dist = hits["ids"][0][0], float(hits["distances"][0][0])
        if 1.0 - dist < self.params.compare_similarity:
            return []
        row = self.toolkit.db.execute("SELECT task, trajectory, calls, errors FROM episodes WHERE id = ?", (other_id,)).fetchone()
        if row is None:
            return []
        other_task, other_traj, other_calls, other_errors = row[0], row[1], json.loads(row[2]), json.loads(row[3])
        mine_calls, mine_errors = tj.calls_by_tool(events), tj.error_messages(events)
        good_calls, bad_calls = (mine_calls, other_calls) if success else (other_calls, mine_calls)
        blamed = other_errors if success else mine_errors
        diffs = [d for tool in good_calls if tool in bad_calls
                 for d in tj.argument_diffs(good_calls[tool], bad_calls[tool], blamed=blamed)][:3]
        described = [tj.describe_diff(d) for d in diffs]
        traj = tj.render_trajectory(events, max_lines=8)
        good = (task, traj) if success else (other_task, other_traj)
        bad = (other_task, other_traj) if success else (task, traj)
        draft = self._ask("comparative", ComparativeDraft, op="comparative", good_task=good[0], good_trajectory=good[1],
                          bad_task=bad[0], bad_trajectory=bad[1], diffs=described)
        situation = _situation(draft.situation if draft else "", task)
        # a small model rambles and contradicts itself after its first sentence: keep that one
        insight = _sentence(_first_sentence(draft.insight)) if draft and len(draft.insight.split()) >= 4 else ""
        if described and not all(str(d[1]).lower() in insight.lower() for d in diffs):
            # the exact values that made the difference come first, whatever the model wrote
            insight = "Compared calls: " + "; ".join(described) + "." + (" " + insight if insight else "")
        if not insight:
            return []
        meta = {**base["metadata"], "episode_ids": [base["episode_id"], other_id]}
        return [ProceduralItem(kind="comparative", when_to_use=situation, content=f"When {situation}: {insight}",
                               **{**base, "metadata": meta})]

    def _ask(self, template: str, schema: type[BaseModel], *, op: str, **context: Any) -> Any:
        """One small structured LLM call; ``None`` when no LLM is configured or it gave no valid answer."""
        messages = [
            {"role": "system", "content": self.instructions("system")},
            {"role": "user", "content": self.instructions(template, **context)},
        ]
        try:
            return self.toolkit.structured(messages, schema, op=op)
        except AgentmemError as exc:  # no LLM, or no valid JSON after a repair: fall back to what the events say
            self.toolkit.logger.warning("procedural %s: LLM distillation skipped (%s)", op, exc)
            return None

    # -- storage ----------------------------------------------------------------------
    def _store(self, items: list[ProceduralItem]) -> list[ProceduralItem]:
        """Write items to SQLite (the source of truth), then to the Chroma and BM25 indexes."""
        if not items:
            return []
        now = self._now()
        items = [i if i.id and i.created_at else i.model_copy(update={"id": i.id or _new_id(),
                                                                       "created_at": i.created_at or now})
                 for i in items]
        db = self.toolkit.db
        with db:
            db.executemany(
                "INSERT OR REPLACE INTO items (id, kind, when_to_use, content, task, episode_id, retrieved, helped,"
                " created_at, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(i.id, i.kind, i.when_to_use, i.content, i.task, i.episode_id, i.retrieved, i.helped,
                  i.created_at, json.dumps(i.metadata, default=str)) for i in items],
            )
        self._index(items)
        return items

    def _index(self, items: list[ProceduralItem]) -> None:
        for start in range(0, len(items), _BATCH):
            batch = items[start:start + _BATCH]
            docs = [_index_text(i.when_to_use, i.task) for i in batch]
            self._items.upsert(ids=[i.id for i in batch], documents=docs, embeddings=self.toolkit.embed(docs),
                               metadatas=[{"kind": i.kind} for i in batch])
        if self._bm25 is not None:
            for item in items:
                self._bm25.add(item.id, _index_text(item.when_to_use, item.task))

    def _delete(self, ids: list[str]) -> None:
        if not ids:
            return
        db = self.toolkit.db
        with db:
            db.executemany("DELETE FROM items WHERE id = ?", [(i,) for i in ids])
            db.executemany("DELETE FROM pending WHERE item_id = ?", [(i,) for i in ids])
        self._items.delete(ids=ids)
        if self._bm25 is not None:
            for item_id in ids:
                self._bm25.remove(item_id)

    def _sync_index(self) -> None:
        """Bring the Chroma collection back in line with SQLite (after a crash between the two writes)."""
        n_sql = self.toolkit.db.execute("SELECT COUNT(*) FROM items").fetchone()[0]
        if self._items.count() == n_sql:
            return
        in_chroma = set(self._items.get(include=[])["ids"])
        in_sql = {r[0] for r in self.toolkit.db.execute("SELECT id FROM items")}
        stale = sorted(in_chroma - in_sql)
        for start in range(0, len(stale), _BATCH):
            self._items.delete(ids=stale[start:start + _BATCH])
        missing = sorted(in_sql - in_chroma)
        if missing:
            self._index(list(self._fetch(missing).values()))

    def _fetch(self, ids: list[str]) -> dict[str, ProceduralItem]:
        out: dict[str, ProceduralItem] = {}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = ids[start:start + 900]
            marks = ",".join("?" * len(chunk))
            for row in self.toolkit.db.execute(f"SELECT * FROM items WHERE id IN ({marks})", chunk):
                out[row["id"]] = _row_item(row)
        return out

    def _same_content(self, a: ProceduralItem, b: ProceduralItem) -> bool:
        threshold = self.params.merge_threshold
        if jaccard(a.content, b.content) >= threshold:
            return True
        va, vb = self.toolkit.embed([a.content, b.content])
        return sum(x * y for x, y in zip(va, vb)) >= threshold

    def _merge_into(self, keep: ProceduralItem, drop: ProceduralItem) -> None:
        meta = dict(keep.metadata)
        for key in ("episode_ids", "event_ids", "dia_id"):
            merged = list(dict.fromkeys([*keep.metadata.get(key, []), *drop.metadata.get(key, [])]))
            if merged:
                meta[key] = merged[:200]
        db = self.toolkit.db
        with db:
            db.execute("UPDATE items SET retrieved = ?, helped = ?, metadata = ? WHERE id = ?",
                       (keep.retrieved + drop.retrieved, keep.helped + drop.helped, json.dumps(meta, default=str), keep.id))
            db.execute("INSERT OR IGNORE INTO pending (item_id) SELECT ? FROM pending WHERE item_id = ?", (keep.id, drop.id))
        self._log(drop, "merged", f"near-duplicate of {keep.id}")
        self._delete([drop.id])

    def _log(self, item: ProceduralItem, action: str, reason: str) -> None:
        db = self.toolkit.db
        with db:
            db.execute("INSERT INTO history (item_id, action, reason, item, at) VALUES (?, ?, ?, ?, ?)",
                       (item.id, action, reason, item.model_dump_json(), self._now()))

    def _mark_pending(self, ids: list[str]) -> None:
        db = self.toolkit.db
        with db:
            db.executemany("INSERT OR IGNORE INTO pending (item_id) VALUES (?)", [(i,) for i in ids])

    def _credit(self, success: bool | None) -> None:
        """Utility tracking: every item recalled since the last reflect was retrieved; it helped if this succeeded."""
        db = self.toolkit.db
        with db:
            if success is not None:
                db.execute(
                    "UPDATE items SET retrieved = retrieved + 1, helped = helped + ? WHERE id IN (SELECT item_id FROM pending)",
                    (int(success),),
                )
            db.execute("DELETE FROM pending")  # an unknown outcome neither helps nor hurts

    def _remember_episode(self, episode: Episode, task: str, events: list[Event], success: bool) -> None:
        """Keep the task, outcome and a compact trajectory for later comparative insights."""
        traj = tj.render_trajectory(events, max_lines=8)
        db = self.toolkit.db
        with db:
            db.execute(
                "INSERT OR REPLACE INTO episodes (id, task, success, reward, trajectory, calls, errors, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (episode.id, task, int(success), episode.reward, traj, json.dumps(tj.calls_by_tool(events), default=str),
                 json.dumps(tj.error_messages(events)), self._now()),
            )
        self._episodes.upsert(ids=[episode.id], documents=[task], metadatas=[{"success": int(success)}])

    def _now(self) -> float:
        return self.toolkit.clock.now().timestamp()


# -- helpers ----------------------------------------------------------------------------


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _index_text(when_to_use: str, task: str) -> str:
    """What an item is found by: its situation, and the task it was learnt on."""
    return f"{when_to_use}\nTask: {task}" if task and task != when_to_use else when_to_use


def _row_item(row: Any) -> ProceduralItem:
    return ProceduralItem(
        id=row["id"], kind=row["kind"], when_to_use=row["when_to_use"], content=row["content"], task=row["task"],
        episode_id=row["episode_id"], retrieved=row["retrieved"], helped=row["helped"], created_at=row["created_at"],
        metadata=json.loads(row["metadata"] or "{}"),
    )


def _merge_events(given: list[Event], observed: list[Event]) -> list[Event]:
    """The episode's events and those observed during it, each once, in order."""
    seen: set[str] = set()
    out: list[Event] = []
    for event in [*given, *observed]:
        if event.id not in seen:
            seen.add(event.id)
            out.append(event)
    return out


def _success_of(episode: Episode, events: list[Event]) -> bool | None:
    """The outcome: ``success`` if given, else a positive reward, else the last rewarded outcome event, else unknown."""
    if episode.success is not None:
        return episode.success
    if episode.reward is not None:
        return episode.reward > 0
    for event in reversed(events):
        if event.kind == "outcome" and event.reward is not None:
            return event.reward > 0
    return None


def _last_outcome(events: list[Event]) -> str:
    for event in reversed(events):
        if event.kind == "outcome":
            return event.content
    return ""


def _provenance(episode: Episode, events: list[Event]) -> dict[str, Any]:
    dia = [str(e.metadata["dia_id"]) for e in events if "dia_id" in e.metadata]
    return {"episode_ids": [episode.id], "event_ids": [e.id for e in events][:50], "dia_id": dia[:50]}


def _situation(text: str, task: str) -> str:
    """The model's situation if it says something, else the task itself."""
    text = tj.short(text.strip().rstrip("."), 120)
    if text.lower().startswith("when "):
        text = text[5:]
    return text if len(text.split()) >= 2 else (tj.short(task, 120) or "a similar task")


def _sentence(text: str) -> str:
    text = tj.short(text.strip(), 300)
    return text if text.endswith((".", "!", "?")) else text + "."


def _mentions(text: str, evidence: str) -> bool:
    """Whether ``text`` already carries the distinctive words of ``evidence`` (half of them, at least)."""
    want = {t for t in tokenize(evidence) if len(t) > 2}
    if not want:
        return True
    return len(want & set(tokenize(text))) >= max(1, len(want) // 2)


_COPIED_PREFIXES = ("result", "outcome", "observation", "user:", "assistant:", "error")


def _unnumbered(text: str) -> str:
    """``text`` without a leading "1." / "Step 2:" / "-" the model may add."""
    return re.sub(r"^\s*(?:step\s*\d+\s*[:.)-]?|\d+\s*[.):-]|[-*])\s*", "", text.strip(), flags=re.IGNORECASE)


def _is_copied(text: str, events: list[Event], *, actions_ok: bool = False) -> bool:
    """Whether the model copied a trajectory line instead of stating a lesson or a step.

    Copied results and outcomes ("result: Booked: reference BK-2291") are
    never steps; a copied tool call is an acceptable workflow step (its
    values get placeholders) but not a success pattern.
    """
    low = text.strip().lower()
    if low.startswith(_COPIED_PREFIXES):
        return True
    if actions_ok:
        return False
    return any(jaccard(text, tj.line_of(e)) >= 0.8 for e in events)


def _first_sentence(text: str) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text.strip(), flags=re.DOTALL)
    return match.group(1) if match else text


def _dedupe(texts: list[str]) -> list[str]:
    out: list[str] = []
    for text in texts:
        if text and not any(jaccard(text, o) >= 0.8 for o in out):
            out.append(text)
    return out


def _render_grouped(items: list[ProceduralItem], adapted: list[str]) -> str:
    """Items under one header per kind (workflows first, pitfalls last)."""
    lines: list[str] = []
    if adapted:
        lines.append(_ADAPTED_HEADER)
        lines.extend(f"- {a}" for a in adapted)
    for kind in KINDS:
        group = [i for i in items if i.kind == kind]
        if group:
            lines.append(_HEADERS[kind])
            lines.extend(f"- {i.content}" for i in group)
    return "\n".join(lines)
