"""Procedural memory for agentmem: insights, failure triggers and workflows distilled from trajectories, with utility
tracking (after ReMe and Agent Workflow Memory).

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

Each item is kept in the core :class:`~agentmem.store.Store`, indexed by
``when_to_use`` (the situation it applies to). ``recall`` is LLM-free by
default and made of core modules: the hybrid retriever with a similarity
floor (an unrelated task gets nothing), the utility blend (items that
helped, ``(helped+1)/(retrieved+2)``, rank higher) and the packer, with
items rendered grouped by kind. The managers are core too: items recalled
during an episode are credited at the next ``reflect`` (``UsageTracker``),
items that keep not helping are pruned (``Prune``) and near-duplicates
merged (``Consolidate``), each change kept in history. What is procedural's
own is distillation: what a trajectory and its outcome become.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

from pydantic import BaseModel, ValidationError

from agentmem.encode import merge_events
from agentmem.errors import AgentmemError, DataError
from agentmem.managers import Consolidate, Prune, UsageTracker
from agentmem.memory import MemoryProgram
from agentmem.packer import Candidate, Packer
from agentmem.retrieval import jaccard, tokenize
from agentmem.retrievers import HybridRetriever, Retrieval, UtilityBlend
from agentmem.store import StoredItem
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
_TRAJECTORY_EVENTS = 500  # observed events kept for the episode's trajectory


class ProceduralMemory(MemoryProgram[ProceduralParams]):
    """Success patterns, failure triggers, comparative insights and workflows, recalled by situation and utility."""

    name: ClassVar[str] = "procedural"
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
        p = self.params
        self.trajectory = self.open_buffer("trajectory", sync_every=32)  # the current episode's observed events
        self.store = self.open_store("items")  # lessons, indexed by the situation they apply to
        self.episodes = self.open_store("episodes", lexical=False)  # past tasks and outcomes, for comparisons
        self.retrieval = Retrieval(
            HybridRetriever.from_params(p), UtilityBlend.from_params(p), fetch_factor=4, min_fetch=20
        )
        self.packer = Packer(order="score")
        self.usage = UsageTracker(self.store)
        self.pruning = Prune.from_params(p)
        self.consolidation = Consolidate.from_params(p)

    # -- public API ---------------------------------------------------------------
    def items(self, kind: ItemKind | None = None) -> list[ProceduralItem]:
        """Every stored item (of ``kind`` if given), oldest first."""
        return [_lesson(i) for i in self.store.items(kind=kind, order="ts, id")]

    def get(self, item_id: str) -> ProceduralItem | None:
        """One item by id, or ``None``."""
        item = self.store.get_one(item_id)
        return _lesson(item) if item else None

    def history(self) -> list[dict[str, Any]]:
        """The log of pruned and merged items: ``{item_id, action, reason, item, at}``, oldest first."""
        return [
            {
                "item_id": r.item_id,
                "action": r.op,
                "reason": r.reason,
                "item": _lesson(StoredItem.model_validate(r.data)).model_dump(),
                "at": r.at,
            }
            for r in self.store.history()
        ]

    def import_items(self, items: Iterable[ProceduralItem | Mapping[str, Any]]) -> list[str]:
        """Insert items without any LLM call (bulk loads, tests, benchmarks); returns their ids.

        Every item is validated before anything is written, so one bad item
        leaves the store untouched. Items keep a given ``id`` (an existing
        item with that id is replaced); others get a fresh one.
        """
        parsed: list[ProceduralItem] = []
        for n, raw in enumerate(items):
            try:
                parsed.append(raw if isinstance(raw, ProceduralItem) else ProceduralItem.model_validate(dict(raw)))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(p) for p in err.get("loc", ())) or "item"
                raise DataError(
                    f"import_items: item {n} is invalid at '{where}': {err.get('msg')}; each item needs kind "
                    f"({' | '.join(KINDS)}), a non-empty when_to_use and content"
                ) from None
            except (TypeError, ValueError):
                raise DataError(
                    f"import_items: item {n} is not a mapping of fields; pass dicts or ProceduralItem"
                ) from None
        return [i.id for i in self._store(parsed)]

    def prune(self) -> list[str]:
        """Delete items used at least ``min_uses`` times whose utility is below ``prune_below``; returns their ids.

        The deleted items stay readable in :meth:`history`.
        """
        return [i.id for i in self.pruning.prune(self.store)]

    def consolidate(self, ids: list[str] | None = None) -> int:
        """Merge near-duplicate items of the same kind (all items, or those in ``ids`` against all); returns how many
        were merged away.

        A pair is a duplicate when its situations are at least
        ``merge_threshold`` similar (cosine, among each item's nearest
        neighbours) and its contents too (cosine or word jaccard). The
        survivor is the more used (then older) item; it takes the other's
        counters and provenance.
        """
        merged = 0
        targets = [i.id for i in self.store.items()] if ids is None else list(ids)
        vectors = self.store.vectors(targets)
        for item_id in targets:
            item = self.store.get_one(item_id)
            if item is None or item_id not in vectors:
                continue

            def same(other: StoredItem, item: StoredItem = item) -> bool:
                return self._same_content(item, other)

            other_id = self.consolidation.duplicate_of(
                self.store, item.dense, vectors[item_id], where={"kind": item.kind}, exclude=item_id, same=same
            )
            other = self.store.get_one(other_id) if other_id else None
            if other is None:
                continue
            keep, drop = (item, other) if (item.retrieved, -item.ts) >= (other.retrieved, -other.ts) else (other, item)
            episodes = list(dict.fromkeys([*keep.data.get("episode_ids", []), *drop.data.get("episode_ids", [])]))
            data = {**keep.data, "episode_ids": episodes[:200]} if episodes else keep.data
            self.consolidation.merge(self.store, keep, drop, data=data)
            self.usage.transfer(drop.id, keep.id)
            merged += 1
        return merged

    # -- lifecycle -------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Collect the current episode's trajectory (kept in SQLite until ``reflect``)."""
        self.trajectory.add(event)

    def reflect(self, episode: Episode) -> None:
        """Credit recalled items with the outcome, distil new items, merge duplicates, prune the useless."""
        events = merge_events(episode.events, self.trajectory.peek()[-_TRAJECTORY_EVENTS:])
        success = _success_of(episode, events)
        self.usage.credit(success)
        if success is not None and events:
            task = tj.task_of(episode.task, events)
            new = self._distil(episode, task, events, success)
            if new:
                stored = self._store(new)
                self.consolidate([i.id for i in stored])
            if task:
                self._remember_episode(episode, task, events, success)
        self.trajectory.take()  # the episode is done with: its events leave the buffer
        self.prune()

    def recall(self, query: Query) -> Recall:
        """LLM-free by default: hybrid retrieval over situations, a similarity floor, utility, the token budget."""
        if query.budget_tokens <= 0:
            return Recall(plugin=self.name, instructions="")
        hits, ctx = self.retrieval.run(self.store, query.text, self.params.top_k)
        if not hits:
            return Recall(plugin=self.name, instructions="")
        ranked = [(_lesson(item), round(hit.score, 4)) for hit, item in ctx.found(hits)]
        adapted = self._adapt(query.text, [item for item, _ in ranked]) if self.params.adapt else []
        return self._pack(query, ranked, adapted)

    # -- retrieval ---------------------------------------------------------------------
    def _pack(self, query: Query, ranked: list[tuple[ProceduralItem, float]], adapted: list[str]) -> Recall:
        """Fit the best items into the budget (group headers included) and render them grouped by kind."""
        budget = query.budget_tokens
        count = self.toolkit.count_tokens
        lead: list[RecallItem] = []
        if adapted:
            text = f"{_ADAPTED_HEADER} " + " ".join(adapted)
            if count(text) <= budget:
                lead.append(
                    RecallItem(
                        content=text,
                        score=ranked[0][1],
                        source=f"{self.name}.adapted",
                        tokens=count(text),
                        metadata={"kind": "adapted", "from": [i.id for i, _ in ranked]},
                    )
                )

        def header(cand: Candidate, kept: Sequence[Candidate]) -> int:
            """A line's bullet, plus its group's header when it is the first of its kind."""
            kind = cand.item.metadata["kind"]
            return 1 + (0 if any(k.item.metadata["kind"] == kind for k in kept) else count(_HEADERS[kind]))

        packed = self.packer.pack(
            (
                Candidate(
                    RecallItem(
                        content=f"{_TAGS[item.kind]}: {item.content}",
                        score=score,
                        source=self.name,
                        event_ids=list(item.metadata.get("event_ids", [])),
                        metadata={
                            "kind": item.kind,
                            "id": item.id,
                            "item_id": item.id,
                            "when_to_use": item.when_to_use,
                            "utility": round(item.utility, 3),
                        },
                    )
                )
                for item, score in ranked
            ),
            budget - sum(i.tokens for i in lead),
            extra=header,
        )
        by_id = {item.id: item for item, _ in ranked}
        out, omitted = lead + packed.items, packed.omitted
        kept = [by_id[i.metadata["id"]] for i in packed.items]
        context = _render_grouped(kept, adapted if lead else [])
        while out and count(context) > budget:  # the rendering must fit too, whatever the tokenizer's rounding
            dropped = out.pop()
            omitted += 1
            kept = [k for k in kept if k.id != dropped.metadata.get("id")]
            context = _render_grouped(kept, adapted if out and out[0].source.endswith(".adapted") else [])
        if kept:
            self.usage.served([i.id for i in kept])
        return Recall(
            items=out, omitted=omitted, plugin=self.name, instructions=self.instructions(context=context) if out else ""
        )

    def _adapt(self, task: str, items: list[ProceduralItem]) -> list[str]:
        """ReMe's context-adaptive reuse: one LLM call rewriting the recalled items for this task (else none)."""
        n = min(4, len(items))
        draft = self._ask(
            "adapt",
            AdaptedAdvice,
            op="adapt",
            task=tj.short(task, 300),
            advice=[tj.short(i.content, 300) for i in items],
            n=n,
        )
        if draft is None:
            return []
        return [tj.short(a, 240) for a in draft.advice if len(a.split()) >= 3][:n]

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
            out.append(
                ProceduralItem(kind="failure_trigger", when_to_use=f"{task} (using {tool})", content=content, **base)
            )
        return out

    def _failure(self, task: str, traj: str, outcome: str, events: list[Event], base: dict) -> list[ProceduralItem]:
        errors = tj.error_messages(events)
        draft = self._ask(
            "failure", FailureDraft, op="failure", task=task, trajectory=traj, outcome=outcome, errors=errors
        )
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

    def _patterns(
        self, task: str, traj: str, outcome: str, events: list[Event], base: dict, n: int
    ) -> list[ProceduralItem]:
        draft = self._ask(
            "success", SuccessDraft, op="success", task=task, trajectory=traj, outcome=outcome, n=min(3, n)
        )
        if draft is None:
            return []
        situation = _situation(draft.situation, task)
        tips = _dedupe(
            [tj.short(_unnumbered(t), 200) for t in draft.patterns if len(t.split()) >= 3 and not _is_copied(t, events)]
        )[:n]
        return [
            ProceduralItem(
                kind="success_pattern", when_to_use=situation, content=f"When {situation}: {_sentence(t)}", **base
            )
            for t in tips
        ]

    def _comparative(self, task: str, events: list[Event], success: bool, base: dict) -> list[ProceduralItem]:
        """One insight contrasting this episode with the most similar past one that had the opposite outcome."""
        if self.episodes.count() == 0:
            return []
        hits = self.episodes.nearest(self.episodes.embed([task])[0], 1, where={"kind": _outcome(not success)})
        if not hits or hits[0][1] < self.params.compare_similarity:
            return []
        other = self.episodes.get_one(hits[0][0])
        if other is None:
            return []
        other_id, other_task = other.id, other.text
        other_traj, other_calls, other_errors = other.data["trajectory"], other.data["calls"], other.data["errors"]
        mine_calls, mine_errors = tj.calls_by_tool(events), tj.error_messages(events)
        good_calls, bad_calls = (mine_calls, other_calls) if success else (other_calls, mine_calls)
        blamed = other_errors if success else mine_errors
        diffs = [
            d
            for tool in good_calls
            if tool in bad_calls
            for d in tj.argument_diffs(good_calls[tool], bad_calls[tool], blamed=blamed)
        ][:3]
        described = [tj.describe_diff(d) for d in diffs]
        traj = tj.render_trajectory(events, max_lines=8)
        good = (task, traj) if success else (other_task, other_traj)
        bad = (other_task, other_traj) if success else (task, traj)
        draft = self._ask(
            "comparative",
            ComparativeDraft,
            op="comparative",
            good_task=good[0],
            good_trajectory=good[1],
            bad_task=bad[0],
            bad_trajectory=bad[1],
            diffs=described,
        )
        situation = _situation(draft.situation if draft else "", task)
        # a small model rambles and contradicts itself after its first sentence: keep that one
        insight = _sentence(_first_sentence(draft.insight)) if draft and len(draft.insight.split()) >= 4 else ""
        if described and not all(str(d[1]).lower() in insight.lower() for d in diffs):
            # the exact values that made the difference come first, whatever the model wrote
            insight = "Compared calls: " + "; ".join(described) + "." + (" " + insight if insight else "")
        if not insight:
            return []
        meta = {**base["metadata"], "episode_ids": [base["episode_id"], other_id]}
        return [
            ProceduralItem(
                kind="comparative",
                when_to_use=situation,
                content=f"When {situation}: {insight}",
                **{**base, "metadata": meta},
            )
        ]

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
        """Write items to the store (SQLite first, then its Chroma and BM25 indexes); an item's id replaces its
        namesake.
        """
        if not items:
            return []
        now = self._now()
        items = [i.model_copy(update={"id": i.id or _new_id(), "created_at": i.created_at or now}) for i in items]
        self.store.add([_stored(i) for i in items], replace=True)
        return items

    def _same_content(self, a: StoredItem, b: StoredItem) -> bool:
        threshold = self.params.merge_threshold
        if jaccard(a.text, b.text) >= threshold:
            return True
        va, vb = self.toolkit.embed([a.text, b.text])
        return sum(x * y for x, y in zip(va, vb)) >= threshold

    def _remember_episode(self, episode: Episode, task: str, events: list[Event], success: bool) -> None:
        """Keep the task, outcome and a compact trajectory for later comparative insights."""
        self.episodes.add(
            [
                StoredItem(
                    id=episode.id,
                    text=task,
                    kind=_outcome(success),
                    ts=self._now(),
                    data={
                        "reward": episode.reward,
                        "trajectory": tj.render_trajectory(events, max_lines=8),
                        "calls": tj.calls_by_tool(events),
                        "errors": tj.error_messages(events),
                    },
                )
            ],
            replace=True,
        )

    def _now(self) -> float:
        return self.toolkit.clock.now().timestamp()


