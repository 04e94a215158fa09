"""A-MEM: agentic memory of linked notes whose neighbours evolve (after "A-MEM: Agentic Memory for LLM Agents").

What is A-MEM's own, on top of the core modules:

* **note construction** - every observed event becomes a note: its content
  (the event verbatim), its date, and LLM-written keywords, tags and a
  one-line context, from ONE structured (JSON-schema constrained) call per
  note. The note is embedded over content, keywords, tags and context
  together, as in the paper, so that the LLM's reading of the memory helps
  find it. If the model's reply fails (:class:`~agentmem.errors.LLMError`:
  invalid JSON twice, no room, server down) the note is built from the raw
  text instead - keywords from the lexical tokenizer, no tags or context -
  counted as ``fallback`` on the meter; no event is ever lost.
* **link generation** - a new note links to its ``link_k`` nearest existing
  notes (cosine over the note embeddings, at least ``link_min_similarity``);
  each neighbour gets a backlink, so links run both ways, at most
  ``max_links`` per note (the newest kept).
* **memory evolution** - the linked neighbours at least
  ``evolve_min_similarity`` close (at most ``evolve_k``) are shown to ONE
  more structured call with the new note, which may give each a new context
  line and tags. Each change is a new version of the neighbour (re-embedded)
  and a history row (``EVOLVE``: old and new context, old and new tags, the
  note that caused it). With no neighbour that close, there is no call.
* **recall** - LLM-free: the core hybrid retriever (dense + BM25 fused by
  reciprocal rank) finds the ``top_k`` best notes, then the links of the
  ``follow_from`` best hits bring in at most ``max_linked`` more notes
  (scored ``link_weight`` times the hit that led to them), and the core
  :class:`~agentmem.packer.Packer` fits them into the token budget, shown
  oldest first with their dates and context lines.

**Ingestion cost.** One LLM call per note, plus at most one evolution call
per note that has a close neighbour: about two calls per observed event with
the default ``note_turns=1`` (the paper's one note per interaction). That is
the price of A-MEM's write-time intelligence; on a long conversation with a
small CPU model, ``note_turns`` groups consecutive events of one session into
one note and divides the cost by that factor. Recall costs no LLM call.

Events wait in the core :class:`~agentmem.encode.EventBuffer` (SQLite) until
their note is written (a full group, a session change, ``reflect`` or a
recall), so a crash loses none; notes live in one core
:class:`~agentmem.store.Store` (SQLite truth, Chroma mirror, BM25 index), and
``forget`` is the core :class:`~agentmem.managers.Forget`.
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from agentmem.encode import event_text, event_when, group_turns
from agentmem.errors import DataError, LLMError
from agentmem.managers import Forget
from agentmem.memory import Forgets, MemoryProgram
from agentmem.packer import Packer, candidate
from agentmem.retrieval import jaccard, tokenize
from agentmem.retrievers import HybridRetriever, Retrieval
from agentmem.store import StoredItem
from agentmem.types import Episode, Event, Query, Recall
from agentmem_amem.models import AMemParams, Evolution, NeighbourUpdate, Note, NoteChange, NoteDraft

__all__ = ["AMemMemory", "AMemParams", "Evolution", "NeighbourUpdate", "Note", "NoteChange", "NoteDraft"]

_WORD_CHARS = 24  # longest keyword or tag kept (the schema's bound)
_CONTEXT_CHARS = 120  # longest context line kept (the schema's bound)


class AMemMemory(MemoryProgram[AMemParams], Forgets):
    """Linked notes with LLM-written keywords, tags and context; a new note evolves its neighbours."""

    name: ClassVar[str] = "amem"
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Memory notes from earlier conversations, oldest first; each line starts with its date"
            "{% if params.show_context %} and ends with what the note is about in parentheses{% endif %}."
            " Notes marked 'related:' were reached through links from the best matches."
            "\n{{ context }}"
            "{% if omitted is defined and omitted %}\n({{ omitted }} more matching note{{ 's' if omitted != 1 "
            "}} did not fit.){% endif %}"
        ),
        "note_system": "You index memories so that they can be found later. You reply in JSON.",
        "note": (
            "Make an index card for this memory{% if when %} (from {{ when }}){% endif %}, so that it can be "
            "found later:\n"
            '"{{ text }}"\n\n'
            "keywords: at most {{ max_keywords }} names and words taken from the memory."
            " tags: at most {{ max_tags }} topic labels."
            " context: one short sentence in your own words about who did what."
        ),
        # one worked example, given as an earlier turn of the conversation (see _draft)
        "note_example": "Tom: We finally moved to Denver, my new job at the bakery starts Monday.",
        "note_example_card": (
            '{"keywords": ["Tom", "Denver", "bakery", "job"], "tags": ["moving", "work"],'
            ' "context": "Tom moved to Denver for a new bakery job."}'
        ),
        "evolve_system": "You keep a set of linked memory notes up to date. You reply in JSON.",
        "evolve": (
            "A NEW memory arrived. The OLD memories below are related to it.\n"
            "For each OLD memory that the NEW one adds to, give its number, a new context: one short sentence in"
            " your own words about the OLD memory that also takes the NEW one into account, and its topic tags."
            " Leave out OLD memories that need no change. At most {{ old | length }} updates.\n\n"
            "NEW: {{ new.text }}\n"
            "{% if new.context %}   context: {{ new.context }}\n{% endif %}"
            "{% if new.tags %}   tags: {{ new.tags | join(', ') }}\n{% endif %}"
            "\n{% for n in old %}OLD {{ n.number }}: {{ n.text }}\n"
            "   context: {{ n.context or '-' }}\n"
            "   tags: {{ n.tags | join(', ') or '-' }}\n{% endfor %}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.buffer = self.open_buffer()  # events waiting for their note, per session
        self.store = self.open_store("notes")
        self.retrieval = Retrieval(HybridRetriever.from_params(self.params), min_fetch=1)
        self.packer = Packer(order="position")
        self.forgetting = Forget()
        self._session: str | None = None

    # -- encode: events -> notes -------------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Keep the event (durably); write its note once ``note_turns`` events of its session wait."""
        if not event_text(event).strip() or (event.kind == "message" and not event.content.strip()):
            return
        session = event.session_id or ""
        if session != self._session:
            self.buffer.drain(self._write_notes, skip=session)  # a session ended: its partial group becomes a note now
            self._session = session
        if self.buffer.add(event) >= self.params.note_turns:
            self.buffer.drain(self._write_notes, session)

    def reflect(self, episode: Episode) -> None:
        """End of a session or episode: the events still waiting become notes."""
        self.flush()

    def flush(self) -> None:
        """Write notes for every waiting event now."""
        self.buffer.drain(self._write_notes)

    def _write_notes(self, session: str, events: list[Event]) -> None:
        """One session's waiting events as notes (they leave the buffer once written: a failure keeps them)."""
        for group in group_turns(events, self.params.note_turns):
            self._write(group, use_llm=True)

    def _write(self, group: Sequence[Event], *, use_llm: bool) -> StoredItem:
        """One note: construct (one LLM call, or the raw-text fallback), store, link, evolve the neighbours."""
        first = group[0]
        text = " / ".join(event_text(e) for e in group)
        when = event_when(first)
        reason = "llm"
        draft: NoteDraft | None = None
        if use_llm:
            try:
                draft = self._draft(text, when)
            except LLMError as exc:
                self.toolkit.logger.warning("amem: note built from the raw text (the model's reply failed: %s)", exc)
                self.toolkit.note("fallback", op="note")
                reason = f"fallback: {type(exc).__name__}"
        if draft is None:
            draft = self._raw_draft(text)
            reason = reason if use_llm else "imported"
        keywords, tags, context = self._clean(draft, text)
        (note,) = self.store.add(
            [
                StoredItem(
                    text=text,
                    group=first.session_id or "",
                    ts=first.timestamp.timestamp(),
                    event_ids=[e.id for e in group],
                    dense_text=_dense(text, keywords, tags, context),
                    lexical_text=_lexical(text, when, keywords, tags, context),
                    data={
                        "when": when,
                        "keywords": keywords,
                        "tags": tags,
                        "context": context,
                        "links": [],
                        "fallback": reason.startswith("fallback"),
                    },
                )
            ]
        )
        self.store.record(
            note.id,
            "ADD",
            new_text=text,
            event_ids=note.event_ids,
            reason=reason,
            data={"keywords": keywords, "tags": tags, "context": context},
        )
        neighbours = self._link(note)
        if use_llm and self.params.evolve and neighbours:
            self._evolve(note, neighbours)
        return note

    def _draft(self, text: str, when: str) -> NoteDraft:
        """The note-construction call: keywords, tags and a context line for one memory."""
        p = self.params
        ask = {"max_keywords": p.max_keywords, "max_tags": p.max_tags}
        messages = [
            {"role": "system", "content": self.instructions("note_system")},
            {
                "role": "user",
                "content": self.instructions("note", text=self.instructions("note_example"), when="", **ask),
            },
            {"role": "assistant", "content": self.instructions("note_example_card")},
            {"role": "user", "content": self.instructions("note", text=text, when=when, **ask)},
        ]
        return self.toolkit.structured(messages, NoteDraft, op="note")

    def _raw_draft(self, text: str) -> NoteDraft:
        """A note without the model: its most frequent content words as keywords (the lexical tokenizer's)."""
        counts = Counter(t for t in tokenize(text) if len(t) > 2)
        return NoteDraft(keywords=[w[:_WORD_CHARS] for w, _ in counts.most_common(self.params.max_keywords)])

    def _clean(self, draft: NoteDraft, text: str) -> tuple[list[str], list[str], str]:
        """What a small model wrote, kept only where it is plausible (see :func:`_keywords`, :meth:`_tags`,
        :func:`_context`).
        """
        return (
            _keywords(draft.keywords, text, self.params.max_keywords),
            self._tags(draft.tags),
            _context(draft.context, text, example=self._example_words),
        )

    def _tags(self, tags: Iterable[str]) -> list[str]:
        """Tags, without those made only of the instructions' own words (a small model copies them)."""
        return [
            t for t in _words(tags, self.params.max_tags * 2, lower=True) if not set(tokenize(t)) <= self._prompt_words
        ][: self.params.max_tags]

    @functools.cached_property
    def _example_words(self) -> frozenset[str]:
        """The worked example's words (as compared: their first letters)."""
        example = self.instructions("note_example") + " " + self.instructions("note_example_card")
        return frozenset(w[:_STEM] for w in tokenize(example))

    @functools.cached_property
    def _prompt_words(self) -> frozenset[str]:
        """The words of the note and evolution instructions themselves (without any memory in them)."""
        shown = self.instructions("note", text="", when="", max_keywords=0, max_tags=0)
        shown += self.instructions("note_example") + self.instructions("note_example_card")
        shown += self.instructions("evolve", new={"text": "", "context": "", "tags": []}, old=[])
        return frozenset(tokenize(shown)) | {"memory", "memories", "tag", "tags", "keyword", "keywords", "context"}

    # -- link generation ----------------------------------------------------------------------
    def _link(self, note: StoredItem) -> list[tuple[StoredItem, float]]:
        """Link the new note to its nearest notes (and them back to it); returns them with their cosine,
        nearest first.
        """
        p = self.params
        if p.link_k <= 0 or self.store.count() < 2:
            return []
        vector = self.store.vectors([note.id]).get(note.id)
        if vector is None:
            return []
        near = [
            (i, s) for i, s in self.store.nearest(vector, p.link_k + 1) if i != note.id and s >= p.link_min_similarity
        ]
        near = near[: p.link_k]
        found = self.store.get([i for i, _ in near])
        neighbours = [(found[i], s) for i, s in near if i in found and found[i].status == "active"]
        if not neighbours:
            return []
        self.store.update(note.id, data={**note.data, "links": [n.id for n, _ in neighbours]})
        linked: list[tuple[StoredItem, float]] = []
        for item, sim in neighbours:
            links = [i for i in item.data.get("links", []) if i != note.id] + [note.id]
            updated = self.store.update(item.id, data={**item.data, "links": links[-p.max_links :]})
            linked.append((updated or item, sim))
        return linked

    # -- memory evolution -----------------------------------------------------------------------
    def _evolve(self, note: StoredItem, neighbours: list[tuple[StoredItem, float]]) -> int:
        """One call may give at most ``evolve_k`` close neighbours a new context and tags; returns how many changed."""
        p = self.params
        shown = [item for item, sim in neighbours if sim >= p.evolve_min_similarity][: p.evolve_k]
        if not shown:
            return 0
        old = [
            {"number": n, "text": item.text, "context": item.data.get("context", ""), "tags": item.data.get("tags", [])}
            for n, item in enumerate(shown, start=1)
        ]
        new = {"text": note.text, "context": note.data.get("context", ""), "tags": note.data.get("tags", [])}
        messages = [
            {"role": "system", "content": self.instructions("evolve_system")},
            {"role": "user", "content": self.instructions("evolve", new=new, old=old)},
        ]
        try:
            reply = self.toolkit.structured(messages, Evolution, op="evolve")
        except LLMError as exc:
            self.toolkit.logger.warning(
                "amem: evolution of %d neighbours skipped (the model's reply failed: %s)", len(shown), exc
            )
            self.toolkit.note("fallback", op="evolve")
            return 0
        changed = 0
        done: set[int] = set()
        for update in reply.updates:
            if changed >= p.evolve_k:
                break
            if not 1 <= update.number <= len(shown) or update.number in done:
                continue  # a number that was not shown, or a second answer for one neighbour
            done.add(update.number)
            changed += self._apply(shown[update.number - 1], update, note)
        return changed

    def _apply(self, item: StoredItem, update: NeighbourUpdate, cause: StoredItem) -> int:
        """Give one neighbour its evolved context and tags (a new version, re-embedded, with a history row)."""
        current = self.store.get_one(item.id)
        if current is None or current.status != "active":
            return 0
        data = current.data
        context = _context(update.context, current.text, cause.text, example=self._example_words) or data.get(
            "context", ""
        )
        tags = self._tags(update.tags) or list(data.get("tags", []))
        if context == data.get("context", "") and tags == list(data.get("tags", [])):
            return 0
        keywords = list(data.get("keywords", []))
        version = current.version + 1
        self.store.update(
            current.id,
            version=version,
            dense_text=_dense(current.text, keywords, tags, context),
            lexical_text=_lexical(current.text, data.get("when", ""), keywords, tags, context),
            data={**data, "context": context, "tags": tags},
        )
        self.store.record(
            current.id,
            "EVOLVE",
            version=version,
            old_text=data.get("context", ""),
            new_text=context,
            event_ids=cause.event_ids,
            reason=f"evolved by note {cause.id}",
            data={"old_tags": data.get("tags", []), "new_tags": tags, "by": cause.id},
        )
        return 1

    # -- retrieve -----------------------------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        """LLM-free: the best notes by hybrid retrieval, plus notes linked from the best hits, packed into
        the budget.
        """
        p = self.params
        if p.flush_on_recall and self.buffer:
            self.flush()
        if query.budget_tokens == 0:
            return Recall(plugin=self.name)
        hits, ctx = self.retrieval.run(self.store, query.text, p.top_k)
        found = ctx.found(hits)
        seen = {item.id for _, item in found}
        via: dict[str, tuple[float, str]] = {}  # linked note id -> (score, the hit that led to it)
        for hit, item in found[: p.follow_from]:
            for link in item.data.get("links", []):
                if len(via) >= p.max_linked:
                    break
                if link not in seen and link not in via:
                    via[link] = (hit.score * p.link_weight, item.id)
        linked = [(item, via[i]) for i, item in ctx.items(list(via)).items() if item.status == "active"]
        candidates = [
            candidate(item, self._show(item), hit.score, self.name, session=item.group) for hit, item in found
        ]
        candidates += [
            candidate(item, "related: " + self._show(item), score, self.name, session=item.group, linked_from=source)
            for item, (score, source) in linked
        ]
        return self.recalled(self.packer.pack(candidates, query.budget_tokens))

    def _show(self, item: StoredItem) -> str:
        line = f"[{item.data.get('when', '')}] {item.text}" if item.data.get("when") else item.text
        context = item.data.get("context", "")
        return f"{line} ({context})" if self.params.show_context and context else line

    # -- public API: inspect and edit without an LLM ---------------------------------------------
    def notes(self, include_deleted: bool = False) -> list[Note]:
        """Every stored note, oldest first (active ones only unless ``include_deleted``)."""
        return [_note(item) for item in self.store.items(include_deleted=include_deleted)]

    def note(self, note_id: str) -> Note:
        """One note by id; a clear error when there is none."""
        item = self.store.get_one(note_id)
        if item is None:
            raise DataError(
                f"amem memory has no note with id {note_id!r}: list the ids with notes(include_deleted=True)"
            )
        return _note(item)

    def history(self, note_id: str) -> list[NoteChange]:
        """Every change of one note, oldest first: its creation and each evolution (old and new context and tags)."""
        self.note(note_id)
        return [
            NoteChange(
                note_id=r.item_id,
                version=r.version,
                op=r.op,
                old_text=r.old_text,
                new_text=r.new_text,
                reason=r.reason,
                at=datetime.fromtimestamp(r.at, UTC),
                data=r.data,
            )
            for r in self.store.history(note_id)
        ]

    def forget(self, item_id: str) -> bool:
        """Soft-delete one note: it leaves recall (and link following); its rows and history stay."""
        return self.forgetting.forget(self.store, item_id)

    def import_items(self, events: Iterable[Event]) -> int:
        """Notes from events without any LLM call (raw-text notes, linked, no evolution); returns the note count.

        For bulk loading (benchmarks, migrations): the keywords come from the
        lexical tokenizer, as in the fallback.
        """
        self.flush()
        kept = [e for e in events if event_text(e).strip()]
        groups = group_turns(kept, self.params.note_turns)
        for group in groups:
            self._write(group, use_llm=False)
        return len(groups)


def _words(values: Iterable[str], limit: int, *, lower: bool) -> list[str]:
    """Keywords or tags: trimmed, de-duplicated (ignoring case), at most ``limit``."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        word = " ".join(str(value).split()).strip(" .,;:#\"'")[:_WORD_CHARS]
        if lower:
            word = word.lower()
        if word and word.lower() not in seen:
            seen.add(word.lower())
            out.append(word)
        if len(out) >= limit:
            break
    return out


