"""A memory program assembled from declared module choices: the unit evolution's structural operators rewrite.

Every first-party plugin composes the core modules in code. This program
composes them from *data*: a :class:`Design` names what an event becomes
(``encode``), which retriever finds it (``retriever``), which stages reshape
the ranking (``neighbours``, ``dedup``), which managers keep the store tidy
(``managers``) and which other installed plugins recall beside it, each under
a weight (``compose``). A program file declares its design as a literal
(``DESIGN = {...}``) next to its ``DEFAULTS``, so that an operator can swap a
retriever or add a manager by rewriting that literal - deterministically, with
no code-writing model - and the result is validated like any other program.

Encodings (all LLM-free; an LLM-extracted fact is what ``+semantic`` adds):

* ``turn`` - each event verbatim with its date (``chunk_turns`` of them per item);
* ``turn+summary`` - the same, searched and shown with an extractive summary of
  its session (the most frequent content words of the session's events stored
  with it: the whole session, unless a recall came in the middle of it), so a
  turn that says "yes, that one" is still found by what its session was about;
* ``fact`` - only the sentences of a turn that state something about the
  speaker (first-person statements, preferences), one item each.

``dates`` (default on) shows each memory with its date; off, the text alone
(in the design's ``order``): for a task whose requests carry dates of their own.

``style`` (default ``transcript``) is how each recalled memory is shown:
``transcript`` as it was said (``[date] user: ...``), or ``notes``, one
bullet a memory with the user's own words and no name before them
(``- [date] ...``; other speakers keep their names). Measured with the 0.5B
on toolprefs: the same four recalled statements as notes scored +0.057 over
the same lines as a transcript (100 requests; benchmarks/results/evolve/render.json).
Only the shown text changes: what is searched, and so what is recalled, stays.

``order`` (default ``time``) is the order recalled memories are shown in:
``time`` (oldest first), ``best-first`` (the best match first) or
``best-last`` (the best match last, nearest the request that follows the
memory block).

``own_turns`` (default on) keeps the agent's own replies (events spoken by
``assistant``); off, only what the others said is stored: in a chat where the
assistant mostly acknowledges ("Got it."), its replies take recall slots that
the user's statements need.

Managers: ``supersede`` (a later item on the same subject - its speaker and
first content words, values left out - hides the earlier one, history kept),
``consolidate`` (an exact repeat is merged into the stored item),
``prune`` (items recalled in episodes that keep failing are deleted at
``reflect``) and ``correct`` (a statement that announces a change - "from now
on", "switched", "not X" - hides the earlier statement of its speaker closest
to it in meaning: supersede where no slot key is shared).
"""

from __future__ import annotations

import importlib
import re
from collections import Counter
from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agentmem.composition import split_budget
from agentmem.encode import event_text, event_when, group_turns
from agentmem.errors import ConfigError
from agentmem.managers import (
    Consolidate,
    ConsolidateParams,
    Correction,
    CorrectionParams,
    Prune,
    PruneParams,
    Supersede,
    UsageTracker,
)
from agentmem.memory import MemoryProgram
from agentmem.packer import Order, Packer, candidate
from agentmem.retrieval import tokenize
from agentmem.retrievers import (
    DenseRetriever,
    HybridParams,
    HybridRetriever,
    LexicalRetriever,
    NearDuplicateFilter,
    NearDuplicateParams,
    NeighbourParams,
    NeighbourWidening,
    RecencyBlend,
    RecencyParams,
    Retrieval,
    Retriever,
    Stage,
)
from agentmem.store import StoredItem
from agentmem.types import Episode, Event, Query, Recall, RecallItem

__all__ = [
    "AssembledMemory",
    "AssembledParams",
    "Design",
    "ENCODINGS",
    "ORDERS",
    "MANAGERS",
    "RETRIEVERS",
    "STYLES",
    "extract_facts",
    "check_design",
    "know_plugins",
    "plugin_class",
    "session_summary",
    "subject_key",
]

ENCODINGS = ("turn", "turn+summary", "fact")
ORDERS = ("time", "best-first", "best-last")
RETRIEVERS = ("dense", "lexical", "hybrid", "recency")
MANAGERS = ("supersede", "consolidate", "prune", "correct")
STYLES = ("transcript", "notes")

