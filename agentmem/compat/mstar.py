"""Run memory programs written in M*'s format as agentmem memory plugins.

An M*-format program is one Python module with

* four prompt constants: ``INSTRUCTION_KNOWLEDGE_ITEM`` (how to turn raw
  experience into an item), ``INSTRUCTION_QUERY`` (how to turn a question
  into a query), ``INSTRUCTION_RESPONSE`` (how to answer from what comes
  back) and ``ALWAYS_ON_KNOWLEDGE`` (text shown with every recall);
* two dataclasses, ``KnowledgeItem`` (what is stored) and ``Query`` (how it
  is asked for);
* a class ``KnowledgeBase(toolkit)`` with ``write(item, raw_text)`` and
  ``read(query) -> str``.

:func:`mstar_program_class` wraps such a module as a
:class:`~agentmem.memory.MemoryProgram` that ingests as M* does:

* **One raw text per session.** ``observe`` buffers events; when the session
  ends (``reflect``), when the next session begins, or before a recall, the
  buffered events become one raw text: the session's date in brackets, then
  one ``Speaker: text`` line per event.
* **One structured call per raw text**, whose schema is the program's own
  ``KnowledgeItem`` (its fields, their ``metadata["description"]``, its
  docstring), instructed by ``INSTRUCTION_KNOWLEDGE_ITEM``; then **one**
  ``kb.write(item, raw_text)``.
* **A session is split only when it does not fit the model's context**: when
  the prompt leaves too little room for the reply, or the reply runs past all
  the room there is (:class:`~agentmem.errors.NoRoomForReply`), its events are
  halved and each half is one raw text with one call and one write. Each
  split is logged and counted in the evaluation result.
* **Fallback without loss or duplication**: when the model gives no valid
  item (after the retries and the repair :mod:`agentmem.llm.structured`
  makes), the raw text is still written once, with one item built from it
  (text fields hold the raw text, speaker fields the speakers, date fields the
  session date). Logged, and counted as a fallback.

``recall`` fills a ``Query``: when the dataclass has one ``str`` field it is
the question text itself (no LLM call: small models write poor queries),
otherwise the LLM fills it with ``INSTRUCTION_QUERY`` (the question text
fills it when that fails). It calls ``read``, puts ``ALWAYS_ON_KNOWLEDGE``
first, truncates to the token budget and returns a Recall whose
``instructions`` start with ``INSTRUCTION_RESPONSE``.

The toolkit the program receives (:class:`MStarToolkit`) has ``db`` (the
program's sqlite3 connection in its scope), ``chroma``, ``llm_completion``
(one metered call, operation ``mstar``) and ``logger``. ``chroma`` is a
ChromaDB **collection** (cosine space, embedded with agentmem's sentence
embedder): M*'s summary gives programs "ChromaDB" without more, and a
collection is what its seed programs add to and query. Programs written
against a ChromaDB *client* work too: ``chroma.get_or_create_collection(name)``
(and ``get_collection`` / ``create_collection``) return another collection of
the same scope.

Where this differs from M* is written in ``docs/mstar.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from types import ModuleType, UnionType
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from agentmem.errors import LLMError, NoRoomForReply, PluginError
from agentmem.memory import MemoryProgram
from agentmem.tokens import truncate_to_tokens
from agentmem.types import Episode, Event, Query, Recall, RecallItem

__all__ = ["MStarParams", "MStarProgram", "MStarToolkit", "is_mstar_module", "mstar_program_class"]

CONSTANTS = ("INSTRUCTION_KNOWLEDGE_ITEM", "INSTRUCTION_QUERY", "INSTRUCTION_RESPONSE", "ALWAYS_ON_KNOWLEDGE")
DATACLASSES = ("KnowledgeItem", "Query")
_SOURCES_TABLE = "agentmem_mstar_sources"


class MStarParams(BaseModel):
    """The M* adapter has no knobs: M*'s contract fixes one raw text per session, one item, one write."""

    model_config = ConfigDict(extra="forbid")


# -- detection and validation -------------------------------------------------------


def is_mstar_module(module: ModuleType) -> bool:
    """Whether ``module`` looks like an M*-format program (has ``KnowledgeBase`` or one of its constants)."""
    names = vars(module)
    return "KnowledgeBase" in names or any(c in names for c in CONSTANTS)