def _keywords(values: Iterable[str], text: str, limit: int) -> list[str]:
    """Keywords that share a word with the memory (an invented or copied-from-the-example keyword finds nothing)."""
    said = set(tokenize(text))
    return [k for k in _words(values, limit * 2, lower=False) if set(tokenize(k)) & said][:limit]


_LABEL = re.compile(r"^\s*(one (short )?sentence|context|summary)\s*:\s*", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
_COPY = 0.8  # word overlap with a memory above which a "context" only repeats it
_GROUNDED = 0.5  # more than this share of a context's words must occur in the memory (as in semantic's grounding)
_STEM = 5  # words compared by their first letters: "adopted" and "adopting" count as the same word


def _context(value: str, *texts: str, example: frozenset[str] = frozenset()) -> str:
    """A context line: its first sentence, mostly in the memory's words, none of them only the ``example``'s,
    and not a copy of the memory; else empty."""
    line = _LABEL.sub("", " ".join(value.split()))
    line = _SENTENCE_END.split(line, maxsplit=1)[0][:_CONTEXT_CHARS].strip()
    words = set(tokenize(line))
    said = {w[:_STEM] for t in texts for w in tokenize(t)}
    if len(words) < 2 or sum(w[:_STEM] in said for w in words) <= _GROUNDED * len(words):
        return ""  # mostly words the memory never said: invented
    if any(w[:_STEM] not in said and w[:_STEM] in example for w in words):
        return ""  # taken from the worked example
    if len(words) >= 6 and any(jaccard(line, t) >= _COPY or _plain(line)[:50] in _plain(t) for t in texts):
        return ""
    return line


def _plain(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def _dense(text: str, keywords: Sequence[str], tags: Sequence[str], context: str) -> str:
    """What the note is embedded over: content, keywords, tags and context together (as in the paper)."""
    parts = [text]
    if keywords:
        parts.append("keywords: " + ", ".join(keywords))
    if tags:
        parts.append("tags: " + ", ".join(tags))
    if context:
        parts.append("context: " + context)
    return "\n".join(parts)


def _lexical(text: str, when: str, keywords: Sequence[str], tags: Sequence[str], context: str) -> str:
    return " ".join(x for x in (when, text, " ".join(keywords), " ".join(tags), context) if x)


def _note(item: StoredItem) -> Note:
    data = item.data
    return Note(
        id=item.id,
        content=item.text,
        keywords=list(data.get("keywords", [])),
        tags=list(data.get("tags", [])),
        context=data.get("context", ""),
        links=list(data.get("links", [])),
        when=data.get("when", ""),
        session_id=item.group,
        event_ids=item.event_ids,
        status=item.status,
        version=item.version,
        fallback=bool(data.get("fallback", False)),
        created_at=datetime.fromtimestamp(item.created, UTC),
        updated_at=datetime.fromtimestamp(item.updated, UTC),
    )
