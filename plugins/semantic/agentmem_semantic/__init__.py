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
  and each fact is attributed to the turns that state it (its source event
  ids, which environments map to their own evidence ids).
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
* **store** (MemOS) - every fact is a versioned unit of the core
  :class:`~agentmem.store.Store` (text, subject, topic slot, status, version,
  the dataset date and the source events); UPDATE is the core
  :class:`~agentmem.managers.Supersede`, DELETE and ``forget`` the core
  :class:`~agentmem.managers.Forget`, and every change is a history row (op,
  old and new text, events, dataset date, wall time, reason). Deletions are
  soft; the store's Chroma mirror and BM25 index hold active facts only.
* **retrieve** - LLM-free: the core hybrid retriever (dense and BM25 fused
  by reciprocal rank) and packer, ``top_k`` facts best first, each line
  dated and, when its value changed, showing what it replaced.

What is semantic's own is extraction and reconciliation; storage, retrieval,
packing and history are the core modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from pydantic import BaseModel

from agentmem.encode import event_text, event_when
from agentmem.errors import DataError, LLMError, NoRoomForReply
from agentmem.managers import Forget, Supersede
from agentmem.memory import Forgets, MemoryProgram
from agentmem.packer import Packer, candidate
from agentmem.retrieval import jaccard, reciprocal_rank_fusion, top
from agentmem.retrievers import HybridRetriever, Retrieval
from agentmem.store import HistoryRow, StoredItem
from agentmem.types import Episode, Event, Query, Recall
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

_KEY_MATCH = 0.5  # normalised keys overlapping at least this much name the same topic


class _Candidate(BaseModel):
    """A new fact on its way into the store, with what reconciliation found for it."""

    subject: str
    key: str
    text: str
    event_ids: list[str]
    date: str
    ts: float
    session_id: str | None
    similar: list[str] = []  # ids of similar active facts, best first
    sims: dict[str, float] = {}  # cosine of each similar fact to this one


