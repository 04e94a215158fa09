"""Hierarchical memory after G-Memory: insights above, tasks in the middle, trajectories below.

G-Memory ("Tracing Hierarchical Memory for Multi-Agent Systems") organises
experience in three tiers linked as graphs, and this program keeps the same
three, with SQLite as the source of truth:

* **query nodes** - one per finished episode: the task, its outcome
  (success, reward, what happened) and its date. A new query node links to
  its ``edge_k`` most similar earlier ones above ``edge_threshold``: the
  **query graph**, which relates tasks by meaning.
* **interaction nodes** - the condensed trajectory of each episode: its key
  steps, each keeping the ids of the events it came from.
  Condensing is LLM-free by default (tool calls, plus the messages most
  relevant to the task, within ``max_steps``) or one structured LLM call
  that picks the key step numbers.
* **insight nodes** - short general lessons, distilled after each episode by
  one structured LLM call that sees the new trajectory and the outcomes of
  related earlier tasks, with **support edges** to the tasks they came from.
  A lesson close to an existing one is merged into it (new support edges)
  instead of stored twice; lessons served before a success or a failure
  gain or lose utility, as G-Memory's insights do.

``recall`` never calls the LLM. It finds the query nodes most similar to the
query (dense over task texts and, optionally, single steps, fused with BM25
over the whole trajectory), walks ``hops`` steps along the query graph, then
goes **up** to the insights those tasks support (plus insights directly
similar to the query) and **down** to the condensed trajectories of the best
tasks, successful ones first. Both tiers come back labelled, within the token
budget, split between them by ``insight_budget_share``.

Storage, the vector and word indexes, packing, insight merging and utility
are the core modules (:class:`~agentmem.store.Store` for tasks, insights and
optional steps; :class:`~agentmem.managers.Consolidate`,
:class:`~agentmem.managers.UsageTracker`, :class:`~agentmem.packer.Packer`);
what is hierarchical's own is the graph - its edges, its walk, its tiers.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, ClassVar

from pydantic import ValidationError

from agentmem.encode import event_when, merge_events
from agentmem.errors import DataError
from agentmem.managers import Consolidate, UsageTracker
from agentmem.memory import MemoryProgram
from agentmem.packer import Candidate, Packer
from agentmem.retrieval import jaccard, tokenize
from agentmem.retrievers import Probe, fuse
from agentmem.store import BATCH, StoredItem
from agentmem.tokens import truncate_to_tokens
from agentmem.types import Episode, Event, Query, Recall, RecallItem
from agentmem_hierarchical.models import (
    HierarchicalParams,
    HierarchyGraph,
    ImportItem,
    InsightNode,
    InteractionNode,
    KeySteps,
    Lessons,
    QueryEdge,
    QueryNode,
    Step,
    SupportEdge,
)

__all__ = [
    "HierarchicalMemory",
    "HierarchicalParams",
    "HierarchyGraph",
    "ImportItem",
    "InsightNode",
    "InteractionNode",
    "QueryEdge",
    "QueryNode",
    "Step",
    "SupportEdge",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS query_edges (
    src TEXT NOT NULL, dst TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (src, dst));
CREATE INDEX IF NOT EXISTS query_edges_dst ON query_edges (dst);
CREATE TABLE IF NOT EXISTS support (
    insight_id TEXT NOT NULL, query_id TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (insight_id, query_id));
CREATE INDEX IF NOT EXISTS support_query ON support (query_id);
"""

_FRONTIER_CAP = 50  # most query nodes one hop expands from
_RELATED_IN_PROMPT = 3
_PROMPT_STEP_TOKENS = 25
_PROMPT_STEPS = 12
_CONDENSE_CANDIDATES = 40
_NEIGHBOUR_DECAY = 0.5
_MERGE_JACCARD = 0.7


