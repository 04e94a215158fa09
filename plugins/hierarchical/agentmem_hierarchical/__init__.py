"""Hierarchical memory after G-Memory: insights above, tasks in the middle, trajectories below.

G-Memory ("Tracing Hierarchical Memory for Multi-Agent Systems") organises
experience in three tiers linked as graphs, and this program keeps the same
three, with SQLite as the source of truth:

* **query nodes** - one per finished episode: the task, its outcome
  (success, reward, what happened) and its date. A new query node links to
  its ``edge_k`` most similar earlier ones above ``edge_threshold``: the
  **query graph**, which relates tasks by meaning.
* **interaction nodes** - the condensed trajectory of each episode: its key
  steps, each keeping the event ids and LoCoMo ``dia_id`` it came from.
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
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import jinja2
from pydantic import BaseModel, ValidationError

from agentmem.errors import DataError
from agentmem.memory import MemoryProgram
from agentmem.retrieval import BM25Index, jaccard, reciprocal_rank_fusion, tokenize
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
CREATE TABLE IF NOT EXISTS queries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, task TEXT NOT NULL, outcome TEXT,
    success INTEGER, reward REAL, date TEXT, session_id TEXT, dense TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS interactions (query_id TEXT PRIMARY KEY, n_steps INTEGER NOT NULL, steps TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS query_edges (src TEXT NOT NULL, dst TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (src, dst));
CREATE INDEX IF NOT EXISTS query_edges_dst ON query_edges (dst);
CREATE TABLE IF NOT EXISTS insights (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, text TEXT NOT NULL, utility REAL NOT NULL DEFAULT 0,
    created TEXT);
CREATE TABLE IF NOT EXISTS support (
    insight_id TEXT NOT NULL, query_id TEXT NOT NULL, weight REAL NOT NULL, PRIMARY KEY (insight_id, query_id));
CREATE INDEX IF NOT EXISTS support_query ON support (query_id);
CREATE TABLE IF NOT EXISTS pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE, event TEXT NOT NULL);
"""

_SQL_CHUNK = 900  # stay under SQLite's bound-variable limit
_CHROMA_BATCH = 2000
_FRONTIER_CAP = 50  # most query nodes one hop expands from
_RELATED_IN_PROMPT = 3
_PROMPT_STEP_TOKENS = 25
_PROMPT_STEPS = 12
_CONDENSE_CANDIDATES = 40
_NEIGHBOUR_DECAY = 0.5
_MERGE_JACCARD = 0.7

_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


