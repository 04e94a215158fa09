"""The memory program protocol: what every plugin ships and evolution rewrites.

A memory program has three parts (after M*):

* **schema** - pydantic models for what it stores (``Item``) and its tunable
  knobs (``Params``, whose field bounds are the search space that structured
  mutation explores without a code-writing LLM);
* **logic** - the lifecycle ``observe`` / ``recall`` / ``reflect``, usually a
  composition of the core modules (a :class:`~agentmem.store.Store`,
  retrievers, a packer, managers) plus the program's own idea;
* **instructions** - Jinja2 templates telling the agent how to use recalled
  context (``templates``), rendered with :meth:`MemoryProgram.instructions`.

A program reaches the world only through the :class:`~agentmem.toolkit.Toolkit`
it is given, which is what makes it portable, sandboxable and measurable.

``MemoryProgram[MyParams]`` types ``self.params`` for the checker (and sets
``Params`` when the class does not). :meth:`MemoryProgram.close` always
closes what the base opened (stores, buffers, the toolkit's database) even
when a subclass overrides ``close`` and forgets to call ``super().close()``,
and a program dropped without ``close`` still has its writes committed, so
no plugin loses data by forgetting a call.
"""

from __future__ import annotations

import functools
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, get_args, get_origin

import jinja2
from pydantic import BaseModel

from agentmem.modules import NoParams
from agentmem.toolkit import Toolkit
from agentmem.types import Episode, Event, Query, Recall

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.encode import EventBuffer
    from agentmem.packer import Packed
    from agentmem.store import Store

__all__ = ["Forgets", "MemoryProgram", "NoParams"]

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)

P = TypeVar("P", bound=BaseModel)


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    """Templates are compiled once per source text: recall renders one on every call."""
    return _JINJA.from_string(source)


class _Closable(Protocol):
    def close(self) -> None: ...


class MemoryProgram(ABC, Generic[P]):
    """Base class of every memory plugin.

    Subclasses set ``name``, optionally ``Params`` (or name it as the generic
    argument: ``class Notes(MemoryProgram[NotesParams])``) and ``templates``,
    and implement :meth:`recall` (and usually :meth:`observe` and
    :meth:`reflect`). The default ``templates["usage"]`` tells the answering
    agent how to use the recalled context; override it to change how the
    agent reads memory.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    templates: ClassVar[dict[str, str]] = {
        "usage": "Relevant memories, oldest first, each with its date:\n{{ context }}",
    }
    params: P

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Params" not in cls.__dict__:
            for base in cls.__dict__.get("__orig_bases__", ()):
                args = get_args(base)
                origin = get_origin(base)
                if (
                    args
                    and isinstance(origin, type)
                    and issubclass(origin, MemoryProgram)
                    and isinstance(args[0], type)
                    and issubclass(args[0], BaseModel)
                ):
                    cls.Params = args[0]
                    break
        own = cls.__dict__.get("close")
        if own is not None and not getattr(own, "_closes_base", False):
            cls.close = _closing_base(own)  # type: ignore[method-assign]

    def __init__(self, toolkit: Toolkit, params: BaseModel | dict[str, Any] | None = None) -> None:
        self.toolkit = toolkit
        if isinstance(params, BaseModel):
            params = params.model_dump()
        self.params = self.Params.model_validate(params or {})  # type: ignore[assignment]
        self._opened: list[_Closable] = []
        # a program dropped without close() (or a process that exits) still commits what it wrote
        self._commit_on_drop = weakref.finalize(self, toolkit.close) if toolkit is not None else None

    # -- lifecycle -------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Take in one event (message, tool call, observation, outcome)."""

    @abstractmethod
    def recall(self, query: Query) -> Recall:
        """Return context for the next step within ``query.budget_tokens``."""

    def reflect(self, episode: Episode) -> None:
        """End of a session or episode: consolidate, distil, prune."""

    def close(self) -> None:
        """Release resources (stores, buffers, the database); stored data stays.

        A subclass may override it for its own resources: the base's part
        runs after the override whether or not it calls ``super().close()``.
        """
        self._close_base()

    def _close_base(self) -> None:
        for resource in reversed(getattr(self, "_opened", [])):
            resource.close()
        if getattr(self, "_opened", None):
            self._opened.clear()
        toolkit = getattr(self, "toolkit", None)
        if toolkit is not None:
            toolkit.close()

    # -- core modules the base opens (and closes) ----------------------------
    def open_store(self, name: str, **options: Any) -> Store:
        """A :class:`~agentmem.store.Store` of this program and scope, closed with the program."""
        from agentmem.store import Store

        store = Store(self.toolkit, name, **options)
        self._opened.append(store)
        return store

    def open_buffer(self, name: str = "pending", **options: Any) -> EventBuffer:
        """An :class:`~agentmem.encode.EventBuffer` (events kept in SQLite until processed), closed with the program."""
        from agentmem.encode import EventBuffer

        buffer = EventBuffer(self.toolkit, name, **options)
        self._opened.append(buffer)
        return buffer

    def recalled(self, packed: Packed, *, template: str = "usage", **context: Any) -> Recall:
        """The :class:`Recall` of packed items, with the ``usage`` instructions rendered around them."""
        items = packed.items
        text = "\n".join(i.content for i in items)
        context.setdefault("context", text)
        context.setdefault("omitted", packed.omitted)
        return Recall(
            items=items,
            omitted=packed.omitted,
            plugin=self.name,
            instructions=self.instructions(template, **context) if items else "",
        )

    # -- instructions ----------------------------------------------------
    def instructions(self, template: str = "usage", **context: Any) -> str:
        """Render one of the program's Jinja2 instruction templates."""
        source = self.templates.get(template)
        if source is None:
            return ""
        return _compiled(source).render(params=self.params, **context)

    def __enter__(self) -> MemoryProgram[P]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _closing_base(own: Callable[..., None]) -> Callable[..., None]:
    """``own`` (a subclass's close), followed by the base's close however ``own`` ends."""

    @functools.wraps(own)
    def close(self: MemoryProgram[Any]) -> None:
        try:
            own(self)
        finally:
            MemoryProgram._close_base(self)

    close._closes_base = True  # type: ignore[attr-defined]
    return close


class Forgets(ABC):
    """The capability to forget: a program that can remove one item by id declares it by subclassing this.

    ``forget`` takes the id a recall gave the item (``RecallItem.metadata["item_id"]``)
    and returns whether this program owned it; an id that is not its own is
    ``False``, never an exception, so a caller can offer the id to every
    member of a composition and count who forgot it.
    """

    @abstractmethod
    def forget(self, item_id: str) -> bool:
        """Remove ``item_id`` from recall (its history may stay); ``True`` when it was this program's."""