class HierarchicalMemory(MemoryProgram[HierarchicalParams]):
    """Three tiers linked as graphs (insights, tasks, trajectories), traversed up and down at recall."""

    name: ClassVar[str] = "hierarchical"
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Memory of earlier tasks, from general lessons to concrete past steps.\n"
            "{% if insights %}Lessons learned from past tasks (apply them when they fit):\n{{ insights }}\n{% endif %}"
            "{% if trajectories %}Similar past tasks with their key steps (repeat what succeeded, avoid what failed):\n"
            "{{ trajectories }}{% endif %}"
        ),
        "insight_item": "Insight: {{ text }}",
        "trajectory_item": (
            'Past {{ "task" if has_outcome else "session" }} "{{ task }}"'
            "{% set tags = [status, date] | select | list %}{% if tags %} ({{ tags | join(', ') }}){% endif %}"
            ": {{ steps | join('; ') }}{% if outcome %} => {{ outcome }}{% endif %}"
        ),
        "condense_system": (
            "You pick the key steps of an agent's finished task: the steps that led to the result,"
            " or that state facts worth remembering."
        ),
        "condense_user": """Task: {{ task }}
{% if outcome %}
Result: {{ outcome }}
{% endif %}
Steps:
{% for s in steps %}
{{ loop.index }}. {{ s }}
{% endfor %}

Answer with the numbers of the key steps (at most {{ max_steps }}), in order.""",
        "insight_system": "You write short, general lessons for an agent that does tasks step by step.",
        # tested against Qwen2.5-0.5B: a concrete example sentence gets copied verbatim; a pattern does not
        "insight_user": """An agent did this task.
Task: {{ task }}
Steps:
{% for s in steps %}
- {{ s }}
{% endfor %}
Result: {{ status }}{% if outcome %} - {{ outcome }}{% endif %}

{% if related %}
Earlier similar tasks:
{% for r in related %}
- "{{ r.task }}" {{ r.status }}{% if r.steps %} with steps: {{ r.steps | join(', ') }}{% endif %}

{% endfor %}

{% endif %}
Write 1 or 2 general rules for similar tasks (one sentence each, e.g. "Always <do something> before <something else>.").""",  # noqa: E501  (prompt text, one instruction per line)
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.toolkit.db.executescript(_SCHEMA)  # the graph's edges: hierarchical's own
        self.toolkit.db.commit()
        self.pending = self.open_buffer(sync_every=32)  # the current episode's events, until reflect
        self.queries = self.open_store("queries")  # task nodes, their condensed trajectory in data["steps"]
        self.insights = self.open_store("insights", lexical=False)
        self.steps = self.open_store("steps", lexical=False) if self.params.step_index else None
        self.usage = UsageTracker(self.insights)  # insights served since the last outcome
        self.merging = Consolidate(merge_threshold=self.params.dedup_threshold)
        self.packer = Packer(order="score")

    # -- lifecycle: encode -----------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Collect the current episode's events (kept in SQLite until ``reflect`` assimilates them)."""
        self.pending.add(event)

    def reflect(self, episode: Episode) -> None:
        """Assimilate a finished episode: a query node with its edges, its condensed trajectory, new insights."""
        events = merge_events(self.pending.peek(), episode.events)
        self._feedback(episode)
        if events or episode.task.strip():
            self._assimilate(episode, events)
        self.pending.take()  # only once the episode is stored: a failure above keeps its events for the next try

    def _assimilate(self, episode: Episode, events: list[Event]) -> None:
        outcome_events = [e for e in events if e.kind == "outcome"]
        reward = episode.reward
        if reward is None and outcome_events and outcome_events[-1].reward is not None:
            reward = outcome_events[-1].reward
        success = episode.success
        if success is None and reward is not None:
            success = reward > 0
        outcome = episode.outcome or (outcome_events[-1].content if outcome_events else None)
        first_msg = next((e.content for e in events if e.kind == "message"), "")
        task = (
            " ".join(episode.task.split()) or truncate_to_tokens(" ".join(first_msg.split()), 30) or "untitled episode"
        )
        date = event_when(events[0]) if events else self.toolkit.clock.now().strftime("%Y-%m-%d %H:%M")
        date = next((e.when for e in events if e.when), date)
        node = QueryNode(
            id=self._fresh_id(episode.id),
            task=task,
            outcome=outcome,
            success=success,
            reward=reward,
            date=date,
            session_id=next((e.session_id for e in events if e.session_id), "") or "",
        )
        steps = self._condense(node, [e for e in events if e.kind != "outcome"])
        related = self._store([(node, steps)], link=True)[node.id]
        if self._wants_insights(node):
            self._distil(node, steps, related)

    # -- public API ------------------------------------------------------------------------
    def import_items(self, items: Iterable[ImportItem | dict[str, Any]], *, link: bool = True) -> list[str]:
        """Bulk-insert tasks (query node + trajectory, plus optional insights) without any LLM call.

        Embeddings are computed in batches and rows written in one transaction;
        with ``link`` each new task is joined to its most similar stored tasks
        (the query graph) in one batched nearest-neighbour search. Insights are
        merged with stored ones only when their text is the same (no LLM, no
        per-insight search). Returns the new query-node ids, in order.
        """
        parsed: list[ImportItem] = []
        for n, raw in enumerate(items):
            try:
                parsed.append(raw if isinstance(raw, ImportItem) else ImportItem.model_validate(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"])
                raise DataError(
                    f"hierarchical.import_items: item {n} is invalid at '{where}': {first['msg']}; "
                    "give at least a 'task' string (see agentmem_hierarchical.ImportItem)"
                ) from None
        if not parsed:
            return []
        pairs: list[tuple[QueryNode, list[Step]]] = []
        taken: set[str] = set()
        for item in parsed:
            qid = self._fresh_id(item.id or uuid.uuid4().hex[:16], taken)
            taken.add(qid)
            node = QueryNode(
                id=qid,
                task=" ".join(item.task.split()) or "untitled task",
                outcome=item.outcome,
                success=item.success
                if item.success is not None
                else (item.reward > 0 if item.reward is not None else None),
                reward=item.reward,
                date=item.date,
                session_id=item.session_id,
            )
            pairs.append((node, self._import_steps(item)))
        self._store(pairs, link=link)
        by_text: dict[str, list[str]] = defaultdict(list)
        for (node, _), item in zip(pairs, parsed):
            for text in item.insights:
                clean = " ".join(text.split())
                if clean:
                    by_text[clean].append(node.id)
        if by_text:
            self._add_insights_bulk(by_text)
        return [node.id for node, _ in pairs]

    def graph(self, limit: int | None = None) -> HierarchyGraph:
        """A snapshot of the three tiers and their edges (the newest ``limit`` tasks, or all)."""
        db = self.toolkit.db
        nodes = list(self.queries.items())
        if limit is not None:
            nodes = nodes[-limit:]
        queries = [_node(n) for n in nodes]
        interactions = [InteractionNode(query_id=n.id, steps=_steps(n)) for n in nodes]
        id_set = {q.id for q in queries}
        edges = [
            QueryEdge(src=r[0], dst=r[1], weight=r[2])
            for r in db.execute("SELECT src, dst, weight FROM query_edges ORDER BY rowid")
            if r[0] in id_set and r[1] in id_set
        ]
        support = [
            SupportEdge(insight_id=r[0], query_id=r[1], weight=r[2])
            for r in db.execute("SELECT insight_id, query_id, weight FROM support ORDER BY rowid")
            if r[1] in id_set
        ]
        counts: dict[str, int] = defaultdict(int)
        for r in db.execute("SELECT insight_id FROM support"):
            counts[r[0]] += 1
        insights = [
            InsightNode(
                id=i.id,
                text=i.text,
                utility=_utility(i),
                created=i.data.get("created", ""),
                support=counts.get(i.id, 0),
            )
            for i in self.insights.items()
        ]
        return HierarchyGraph(
            queries=queries, interactions=interactions, insights=insights, query_edges=edges, support_edges=support
        )

    # -- retrieve --------------------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        """Similar tasks, one walk along the query graph, then up to insights and down to trajectories (no LLM)."""
        n_queries = self.queries.count()
        n_insights = self.insights.count()
        if query.budget_tokens <= 0 or (n_queries == 0 and n_insights == 0) or not query.text.strip():
            return Recall(plugin=self.name)
        p = self.params
        probe = Probe(query.text)
        probe.prefetch(self.queries)  # embedded while BM25 searches the tasks
        nodes = self._find_tasks(probe, n_queries) if n_queries else {}
        nodes = self._expand(nodes)
        insight_ranked = (
            self._rank_insights(probe.vector(self.queries), nodes, n_insights) if p.k_insights and n_insights else []
        )
        traj_ranked = self._rank_trajectories(nodes) if p.k_trajectories else []
        return self._pack(query, insight_ranked, traj_ranked)

    def _find_tasks(self, probe: Probe, total: int) -> dict[str, float]:
        """The ``k_queries`` most similar query nodes: dense (task, steps) and BM25 rankings fused."""
        p = self.params
        fetch = min(total, p.k_queries * 3)
        words = [i for i, _ in self.queries.lexical(probe.text, fetch)]
        vector = probe.vector(self.queries)
        rankings = [[i for i, _ in self.queries.nearest(vector, fetch)]]
        if self.steps is not None and self.steps.count():
            hits = self.steps.nearest(vector, min(self.steps.count(), p.k_queries * 6))
            rankings.append(list(dict.fromkeys(step_id.rsplit(":", 1)[0] for step_id, _ in hits)))
        rankings.append(words)
        best = fuse(rankings)[: p.k_queries]
        if not best:
            return {}
        return {h.id: h.score / best[0].score for h in best}

    def _expand(self, seeds: dict[str, float]) -> dict[str, float]:
        """Walk ``hops`` steps along the query graph; a neighbour scores its parent's score x edge weight x decay."""
        scores = dict(seeds)
        frontier = dict(seeds)
        for _ in range(self.params.hops):
            if not frontier:
                break
            reached: dict[str, float] = {}
            for src, dst, weight in self._edges_of(list(frontier)):
                for here, there in ((src, dst), (dst, src)):
                    if here in frontier:
                        s = frontier[here] * float(weight) * _NEIGHBOUR_DECAY
                        if s > max(scores.get(there, 0.0), reached.get(there, 0.0)):
                            reached[there] = s
            scores.update(reached)
            frontier = dict(sorted(reached.items(), key=lambda kv: -kv[1])[:_FRONTIER_CAP])
        return scores

    def _rank_insights(self, vector: list[float], nodes: dict[str, float], total: int) -> list[tuple[str, str, float]]:
        """Insights supported by the tasks reached (up the hierarchy) fused with those similar to the query."""
        p = self.params
        support: dict[str, float] = defaultdict(float)
        for insight_id, query_id, weight in self._support_of(list(nodes)):
            support[insight_id] += nodes[query_id] * float(weight)
        similar = self.insights.nearest(vector, min(total, p.k_insights * 2))
        fused = fuse(
            [sorted(support, key=lambda i: (-support[i], i)), [i for i, s in similar if s >= p.min_similarity]]
        )
        found = self.insights.get([h.id for h in fused])
        scored = [
            (h.id, found[h.id].text, h.score * (1.0 + 0.1 * max(-5.0, min(5.0, _utility(found[h.id])))))
            for h in fused
            if h.id in found
        ]
        scored.sort(key=lambda t: (-t[2], t[0]))
        return scored[: p.k_insights]

    def _rank_trajectories(self, nodes: dict[str, float]) -> list[tuple[QueryNode, list[Step], float]]:
        """The best tasks' condensed trajectories (down the hierarchy), successful ones preferred."""
        if not nodes:
            return []
        penalty = 1.0 - self.params.prefer_success
        success = self.queries.data_values(nodes, "success")  # every reached task's flag, none of its steps
        scored = sorted(
            ((i, nodes[i] * (penalty if flag is False else 1.0)) for i, flag in success.items()),
            key=lambda t: (-t[1], t[0]),
        )[: self.params.k_trajectories]
        found = self.queries.get(i for i, _ in scored)
        return [(_node(found[i]), _steps(found[i]), score) for i, score in scored if i in found]

    def _pack(
        self,
        query: Query,
        insights: list[tuple[str, str, float]],
        trajectories: list[tuple[QueryNode, list[Step], float]],
    ) -> Recall:
        """Fit both tiers into the budget: insights up to their share, trajectories in the rest, then leftovers."""
        budget = query.budget_tokens
        share = round(budget * self.params.insight_budget_share) if trajectories else budget
        candidates = [Candidate(self._insight_item(insight_id, text, score)) for insight_id, text, score in insights]
        first = self.packer.pack(candidates, share)
        used = first.tokens
        q_tokens = set(tokenize(query.text))
        kept_traj: list[RecallItem] = []
        omitted = 0
        for n, (node, steps, score) in enumerate(trajectories):
            # a fair share each, so one long session cannot crowd out the other tasks' best steps
            fair = (budget - used) // (len(trajectories) - n)
            item = self._trajectory_item(node, steps, score, q_tokens, fair)
            if item is None:
                item = self._trajectory_item(node, steps, score, q_tokens, budget - used)
            if item is None:
                omitted += 1
                continue
            kept_traj.append(item)
            used += item.tokens
        shown = {i.metadata["insight_id"] for i in first.items}
        rest = self.packer.pack([c for c in candidates if c.item.metadata["insight_id"] not in shown], budget - used)
        kept_insights = first.items + rest.items  # budget the trajectories left unused
        omitted += rest.omitted
        self.usage.served([i.metadata["insight_id"] for i in kept_insights])
        items = kept_insights + kept_traj
        instructions = (
            self.instructions(
                "usage",
                insights="\n".join(i.content for i in kept_insights),
                trajectories="\n".join(i.content for i in kept_traj),
            )
            if items
            else ""
        )
        return Recall(items=items, omitted=omitted, plugin=self.name, instructions=instructions)

    def _insight_item(self, insight_id: str, text: str, score: float) -> RecallItem:
        content = self.instructions("insight_item", text=text)
        return RecallItem(
            content=content,
            score=round(score, 6),
            source=self.name,
            tokens=self.toolkit.count_tokens(content),
            metadata={"tier": "insight", "insight_id": insight_id, "item_id": insight_id},
        )

    def _trajectory_item(
        self, node: QueryNode, steps: list[Step], score: float, q_tokens: set[str], room: int
    ) -> RecallItem | None:
        """The trajectory as one line; when it does not fit ``room``, its least query-relevant steps go first."""
        if room <= 0:
            return None
        order = list(range(len(steps)))
        rank = sorted(
            order,
            key=lambda i: (-len(q_tokens & set(tokenize(steps[i].text))), steps[i].kind != "tool_call", i),
        )
        for keep in range(len(steps), 0 if steps else -1, -1):
            shown = sorted(rank[:keep])
            content = self._render_trajectory(node, [steps[i] for i in shown], skipped=keep < len(steps))
            cost = self.toolkit.count_tokens(content)
            if cost <= room:
                chosen = [steps[i] for i in shown]
                return RecallItem(
                    content=content,
                    score=round(score, 6),
                    source=self.name,
                    tokens=cost,
                    event_ids=[e for s in chosen for e in s.event_ids],
                    metadata={
                        "tier": "trajectory",
                        "query_id": node.id,
                        "item_id": node.id,
                        "task": node.task,
                        "success": node.success,
                        "date": node.date,
                    },
                )
        return None

    def _render_trajectory(self, node: QueryNode, steps: list[Step], *, skipped: bool = False) -> str:
        texts = [s.text for s in steps]
        if skipped:
            texts.append("...")
        return self.instructions(
            "trajectory_item",
            task=node.task,
            status=_status(node),
            has_outcome=_has_outcome(node),
            date=node.date,
            steps=texts,
            outcome=node.outcome or "",
        )

    # -- write path ----------------------------------------------------------------------------
    def _condense(self, node: QueryNode, events: list[Event]) -> list[Step]:
        """The episode's key steps: LLM-free selection, or the LLM's pick with the LLM-free one as fallback."""
        steps = _event_steps(events, self.params.step_tokens)
        if len(steps) <= 1:
            return steps
        if self.params.condense == "llm":
            picked = self._condense_llm(node, steps)
            if picked:
                return picked
        return _extract(steps, self.params.max_steps, f"{node.task} {node.outcome or ''}")

    def _condense_llm(self, node: QueryNode, steps: list[Step]) -> list[Step] | None:
        """One structured call choosing step numbers; ``None`` (fall back) when the answer is unusable."""
        cands = (
            steps
            if len(steps) <= _CONDENSE_CANDIDATES
            else _extract(steps, _CONDENSE_CANDIDATES, f"{node.task} {node.outcome or ''}")
        )
        messages = [
            {"role": "system", "content": self.instructions("condense_system")},
            {
                "role": "user",
                "content": self.instructions(
                    "condense_user",
                    task=node.task,
                    outcome=_outcome_line(node),
                    steps=[truncate_to_tokens(s.text, _PROMPT_STEP_TOKENS) for s in cands],
                    max_steps=self.params.max_steps,
                ),
            },
        ]
        try:
            answer = self.toolkit.structured(messages, KeySteps, op="condense")
        except Exception as exc:  # the trajectory is still kept, condensed without the LLM
            self.toolkit.logger.warning("hierarchical: condense call failed (%s); using extractive condensing", exc)
            return None
        chosen = sorted({n - 1 for n in answer.steps if 1 <= n <= len(cands)})
        if not chosen:
            return None
        picked = [cands[i] for i in chosen]
        if len(picked) > self.params.max_steps:
            picked = _extract(picked, self.params.max_steps, f"{node.task} {node.outcome or ''}")
        return picked

    def _wants_insights(self, node: QueryNode) -> bool:
        mode = self.params.insights_from
        if mode == "none":
            return False
        return mode == "all" or _has_outcome(node)

    def _distil(self, node: QueryNode, steps: list[Step], related: list[tuple[str, float]]) -> list[str]:
        """One structured call for 0-2 lessons; guarded, then merged into near-duplicates or stored new."""
        rel_ids = [qid for qid, _ in related[:_RELATED_IN_PROMPT]]
        rel_items = self.queries.get(rel_ids)
        rel_nodes = {q: _node(item) for q, item in rel_items.items()}
        rel_steps = {q: _steps(item) for q, item in rel_items.items()}
        related_view = [
            {
                "task": rel_nodes[q].task,
                "status": _status(rel_nodes[q]) or "ended",
                "steps": [
                    truncate_to_tokens(s.text, _PROMPT_STEP_TOKENS) for s in _actions_first(rel_steps.get(q, []), 4)
                ],
            }
            for q in rel_ids
            if q in rel_nodes
        ]
        messages = [
            {"role": "system", "content": self.instructions("insight_system")},
            {
                "role": "user",
                "content": self.instructions(
                    "insight_user",
                    task=node.task,
                    status=_status(node) or "not recorded",
                    outcome=node.outcome or "",
                    steps=[truncate_to_tokens(s.text, _PROMPT_STEP_TOKENS) for s in steps[:_PROMPT_STEPS]],
                    related=related_view,
                ),
            },
        ]
        try:
            answer = self.toolkit.structured(messages, Lessons, op="insights")
        except Exception as exc:  # the task and trajectory are stored already; only the lesson is lost
            self.toolkit.logger.warning("hierarchical: insight call failed (%s); no insight from this episode", exc)
            return []
        lessons: list[str] = []
        grounding = set(tokenize(messages[-1]["content"]))
        for raw in answer.lessons:
            clean = _clean_lesson(raw, node.task, grounding)
            if clean and all(jaccard(clean, other) < _MERGE_JACCARD for other in lessons):
                lessons.append(clean)
            if len(lessons) == 2:
                break
        supporters = [(node.id, 1.0)] + [(q, 0.5) for q in rel_ids if q in rel_nodes]
        for lesson in lessons:
            self._add_insight(lesson, supporters)
        return lessons

    def _add_insight(self, text: str, supporters: list[tuple[str, float]]) -> str:
        """Store ``text`` as a new insight, or merge it into a near-duplicate by adding support edges."""
        vector = self.insights.embed([text])[0]
        target = self.merging.duplicate_of(self.insights, text, vector, k=3, jaccard_threshold=_MERGE_JACCARD)
        if target is None:
            (added,) = self.insights.add([StoredItem(text=text, data={"created": self._now()})])
            target = added.id
        db = self.toolkit.db
        db.executemany(
            "INSERT INTO support (insight_id, query_id, weight) VALUES (?, ?, ?)"
            " ON CONFLICT (insight_id, query_id) DO UPDATE SET weight = MAX(weight, excluded.weight)",
            [(target, q, w) for q, w in supporters],
        )
        db.commit()
        return target

    def _add_insights_bulk(self, by_text: dict[str, list[str]]) -> None:
        """Insights of ``import_items``: one per distinct text (merged with stored ones of the same text)."""
        existing = {i.text: i.id for i in self.insights.items()}
        new = [t for t in by_text if t not in existing]
        added = self.insights.add([StoredItem(text=t, data={"created": self._now()}) for t in new])
        ids = {**existing, **{item.text: item.id for item in added}}
        db = self.toolkit.db
        db.executemany(
            "INSERT OR IGNORE INTO support (insight_id, query_id, weight) VALUES (?, ?, 1.0)",
            [(ids[t], q) for t, qs in by_text.items() for q in qs],
        )
        db.commit()

    def _store(self, pairs: list[tuple[QueryNode, list[Step]]], *, link: bool) -> dict[str, list[tuple[str, float]]]:
        """Write query nodes with their condensed trajectories (SQLite first, then the indexes), link the query graph.

        Returns each new node's edges ``(other node, similarity)``, best first.
        """
        stored = self.queries.add(
            [
                StoredItem(
                    id=node.id,
                    text=node.task,
                    dense_text=_dense_text(node, steps),
                    lexical_text=node.task + "\n" + "\n".join(s.text for s in steps),
                    group=node.session_id,
                    data={**node.model_dump(exclude={"id", "task"}), "steps": [s.model_dump() for s in steps]},
                )
                for node, steps in pairs
            ]
        )
        if self.steps is not None:
            self.steps.add(
                [
                    StoredItem(id=f"{node.id}:{i}", text=step.text, group=node.id)
                    for node, steps in pairs
                    for i, step in enumerate(steps)
                ]
            )
        if not link:
            return {node.id: [] for node, _ in pairs}
        vectors = self.queries.vectors([item.id for item in stored])
        return self._link(pairs, [vectors[node.id] for node, _ in pairs])

    def _link(
        self, pairs: list[tuple[QueryNode, list[Step]]], vectors: list[list[float]]
    ) -> dict[str, list[tuple[str, float]]]:
        """G-Memory's query graph: each new node links to its ``edge_k`` most similar others above ``edge_threshold``.

        Nodes of one batch may link to each other; an edge is stored once, from the
        newer node to the older (the graph is walked both ways).
        """
        p = self.params
        edges: dict[str, list[tuple[str, float]]] = {node.id: [] for node, _ in pairs}
        total = self.queries.count()
        if not p.edge_k or total < 2:
            return edges
        order = {node.id: i for i, (node, _) in enumerate(pairs)}
        rows: dict[tuple[str, str], float] = {}
        for (node, _), hits in zip(pairs, self.queries.nearest_many(vectors, min(total, p.edge_k + 1))):
            found = [(i, sim) for i, sim in hits if i != node.id]
            found = [(i, sim) for i, sim in found[: p.edge_k] if sim >= p.edge_threshold]
            edges[node.id] = found
            for other, sim in found:
                newer_first = order.get(other, -1) < order[node.id]
                key = (node.id, other) if newer_first else (other, node.id)
                rows[key] = max(rows.get(key, 0.0), sim)
        self.toolkit.db.executemany(
            "INSERT OR REPLACE INTO query_edges (src, dst, weight) VALUES (?, ?, ?)",
            [(src, dst, round(w, 6)) for (src, dst), w in rows.items()],
        )
        self.toolkit.db.commit()
        return edges

    def _feedback(self, episode: Episode) -> None:
        """G-Memory's backward pass: insights served before this episode gain on success, lose on failure."""
        success = episode.success
        if success is None and episode.reward is not None:
            success = episode.reward > 0
        self.usage.credit(success)

    # -- storage helpers ---------------------------------------------------------------------------
    def _import_steps(self, item: ImportItem) -> list[Step]:
        steps: list[Step] = []
        per_step = len(item.event_ids) == len(item.steps) and len(item.steps) > 1
        for i, raw in enumerate(item.steps):
            if isinstance(raw, Step):
                steps.append(raw)
                continue
            text = truncate_to_tokens(" ".join(raw.split()), self.params.step_tokens)
            if not text:
                continue
            sources = [item.event_ids[i]] if per_step else list(item.event_ids)
            steps.append(Step(text=text, event_ids=[str(e) for e in sources]))
        return steps

    def _fresh_id(self, wanted: str, taken: set[str] | None = None) -> str:
        """``wanted`` unless a stored node (or one of ``taken``) has it already: then a suffixed variant."""
        candidate, n = wanted, 1
        while (taken and candidate in taken) or self.queries.get_one(candidate) is not None:
            n += 1
            candidate = f"{wanted}-{n}"
        return candidate

    def _edges_of(self, ids: list[str]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            marks = ",".join("?" * len(part))
            out.extend(
                self.toolkit.db.execute(
                    f"SELECT src, dst, weight FROM query_edges WHERE src IN ({marks}) OR dst IN ({marks})", part + part
                ).fetchall()
            )
        return out

    def _support_of(self, ids: list[str]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(ids), BATCH):
            part = ids[start : start + BATCH]
            out.extend(
                self.toolkit.db.execute(
                    f"SELECT insight_id, query_id, weight FROM support WHERE query_id IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
            )
        return out

    def _now(self) -> str:
        return self.toolkit.clock.now().strftime("%Y-%m-%d %H:%M")


# -- pure helpers ---------------------------------------------------------------------------------
def _event_steps(events: list[Event], step_tokens: int) -> list[Step]:
    """Each event as one short step (consecutive repeats dropped), keeping its ids."""
    steps: list[Step] = []
    for event in events:
        if event.kind == "tool_call":
            args = ", ".join(f"{k}={v}" for k, v in (event.arguments or {}).items())
            text = f"{event.tool_name}({args})"
        elif event.kind == "message" and event.speaker:
            text = f"{event.speaker}: {event.content}"
        else:
            text = event.content
        text = truncate_to_tokens(" ".join(text.split()), step_tokens)
        if not text:
            continue
        step = Step(text=text, kind=event.kind, event_ids=[event.id])
        if steps and steps[-1].text == text:
            steps[-1].event_ids.extend(step.event_ids)
            continue
        steps.append(step)
    return steps


def _extract(steps: list[Step], limit: int, focus: str) -> list[Step]:
    """LLM-free condensing: tool calls first, then the steps sharing most words with ``focus``, in order.

    Ties go to the more informative step (more distinct words), then the earlier;
    with a focus that says little (a conversation id) that picks the turns
    richest in content.
    """
    if len(steps) <= limit:
        return list(steps)
    want = set(tokenize(focus))

    def key(i: int) -> tuple[float, int]:
        words = set(tokenize(steps[i].text))
        bonus = 100.0 if steps[i].kind == "tool_call" else 0.0
        return (-(bonus + 3.0 * len(words & want) + 0.05 * len(words)), i)

    chosen = sorted(sorted(range(len(steps)), key=key)[:limit])
    return [steps[i] for i in chosen]


def _actions_first(steps: list[Step], n: int) -> list[Step]:
    """Up to ``n`` steps for a prompt about a related task: its actions (tool calls) if it has any, in order."""
    actions = [s for s in steps if s.kind == "tool_call"]
    return (actions or steps)[:n]


def _dense_text(node: QueryNode, steps: list[Step]) -> str:
    """What a query node is embedded as: its task, or - when the task is an id rather than a description - its gist."""
    if len(tokenize(node.task)) >= 3 or not steps:
        return node.task
    return node.task + ": " + " / ".join(s.text for s in steps[:3])


def _has_outcome(node: QueryNode) -> bool:
    return node.success is not None or node.reward is not None or bool(node.outcome)


def _status(node: QueryNode) -> str:
    if node.success is True:
        return "succeeded"
    if node.success is False:
        return "failed"
    if node.reward is not None:
        return f"reward {node.reward:g}"
    return ""


def _outcome_line(node: QueryNode) -> str:
    parts = [_status(node)] if _status(node) else []
    if node.outcome:
        parts.append(node.outcome)
    return ": ".join(parts)


def _clean_lesson(raw: str, task: str, grounding: set[str]) -> str | None:
    """A usable lesson or ``None``: one sentence of 4-40 words that does more than restate the task.

    It must also share a word with what the prompt showed (``grounding``): a
    tiny model that drifts to an unrelated sentence produces no insight.
    """
    text = " ".join(str(raw).split()).strip(" -*\u2022\"'")
    while text[:1].isdigit() or text[:1] in ".)":
        text = text[1:].lstrip()
    words = text.split()
    if not (4 <= len(words) <= 40):
        return None
    if jaccard(text, task) >= 0.8:
        return None
    if "<" in text or ">" in text or "something" in text.lower():  # the prompt's pattern, copied unfilled
        return None
    if not set(tokenize(text)) & grounding:
        return None
    if text[-1] not in ".!?":
        text += "."
    return text[0].upper() + text[1:]


def _node(item: StoredItem) -> QueryNode:
    data = item.data
    return QueryNode(
        id=item.id,
        task=item.text,
        outcome=data.get("outcome"),
        success=data.get("success"),
        reward=data.get("reward"),
        date=data.get("date", ""),
        session_id=data.get("session_id", ""),
    )


def _steps(item: StoredItem) -> list[Step]:
    return [Step.model_validate(s) for s in item.data.get("steps", [])]


def _utility(insight: StoredItem) -> float:
    """G-Memory's track record of an insight: +1 for each success it was served before, -1 for each failure."""
    return float(2 * insight.helped - insight.retrieved)
