"""Semantic / profile memory: LLM-extracted facts reconciled as ADD/UPDATE/DELETE/NOOP, with versioned history.

After mem0 and MemOS:

* **encode** - message events are buffered per session (in SQLite, so a
  crash loses none); every
  ``batch_turns`` events (and at ``reflect`` or before a ``recall``) one
  structured LLM call extracts a few short, self-contained facts, each with
  a topic ``key`` ("seat preference"); the subject is the speaker named in
  the fact (else the speaker of the turn it came from). Facts whose words are
  mostly not in the turns (invented, or copied from the prompt's example)
  are dropped, first-person wording is rewritten with the speaker's name,
  and each fact is attributed to the turns that state it (provenance and
  LoCoMo evidence ids).
* **reconcile** (mem0) - each new fact is compared with the most similar
  active stored facts of the same subject (dense + BM25, fused, the same key
  first); one structured LLM call per batch picks ADD, UPDATE(old),
  DELETE(old) or NOOP(old) over small numbered lists. Deterministic guards
  keep the small model honest: a near-duplicate is a NOOP without asking;
  a fact with no similar stored fact is an ADD without asking; a fact that
  restates a single-valued attribute ("prefers", "lives in", "is named")
  with another value is an UPDATE without asking; an ADD whose subject and
  key match a stored fact becomes an UPDATE of it (a later contradiction
  wins); a reference to a number that was not shown, an
  UPDATE of an unrelated fact, a DELETE without a negation, or a NOOP of a
  fact that says something else fall back to those rules.
* **store** (MemOS) - every fact is a versioned unit in SQLite (text,
  subject, key, status, version, the dataset date and the source events);
  every change is a row of ``fact_history`` (op, old and new text, events,
  LoCoMo dia_ids, dataset date, wall time, reason). Deletions are soft.
  SQLite is the source of truth; the Chroma collection and the BM25 index
  hold active facts only and are rebuilt from it when they drift.
* **retrieve** - LLM-free: dense and BM25 rankings fused by reciprocal rank,
  ``top_k`` facts packed into the token budget, each line dated and, when
  its value changed, showing what it replaced.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar

from pydantic import BaseModel

from agentmem.errors import DataError, LLMError, NoRoomForReply
from agentmem.memory import MemoryProgram
from agentmem.retrieval import BM25Index, jaccard, reciprocal_rank_fusion, top
from agentmem.types import Episode, Event, Query, Recall, RecallItem
from agentmem_semantic.models import (
    Decision,
    Decisions,
    ExtractedFact,
    Extraction,
    Fact,
    FactChange,
    FactIn,
    Op,
    SemanticParams,
)
from agentmem_semantic.text import (
    attribute,
    earlier_value,
    first_sentence,
    grounded,
    is_additive,
    is_chitchat,
    is_negation,
    key_norm,
    key_overlap,
    same_frame,
    short_date,
    speaks_of_self,
    stems,
    strip_speaker,
    subject_norm,
    third_person,
)

__all__ = [
    "Decision",
    "Decisions",
    "ExtractedFact",
    "Extraction",
    "Fact",
    "FactChange",
    "FactIn",
    "SemanticMemory",
    "SemanticParams",
]

_EMBED_BATCH = 256
_CHROMA_BATCH = 4000
_KEY_MATCH = 0.5  # normalised keys overlapping at least this much name the same topic


class _Candidate(BaseModel):
    """A new fact on its way into the store, with what reconciliation found for it."""

    subject: str
    key: str
    text: str
    event_ids: list[str]
    dia_ids: list[str]
    date: str
    ts: float
    session_id: str | None
    similar: list[str] = []  # ids of similar active facts, best first
    sims: dict[str, float] = {}  # cosine of each similar fact to this one


class SemanticMemory(MemoryProgram):
    """Facts about people, extracted by an LLM, kept current by ADD/UPDATE/DELETE/NOOP, with history."""

    name: ClassVar[str] = "semantic"
    Params: ClassVar[type[BaseModel]] = SemanticParams
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Facts remembered about the people in the conversation, most relevant first"
            "{% if params.show_dates %}, each with the date it was last stated{% endif %}"
            "{% if params.show_superseded %}; '(updated; earlier: X)' means X was true before and the"
            " line's value is the current one{% endif %}:\n{{ context }}"
        ),
        "extract_system": "You write down lasting facts about people from a conversation. You reply in JSON.",
        "extract": (
            "Write each thing {{ speakers | join(' or ') }} says about their own life as a short fact in the"
            " third person that starts with the person's name: family, pets, work, home, plans, events,"
            " likes and preferences. Give each fact a key: its topic in 1-3 words, without the value.\n"
            "Example: \"Tom: I moved to Denver for a job at a bakery.\" gives"
            " {\"fact\": \"Tom lives in Denver\", \"key\": \"home city\"} and"
            " {\"fact\": \"Tom works at a bakery\", \"key\": \"job\"}.\n"
            "If someone changes what they said before, write the new value.\n"
            "Skip questions and greetings. At most {{ max_facts }} facts, only from the conversation below.\n\n"
            "{% if context %}Earlier (context only, already noted):\n"
            "{% for line in context %}{{ line }}\n{% endfor %}\n{% endif %}"
            "Conversation{% if date %} on {{ date }}{% endif %}:\n"
            "{% for line in lines %}{{ line }}\n{% endfor %}"
        ),
        "reconcile_system": "You keep a list of facts up to date. You reply in JSON.",
        "reconcile": (
            "Compare each NEW fact with the OLD facts listed under it and choose one action:\n"
            "ADD - the NEW fact is about something else; old = 0\n"
            "UPDATE - the NEW fact gives a new value for the same thing as an OLD fact"
            " (NEW \"Ann prefers aisle seats\", OLD \"Ann prefers window seats\"); old = that OLD number\n"
            "DELETE - the NEW fact says an OLD fact is no longer true"
            " (NEW \"Ann no longer has a car\", OLD \"Ann has a red car\"); old = that OLD number\n"
            "NOOP - an OLD fact already says the same thing; old = that OLD number\n\n"
            "{% for item in items %}NEW {{ item.number }}: {{ item.text }} [topic: {{ item.key }}]\n"
            "{% for old in item.olds %}    OLD {{ old.number }}: {{ old.text }} [topic: {{ old.key }}]\n{% endfor %}"
            "{% endfor %}\n"
            "Give one decision for each NEW fact ({{ items | length }} in all)."
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.params: SemanticParams
        db = self.toolkit.db
        db.executescript(
            """
            CREATE TABLE IF NOT EXISTS facts (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL,
                subject TEXT NOT NULL DEFAULT '', subject_norm TEXT NOT NULL DEFAULT '',
                key TEXT NOT NULL DEFAULT '', key_norm TEXT NOT NULL DEFAULT '',
                text TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active', version INTEGER NOT NULL DEFAULT 1,
                previous TEXT, date TEXT NOT NULL DEFAULT '', ts REAL NOT NULL DEFAULT 0,
                created_at TEXT NOT NULL, updated_at TEXT NOT NULL, session_id TEXT,
                event_ids TEXT NOT NULL DEFAULT '[]', dia_ids TEXT NOT NULL DEFAULT '[]');
            CREATE INDEX IF NOT EXISTS facts_topic ON facts (subject_norm, key_norm, status);
            CREATE TABLE IF NOT EXISTS fact_history (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, fact_id TEXT NOT NULL, version INTEGER NOT NULL,
                op TEXT NOT NULL, old_text TEXT, new_text TEXT, event_ids TEXT NOT NULL DEFAULT '[]',
                dia_ids TEXT NOT NULL DEFAULT '[]', date TEXT NOT NULL DEFAULT '', at TEXT NOT NULL,
                reason TEXT NOT NULL DEFAULT '');
            CREATE INDEX IF NOT EXISTS history_fact ON fact_history (fact_id, version);
            CREATE TABLE IF NOT EXISTS pending (
                seq INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, event TEXT NOT NULL);
            """
        )
        db.commit()
        self._collection = self.toolkit.collection("facts")
        self._bm25: BM25Index | None = None
        # the last turns already extracted, per session: context for the next batch (not persisted)
        self._recent: dict[str, list[Event]] = {}
        self._sync_collection()

    # -- encode ---------------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Buffer a message (persisted, so a crash loses nothing); extract when its session's batch is full."""
        if event.kind != "message" or not event.content.strip():
            return
        session = event.session_id or ""
        db = self.toolkit.db
        db.execute("INSERT INTO pending (session_id, event) VALUES (?, ?)", (session, event.model_dump_json()))
        db.commit()
        waiting = db.execute("SELECT COUNT(*) FROM pending WHERE session_id = ?", (session,)).fetchone()[0]
        if waiting >= self.params.batch_turns:
            self._flush_session(session)

    def reflect(self, episode: Episode) -> None:
        """End of a session: extract whatever is still pending."""
        self.flush()

    def close(self) -> None:
        self.toolkit.close()

    def flush(self) -> None:
        """Run extraction and reconciliation over every pending event now."""
        sessions = [r[0] for r in self.toolkit.db.execute("SELECT DISTINCT session_id FROM pending ORDER BY seq")]
        for session in dict.fromkeys(sessions):
            self._flush_session(session)

    def _flush_session(self, session: str) -> None:
        db = self.toolkit.db
        rows = db.execute("SELECT seq, event FROM pending WHERE session_id = ? ORDER BY seq", (session,)).fetchall()
        if not rows:
            return
        events = [Event.model_validate_json(r["event"]) for r in rows]
        last_seq = rows[-1]["seq"]
        try:
            candidates = self._extract_fitting(events, self._recent.get(session, []))
            self._reconcile(candidates)
        except LLMError as exc:
            # the model failed twice on this batch: skip it rather than retry forever; stored facts are untouched
            self.toolkit.logger.warning("semantic: extraction of %d events skipped: %s", len(events), exc)
        db.execute("DELETE FROM pending WHERE session_id = ? AND seq <= ?", (session, last_seq))
        db.commit()
        keep = self.params.context_turns
        self._recent[session] = (self._recent.get(session, []) + events)[-keep:] if keep else []

    def _extract_fitting(self, events: list[Event], context: list[Event]) -> list[_Candidate]:
        """:meth:`_extract`, halving a batch that does not fit the model's context (each half its own call)."""
        try:
            return self._extract(events, context)
        except NoRoomForReply as exc:
            if len(events) < 2:
                raise
            half = len(events) // 2
            self.toolkit.logger.warning("semantic: a batch of %d events does not fit the model's context (%s): "
                                        "split in two", len(events), exc)
            self.toolkit.note("split", op="extract")
            keep = self.params.context_turns
            first = self._extract_fitting(events[:half], context)
            return first + self._extract_fitting(events[half:], (context + events[:half])[-keep:] if keep else [])

    def _extract(self, events: list[Event], context: list[Event]) -> list[_Candidate]:
        """One structured call: the batch's facts, each attributed to the turns that state it."""
        lines = [_line(e) for e in events]
        speakers = list(dict.fromkeys(e.speaker for e in events if e.speaker)) or ["the user"]
        date = short_date(_event_date(events[-1]))
        messages = [
            {"role": "system", "content": self.instructions("extract_system")},
            {
                "role": "user",
                "content": self.instructions(
                    "extract",
                    lines=lines,
                    context=[_line(e) for e in context],
                    speakers=speakers,
                    date=date,
                    max_facts=self.params.max_facts,
                ),
            },
        ]
        reply = self.toolkit.structured(messages, Extraction, op="extract")
        said = [e.content for e in events]
        heard = stems(" ".join(said + [e.content for e in context]))
        names = stems(" ".join(speakers))
        out: list[_Candidate] = []
        seen: set[str] = set()
        for fact in reply.facts[: self.params.max_facts]:
            text, copied_from = strip_speaker(" ".join(fact.fact.split()), speakers)
            text = first_sentence(text)
            if len(text.split()) < 3 or text.endswith("?") or is_chitchat(text, names):
                continue  # not a statement, or small talk
            if grounded(text, heard, names) < self.params.grounding:
                continue  # not in the conversation: invented, or copied from the prompt's example
            lead = text.lower().removeprefix("the ")
            subject = copied_from or next((s for s in speakers if lead.startswith(s.lower())), "")
            picked = attribute(text, said, subject)
            sources = [events[i] for i in picked]
            source = sources[-1]
            if source.speaker and subject and subject != source.speaker and speaks_of_self(source.content) \
                    and lead.startswith(subject.lower()) and len(picked) == 1:
                # the model put the other speaker's name on a first-person statement: it is the speaker's
                text = source.speaker + text[len(text) - len(lead) + len(subject):]
                subject = source.speaker
            if not subject:
                subject = source.speaker or speakers[0]
            text = third_person(text, subject)
            if text.lower() in seen:
                continue
            seen.add(text.lower())
            out.append(
                _Candidate(
                    subject=subject[:80],
                    key=" ".join(fact.key.split())[:60],
                    text=text,
                    event_ids=[e.id for e in sources],
                    dia_ids=[str(e.metadata["dia_id"]) for e in sources if "dia_id" in e.metadata],
                    date=_event_date(sources[-1]),
                    ts=sources[-1].timestamp.timestamp(),
                    session_id=sources[-1].session_id,
                )
            )
        return out

    # -- reconcile ------------------------------------------------------------------------
    def _reconcile(self, candidates: list[_Candidate], *, use_llm: bool | None = None) -> list[tuple[Op, Fact | None]]:
        """Decide and apply ADD/UPDATE/DELETE/NOOP for each candidate, in order."""
        if not candidates:
            return []
        use_llm = self.params.llm_reconcile if use_llm is None else use_llm
        vectors = self.toolkit.embed([c.text for c in candidates])
        self._find_similar(candidates, vectors)
        facts = self._get([i for c in candidates for i in c.similar])
        # what the rules settle without asking; the rest go to the LLM in one call
        decided: dict[int, tuple[Op, str | None, str]] = {}
        asked: list[int] = []
        for n, cand in enumerate(candidates):
            dup = self._duplicate(cand, facts)
            frame = self._same_frame(cand, facts)
            if dup:
                decided[n] = ("NOOP", dup, "duplicate")
            elif frame:
                decided[n] = ("UPDATE", frame, "same attribute, new value")
            elif not cand.similar or not use_llm:
                decided[n] = self._rule(cand, facts)
            else:
                asked.append(n)
        if asked:
            for n, verdict in self._ask(candidates, asked, facts).items():
                decided[n] = verdict
        results: list[tuple[Op, Fact | None]] = []
        touched: dict[str, Fact] = {}  # facts written earlier in this batch, unseen when candidates were searched
        for n, cand in enumerate(candidates):
            op, target, reason = decided.get(n) or self._rule(cand, facts)
            if op == "ADD" and touched:
                subj = subject_norm(cand.subject)
                same = [i for i, f in touched.items() if not subj or not f.subject or subject_norm(f.subject) == subj]
                here = cand.model_copy(update={"similar": same})
                op, target, why = self._rule(here, touched)
                reason = reason if op == "ADD" else f"{reason}; same batch -> {why}"
            done = self._apply(cand, op, target, reason, vectors[n])
            if done[1] is not None and done[1].status == "active" and done[0] != "NOOP":
                touched[done[1].id] = done[1]
            results.append(done)
        self.toolkit.db.commit()
        return results

    def _find_similar(self, candidates: list[_Candidate], vectors: list[list[float]]) -> None:
        """Fill each candidate's most similar active facts of the same subject: dense + BM25 fused, same key first."""
        total = self._collection.count()
        if total == 0:
            return
        bm25 = self._index()
        want = self.params.candidates
        for cand, vec in zip(candidates, vectors):
            subj = subject_norm(cand.subject)
            kn = key_norm(cand.key, cand.subject)
            where = {"subject": {"$in": [subj, ""]}} if subj else None
            n = min(total, want * 3)
            try:
                hits = self._collection.query(query_embeddings=[vec], n_results=n, where=where, include=["distances"])
                dense = list(hits["ids"][0])
                sims = {i: 1.0 - float(d) for i, d in zip(hits["ids"][0], hits["distances"][0])}
            except Exception:  # noqa: BLE001 - a filter that matches nothing makes some chroma versions raise
                dense, sims = [], {}
            lexical = [i for i, _ in bm25.search(f"{cand.key} {cand.text}", want * 3)]
            same_key = [
                r["id"] for r in self.toolkit.db.execute(
                    "SELECT id FROM facts WHERE subject_norm = ? AND key_norm = ? AND status = 'active'"
                    " ORDER BY seq DESC LIMIT ?", (subj, kn, want)
                )
            ] if kn else []
            fused = reciprocal_rank_fusion([dense, lexical], weights=[1.0, 1.0])
            for rank, i in enumerate(same_key):
                fused[i] = fused.get(i, 0.0) + 1.0 - rank * 0.01
            pool = self._get(top(fused, want * 3))
            chosen = [
                i for i in top(fused, want * 3)
                if i in pool and (not subj or not pool[i].subject or subject_norm(pool[i].subject) == subj)
            ][:want]
            missing = [i for i in chosen if i not in sims]
            if missing:
                got = self._collection.get(ids=missing, include=["embeddings"])
                for i, emb in zip(got["ids"], got["embeddings"]):
                    sims[i] = float(sum(a * b for a, b in zip(vec, emb)))
            cand.similar = chosen
            cand.sims = {i: sims.get(i, 0.0) for i in chosen}

    def _duplicate(self, cand: _Candidate, facts: dict[str, Fact]) -> str | None:
        """The id of a stored fact saying (nearly) the same thing, if any."""
        for i in cand.similar:
            fact = facts.get(i)
            if fact and jaccard(cand.text, fact.text) >= self.params.dedup_threshold:
                return i
        return None

    def _same_key(self, cand: _Candidate, facts: dict[str, Fact]) -> str | None:
        """The stored fact on the same subject and topic (key), which a new value replaces."""
        if not self.params.key_update or is_additive(cand.text):
            return None
        kn = key_norm(cand.key, cand.subject)
        if not kn:
            return None
        for i in cand.similar:
            fact = facts.get(i)
            if fact and fact.status == "active" and key_overlap(kn, key_norm(fact.key, fact.subject)) >= _KEY_MATCH:
                return i
        return None

    def _same_frame(self, cand: _Candidate, facts: dict[str, Fact]) -> str | None:
        """The stored fact stating the same single-valued attribute with another value (see :func:`same_frame`)."""
        if not self.params.key_update or is_additive(cand.text):
            return None
        for i in cand.similar:
            fact = facts.get(i)
            if fact and fact.status == "active" and same_frame(cand.text, fact.text):
                return i
        return None

    def _rule(self, cand: _Candidate, facts: dict[str, Fact]) -> tuple[Op, str | None, str]:
        """The LLM-free decision: duplicate -> NOOP, same topic or attribute -> UPDATE, else ADD."""
        dup = self._duplicate(cand, facts)
        if dup:
            return "NOOP", dup, "duplicate"
        same = self._same_key(cand, facts)
        if same:
            return "UPDATE", same, "same topic"
        frame = self._same_frame(cand, facts)
        if frame:
            return "UPDATE", frame, "same attribute, new value"
        return "ADD", None, "new"

    def _ask(self, candidates: list[_Candidate], asked: list[int], facts: dict[str, Fact]) -> dict[int, tuple[Op, str | None, str]]:
        """One structured call over small numbered lists; every verdict passes the guards."""
        numbers: dict[str, int] = {}
        items = []
        for k, n in enumerate(asked, start=1):
            cand = candidates[n]
            olds = []
            for i in cand.similar:
                if i not in facts:
                    continue
                numbers.setdefault(i, len(numbers) + 1)
                olds.append({"number": numbers[i], "text": facts[i].text, "key": facts[i].key or "-"})
            items.append({"number": k, "text": cand.text, "key": cand.key or "-", "olds": olds})
        messages = [
            {"role": "system", "content": self.instructions("reconcile_system")},
            {"role": "user", "content": self.instructions("reconcile", items=items)},
        ]
        try:
            reply = self.toolkit.structured(messages, Decisions, op="reconcile")
        except LLMError as exc:
            self.toolkit.logger.warning("semantic: reconciliation fell back to rules: %s", exc)
            return {}
        by_number = {v: k for k, v in numbers.items()}
        out: dict[int, tuple[Op, str | None, str]] = {}
        for d in reply.decisions:
            if not 1 <= d.new <= len(asked) or asked[d.new - 1] in out:
                continue
            n = asked[d.new - 1]
            out[n] = self._guard(candidates[n], d, by_number.get(d.old), facts)
        return out

    def _guard(self, cand: _Candidate, d: Decision, target: str | None, facts: dict[str, Fact]) -> tuple[Op, str | None, str]:
        """Accept the LLM's verdict only where it is plausible; otherwise the rules decide."""
        if d.action == "ADD":
            op, tgt, why = self._rule(cand, facts)
            return (op, tgt, f"llm ADD -> {why}") if op != "ADD" else ("ADD", None, "llm")
        if target is None or target not in cand.similar:
            op, tgt, why = self._rule(cand, facts)
            return op, tgt, f"llm {d.action} of unknown #{d.old} -> {why}"
        old = facts[target]
        related = (
            cand.sims.get(target, 0.0) >= self.params.related_min_sim
            or key_overlap(key_norm(cand.key, cand.subject), key_norm(old.key, old.subject)) >= _KEY_MATCH
        )
        if d.action == "NOOP":
            if jaccard(cand.text, old.text) >= 0.5 or cand.sims.get(target, 0.0) >= 0.9:
                return "NOOP", target, "llm"
            op, tgt, why = self._rule(cand, facts)
            return op, tgt, f"llm NOOP of a different fact -> {why}"
        if not related:
            op, tgt, why = self._rule(cand, facts)
            return op, tgt, f"llm {d.action} of an unrelated fact -> {why}"
        if d.action == "DELETE" and not is_negation(cand.text):
            return "UPDATE", target, "llm DELETE without a negation -> UPDATE"
        return d.action, target, "llm"

    # -- store ----------------------------------------------------------------------------
    def _apply(self, cand: _Candidate, op: Op, target: str | None, reason: str, vector: list[float]) -> tuple[Op, Fact | None]:
        """Write one decision to SQLite (fact + history) and keep Chroma and BM25 in step."""
        db = self.toolkit.db
        now = datetime.now(timezone.utc).isoformat()
        current = self._get([target]).get(target) if target else None
        if op in ("UPDATE", "DELETE", "NOOP") and (current is None or current.status != "active"):
            # the target vanished earlier in this batch (or never existed): keep the information
            op, target, reason = "ADD", None, f"{reason}; target gone -> ADD"
        if op == "NOOP":
            return "NOOP", current
        if op == "ADD":
            fid = uuid.uuid4().hex[:16]
            db.execute(
                "INSERT INTO facts (id, subject, subject_norm, key, key_norm, text, status, version, previous, date, ts,"
                " created_at, updated_at, session_id, event_ids, dia_ids) VALUES (?,?,?,?,?,?,'active',1,NULL,?,?,?,?,?,?,?)",
                (fid, cand.subject, subject_norm(cand.subject), cand.key, key_norm(cand.key, cand.subject), cand.text,
                 cand.date, cand.ts, now, now, cand.session_id, json.dumps(cand.event_ids), json.dumps(cand.dia_ids)),
            )
            self._history(fid, 1, "ADD", None, cand, now, reason)
            self._index_put(fid, cand.subject, cand.key, cand.text, vector)
            return "ADD", self._get([fid])[fid]
        assert current is not None and target is not None
        version = current.version + 1
        if op == "UPDATE":
            key = cand.key or current.key
            db.execute(
                "UPDATE facts SET text=?, key=?, key_norm=?, version=?, previous=?, date=?, ts=?, updated_at=?,"
                " session_id=?, event_ids=?, dia_ids=? WHERE id=?",
                (cand.text, key, key_norm(key, current.subject), version, current.text, cand.date, cand.ts, now,
                 cand.session_id, json.dumps(cand.event_ids), json.dumps(cand.dia_ids), target),
            )
            self._history(target, version, "UPDATE", current.text, cand, now, reason)
            self._index_put(target, current.subject, key, cand.text, vector)
        else:  # DELETE: soft, the new statement is the reason
            db.execute("UPDATE facts SET status='deleted', version=?, updated_at=? WHERE id=?", (version, now, target))
            self._history(target, version, "DELETE", current.text, cand, now, f"{reason}: {cand.text}", new_text=None)
            self._index_drop(target)
        return op, self._get([target])[target]

    def _history(self, fid: str, version: int, op: str, old: str | None, cand: _Candidate | None, now: str,
                 reason: str, *, new_text: str | None | bool = True) -> None:
        text = (cand.text if cand else None) if new_text is True else new_text
        self.toolkit.db.execute(
            "INSERT INTO fact_history (fact_id, version, op, old_text, new_text, event_ids, dia_ids, date, at, reason)"
            " VALUES (?,?,?,?,?,?,?,?,?,?)",
            (fid, version, op, old, text, json.dumps(cand.event_ids if cand else []),
             json.dumps(cand.dia_ids if cand else []), cand.date if cand else "", now, reason),
        )

    def _index_put(self, fid: str, subject: str, key: str, text: str, vector: list[float]) -> None:
        self._collection.upsert(ids=[fid], embeddings=[vector], documents=[text],
                                metadatas=[{"subject": subject_norm(subject)}])
        if self._bm25 is not None:
            self._bm25.add(fid, f"{subject} {key} {text}")

    def _index_drop(self, fid: str) -> None:
        self._collection.delete(ids=[fid])
        if self._bm25 is not None:
            self._bm25.remove(fid)

    def _index(self) -> BM25Index:
        """The BM25 index over active facts, built from SQLite on first use."""
        if self._bm25 is None:
            index = BM25Index()
            for row in self.toolkit.db.execute("SELECT id, subject, key, text FROM facts WHERE status = 'active'"):
                index.add(row["id"], f"{row['subject']} {row['key']} {row['text']}")
            self._bm25 = index
        return self._bm25

    def _sync_collection(self) -> None:
        """Make the Chroma collection hold exactly the active facts (SQLite wins after a crash)."""
        active = self.toolkit.db.execute("SELECT COUNT(*) FROM facts WHERE status = 'active'").fetchone()[0]
        if active == self._collection.count():
            return
        stored = set(self._collection.get(include=[])["ids"])
        rows = self.toolkit.db.execute("SELECT id, subject, text FROM facts WHERE status = 'active'").fetchall()
        wanted = {r["id"]: r for r in rows}
        extra = list(stored - set(wanted))
        for k in range(0, len(extra), _CHROMA_BATCH):
            self._collection.delete(ids=extra[k:k + _CHROMA_BATCH])
        missing = [wanted[i] for i in wanted if i not in stored]
        self._upsert_many([(r["id"], r["subject"], r["text"]) for r in missing])

    def _upsert_many(self, rows: Sequence[tuple[str, str, str]]) -> None:
        """Embed in batches and upsert into Chroma in chunks it accepts."""
        for k in range(0, len(rows), _CHROMA_BATCH):
            part = rows[k:k + _CHROMA_BATCH]
            texts = [r[2] for r in part]
            vectors: list[list[float]] = []
            for j in range(0, len(texts), _EMBED_BATCH):
                vectors.extend(self.toolkit.embed(texts[j:j + _EMBED_BATCH]))
            self._collection.upsert(
                ids=[r[0] for r in part], embeddings=vectors, documents=texts,
                metadatas=[{"subject": subject_norm(r[1])} for r in part],
            )

    # -- public API: inspect and edit without an LLM ----------------------------------------
    def facts(self, include_deleted: bool = False) -> list[Fact]:
        """Every stored fact, oldest first (active ones only unless ``include_deleted``)."""
        sql = "SELECT * FROM facts" + ("" if include_deleted else " WHERE status = 'active'") + " ORDER BY seq"
        return [_fact(r) for r in self.toolkit.db.execute(sql)]

    def history(self, fact_id: str) -> list[FactChange]:
        """Every change of one fact, oldest first: what it said, what changed it, from which events, when."""
        self._require(fact_id)
        rows = self.toolkit.db.execute("SELECT * FROM fact_history WHERE fact_id = ? ORDER BY seq", (fact_id,))
        return [
            FactChange(
                fact_id=r["fact_id"], version=r["version"], op=r["op"], old_text=r["old_text"], new_text=r["new_text"],
                event_ids=json.loads(r["event_ids"]), dia_ids=json.loads(r["dia_ids"]), date=r["date"],
                at=datetime.fromisoformat(r["at"]), reason=r["reason"],
            )
            for r in rows
        ]

    def forget(self, fact_id: str, reason: str = "forgotten on request") -> Fact:
        """Soft-delete one fact: it leaves recall, its text and history stay (a second call changes nothing)."""
        fact = self._require(fact_id)
        if fact.status == "deleted":
            return fact
        now = datetime.now(timezone.utc).isoformat()
        db = self.toolkit.db
        db.execute("UPDATE facts SET status='deleted', version=?, updated_at=? WHERE id=?", (fact.version + 1, now, fact_id))
        db.execute(
            "INSERT INTO fact_history (fact_id, version, op, old_text, new_text, event_ids, dia_ids, date, at, reason)"
            " VALUES (?,?,'DELETE',?,NULL,'[]','[]','',?,?)",
            (fact_id, fact.version + 1, fact.text, now, reason),
        )
        db.commit()
        self._index_drop(fact_id)
        return self._get([fact_id])[fact_id]

    def add_fact(self, text: str, *, subject: str = "", key: str = "", date: str = "", reconcile: bool = True,
                 dia_ids: Sequence[str] = (), event_ids: Sequence[str] = ()) -> Fact:
        """Store one fact without an LLM; with ``reconcile`` the rules apply (duplicate -> the stored fact,
        same subject and key -> an update of it). Returns the fact as stored."""
        item = FactIn(text=text, subject=subject, key=key, date=date, dia_ids=list(dia_ids), event_ids=list(event_ids))
        if not reconcile:
            return self.import_items([item])[0]
        cand = self._candidate(item)
        (op, fact), = self._reconcile([cand], use_llm=False)
        assert fact is not None
        return fact

    def import_items(self, items: Iterable[FactIn | dict[str, Any] | str]) -> list[Fact]:
        """Bulk-insert facts as new units, with no LLM and no reconciliation (batch embedding, executemany).

        Each item is a :class:`FactIn`, a dict of its fields, or a plain string.
        Invalid items raise :class:`DataError` before anything is written.
        """
        parsed: list[FactIn] = []
        for n, raw in enumerate(items):
            try:
                parsed.append(FactIn(text=raw) if isinstance(raw, str) else FactIn.model_validate(raw))
            except Exception as exc:  # noqa: BLE001 - reported as one line
                first = str(exc).splitlines()[:3]
                raise DataError(f"semantic import_items: item {n} is not a fact ({' '.join(first)}); give text= and optional subject/key/date") from None
        if not parsed:
            return []
        now = datetime.now(timezone.utc).isoformat()
        rows = []
        for item in parsed:
            cand = self._candidate(item)
            rows.append((uuid.uuid4().hex[:16], cand))
        db = self.toolkit.db
        db.executemany(
            "INSERT INTO facts (id, subject, subject_norm, key, key_norm, text, status, version, previous, date, ts,"
            " created_at, updated_at, session_id, event_ids, dia_ids) VALUES (?,?,?,?,?,?,'active',1,NULL,?,?,?,?,?,?,?)",
            [(fid, c.subject, subject_norm(c.subject), c.key, key_norm(c.key, c.subject), c.text, c.date, c.ts, now, now,
              c.session_id, json.dumps(c.event_ids), json.dumps(c.dia_ids)) for fid, c in rows],
        )
        db.executemany(
            "INSERT INTO fact_history (fact_id, version, op, old_text, new_text, event_ids, dia_ids, date, at, reason)"
            " VALUES (?,1,'ADD',NULL,?,?,?,?,?,'imported')",
            [(fid, c.text, json.dumps(c.event_ids), json.dumps(c.dia_ids), c.date, now) for fid, c in rows],
        )
        db.commit()
        self._upsert_many([(fid, c.subject, c.text) for fid, c in rows])
        if self._bm25 is not None:
            for fid, c in rows:
                self._bm25.add(fid, f"{c.subject} {c.key} {c.text}")
        got = self._get([fid for fid, _ in rows])
        return [got[fid] for fid, _ in rows]

    def _candidate(self, item: FactIn) -> _Candidate:
        when = item.timestamp or self.toolkit.clock.now()
        return _Candidate(
            subject=item.subject, key=item.key, text=" ".join(item.text.split()), event_ids=item.event_ids,
            dia_ids=item.dia_ids, date=item.date or when.strftime("%Y-%m-%d"), ts=when.timestamp(),
            session_id=item.session_id,
        )

    def _require(self, fact_id: str) -> Fact:
        fact = self._get([fact_id]).get(fact_id)
        if fact is None:
            raise DataError(f"semantic memory has no fact with id {fact_id!r}: list the ids with facts(include_deleted=True)")
        return fact

    def _get(self, ids: Sequence[str | None]) -> dict[str, Fact]:
        wanted = list(dict.fromkeys(i for i in ids if i))
        out: dict[str, Fact] = {}
        for k in range(0, len(wanted), 500):
            part = wanted[k:k + 500]
            marks = ",".join("?" * len(part))
            for row in self.toolkit.db.execute(f"SELECT * FROM facts WHERE id IN ({marks})", part):
                out[row["id"]] = _fact(row)
        return out

    # -- retrieve -------------------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        """LLM-free: dense + BM25 fused by reciprocal rank, top_k facts packed into the budget, best first."""
        if self.params.flush_on_recall:
            if self.toolkit.db.execute("SELECT 1 FROM pending LIMIT 1").fetchone():
                self.flush()
        total = self._collection.count()
        if total == 0 or query.budget_tokens == 0 or not query.text.strip():
            return Recall(plugin=self.name)
        k = min(self.params.top_k, total)
        fetch = min(total, k * 3)
        rankings: list[list[str]] = []
        weights: list[float] = []
        if self.params.dense_weight > 0:
            hits = self._collection.query(query_texts=[query.text], n_results=fetch, include=[])
            rankings.append(list(hits["ids"][0]))
            weights.append(self.params.dense_weight)
        if self.params.bm25_weight > 0:
            rankings.append([i for i, _ in self._index().search(query.text, fetch)])
            weights.append(self.params.bm25_weight)
        fused = reciprocal_rank_fusion(rankings, weights=weights)
        ranked = top(fused, k)
        facts = self._get(ranked)
        ranked = [i for i in ranked if i in facts and facts[i].status == "active"]
        kept: list[tuple[Fact, str, float, int]] = []
        used = omitted = 0
        for fid in ranked:
            fact = facts[fid]
            line = self._line(fact)
            cost = self.toolkit.count_tokens(line)
            if used + cost > query.budget_tokens:
                omitted += 1
                continue
            used += cost
            kept.append((fact, line, fused[fid], cost))
        items = [
            RecallItem(
                content=line, score=round(score, 5), source=self.name, tokens=cost, event_ids=fact.event_ids,
                metadata={"dia_id": fact.dia_ids, "fact_id": fact.id, "version": fact.version, "key": fact.key},
            )
            for fact, line, score, cost in kept
        ]
        context = "\n".join(i.content for i in items)
        return Recall(items=items, omitted=omitted, plugin=self.name,
                      instructions=self.instructions(context=context) if items else "")

    def _line(self, fact: Fact) -> str:
        line = fact.text.rstrip(".")
        if self.params.show_dates and fact.date:
            line = f"[{short_date(fact.date)}] {line}"
        if self.params.show_superseded and fact.previous:
            line += f" (updated; earlier: {earlier_value(fact.previous, fact.text)})"
        return line


def _line(event: Event) -> str:
    return f"{event.speaker}: {event.content}" if event.speaker else event.content


def _event_date(event: Event) -> str:
    return str(event.metadata.get("date_time") or event.timestamp.strftime("%Y-%m-%d"))


def _fact(row: Any) -> Fact:
    return Fact(
        id=row["id"], subject=row["subject"], key=row["key"], text=row["text"], status=row["status"],
        version=row["version"], previous=row["previous"], date=row["date"], ts=row["ts"],
        created_at=datetime.fromisoformat(row["created_at"]), updated_at=datetime.fromisoformat(row["updated_at"]),
        session_id=row["session_id"], event_ids=json.loads(row["event_ids"]), dia_ids=json.loads(row["dia_ids"]),
    )