def _validate(module: ModuleType, where: str) -> None:
    """Raise one PluginError line naming everything missing or malformed in ``module``."""
    problems: list[str] = []
    missing = [c for c in CONSTANTS if c not in vars(module)]
    if missing:
        problems.append("missing constant" + ("s " if len(missing) > 1 else " ") + ", ".join(missing))
    wrong = [c for c in CONSTANTS if c in vars(module) and not isinstance(getattr(module, c), str)]
    if wrong:
        problems.append(", ".join(wrong) + " must be str")
    for name in DATACLASSES:
        obj = getattr(module, name, None)
        if obj is None:
            problems.append(f"missing dataclass {name}")
        elif not (inspect.isclass(obj) and dataclasses.is_dataclass(obj)):
            problems.append(f"{name} must be a @dataclass")
        elif not dataclasses.fields(obj):
            problems.append(f"dataclass {name} has no fields")
    kb = getattr(module, "KnowledgeBase", None)
    if kb is None:
        problems.append("missing class KnowledgeBase")
    elif not inspect.isclass(kb):
        problems.append("KnowledgeBase must be a class")
    else:
        problems.extend(_check_method(kb, "__init__", ["toolkit"], "KnowledgeBase(toolkit)"))
        problems.extend(_check_method(kb, "write", ["item", "raw_text"], "KnowledgeBase.write(self, item, raw_text)"))
        problems.extend(_check_method(kb, "read", ["query"], "KnowledgeBase.read(self, query)"))
    if problems:
        raise PluginError(
            f"M* memory program {where} is malformed: {'; '.join(problems)}; see agentmem.compat.mstar for the format"
        )


def _check_method(cls: type, name: str, args: list[str], shape: str) -> list[str]:
    func = getattr(cls, name, None)
    if func is None or (name != "__init__" and not callable(func)):
        return [f"missing method {shape}"]
    if name == "__init__" and func is object.__init__:
        return [f"{shape} must take a toolkit argument"]
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return []
    params = list(sig.parameters.values())[1:]  # drop self
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    required_kw = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(positional) < len(args) or len(required) > len(args) or required_kw:
        got = ", ".join(p.name for p in params) or "no arguments"
        return [f"{shape} has the wrong signature (takes {got})"]
    return []


# -- schemas built from the dataclasses ----------------------------------------------


def _field_types(dc: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(dc)
    except Exception:  # unresolved annotations: let pydantic see Any
        return {f.name: Any for f in dataclasses.fields(dc)}


def _flat_model(dc: type, name: str) -> type[BaseModel]:
    """A pydantic model with the dataclass's fields, descriptions and docstring (the schema the LLM fills)."""
    hints = _field_types(dc)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if not f.init:
            continue
        found = f.metadata.get("description") if f.metadata else None
        description = str(found) if found else None
        if f.default is not dataclasses.MISSING:
            default: Any = Field(f.default, description=description)
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory, description=description)
        else:
            default = Field(..., description=description)
        fields[f.name] = (hints.get(f.name, Any), default)
    doc = inspect.getdoc(dc) or ""
    if doc.startswith(f"{dc.__name__}("):  # the signature dataclasses write when there is no docstring
        doc = ""
    return create_model(name, __doc__=doc or None, **fields)


def _single_str_field(dc: type) -> str | None:
    """The name of the dataclass's only required field, if it is a ``str`` and the only one."""
    fields = [f for f in dataclasses.fields(dc) if f.init]
    hints = _field_types(dc)
    if len(fields) == 1 and hints.get(fields[0].name) is str:
        return fields[0].name
    return None


# -- the toolkit an M* program sees -----------------------------------------------------


class _ChromaShim:
    """A ChromaDB collection that also answers the client calls M* programs may make."""

    def __init__(self, toolkit: Any, name: str = "mstar") -> None:
        self._toolkit = toolkit
        self._collection = toolkit.collection(name)

    def get_or_create_collection(self, name: str = "mstar", **_: Any) -> Any:
        return _ChromaShim(self._toolkit, name)

    get_collection = get_or_create_collection
    create_collection = get_or_create_collection

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._collection, attr)


