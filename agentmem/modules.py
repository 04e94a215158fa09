"""The unit of the memory design space: a module with declared, bounded parameters.

A memory program is a composition of four kinds of module (after
MemEvolve's encode / store / retrieve / manage decomposition): the store
(:mod:`agentmem.store`), retrievers and retrieval stages
(:mod:`agentmem.retrievers`), the packer (:mod:`agentmem.packer`) and
managers (:mod:`agentmem.managers`). Each module declares its knobs as a
pydantic ``Params`` model whose field bounds are the space evolution
searches; a program's own ``Params`` is the union of its modules' fields
plus its own, so ``Module.from_params(program.params)`` configures a module
from the program's knobs by field name. Modules register themselves by
``name`` so that configuration (and evolution's structural operators) can
swap one for another.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Generic, Self, TypeVar

from pydantic import BaseModel, ConfigDict

from agentmem.errors import ConfigError

__all__ = ["Module", "NoParams", "module_class", "modules"]


class NoParams(BaseModel):
    """Parameters of a program or module that declares none."""

    model_config = ConfigDict(extra="forbid")


MP = TypeVar("MP", bound=BaseModel)

_REGISTRY: dict[str, type[Module[Any]]] = {}


class Module(Generic[MP]):
    """A piece of memory machinery: one job, a few bounded knobs (``Params``), swappable by ``name``.

    ``kind`` groups interchangeable modules (``retriever``, ``stage``,
    ``manager``, ...): a configuration may replace a module by any other of
    its kind.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    params: MP

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def __init__(self, params: BaseModel | Mapping[str, Any] | None = None, **values: Any) -> None:
        given = params.model_dump() if isinstance(params, BaseModel) else dict(params or {})
        self.params = self.Params.model_validate({**given, **values})  # type: ignore[assignment]

    @classmethod
    def from_params(cls, params: BaseModel | Mapping[str, Any], **values: Any) -> Self:
        """This module configured from a program's ``Params``: the fields it declares, taken by name."""
        given = params.model_dump() if isinstance(params, BaseModel) else dict(params)
        mine = {k: v for k, v in given.items() if k in cls.Params.model_fields}
        return cls(mine, **values)

    def __repr__(self) -> str:
        knobs = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{type(self).__name__}({knobs})"


def modules(kind: str | None = None) -> dict[str, type[Module[Any]]]:
    """Every registered module (of ``kind``), by name."""
    return {n: c for n, c in sorted(_REGISTRY.items()) if kind is None or c.kind == kind}


def module_class(name: str, kind: str | None = None) -> type[Module[Any]]:
    """The module registered as ``name`` (of ``kind``); a one-line error names the choices."""
    found = _REGISTRY.get(name)
    if found is None or (kind is not None and found.kind != kind):
        choices = ", ".join(modules(kind)) or "none"
        raise ConfigError(f"no {kind or 'memory'} module named '{name}'; choose one of: {choices}")
    return found