class SemanticMemory(MemoryProgram[SemanticParams], Forgets):
    """Facts about people, extracted by an LLM, kept current by ADD/UPDATE/DELETE/NOOP, with history."""

    name: ClassVar[str] = "semantic"
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
            'Example: "Tom: I moved to Denver for a job at a bakery." gives'
            ' {"fact": "Tom lives in Denver", "key": "home city"} and'
            ' {"fact": "Tom works at a bakery", "key": "job"}.\n'
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
            ' (NEW "Ann prefers aisle seats", OLD "Ann prefers window seats"); old = that OLD number\n'
            "DELETE - the NEW fact says an OLD fact is no longer true"
            ' (NEW "Ann no longer has a car", OLD "Ann has a red car"); old = that OLD number\n'
            "NOOP - an OLD fact already says the same thing; old = that OLD number\n\n"
            "{% for item in items %}NEW {{ item.number }}: {{ item.text }} [topic: {{ item.key }}]\n"
            "{% for old in item.olds %}    OLD {{ old.number }}: {{ old.text }} [topic: {{ old.key }}]\n{% endfor %}"
            "{% endfor %}\n"
            "Give one decision for each NEW fact ({{ items | length }} in all)."
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.buffer = self.open_buffer()  # message events waiting for extraction, per session
        self.store = self.open_store("facts")  # active facts mirrored in Chroma and BM25
        self.retrieval = Retrieval(HybridRetriever.from_params(self.params), min_fetch=1)
        self.packer = Packer(order="score")
        self.supersede = Supersede()
        self.forgetting = Forget()
        # the last turns already extracted, per session: context for the next batch (not persisted)
        self._recent: dict[str, list[Event]] = {}

    # -- encode ---------------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Buffer a message (persisted, so a crash loses nothing); extract when its session's batch is full."""
        if event.kind != "message" or not event.content.strip():
            return
        if self.buffer.add(event) >= self.params.batch_turns:
            self.buffer.drain(self._extract_batch, event.session_id or "")

    def reflect(self, episode: Episode) -> None:
        """End of a session: extract whatever is still pending."""
        self.flush()

    def flush(self) -> None:
        """Run extraction and reconciliation over every pending event now."""
        self.buffer.drain(self._extract_batch)

    def _extract_batch(self, session: str, events: list[Event]) -> None:
        """Extract and reconcile one session's pending events (they then leave the buffer)."""
        try:
            candidates = self._extract_fitting(events, self._recent.get(session, []))
            self._reconcile(candidates)
        except LLMError as exc:
            # the model failed twice on this batch: skip it rather than retry forever; stored facts are untouched
            self.toolkit.logger.warning("semantic: extraction of %d events skipped: %s", len(events), exc)
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
            self.toolkit.logger.warning(
                "semantic: a batch of %d events does not fit the model's context (%s): split in two", len(events), exc
            )
            self.toolkit.note("split", op="extract")
            keep = self.params.context_turns
            first = self._extract_fitting(events[:half], context)
            return first + self._extract_fitting(events[half:], (context + events[:half])[-keep:] if keep else [])

    def _extract(self, events: list[Event], context: list[Event]) -> list[_Candidate]:
        """One structured call: the batch's facts, each attributed to the turns that state it."""
        lines = [event_text(e) for e in events]
        speakers = list(dict.fromkeys(e.speaker for e in events if e.speaker)) or ["the user"]
        date = short_date(event_when(events[-1], "%Y-%m-%d"))
        messages = [
            {"role": "system", "content": self.instructions("extract_system")},
            {
                "role": "user",
                "content": self.instructions(
                    "extract",
                    lines=lines,
                    context=[event_text(e) for e in context],
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
            if (
                source.speaker
                and subject
                and subject != source.speaker
                and speaks_of_self(source.content)
                and lead.startswith(subject.lower())
                and len(picked) == 1
            ):
                # the model put the other speaker's name on a first-person statement: it is the speaker's
                text = source.speaker + text[len(text) - len(lead) + len(subject) :]
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
                    date=event_when(sources[-1], "%Y-%m-%d"),
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
        return results

    def _find_similar(self, candidates: list[_Candidate], vectors: list[list[float]]) -> None:
        """Fill each candidate's most similar active facts of the same subject: dense + BM25 fused, same key first."""
        total = self.store.count()
        if total == 0:
            return
        want = self.params.candidates
        for cand, vec in zip(candidates, vectors):
            subj = subject_norm(cand.subject)
            kn = key_norm(cand.key, cand.subject)
            where = {"group": {"$in": [subj, ""]}} if subj else None
            nearest = self.store.nearest(vec, min(total, want * 3), where=where)
            dense, sims = [i for i, _ in nearest], dict(nearest)
            lexical = [i for i, _ in self.store.lexical(f"{cand.key} {cand.text}", want * 3)]
            same_key = [f.id for f in self.store.by_key(_slot(subj, kn), limit=want)] if kn else []
            fused = reciprocal_rank_fusion([dense, lexical], weights=[1.0, 1.0])
            for rank, i in enumerate(same_key):
                fused[i] = fused.get(i, 0.0) + 1.0 - rank * 0.01
            pool = self._get(top(fused, want * 3))
            chosen = [
                i
                for i in top(fused, want * 3)
                if i in pool and (not subj or not pool[i].subject or subject_norm(pool[i].subject) == subj)
            ][:want]
            for i, emb in self.store.vectors([i for i in chosen if i not in sims]).items():
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

    def _ask(
        self, candidates: list[_Candidate], asked: list[int], facts: dict[str, Fact]
    ) -> dict[int, tuple[Op, str | None, str]]:
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

    def _guard(
        self, cand: _Candidate, d: Decision, target: str | None, facts: dict[str, Fact]
    ) -> tuple[Op, str | None, str]:
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
    def _apply(
        self, cand: _Candidate, op: Op, target: str | None, reason: str, vector: list[float]
    ) -> tuple[Op, Fact | None]:
        """Write one decision: a new fact, a new version of one (Supersede), a soft delete (Forget), or nothing."""
        current = self._get([target]).get(target) if target else None
        if op in ("UPDATE", "DELETE", "NOOP") and (current is None or current.status != "active"):
            # the target vanished earlier in this batch (or never existed): keep the information
            op, target, reason = "ADD", None, f"{reason}; target gone -> ADD"
        if op == "NOOP":
            return "NOOP", current
        if op == "ADD":
            (added,) = self._add([cand], reason)
            return "ADD", added
        assert current is not None and target is not None
        if op == "UPDATE":
            key = cand.key or current.key
            self.supersede.replace(
                self.store,
                target,
                cand.text,
                reason=reason,
                event_ids=cand.event_ids,
                history={"date": cand.date},
                key=_slot(subject_norm(current.subject), key_norm(key, current.subject)),
                ts=cand.ts,
                lexical_text=f"{current.subject} {key} {cand.text}",
                data={"key": key, "date": cand.date, "session_id": cand.session_id},
            )
        else:  # DELETE: soft, the new statement is the reason
            self.forgetting.forget(
                self.store, target, reason=f"{reason}: {cand.text}", event_ids=cand.event_ids, data={"date": cand.date}
            )
        return op, self._get([target])[target]

    def _add(self, cands: Sequence[_Candidate], reason: str) -> list[Fact]:
        """New facts (one batch: embedded together), each with its ADD history row."""
        added = self.store.add(
            [
                StoredItem(
                    text=c.text,
                    group=subject_norm(c.subject),
                    key=_slot(subject_norm(c.subject), key_norm(c.key, c.subject)),
                    lexical_text=f"{c.subject} {c.key} {c.text}",
                    ts=c.ts,
                    event_ids=list(c.event_ids),
                    data={"subject": c.subject, "key": c.key, "date": c.date, "session_id": c.session_id},
                )
                for c in cands
            ]
        )
        self.store.record_many(
            [
                HistoryRow(
                    item_id=item.id,
                    version=1,
                    op="ADD",
                    new_text=item.text,
                    event_ids=item.event_ids,
                    reason=reason,
                    at=item.created,
                    data={"date": c.date},
                )
                for item, c in zip(added, cands)
            ]
        )
        return [_fact(item) for item in added]

    # -- public API: inspect and edit without an LLM ----------------------------------------
    def facts(self, include_deleted: bool = False) -> list[Fact]:
        """Every stored fact, oldest first (active ones only unless ``include_deleted``)."""
        return [_fact(item) for item in self.store.items(include_deleted=include_deleted)]

    def history(self, fact_id: str) -> list[FactChange]:
        """Every change of one fact, oldest first: what it said, what changed it, from which events, when."""
        self._require(fact_id)
        return [
            FactChange(
                fact_id=r.item_id,
                version=r.version,
                op=r.op,
                old_text=r.old_text,
                new_text=r.new_text,
                event_ids=r.event_ids,
                date=r.data.get("date", ""),
                at=datetime.fromtimestamp(r.at, UTC),
                reason=r.reason,
            )
            for r in self.store.history(fact_id)
        ]

    def forget(self, item_id: str, reason: str = "forgotten on request") -> bool:
        """Soft-delete one fact: it leaves recall, its text and history stay; ``False`` when it is not a stored fact."""
        return self.forgetting.forget(self.store, item_id, reason=reason)

    def add_fact(
        self,
        text: str,
        *,
        subject: str = "",
        key: str = "",
        date: str = "",
        reconcile: bool = True,
        event_ids: Sequence[str] = (),
    ) -> Fact:
        """Store one fact without an LLM; with ``reconcile`` the rules apply (duplicate -> the stored fact,
        same subject and key -> an update of it). Returns the fact as stored."""
        item = FactIn(text=text, subject=subject, key=key, date=date, event_ids=list(event_ids))
        if not reconcile:
            return self.import_items([item])[0]
        cand = self._candidate(item)
        ((op, fact),) = self._reconcile([cand], use_llm=False)
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
            except Exception as exc:
                first = str(exc).splitlines()[:3]
                raise DataError(
                    f"semantic import_items: item {n} is not a fact ({' '.join(first)}); give text= and "
                    "optional subject/key/date"
                ) from None
        return self._add([self._candidate(item) for item in parsed], "imported") if parsed else []

    def _candidate(self, item: FactIn) -> _Candidate:
        when = item.timestamp or self.toolkit.clock.now()
        return _Candidate(
            subject=item.subject,
            key=item.key,
            text=" ".join(item.text.split()),
            event_ids=item.event_ids,
            date=item.date or when.strftime("%Y-%m-%d"),
            ts=when.timestamp(),
            session_id=item.session_id,
        )

    def _require(self, fact_id: str) -> Fact:
        fact = self._get([fact_id]).get(fact_id)
        if fact is None:
            raise DataError(
                f"semantic memory has no fact with id {fact_id!r}: list the ids with facts(include_deleted=True)"
            )
        return fact

    def _get(self, ids: Sequence[str | None]) -> dict[str, Fact]:
        return {i: _fact(item) for i, item in self.store.get([i for i in ids if i]).items()}

    # -- retrieve -------------------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        """LLM-free: dense + BM25 fused by reciprocal rank, top_k facts packed into the budget, best first."""
        if self.params.flush_on_recall and self.buffer:
            self.flush()
        if query.budget_tokens == 0:
            return Recall(plugin=self.name)
        hits, ctx = self.retrieval.run(self.store, query.text, self.params.top_k)
        packed = self.packer.pack(
            (
                candidate(
                    item, self._line(fact), hit.score, self.name, fact_id=fact.id, version=fact.version, key=fact.key
                )
                for hit, item in ctx.found(hits)
                if (fact := _fact(item))
            ),
            query.budget_tokens,
        )
        return self.recalled(packed)

    def _line(self, fact: Fact) -> str:
        line = fact.text.rstrip(".")
        if self.params.show_dates and fact.date:
            line = f"[{short_date(fact.date)}] {line}"
        if self.params.show_superseded and fact.previous:
            line += f" (updated; earlier: {earlier_value(fact.previous, fact.text)})"
        return line


def _slot(subject: str, key: str) -> str:
    """The store's lookup key of a fact: its subject and topic (a new value for the slot updates the fact)."""
    return f"{subject}\x1f{key}"


def _fact(item: StoredItem) -> Fact:
    data = item.data
    return Fact(
        id=item.id,
        subject=data.get("subject", ""),
        key=data.get("key", ""),
        text=item.text,
        status=item.status,
        version=item.version,
        previous=data.get("previous"),
        date=data.get("date", ""),
        ts=item.ts,
        created_at=datetime.fromtimestamp(item.created, UTC),
        updated_at=datetime.fromtimestamp(item.updated, UTC),
        session_id=data.get("session_id"),
        event_ids=item.event_ids,
    )
