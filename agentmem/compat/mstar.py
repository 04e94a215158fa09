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
:class:`~agentmem.memory.MemoryProgram`:

* ``observe`` buffers events; at the end of a session (``reflect``), when
  the session changes, or before a recall, the buffer is cut into chunks of
  ``chunk_turns`` events and the LLM fills a list of ``KnowledgeItem`` s per
  chunk (one metered call each, JSON constrained to a schema built from the
  dataclass fields, instructed by ``INSTRUCTION_KNOWLEDGE_ITEM``); each item
  is written with ``raw_text`` = the chunk's events as text. If the model
  fails to give valid JSON, one item per event is filled from the event
  itself so that nothing observed is lost.
* ``recall`` fills a ``Query``: when the dataclass has one ``str`` field
  it is the question text itself (no LLM call: small models write poor
  queries), otherwise the LLM fills it with ``INSTRUCTION_QUERY``. It calls
  ``read``, puts ``ALWAYS_ON_KNOWLEDGE`` first, truncates to the token budget
  and returns a Recall whose ``instructions`` start with
  ``INSTRUCTION_RESPONSE``.

The toolkit the program receives (:class:`MStarToolkit`) has ``db`` (the
program's sqlite3 connection in its scope), ``chroma``, ``llm_completion``
(one metered call, operation ``mstar``) and ``logger``. ``chroma`` is a
ChromaDB **collection** (cosine space, embedded with agentmem's sentence
embedder): M*'s summary gives programs "ChromaDB" without more, and a
collection is what its seed programs add to and query. Programs written
against a ChromaDB *client* work too: ``chroma.get_or_create_collection(name)``
(and ``get_collection`` / ``create_collection``) return another collection of
the same scope.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import typing
from types import ModuleType
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from agentmem.errors import LLMError, PluginError
from agentmem.memory import MemoryProgram
from agentmem.tokens import truncate_to_tokens
from agentmem.types import Episode, Event, Query, Recall, RecallItem

__all__ = ["MStarParams", "MStarProgram", "MStarToolkit", "is_mstar_module", "mstar_program_class"]

CONSTANTS = ("INSTRUCTION_KNOWLEDGE_ITEM", "INSTRUCTION_QUERY", "INSTRUCTION_RESPONSE", "ALWAYS_ON_KNOWLEDGE")
DATACLASSES = ("KnowledgeItem", "Query")
_SOURCES_TABLE = "agentmem_mstar_sources"


class MStarParams(BaseModel):
    """Knobs of the M* adapter (the program's own logic has none that agentmem sees)."""

    model_config = ConfigDict(extra="forbid")

    chunk_turns: int = Field(7, ge=1, le=64, description="events turned into knowledge items by one LLM call")


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
            f"M* memory program {where} is malformed: {'; '.join(problems)}; "
            "see agentmem.compat.mstar for the format"
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
    """A pydantic model with the dataclass's fields (for a schema the LLM fills)."""
    hints = _field_types(dc)
    fields: dict[str, Any] = {}
    for f in dataclasses.fields(dc):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default: Any = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = Field(default_factory=f.default_factory)
        else:
            default = ...
        fields[f.name] = (hints.get(f.name, Any), default)
    return create_model(name, **fields)


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
    templates: ClassVar[dict[str, str]] = {"usage": "{{ response }}\n\n{{ context }}"}

    def __init__(self, toolkit: Any, params: Any = None) -> None:
        super().__init__(toolkit, params)
        module = self.module
        if module is None:
            raise PluginError("MStarProgram is a base class: wrap an M* module with mstar_program_class(module)")
        self._m = module
        self._pending: list[Event] = []
        self._items_model = create_model(
            "KnowledgeItems", items=(list[module.KnowledgeItem], Field(default_factory=list))  # type: ignore[valid-type]
        )
        self._query_model = _flat_model(module.Query, "Query")
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
        events, self._pending = self._pending, []
        size = self.params.chunk_turns
        for start in range(0, len(events), size):
            self._encode(events[start : start + size])

    def _encode(self, events: list[Event]) -> None:
        raw_text = "\n".join(_line(e) for e in events)
        items = self._extract(raw_text, events)
        dia_ids = [str(e.metadata["dia_id"]) for e in events if "dia_id" in e.metadata]
        db = self.toolkit.db
        for item in items:
            self.kb.write(item, raw_text)
            texts = [v for v in _strings(dataclasses.asdict(item)) if len(v) >= 12]
            if dia_ids and texts:
                db.executemany(
                    f"INSERT INTO {_SOURCES_TABLE} (text, dia_ids) VALUES (?, ?)",
                    [(t, json.dumps(dia_ids)) for t in texts],
                )
        db.commit()

    def _extract(self, raw_text: str, events: list[Event]) -> list[Any]:
        messages = [
            {"role": "system", "content": self._m.INSTRUCTION_KNOWLEDGE_ITEM},
            {
                "role": "user",
                "content": f"{raw_text}\n\nFill a list of {self._m.KnowledgeItem.__name__} objects, "
                "one per piece of knowledge worth remembering from the text above.",
            },
        ]
        try:
            parsed = self.toolkit.structured(messages, self._items_model, op="mstar.extract")
            items = [i for i in parsed.items if i is not None]  # type: ignore[attr-defined]
        except (LLMError, ValueError) as exc:  # no valid JSON even after the repair attempt
            self.toolkit.logger.warning("M* extraction failed, storing events as they are: %s", exc)
            items = []
        return items or self._fallback_items(events)

    def _fallback_items(self, events: list[Event]) -> list[Any]:
        """One item per event, filled from the event itself (no data lost when the LLM fails)."""
        out = []
        for event in events:
            when = str(event.metadata.get("date_time") or event.timestamp.strftime("%Y-%m-%d %H:%M"))
            values: dict[str, Any] = {}
            for f in dataclasses.fields(self._m.KnowledgeItem):
                lowered = f.name.lower()
                if any(k in lowered for k in ("speaker", "who", "author", "person", "user")):
                    values[f.name] = event.speaker or ""
                elif any(k in lowered for k in ("date", "time", "when")):
                    values[f.name] = when
                else:
                    values[f.name] = event.content
            try:
                out.append(self._item_adapter.validate_python(values))
            except Exception:  # fields that are not text: nothing sensible to fill
                continue
        return out

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
        sources = self._sources(context)
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
        messages = [
            {"role": "system", "content": self._m.INSTRUCTION_QUERY},
            {"role": "user", "content": f"Question: {text}\n\nFill the {self._m.Query.__name__} object for it."},
        ]
        model = self.toolkit.structured(messages, self._query_model, op="mstar.query")
        return self._query_adapter.validate_python(model.model_dump())

    def _sources(self, context: str) -> dict[str, list[str]]:
        """Per recalled line, the dia_ids of events whose extracted text appears in it."""
        rows = self.toolkit.db.execute(f"SELECT text, dia_ids FROM {_SOURCES_TABLE}").fetchall()
        out: dict[str, list[str]] = {}
        for line in context.splitlines():
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


def _line(event: Event) -> str:
    when = str(event.metadata.get("date_time") or event.timestamp.strftime("%Y-%m-%d %H:%M"))
    who = f"{event.speaker}: " if event.speaker else ""
    return f"[{when}] {who}{event.content}"


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