# -- helpers ----------------------------------------------------------------------------


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _index_text(when_to_use: str, task: str) -> str:
    """What an item is found by: its situation, and the task it was learnt on."""
    return f"{when_to_use}\nTask: {task}" if task and task != when_to_use else when_to_use


def _stored(item: ProceduralItem) -> StoredItem:
    """A lesson as a store item: shown by its content, found by its situation (and task)."""
    meta = dict(item.metadata)
    sources = [str(e) for e in meta.pop("event_ids", [])]
    index = _index_text(item.when_to_use, item.task)
    return StoredItem(
        id=item.id,
        text=item.content,
        kind=item.kind,
        dense_text=index,
        lexical_text=index,
        ts=item.created_at,
        event_ids=sources,
        retrieved=item.retrieved,
        helped=item.helped,
        data={"when_to_use": item.when_to_use, "task": item.task, "episode_id": item.episode_id, **meta},
    )


def _lesson(item: StoredItem) -> ProceduralItem:
    data = dict(item.data)
    head = {k: data.pop(k, "") for k in ("when_to_use", "task", "episode_id")}
    if item.event_ids:
        data["event_ids"] = item.event_ids
    return ProceduralItem(
        id=item.id,
        kind=item.kind,
        content=item.text,
        retrieved=item.retrieved,
        helped=item.helped,
        created_at=item.ts,
        metadata=data,
        **head,
    )


def _outcome(success: bool) -> str:
    return "success" if success else "failure"


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
    return {"episode_ids": [episode.id], "event_ids": [e.id for e in events][:50]}


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
