"""The memory program protocol: what every plugin ships and evolution rewrites.

A memory program has three parts (after M*):

* **schema** - pydantic models for what it stores (``Item``) and its tunable
  knobs (``Params``, whose field bounds are the search space that structured
  mutation explores without a code-writing LLM);
* **logic** - the lifecycle ``observe`` / ``recall`` / ``reflect``;
* **instructions** - Jinja2 templates telling the agent how to use recalled
  context (``templates``), rendered with :meth:`MemoryProgram.instructions`.

A program reaches the world only through the :class:`~agentmem.toolkit.Toolkit`
it is given, which is what makes it portable, sandboxable and measurable.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import lru_cache
from typing import Any, ClassVar

import jinja2
from pydantic import BaseModel, ConfigDict

from agentmem.toolkit import Toolkit
from agentmem.types import Episode, Event, Query, Recall

_JINJA = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


@lru_cache(maxsize=512)
def _compiled(source: str) -> jinja2.Template:
    """Templates are compiled once per source text: recall renders one on every call."""
    return _JINJA.from_string(source)


class NoParams(BaseModel):
    """Parameters of a program that declares none."""

    model_config = ConfigDict(extra="forbid")


class MemoryProgram(ABC):
    """Base class of every memory plugin.

    Subclasses set ``name``, optionally ``Params`` and ``templates``, and
    implement :meth:`recall` (and usually :meth:`observe` and :meth:`reflect`).
    The default ``templates["usage"]`` tells the answering agent how to use
    the recalled context; override it to change how the agent reads memory.
    """

    name: ClassVar[str] = ""
    Params: ClassVar[type[BaseModel]] = NoParams
    templates: ClassVar[dict[str, str]] = {
        "usage": "Relevant memories, oldest first, each with its date:\n{{ context }}",
    }

    def __init__(self, toolkit: Toolkit, params: BaseModel | dict[str, Any] | None = None) -> None:
        self.toolkit = toolkit
        if isinstance(params, BaseModel):
            params = params.model_dump()
        self.params = self.Params.model_validate(params or {})

    # -- lifecycle -------------------------------------------------------
    def observe(self, event: Event) -> None:
        """Take in one event (message, tool call, observation, outcome)."""

    @abstractmethod
    def recall(self, query: Query) -> Recall:
        """Return context for the next step within ``query.budget_tokens``."""

    def reflect(self, episode: Episode) -> None:
        """End of a session or episode: consolidate, distil, prune."""

    def close(self) -> None:
        """Release resources (files, connections). Stored data stays."""

    # -- instructions ----------------------------------------------------
    def instructions(self, template: str = "usage", **context: Any) -> str:
        """Render one of the program's Jinja2 instruction templates."""
        source = self.templates.get(template)
        if source is None:
            return ""
        return _compiled(source).render(params=self.params, **context)

    def __enter__(self) -> "MemoryProgram":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