class HierarchicalMemory(MemoryProgram):
    """Three tiers linked as graphs (insights, tasks, trajectories), traversed up and down at recall."""

    name: ClassVar[str] = "hierarchical"
    Params: ClassVar[type[BaseModel]] = HierarchicalParams
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
Write 1 or 2 general rules for similar tasks (one sentence each, e.g. "Always <do something> before <something else>.").""",
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.params: HierarchicalParams
        db = self.toolkit.db
        db.executescript(_SCHEMA)
        db.commit()
        self._queries = self.toolkit.collection("queries")
        self._steps = self.toolkit.collection("steps")
        self._insights = self.toolkit.collection("insights")
        self._pending: list[Event] = [
            Event.model_validate_json(r[0]) for r in db.execute("SELECT event FROM pending ORDER BY seq")
        ]
        self._unsaved = 0
        self._bm25: BM25Index | None = None  # built from SQLite at first recall
        self._served: set[str] = set()  # insights recalled since the last reflect (for utility feedback)
        self._counts: dict[str, int] = {}
        self._resync()

    # -- lifecycle: encode -----------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Collect the current episode's events (kept in SQLite until ``reflect`` assimilates them)."""
        self._pending.append(event)
        self.toolkit.db.execute(
            "INSERT OR IGNORE INTO pending (id, event) VALUES (?, ?)", (event.id, event.model_dump_json())
        )
        self._unsaved += 1
        if self._unsaved >= 32:
            self.toolkit.db.commit()
            self._unsaved = 0

    def reflect(self, episode: Episode) -> None:
        """Assimilate a finished episode: a query node with its edges, its condensed trajectory, new insights."""
        events = _merge_events(self._pending, episode.events)
        self._feedback(episode)
        if not events and not episode.task.strip():
            self._clear_pending()
            return
        outcome_events = [e for e in events if e.kind == "outcome"]
        reward = episode.reward
        if reward is None and outcome_events and outcome_events[-1].reward is not None:
            reward = outcome_events[-1].reward
        success = episode.success
        if success is None and reward is not None:
            success = reward > 0
        outcome = episode.outcome or (outcome_events[-1].content if outcome_events else None)
        first_msg = next((e.content for e in events if e.kind == "message"), "")
        task = " ".join(episode.task.split()) or truncate_to_tokens(" ".join(first_msg.split()), 30) or "untitled episode"
        date = str(
            episode.metadata.get("date_time")
            or next((e.metadata["date_time"] for e in events if e.metadata.get("date_time")), "")
            or (events[0].timestamp if events else self.toolkit.clock.now()).strftime("%Y-%m-%d %H:%M")
        )
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
        self._clear_pending()

    def close(self) -> None:
        self.toolkit.db.commit()
        self.toolkit.close()

    # -- public API ------------------------------------------------------------------------
    def import_items(self, items: Iterable[ImportItem | dict[str, Any]], *, link: bool = True) -> list[str]:
        """Bulk-insert tasks (query node + trajectory, plus optional insights) without any LLM call.

        Embeddings are computed in batches and rows written with ``executemany``;
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
                success=item.success if item.success is not None else (item.reward > 0 if item.reward is not None else None),
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
        sql = "SELECT id, task, outcome, success, reward, date, session_id FROM queries ORDER BY seq"
        rows = db.execute(sql).fetchall()
        if limit is not None:
            rows = rows[-limit:]
        queries = [_node(r) for r in rows]
        ids = [q.id for q in queries]
        interactions = [
            InteractionNode(query_id=qid, steps=steps) for qid, steps in self._load_steps(ids).items()
        ]
        id_set = set(ids)
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
            InsightNode(id=r[0], text=r[1], utility=r[2], created=r[3] or "", support=counts.get(r[0], 0))
            for r in db.execute("SELECT id, text, utility, created FROM insights ORDER BY seq")
        ]
        return HierarchyGraph(
            queries=queries, interactions=interactions, insights=insights, query_edges=edges, support_edges=support
        )

    # -- retrieve --------------------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        """Similar tasks, one walk along the query graph, then up to insights and down to trajectories (no LLM)."""
        n_queries = self._count("queries")
        n_insights = self._count("insights")
        if query.budget_tokens <= 0 or (n_queries == 0 and n_insights == 0) or not query.text.strip():
            return Recall(plugin=self.name)
        p = self.params
        vector = self.toolkit.embed([query.text])[0]
        nodes = self._find_tasks(query.text, vector, n_queries) if n_queries else {}
        nodes = self._expand(nodes)
        insight_ranked = self._rank_insights(vector, nodes, n_insights) if p.k_insights and n_insights else []
        traj_ranked = self._rank_trajectories(nodes) if p.k_trajectories else []
        return self._pack(query, insight_ranked, traj_ranked)

    def _find_tasks(self, text: str, vector: list[float], total: int) -> dict[str, float]:
        """The ``k_queries`` most similar query nodes: dense (task, steps) and BM25 rankings fused."""
        p = self.params
        fetch = min(total, p.k_queries * 3)
        rankings: list[list[str]] = []
        hits = self._queries.query(query_embeddings=[vector], n_results=fetch, include=["distances"])
        rankings.append(list(hits["ids"][0]))
        if p.step_index and self._count("steps"):
            n_steps = self._count("steps")
            sh = self._steps.query(
                query_embeddings=[vector], n_results=min(n_steps, p.k_queries * 6), include=["metadatas"]
            )
            seen: dict[str, None] = {}
            for meta in sh["metadatas"][0]:
                seen.setdefault(str(meta["q"]), None)
            rankings.append(list(seen))
        rankings.append([doc for doc, _ in self._bm25_index().search(text, fetch)])
        fused = reciprocal_rank_fusion(rankings)
        best = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[: p.k_queries]
        if not best:
            return {}
        top = best[0][1]
        return {qid: score / top for qid, score in best}

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
        rankings = [sorted(support, key=lambda i: (-support[i], i))]
        hits = self._insights.query(
            query_embeddings=[vector], n_results=min(total, p.k_insights * 2), include=["distances"]
        )
        sims = {i: 1.0 - float(d) for i, d in zip(hits["ids"][0], hits["distances"][0])}
        rankings.append([i for i in hits["ids"][0] if sims[i] >= p.min_similarity])
        fused = reciprocal_rank_fusion(rankings)
        if not fused:
            return []
        rows = self._fetch("SELECT id, text, utility FROM insights WHERE id IN ({})", list(fused))
        scored = [
            (r[0], r[1], fused[r[0]] * (1.0 + 0.1 * max(-5.0, min(5.0, float(r[2])))))
            for r in rows
        ]
        scored.sort(key=lambda t: (-t[2], t[0]))
        return scored[: p.k_insights]

    def _rank_trajectories(self, nodes: dict[str, float]) -> list[tuple[QueryNode, list[Step], float]]:
        """The best tasks' condensed trajectories (down the hierarchy), successful ones preferred."""
        if not nodes:
            return []
        rows = self._fetch(
            "SELECT id, task, outcome, success, reward, date, session_id FROM queries WHERE id IN ({})", list(nodes)
        )
        penalty = 1.0 - self.params.prefer_success
        scored = []
        for r in rows:
            node = _node(r)
            scored.append((node, nodes[node.id] * (penalty if node.success is False else 1.0)))
        scored.sort(key=lambda t: (-t[1], t[0].id))
        chosen = scored[: self.params.k_trajectories]
        steps = self._load_steps([n.id for n, _ in chosen])
        return [(n, steps.get(n.id, []), s) for n, s in chosen]

    def _pack(
        self,
        query: Query,
        insights: list[tuple[str, str, float]],
        trajectories: list[tuple[QueryNode, list[Step], float]],
    ) -> Recall:
        """Fit both tiers into the budget: insights up to their share, trajectories in the rest, then leftovers."""
        budget = query.budget_tokens
        share = round(budget * self.params.insight_budget_share) if trajectories else budget
        used = 0
        kept_insights: list[RecallItem] = []
        pending_insights: list[tuple[str, str, float]] = []
        for insight_id, text, score in insights:
            item = self._insight_item(insight_id, text, score)
            if used + item.tokens <= share:
                kept_insights.append(item)
                used += item.tokens
            else:
                pending_insights.append((insight_id, text, score))
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
        for insight_id, text, score in pending_insights:  # budget the trajectories left unused
            item = self._insight_item(insight_id, text, score)
            if used + item.tokens <= budget:
                kept_insights.append(item)
                used += item.tokens
            else:
                omitted += 1
        self._served.update(i.metadata["insight_id"] for i in kept_insights)
        items = kept_insights + kept_traj
        instructions = self.instructions(
            "usage",
            insights="\n".join(i.content for i in kept_insights),
            trajectories="\n".join(i.content for i in kept_traj),
        ) if items else ""
        return Recall(items=items, omitted=omitted, plugin=self.name, instructions=instructions)

    def _insight_item(self, insight_id: str, text: str, score: float) -> RecallItem:
        content = self._render("insight_item", text=text)
        return RecallItem(
            content=content,
            score=round(score, 6),
            source=self.name,
            tokens=self.toolkit.count_tokens(content),
            metadata={"tier": "insight", "insight_id": insight_id, "dia_id": []},
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
                        "task": node.task,
                        "success": node.success,
                        "date": node.date,
                        "dia_id": list(dict.fromkeys(d for s in chosen for d in s.dia_ids)),
                    },
                )
        return None

    def _render_trajectory(self, node: QueryNode, steps: list[Step], *, skipped: bool = False) -> str:
        texts = [s.text for s in steps]
        if skipped:
            texts.append("...")
        return self._render(
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
        cands = steps if len(steps) <= _CONDENSE_CANDIDATES else _extract(
            steps, _CONDENSE_CANDIDATES, f"{node.task} {node.outcome or ''}"
        )
        messages = [
            {"role": "system", "content": self._render("condense_system")},
            {
                "role": "user",
                "content": self._render(
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
        rel_nodes = {r[0]: _node(r) for r in self._fetch(
            "SELECT id, task, outcome, success, reward, date, session_id FROM queries WHERE id IN ({})", rel_ids
        )}
        rel_steps = self._load_steps(rel_ids)
        related_view = [
            {
                "task": rel_nodes[q].task,
                "status": _status(rel_nodes[q]) or "ended",
                "steps": [truncate_to_tokens(s.text, _PROMPT_STEP_TOKENS) for s in _actions_first(rel_steps.get(q, []), 4)],
            }
            for q in rel_ids if q in rel_nodes
        ]
        messages = [
            {"role": "system", "content": self._render("insight_system")},
            {
                "role": "user",
                "content": self._render(
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
        db = self.toolkit.db
        vector = self.toolkit.embed([text])[0]
        target: str | None = None
        total = self._count("insights")
        if total:
            hits = self._insights.query(query_embeddings=[vector], n_results=min(total, 3), include=["distances", "documents"])
            for iid, dist, doc in zip(hits["ids"][0], hits["distances"][0], hits["documents"][0]):
                if 1.0 - float(dist) >= self.params.dedup_threshold or jaccard(text, doc or "") >= _MERGE_JACCARD:
                    target = iid
                    break
        if target is None:
            self._counts.clear()
            target = uuid.uuid4().hex[:16]
            db.execute(
                "INSERT INTO insights (id, text, utility, created) VALUES (?, ?, 0, ?)",
                (target, text, self.toolkit.clock.now().strftime("%Y-%m-%d %H:%M")),
            )
            db.commit()
            self._insights.upsert(ids=[target], documents=[text], embeddings=[vector])
        db.executemany(
            "INSERT INTO support (insight_id, query_id, weight) VALUES (?, ?, ?)"
            " ON CONFLICT (insight_id, query_id) DO UPDATE SET weight = MAX(weight, excluded.weight)",
            [(target, q, w) for q, w in supporters],
        )
        db.commit()
        return target

    def _add_insights_bulk(self, by_text: dict[str, list[str]]) -> None:
        """Insights of ``import_items``: one per distinct text (merged with stored ones of the same text)."""
        db = self.toolkit.db
        existing = {r[1]: r[0] for r in db.execute("SELECT id, text FROM insights")}
        new = [t for t in by_text if t not in existing]
        ids = {t: existing.get(t) or uuid.uuid4().hex[:16] for t in by_text}
        now = self.toolkit.clock.now().strftime("%Y-%m-%d %H:%M")
        self._counts.clear()
        db.executemany(
            "INSERT INTO insights (id, text, utility, created) VALUES (?, ?, 0, ?)", [(ids[t], t, now) for t in new]
        )
        db.executemany(
            "INSERT OR IGNORE INTO support (insight_id, query_id, weight) VALUES (?, ?, 1.0)",
            [(ids[t], q) for t, qs in by_text.items() for q in qs],
        )
        db.commit()
        if new:
            vectors = self.toolkit.embed(new)
            self._upsert(self._insights, [ids[t] for t in new], new, vectors)

    def _store(self, pairs: list[tuple[QueryNode, list[Step]]], *, link: bool) -> dict[str, list[tuple[str, float]]]:
        """Write query + interaction nodes (SQLite first), embed them in one batch, link the query graph.

        Returns each new node's edges ``(other node, similarity)``, best first.
        """
        db = self.toolkit.db
        dense = [_dense_text(node, steps) for node, steps in pairs]
        docs = [node.task + "\n" + "\n".join(s.text for s in steps) for node, steps in pairs]
        step_ids = [f"{node.id}:{i}" for node, steps in pairs for i in range(len(steps))]
        step_texts = [s.text for _, steps in pairs for s in steps]
        step_meta = [{"q": node.id} for node, steps in pairs for _ in steps]
        vectors = self.toolkit.embed(dense + (step_texts if self.params.step_index else []))
        q_vectors, s_vectors = vectors[: len(dense)], vectors[len(dense):]
        self._counts.clear()
        db.executemany(
            "INSERT INTO queries (id, task, outcome, success, reward, date, session_id, dense, doc)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (n.id, n.task, n.outcome, None if n.success is None else int(n.success), n.reward, n.date, n.session_id, d, doc)
                for (n, _), d, doc in zip(pairs, dense, docs)
            ],
        )
        db.executemany(
            "INSERT OR REPLACE INTO interactions (query_id, n_steps, steps) VALUES (?, ?, ?)",
            [(n.id, len(s), json.dumps([x.model_dump() for x in s])) for n, s in pairs],
        )
        db.commit()
        self._upsert(self._queries, [n.id for n, _ in pairs], dense, q_vectors, new=True)
        if self.params.step_index and step_ids:
            self._upsert(self._steps, step_ids, step_texts, s_vectors, step_meta, new=True)
        edges = self._link(pairs, q_vectors) if link else {node.id: [] for node, _ in pairs}
        if self._bm25 is not None:
            for (n, _), doc in zip(pairs, docs):
                self._bm25.add(n.id, doc)
        return edges

    def _link(self, pairs: list[tuple[QueryNode, list[Step]]], vectors: list[list[float]]) -> dict[str, list[tuple[str, float]]]:
        """G-Memory's query graph: each new node links to its ``edge_k`` most similar others above ``edge_threshold``.

        Nodes of one batch may link to each other; an edge is stored once, from the
        newer node to the older (the graph is walked both ways).
        """
        p = self.params
        edges: dict[str, list[tuple[str, float]]] = {node.id: [] for node, _ in pairs}
        total = self._count("queries")
        if not p.edge_k or total < 2:
            return edges
        order = {node.id: i for i, (node, _) in enumerate(pairs)}
        rows: dict[tuple[str, str], float] = {}
        for start in range(0, len(pairs), _CHROMA_BATCH):
            chunk = vectors[start:start + _CHROMA_BATCH]
            hits = self._queries.query(query_embeddings=chunk, n_results=min(total, p.edge_k + 1), include=["distances"])
            for (node, _), ids, dists in zip(pairs[start:start + _CHROMA_BATCH], hits["ids"], hits["distances"]):
                found = [(i, 1.0 - float(d)) for i, d in zip(ids, dists) if i != node.id]
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
        if not self._served:
            return
        success = episode.success
        if success is None and episode.reward is not None:
            success = episode.reward > 0
        if success is not None:
            served = list(self._served)
            for start in range(0, len(served), _SQL_CHUNK):
                part = served[start:start + _SQL_CHUNK]
                self.toolkit.db.execute(
                    f"UPDATE insights SET utility = utility + ? WHERE id IN ({','.join('?' * len(part))})",
                    [1.0 if success else -1.0, *part],
                )
            self.toolkit.db.commit()
        self._served.clear()

    # -- storage helpers ---------------------------------------------------------------------------
    def _render(self, name: str, **context: Any) -> str:
        """Render one of ``templates`` (compiled once per distinct source: recall renders several per query)."""
        source = self.templates[name]
        compiled = _COMPILED.get(source)
        if compiled is None:
            compiled = _COMPILED[source] = _ENV.from_string(source)
        return compiled.render(params=self.params, **context)

    def _import_steps(self, item: ImportItem) -> list[Step]:
        steps: list[Step] = []
        per_step = len(item.dia_ids) == len(item.steps) and len(item.steps) > 1
        for i, raw in enumerate(item.steps):
            if isinstance(raw, Step):
                steps.append(raw)
                continue
            text = truncate_to_tokens(" ".join(raw.split()), self.params.step_tokens)
            if not text:
                continue
            dia = [item.dia_ids[i]] if per_step else list(item.dia_ids)
            steps.append(Step(text=text, dia_ids=[str(d) for d in dia]))
        return steps

    def _fresh_id(self, wanted: str, taken: set[str] | None = None) -> str:
        """``wanted`` unless a stored node (or one of ``taken``) has it already: then a suffixed variant."""
        db = self.toolkit.db
        candidate, n = wanted, 1
        while (taken and candidate in taken) or db.execute("SELECT 1 FROM queries WHERE id = ?", (candidate,)).fetchone():
            n += 1
            candidate = f"{wanted}-{n}"
        return candidate

    def _count(self, what: str) -> int:
        """Stored query nodes, insights or steps (cached between writes: COUNT(*) scans the table)."""
        if what not in self._counts:
            sql = {
                "queries": "SELECT COUNT(*) FROM queries",
                "insights": "SELECT COUNT(*) FROM insights",
                "steps": "SELECT COALESCE(SUM(n_steps), 0) FROM interactions",
            }[what]
            self._counts[what] = int(self.toolkit.db.execute(sql).fetchone()[0])
        return self._counts[what]

    def _bm25_index(self) -> BM25Index:
        if self._bm25 is None:
            index = BM25Index()
            index.add_many((r[0], r[1]) for r in self.toolkit.db.execute("SELECT id, doc FROM queries"))
            self._bm25 = index
        return self._bm25

    def _fetch(self, sql: str, ids: Sequence[str]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(ids), _SQL_CHUNK):
            part = list(ids[start:start + _SQL_CHUNK])
            out.extend(self.toolkit.db.execute(sql.format(",".join("?" * len(part))), part).fetchall())
        return out

    def _edges_of(self, ids: list[str]) -> list[Any]:
        out: list[Any] = []
        for start in range(0, len(ids), _SQL_CHUNK // 2):
            part = ids[start:start + _SQL_CHUNK // 2]
            marks = ",".join("?" * len(part))
            out.extend(self.toolkit.db.execute(
                f"SELECT src, dst, weight FROM query_edges WHERE src IN ({marks}) OR dst IN ({marks})", part + part
            ).fetchall())
        return out

    def _support_of(self, ids: list[str]) -> list[Any]:
        return self._fetch("SELECT insight_id, query_id, weight FROM support WHERE query_id IN ({})", ids)

    def _load_steps(self, ids: Sequence[str]) -> dict[str, list[Step]]:
        rows = self._fetch("SELECT query_id, steps FROM interactions WHERE query_id IN ({})", list(ids))
        found = {r[0]: [Step.model_validate(s) for s in json.loads(r[1])] for r in rows}
        return {q: found[q] for q in ids if q in found}

    def _upsert(self, collection: Any, ids: list[str], docs: list[str], vectors: list[list[float]],
                metas: list[dict[str, Any]] | None = None, *, new: bool = False) -> None:
        """Write vectors in batches (``new``: ids never stored before, so Chroma's cheaper ``add``)."""
        write = collection.add if new else collection.upsert
        for start in range(0, len(ids), _CHROMA_BATCH):
            end = start + _CHROMA_BATCH
            kw: dict[str, Any] = {"ids": ids[start:end], "documents": docs[start:end], "embeddings": vectors[start:end]}
            if metas is not None:
                kw["metadatas"] = metas[start:end]
            write(**kw)

    def _resync(self) -> None:
        """Rebuild a Chroma collection from SQLite when the two disagree (a crash between the two writes)."""
        db = self.toolkit.db
        if self._queries.count() != self._count("queries"):
            rows = db.execute("SELECT id, dense FROM queries").fetchall()
            if rows:
                self._upsert(self._queries, [r[0] for r in rows], [r[1] for r in rows],
                             self.toolkit.embed([r[1] for r in rows]))
        if self._insights.count() != self._count("insights"):
            rows = db.execute("SELECT id, text FROM insights").fetchall()
            if rows:
                self._upsert(self._insights, [r[0] for r in rows], [r[1] for r in rows],
                             self.toolkit.embed([r[1] for r in rows]))
        if self.params.step_index and self._steps.count() != self._count("steps"):
            ids: list[str] = []
            texts: list[str] = []
            metas: list[dict[str, Any]] = []
            for qid, steps in db.execute("SELECT query_id, steps FROM interactions"):
                for i, s in enumerate(json.loads(steps)):
                    ids.append(f"{qid}:{i}")
                    texts.append(s["text"])
                    metas.append({"q": qid})
            if ids:
                self._upsert(self._steps, ids, texts, self.toolkit.embed(texts), metas)

    def _clear_pending(self) -> None:
        self._pending = []
        self.toolkit.db.execute("DELETE FROM pending")
        self.toolkit.db.commit()
        self._unsaved = 0


_COMPILED: dict[str, jinja2.Template] = {}


# -- pure helpers ---------------------------------------------------------------------------------
def _merge_events(pending: list[Event], given: list[Event]) -> list[Event]:
    """Observed events then any the episode carries that were not observed, each once."""
    seen: set[str] = set()
    out: list[Event] = []
    for event in [*pending, *given]:
        if event.id not in seen:
            seen.add(event.id)
            out.append(event)
    return out


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
        dia = event.metadata.get("dia_id")
        step = Step(
            text=text, kind=event.kind, event_ids=[event.id], dia_ids=[] if dia is None else [str(dia)]
        )
        if steps and steps[-1].text == text:
            steps[-1].event_ids.extend(step.event_ids)
            steps[-1].dia_ids.extend(step.dia_ids)
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


def _node(row: Any) -> QueryNode:
    return QueryNode(
        id=row[0], task=row[1], outcome=row[2], success=None if row[3] is None else bool(row[3]),
        reward=row[4], date=row[5] or "", session_id=row[6] or "",
    )