class MStarToolkit:
    """What an M*-format ``KnowledgeBase`` receives: ``db``, ``chroma``, ``llm_completion``, ``logger``."""

    def __init__(self, toolkit: Any) -> None:
        self._toolkit = toolkit
        self.logger = toolkit.logger
        self._chroma: _ChromaShim | None = None

    @property
    def db(self) -> Any:
        return self._toolkit.db

    @property
    def chroma(self) -> Any:
        if self._chroma is None:
            self._chroma = _ChromaShim(self._toolkit)
        return self._chroma

    def llm_completion(self, messages: Any, **kw: Any) -> str:
        """One metered LLM call (a plain string is sent as one user message)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return self._toolkit.complete(list(messages), op="mstar", **kw)


# -- the adapter ---------------------------------------------------------------------------


class MStarProgram(MemoryProgram):
    """Base of the classes :func:`mstar_program_class` makes; ``module`` is the wrapped program."""

    name: ClassVar[str] = "mstar"
    Params: ClassVar[type[BaseModel]] = MStarParams
    module: ClassVar[ModuleType | None] = None
    templates: ClassVar[dict[str, str]] = {
        "usage": "{{ response }}\n\n{{ context }}",
        # the knowledge-item request, as M* words its parts: instruction, the text, the object to fill
        # (the schema follows, appended by the structured call)
        "knowledge_item": "{{ instruction or 'Turn the text below into one ' ~ name ~ ' to keep in memory.' }}\n\n"
        "Text:\n{{ raw_text }}\n\nFill one {{ name }} object from this text.",
        "query": "{{ instruction or 'Write the query that finds what the question needs.' }}\n\n"
        "Question: {{ question }}\n\nFill the {{ name }} object for it.",
    }

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        module = self.module
        if module is None:
            raise PluginError("MStarProgram is a base class: wrap an M* module with mstar_program_class(module)")
        self._m = module
        self._pending: list[Event] = []
        self._item_model = _flat_model(module.KnowledgeItem, module.KnowledgeItem.__name__)
        self._query_model = _flat_model(module.Query, module.Query.__name__)
        self._query_field = _single_str_field(module.Query)
        self._item_adapter = TypeAdapter(module.KnowledgeItem)
        self._query_adapter = TypeAdapter(module.Query)
        db = self.toolkit.db
        db.execute(f"CREATE TABLE IF NOT EXISTS {_SOURCES_TABLE} (text TEXT, dia_ids TEXT)")
        db.commit()
        self.mstar_toolkit = MStarToolkit(self.toolkit)
        try:
            self.kb = module.KnowledgeBase(self.mstar_toolkit)
        except Exception as exc:
            raise PluginError(f"M* program {self.name}: KnowledgeBase(toolkit) failed: {_one_line(exc)}") from exc

    # -- encode / store ---------------------------------------------------------------
    def observe(self, event: Event) -> None:
        if self._pending and self._pending[-1].session_id != event.session_id:
            self._flush()
        self._pending.append(event)

    def reflect(self, episode: Episode) -> None:
        self._flush()

    def close(self) -> None:
        self._flush()
        close = getattr(self.kb, "close", None)
        if callable(close):
            close()
        self.toolkit.close()

    def _flush(self) -> None:
        """The buffered session becomes one raw text (or, where it does not fit the context, its halves)."""
        events, self._pending = self._pending, []
        if events:
            self._ingest(events)

    def _ingest(self, events: list[Event]) -> None:
        """One raw text: one structured call for its item, one ``write``."""
        raw_text = session_text(events)
        try:
            item = self._extract(raw_text)
        except NoRoomForReply as exc:
            if len(events) > 1:
                half = len(events) // 2
                self.toolkit.logger.warning(
                    "M* %s: session %s (%d events) does not fit the model's context (%s): split into raw texts of "
                    "%d and %d events",
                    self.name,
                    events[0].session_id or "-",
                    len(events),
                    exc,
                    half,
                    len(events) - half,
                )
                self.toolkit.note("split", op="extract")
                self._ingest(events[:half])
                self._ingest(events[half:])
                return
            item, failure = None, f"{exc}"
        except (LLMError, ValueError) as exc:  # no valid item after the retries and the repair
            item, failure = None, f"{exc}"
        if item is None:
            self.toolkit.logger.warning(
                "M* %s: no knowledge item for session %s (%s): the raw text is written once with an item built from it",
                self.name,
                events[0].session_id or "-",
                failure,
            )
            self.toolkit.note("fallback", op="extract")
            item = self._item_from_raw_text(events, raw_text)
        self.kb.write(item, raw_text)
        self._remember_sources(item, events)

    def _extract(self, raw_text: str) -> Any:
        """The program's ``KnowledgeItem`` for ``raw_text``: one structured call with the item's own schema."""
        name = self._m.KnowledgeItem.__name__
        prompt = self.instructions(
            "knowledge_item", instruction=self._m.INSTRUCTION_KNOWLEDGE_ITEM.strip(), raw_text=raw_text, name=name
        )
        filled = self.toolkit.structured([{"role": "user", "content": prompt}], self._item_model, op="extract")
        return self._item_adapter.validate_python(filled.model_dump())

    def _item_from_raw_text(self, events: list[Event], raw_text: str) -> Any:
        """One ``KnowledgeItem`` made from the raw text itself, when the model gave none.

        Text fields hold the raw text, fields named for speakers the session's
        speakers, fields named for dates its date; fields of other types take
        their default, or an empty value of their type.
        """
        speakers = list(dict.fromkeys(e.speaker for e in events if e.speaker))
        when = session_date(events)
        hints = _field_types(self._m.KnowledgeItem)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self._m.KnowledgeItem):
            if not f.init:
                continue
            words = set(f.name.lower().split("_"))
            kind = _text_kind(hints.get(f.name, Any))
            if kind == "str":
                values[f.name] = (
                    ", ".join(speakers) if words & _SPEAKER_WORDS else when if words & _DATE_WORDS else raw_text
                )
            elif kind == "list[str]":
                values[f.name] = speakers if words & _SPEAKER_WORDS else [when] if words & _DATE_WORDS else [raw_text]
            elif f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            else:
                values[f.name] = _empty_value(hints.get(f.name, Any))
        return self._m.KnowledgeItem(**values)

    def _remember_sources(self, item: Any, events: list[Event]) -> None:
        """Which dialogue turns a recalled line came from: each event's own line, and the item's text."""
        rows: list[tuple[str, str]] = []
        all_ids = [str(e.metadata["dia_id"]) for e in events if "dia_id" in e.metadata]
        for event in events:
            if "dia_id" in event.metadata and len(event.content) >= 12:
                rows.append((event.content, json.dumps([str(event.metadata["dia_id"])])))
        if all_ids and dataclasses.is_dataclass(item) and not isinstance(item, type):
            texts = [v for v in _strings(dataclasses.asdict(item)) if len(v) >= 12]
            rows.extend((t, json.dumps(all_ids)) for t in texts if "\n" not in t)
        if rows:
            self.toolkit.db.executemany(f"INSERT INTO {_SOURCES_TABLE} (text, dia_ids) VALUES (?, ?)", rows)
            self.toolkit.db.commit()

    # -- retrieve -------------------------------------------------------------------------
    def recall(self, query: Query) -> Recall:
        self._flush()
        if query.budget_tokens == 0:
            return Recall(plugin=self.name)
        mquery = self._make_query(query.text)
        found = self.kb.read(mquery)
        found = "" if found is None else str(found)
        always = self._m.ALWAYS_ON_KNOWLEDGE.strip()
        full = "\n".join(part for part in (always, found.strip()) if part)
        context = truncate_to_tokens(full, query.budget_tokens)
        lines = [ln for ln in context.splitlines() if ln.strip()]
        dropped = len([ln for ln in full.splitlines() if ln.strip()]) - len(lines)
        sources = self._sources(lines)
        items = [
            RecallItem(
                content=ln,
                source=self.name,
                tokens=self.toolkit.count_tokens(ln),
                metadata={"dia_id": sources.get(ln, [])},
            )
            for ln in lines
        ]
        return Recall(
            items=items,
            omitted=max(dropped, 0),
            plugin=self.name,
            instructions=self.instructions(response=self._m.INSTRUCTION_RESPONSE.strip(), context=context),
        )

    def _make_query(self, text: str) -> Any:
        if self._query_field is not None:
            return self._m.Query(**{self._query_field: text})
        prompt = self.instructions(
            "query", instruction=self._m.INSTRUCTION_QUERY.strip(), question=text, name=self._m.Query.__name__
        )
        try:
            model = self.toolkit.structured([{"role": "user", "content": prompt}], self._query_model, op="query")
            return self._query_adapter.validate_python(model.model_dump())
        except (LLMError, ValueError) as exc:
            self.toolkit.logger.warning("M* %s: no Query from the model (%s): the question fills it", self.name, exc)
            self.toolkit.note("fallback", op="query")
            return self._query_from_text(text)

    def _query_from_text(self, text: str) -> Any:
        hints = _field_types(self._m.Query)
        values: dict[str, Any] = {}
        for f in dataclasses.fields(self._m.Query):
            if not f.init:
                continue
            kind = _text_kind(hints.get(f.name, Any))
            if kind == "str":
                values[f.name] = text
            elif kind == "list[str]":
                values[f.name] = [text]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                values[f.name] = _empty_value(hints.get(f.name, Any))
        return self._m.Query(**values)

    def _sources(self, lines: list[str]) -> dict[str, list[str]]:
        """Per recalled line, the dia_ids of the turns whose text (or whose item's text) appears in it."""
        rows = self.toolkit.db.execute(f"SELECT text, dia_ids FROM {_SOURCES_TABLE}").fetchall()
        out: dict[str, list[str]] = {}
        for line in lines:
            ids: list[str] = []
            for text, dia in rows:
                if text in line:
                    ids.extend(i for i in json.loads(dia) if i not in ids)
            if ids:
                out[line] = ids
        return out


def mstar_program_class(module: ModuleType, name: str | None = None) -> type[MemoryProgram]:
    """A MemoryProgram class running the M*-format program ``module`` (validated first)."""
    label = name or getattr(module, "__name__", "module").rsplit(".", 1)[-1]
    where = getattr(module, "__file__", None) or label
    _validate(module, str(where))
    doc = (inspect.getdoc(module) or "").strip().splitlines()
    attrs = {
        "name": label,
        "module": module,
        "__doc__": doc[0] if doc else f"M*-format memory program {label}",
        "__module__": getattr(module, "__name__", __name__),
    }
    return type(f"MStar_{_ident(label)}", (MStarProgram,), attrs)


def session_date(events: list[Event]) -> str:
    """The session's date as the data gives it (``date_time`` metadata), else its first event's timestamp."""
    for event in events:
        when = event.metadata.get("date_time")
        if when:
            return str(when)
    return events[0].timestamp.strftime("%Y-%m-%d %H:%M") if events else ""


def session_text(events: list[Event]) -> str:
    """M*'s raw text of a session: its date in brackets, then one ``Speaker: text`` line per event."""
    lines = [f"{e.speaker}: {e.content}" if e.speaker else e.content for e in events]
    return f"[{session_date(events)}]\n" + "\n".join(lines)


_SPEAKER_WORDS = {"speaker", "speakers", "who", "author", "authors", "person", "people", "participants", "user"}
_DATE_WORDS = {"date", "dates", "time", "when", "day", "datetime", "timestamp"}


def _text_kind(hint: Any) -> str:
    """``"str"``, ``"list[str]"`` or ``""`` for a field's type (``Optional`` looked through)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _text_kind(args[0]) if len(args) == 1 else ""
    if hint is str:
        return "str"
    if origin in (list, tuple, set) and typing.get_args(hint)[:1] == (str,):
        return "list[str]"
    return ""


def _empty_value(hint: Any) -> Any:
    """An empty value of a field's type, for items and queries built without the model."""
    origin = typing.get_origin(hint) or hint
    empties: dict[Any, Any] = {int: 0, float: 0.0, bool: False, list: [], dict: {}, set: set(), tuple: ()}
    return empties.get(origin)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _ident(text: str) -> str:
    out = "".join(c if c.isalnum() else "_" for c in text)
    return out or "program"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