Encoding = Literal["turn", "turn+summary", "fact"]
RetrieverName = Literal["dense", "lexical", "hybrid", "recency"]
OrderName = Literal["time", "best-first", "best-last"]
StyleName = Literal["transcript", "notes"]
ManagerName = Literal["supersede", "consolidate", "prune", "correct"]

_FLUSH_EVENTS = 64
_PACKER_ORDER: dict[str, Order] = {"time": "position", "best-first": "score", "best-last": "score-last"}
AGENT_SPEAKER = "assistant"
"""The speaker of the agent's own messages (what the SDK agent and ``agentmem chat`` record)."""
USER_SPEAKER = "user"
"""The speaker of the person the agent serves (the SDK agent's and ``agentmem chat``'s name for them)."""
_USER_PREFIX = re.compile(r"(^|(?<= / ))" + USER_SPEAKER + r": ", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|i'll|my|mine|me|we|our|us)\b", re.IGNORECASE)
_PREFERENCE = re.compile(
    r"\b(prefer\w*|like|love|hate|always|usually|never|favou?rite|want|need|allerg\w*)\b", re.IGNORECASE
)
#: words that say how, not what: left out of a subject so "I prefer X" and "actually make it Y" meet
_NOT_SUBJECT = frozenset(
    "prefer prefers preferred like likes love loves want wants need needs make set change switch please actually"
    " now instead always usually really just also still anymore rather lately think guess".split()
)


class Design(BaseModel):
    """Which modules the program is made of (validated when the program starts; operators rewrite it)."""

    model_config = ConfigDict(extra="forbid")

    encode: Encoding = "turn"
    own_turns: bool = Field(True, description="store the agent's own replies (speaker 'assistant') too")
    dates: bool = Field(True, description="show each memory with its date (off: the text alone)")
    order: OrderName = Field("time", description="how recalled memories are shown: oldest first, best first or last")
    style: StyleName = Field(
        "transcript", description="a memory shown as said ('[date] user: ...') or as a note ('- ...', the user unnamed)"
    )
    retriever: RetrieverName = "hybrid"
    neighbours: bool = False
    dedup: bool = True
    managers: list[ManagerName] = Field(default_factory=lambda: list[ManagerName](["consolidate"]))
    compose: dict[str, float] = Field(
        default_factory=dict, description="other installed plugins recalled beside this one, by weight"
    )

    @field_validator("managers")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return [m for m in MANAGERS if m in value]  # each once, in one canonical order

    @field_validator("compose")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        for name, weight in value.items():
            if not 0.0 < weight <= 3.0:
                raise ValueError(f"compose weight of {name} must be in (0, 3], got {weight}")
        return value


class AssembledParams(
    HybridParams, RecencyParams, NeighbourParams, NearDuplicateParams, ConsolidateParams, PruneParams, CorrectionParams
):
    """The knobs of every module a design may use, plus the program's own; unused ones are inert."""

    top_k: int = Field(8, ge=1, le=50, description="how many items to recall")
    chunk_turns: int = Field(
        1, ge=1, le=8, description="consecutive events stored together as one item (turn encodings)"
    )
    summary_words: int = Field(6, ge=2, le=20, description="content words in a session's extractive summary")
    own_weight: float = Field(
        1.0, ge=0.1, le=3.0, description="this program's share of the budget against composed plugins"
    )


def session_summary(texts: list[str], words: int) -> str:
    """An extractive summary of a session: its ``words`` most frequent content words (ties: first seen)."""
    counts = Counter(t for text in texts for t in tokenize(text) if not t.isdigit() and len(t) > 2)
    return ", ".join(w for w, _ in counts.most_common(words))


def subject_key(speaker: str, text: str) -> str:
    """What a statement is about: its speaker and its first two content words, values and verbs of wanting left out."""
    words = [t for t in tokenize(text) if not any(c.isdigit() for c in t) and t not in _NOT_SUBJECT]
    return f"{(speaker or '').lower()}|{' '.join(sorted(words[:2]))}" if words else ""


def extract_facts(text: str) -> list[str]:
    """The sentences of ``text`` that state something about the speaker (first person or a preference)."""
    return [
        s.strip() for s in _SENTENCE.split(text) if s.strip() and (_FIRST_PERSON.search(s) or _PREFERENCE.search(s))
    ]


def _spoken_by(speaker: str, item: StoredItem) -> bool:
    return bool(item.data.get("speaker", "") == speaker)


def check_design(design: Mapping[str, Any], owner: str = "the program") -> Design:
    """``design`` validated; a wrong choice is one line naming the field, what was given and what is allowed."""
    try:
        return Design.model_validate(dict(design))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "DESIGN"
        raise ConfigError(
            f"{owner}'s DESIGN: {where}: {first['msg']} (given {first.get('input')!r}); "
            f"fix that entry of the DESIGN dict"
        ) from None


_KNOWN_PLUGINS: dict[str, str] = {}


def know_plugins(targets: Mapping[str, str]) -> None:
    """Remember installed memory plugins (name -> ``module:Class``) for :func:`plugin_class`.

    The evolution sandbox calls it with the entry points it read before it
    locked itself down, so that a composed plugin is found without reading
    package metadata from inside the jail.
    """
    _KNOWN_PLUGINS.update(targets)


def plugin_class(name: str) -> type[MemoryProgram[Any]]:
    """The memory plugin class installed as ``name`` (one a sandbox announced, else from the registry)."""
    target = _KNOWN_PLUGINS.get(name)
    if target is None:
        from agentmem.registry import load_memory

        return load_memory(name)
    module, _, attr = target.partition(":")
    found: Any = importlib.import_module(module)
    for part in attr.split("."):
        found = getattr(found, part)
    return found


class AssembledMemory(MemoryProgram[AssembledParams]):
    """A memory made of the core modules its ``design`` names."""

    name: ClassVar[str] = "assembled"
    design: ClassVar[dict[str, Any]] = {}
    templates: ClassVar[dict[str, str]] = {
        "usage": (
            "Memories from earlier conversations, oldest first; each line starts with its date."
            "\n{{ context }}"
            "{% if omitted is defined and omitted %}\n({{ omitted }} more matching memor{{ 'ies' if omitted != "
            "1 else 'y' }} did not fit.){% endif %}"
        ),
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.shape = check_design(self.design, type(self).__name__)
        p = self.params
        self.buffer = self.open_buffer(sync_every=_FLUSH_EVENTS)
        self.store = self.open_store("items")
        self.retrieval = Retrieval(self._retriever(), *self._stages())
        self.packer = Packer(order=_PACKER_ORDER[self.shape.order])
        self.supersede = Supersede() if "supersede" in self.shape.managers else None
        self.consolidate = Consolidate.from_params(p) if "consolidate" in self.shape.managers else None
        self.usage = UsageTracker(self.store) if "prune" in self.shape.managers else None
        self.prune = Prune.from_params(p) if "prune" in self.shape.managers else None
        self.correction = Correction.from_params(p) if "correct" in self.shape.managers else None
        self.members: dict[str, MemoryProgram[Any]] = {}
        if self.shape.compose:
            for member in self.shape.compose:
                program = plugin_class(member)(toolkit.for_namespace(f"{toolkit.namespace}-{member}"))
                self.members[member] = program
                self._opened.append(program)
        self._session: str | None = None

    def _retriever(self) -> Retriever:
        kind = self.shape.retriever
        if kind == "dense":
            return DenseRetriever()
        if kind == "lexical":
            return LexicalRetriever()
        return HybridRetriever.from_params(self.params)

    def _stages(self) -> list[Stage]:
        p = self.params
        stages: list[Stage] = []
        if self.shape.retriever == "recency":
            stages.append(RecencyBlend.from_params(p))
        if self.shape.dedup:
            stages.append(NearDuplicateFilter.from_params(p))
        if self.shape.neighbours:
            stages.append(NeighbourWidening.from_params(p))
        return stages

    # -- encode / store -------------------------------------------------------------------------
    def observe(self, event: Event) -> None:
        if self._session is not None and event.session_id != self._session:
            self._flush()
        self._session = event.session_id
        if self.buffer.add(event) >= _FLUSH_EVENTS and self.shape.encode != "turn+summary":
            self._flush()  # a summary needs its whole session: that encoding waits for the session's end
        for member in self.members.values():
            member.observe(event)

    def reflect(self, episode: Episode) -> None:
        self._flush()
        if self.usage is not None and self.prune is not None:
            self.usage.credit(episode.success)
            self.prune.prune(self.store)
        for member in self.members.values():
            member.reflect(episode)

    def _flush(self) -> None:
        if self.buffer:
            self._write(self._encode(self.buffer.peek()))
            self.buffer.take()  # once stored: a failure above keeps the events waiting

    def _encode(self, events: list[Event]) -> list[StoredItem]:
        p = self.params
        if not self.shape.own_turns:
            events = [e for e in events if (e.speaker or "").lower() != AGENT_SPEAKER]
        if self.shape.encode == "fact":
            return [
                self._item([e], f"{e.speaker}: {fact}" if e.speaker else fact)
                for e in events
                for fact in extract_facts(e.content or "")
                if e.kind == "message"
            ]
        summaries: dict[str, str] = {}
        if self.shape.encode == "turn+summary":
            by_session: dict[str, list[str]] = {}
            for e in events:
                by_session.setdefault(e.session_id or "", []).append(e.content or "")
            summaries = {s: session_summary(texts, p.summary_words) for s, texts in by_session.items()}
        items = []
        for group in group_turns(events, p.chunk_turns):
            text = " / ".join(event_text(e) for e in group)
            summary = summaries.get(group[0].session_id or "", "")
            items.append(self._item(group, text, summary))
        return items

    def _item(self, group: list[Event], text: str, summary: str = "") -> StoredItem:
        first = group[0]
        when = event_when(first)
        dated = f"[{when}] {text}" if self.shape.dates else text
        about = f" (session about: {summary})" if summary else ""
        shown = dated + about
        body = _USER_PREFIX.sub("", text)
        note = f"- [{when}] {body}{about}" if self.shape.dates else f"- {body}{about}"
        if self.supersede is not None:
            key = subject_key(first.speaker or "", text.partition(": ")[2] if first.speaker else text)
        elif self.consolidate is not None:
            key = " ".join(text.lower().split())
        else:
            key = ""
        return StoredItem(
            text=text,
            dense_text=shown,
            lexical_text=shown,
            key=key,
            group=first.session_id or "",
            ts=first.timestamp.timestamp(),
            event_ids=[e.id for e in group],
            data={"when": when, "shown": shown, "note": note, "speaker": first.speaker or ""},
        )

    def _write(self, items: list[StoredItem]) -> None:
        written: list[StoredItem] = []
        if self.supersede is not None:
            for item in items:
                if item.key:
                    written.append(self.supersede.put(self.store, item)[1])
                else:
                    written += self.store.add([item])
        elif self.consolidate is not None:
            written = self.consolidate.absorb(self.store, items)
        elif items:
            written = self.store.add(items)
        if self.correction is not None:
            for item in written:
                self.correction.correct(self.store, item, same=partial(_spoken_by, item.data.get("speaker", "")))

    # -- retrieve -----------------------------------------------------------------------------------
    def _shown(self, item: StoredItem) -> str:
        """The text an agent reads for ``item``, in the design's style (searching always uses the transcript)."""
        if self.shape.style == "notes" and item.data.get("note"):
            return str(item.data["note"])
        return str(item.data.get("shown") or f"[{item.data['when']}] {item.text}")

    def recall(self, query: Query) -> Recall:
        self._flush()
        if query.budget_tokens == 0:
            return Recall(plugin=self.name)
        names = ["", *self.members]
        shares = split_budget(query.budget_tokens, [self.params.own_weight, *self.shape.compose.values()])
        hits, ctx = self.retrieval.run(self.store, query.text, self.params.top_k)
        found = ctx.found(hits)
        packed = self.packer.pack(
            (candidate(c, self._shown(c), hit.score, self.name) for hit, c in found),
            shares[0],
        )
        if self.usage is not None:
            self.usage.served([i.metadata["item_id"] for i in packed.items])
        items: list[RecallItem] = list(packed.items)
        omitted = packed.omitted
        for name, share in zip(names[1:], shares[1:]):
            if share <= 0:
                continue
            got = self.members[name].recall(query.model_copy(update={"budget_tokens": share}))
            items += got.items
            omitted += got.omitted
        context = "\n".join(i.content for i in items)
        return Recall(
            items=items,
            omitted=omitted,
            plugin=self.name,
            instructions=self.instructions("usage", context=context, omitted=omitted) if items else "",
        )
