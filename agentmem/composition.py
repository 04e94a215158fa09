"""Several memory programs behind one: fan-out, budget split, merged recall, optional routing.

``ComposedMemory([episodic, procedural])`` behaves like one memory program:
``observe`` and ``reflect`` go to every member; ``recall`` asks the members
(all of them, or those a :class:`Router` picks for the query) with the token
budget split by weight, then hands the budget a member left unused to the
members that reported matches they had to cut (``omitted > 0``) in a second
pass, so no budget is wasted while something relevant was left out. The
merged :class:`~agentmem.types.Recall` keeps each item's ``source``, and the
per-member recalls of the last query stay readable in ``last_recalls`` (the
chat inspector shows them).

Routing follows MemFlow's intent tiers: a cheap, LLM-free classification of
the query (procedure, profile, event) picks the memory families worth asking;
a member whose name belongs to no known family is always asked, and when no
member fits the intent, all are asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel

from agentmem.errors import ConfigError
from agentmem.memory import MemoryProgram, NoParams
from agentmem.packer import Candidate, Packer
from agentmem.types import Episode, Event, Query, Recall

__all__ = ["ComposedMemory", "IntentRouter", "Router", "split_budget"]


@runtime_checkable
class Router(Protocol):
    """Chooses which members to consult for a query (a subset of ``names``, in any order)."""

    def select(self, query: str, names: list[str]) -> list[str]: ...


class IntentRouter:
    """Keyword intent tiers after MemFlow: procedure -> procedural, profile -> semantic, events -> episodic.

    ``intents`` maps an intent to the query patterns (regular expressions,
    matched case-insensitively) that signal it; ``families`` maps an intent to
    name fragments of the memories that serve it. A query matching several
    intents consults the union of their families; one matching none consults
    every member. Members whose names match no family at all (third-party or
    evolved programs the router knows nothing about) are always consulted.
    """

    DEFAULT_INTENTS: ClassVar[dict[str, list[str]]] = {
        "procedure": [
            r"\bhow (do|can|should|would) (i|we|you)\b",
            r"\bhow to\b",
            r"\bsteps?\b",
            r"\bprocedure\b",
            r"\bworkflow\b",
            r"\bwhat should (i|we) do\b",
            r"\bbest way\b",
            r"\bstrategy\b",
            r"\bfix\b",
            r"\bsolve\b",
            r"\bplan\b",
        ],
        "profile": [
            r"\bprefer",
            r"\bfavou?rite\b",
            r"\b(do|does) (i|he|she|they) like\b",
            r"\ballerg",
            r"\bmy name\b",
            r"\bwho (am i|is)\b",
            r"\bwhere does .* live\b",
            r"\bidentity\b",
            r"\bhobb(y|ies)\b",
            r"\bjob\b",
        ],
        "event": [
            r"\bwhen\b",
            r"\bwhat did\b",
            r"\bwhat happened\b",
            r"\blast (time|week|month|year)\b",
            r"\bago\b",
            r"\byesterday\b",
            r"\bdate\b",
            r"\bbefore\b",
            r"\bafter\b",
            r"\bdid (i|we|he|she|they)\b",
        ],
    }
    DEFAULT_FAMILIES: ClassVar[dict[str, list[str]]] = {
        "procedure": ["procedural", "workflow", "skill", "hierarchical"],
        "profile": ["semantic", "profile", "fact"],
        "event": ["episodic", "semantic", "rag", "full-context", "hierarchical"],
    }

    def __init__(
        self,
        intents: dict[str, list[str]] | None = None,
        families: dict[str, list[str]] | None = None,
    ) -> None:
        self.intents = {
            k: [re.compile(p, re.IGNORECASE) for p in v] for k, v in (intents or self.DEFAULT_INTENTS).items()
        }
        self.families = families or dict(self.DEFAULT_FAMILIES)

    def intents_of(self, query: str) -> list[str]:
        """The intents a query signals (possibly none)."""
        return [intent for intent, patterns in self.intents.items() if any(p.search(query) for p in patterns)]

    def select(self, query: str, names: list[str]) -> list[str]:
        intents = self.intents_of(query)
        if not intents:
            return list(names)
        known = {frag for frags in self.families.values() for frag in frags}
        wanted = {frag for intent in intents for frag in self.families.get(intent, [])}
        chosen = [n for n in names if any(f in n.lower() for f in wanted) or not any(f in n.lower() for f in known)]
        # nobody serves this intent specifically: ask everyone rather than no one
        if not any(any(f in n.lower() for f in wanted) for n in chosen):
            return list(names)
        return chosen


def split_budget(budget: int, weights: list[float]) -> list[int]:
    """``budget`` split in proportion to ``weights``, in whole tokens that sum to ``budget``."""
    if not weights:
        return []
    total = sum(weights)
    if total <= 0:
        weights, total = [1.0] * len(weights), float(len(weights))
    exact = [budget * w / total for w in weights]
    shares = [int(x) for x in exact]
    # hand the rounding remainder to the largest fractional parts (ties: earlier members)
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in order[: budget - sum(shares)]:
        shares[i] += 1
    return shares


class ComposedMemory(MemoryProgram):
    """Several memory programs used as one: fan-out, weighted budget split, merged recall."""

    name: ClassVar[str] = "composed"
    Params: ClassVar[type[BaseModel]] = NoParams
    templates: ClassVar[dict[str, str]] = {}

    def __init__(
        self,
        programs: Iterable[MemoryProgram],
        *,
        weights: dict[str, float] | None = None,
        router: Router | None = None,
    ) -> None:
        # no toolkit of its own: every member has its own
        self.toolkit = None  # type: ignore[assignment]
        self.params = NoParams()
        self.programs: list[MemoryProgram] = list(programs)
        self.names: list[str] = _unique_names(self.programs)
        self.members: dict[str, MemoryProgram] = dict(zip(self.names, self.programs))
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(self.names))
        if unknown:
            raise ConfigError(
                f"memory weights name {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} not "
                f"composed here (members: {', '.join(self.names) or 'none'}); use the members' names"
            )
        bad = sorted(k for k, v in weights.items() if not v >= 0)
        if bad:
            raise ConfigError(f"memory weight of {', '.join(bad)} must be a number >= 0")
        self.weights: dict[str, float] = {n: float(weights.get(n, 1.0)) for n in self.names}
        self.router = router
        self.last_recalls: dict[str, Recall] = {}
        self.last_budgets: dict[str, int] = {}
        self.last_selected: list[str] = []

    @property
    def label(self) -> str:
        """The members' names joined by ``+`` (what results and the inspector show)."""
        return "+".join(self.names) or "none"

    # -- lifecycle: fan out ---------------------------------------------------------
    def observe(self, event: Event) -> None:
        for program in self.programs:
            program.observe(event)

    def reflect(self, episode: Episode) -> None:
        for program in self.programs:
            program.reflect(episode)

    def close(self) -> None:
        errors: list[BaseException] = []
        for program in self.programs:
            try:
                program.close()
            except Exception as exc:  # close every member even if one fails
                errors.append(exc)
        if errors:
            raise errors[0]

    # -- recall: split, redistribute, merge --------------------------------------------
    def select(self, query: Query) -> list[str]:
        """The members to consult for ``query`` (all, unless a router narrows them)."""
        if self.router is None or len(self.names) <= 1:
            return list(self.names)
        picked = set(self.router.select(query.text, list(self.names)))
        chosen = [n for n in self.names if n in picked]
        return chosen or list(self.names)

    def recall(self, query: Query) -> Recall:
        selected = self.select(query)
        weighted = [n for n in selected if self.weights[n] > 0] or selected
        budget = query.budget_tokens
        shares = dict(zip(weighted, split_budget(budget, [self.weights[n] for n in weighted])))
        recalls: dict[str, Recall] = {}
        for name in weighted:
            recalls[name] = self._ask(name, query, shares[name])
        # second pass: what the modest left unused goes to those that had to cut
        hungry = [n for n in weighted if recalls[n].omitted > 0]
        modest_used = sum(recalls[n].tokens for n in weighted if n not in hungry)
        leftover = budget - modest_used - sum(shares[n] for n in hungry)
        if leftover > 0 and hungry:
            extra = dict(zip(hungry, split_budget(leftover, [self.weights[n] or 1.0 for n in hungry])))
            for name in hungry:
                if extra[name] <= 0:
                    continue
                shares[name] += extra[name]
                recalls[name] = self._ask(name, query, shares[name])
        self.last_selected = weighted
        self.last_budgets = shares
        self.last_recalls = recalls
        return self.merge([recalls[n] for n in weighted], names=weighted)

    def _ask(self, name: str, query: Query, budget: int) -> Recall:
        """One member's recall at ``budget``, held to that budget and labelled with its source."""
        got = self.members[name].recall(query.model_copy(update={"budget_tokens": budget}))
        # a member that overspends is trimmed (its items recounted, in its own order), not trusted
        held = _TRIM.pack((Candidate(i.model_copy(update={"source": i.source or name})) for i in got.items), budget)
        if held.omitted:
            return got.model_copy(
                update={"items": held.items, "omitted": got.omitted + held.omitted, "instructions": ""}
            )
        return got.model_copy(update={"items": held.items, "plugin": got.plugin or name})

    def merge(self, recalls: list[Recall], names: list[str] | None = None) -> Recall:
        """One Recall from several: items in member order (each keeps its ``source``), omissions summed."""
        names = names or [r.plugin for r in recalls]
        blocks = [r.block() for r in recalls if r.items]
        return Recall(
            items=[item for r in recalls for item in r.items],
            omitted=sum(r.omitted for r in recalls),
            plugin="+".join(names),
            instructions="\n\n".join(b for b in blocks if b),
        )

    def instructions(self, template: str = "usage", **context: Any) -> str:
        return "\n\n".join(p.instructions(template, **context) for p in self.programs if p.templates.get(template))

    def __repr__(self) -> str:
        return f"ComposedMemory({self.label}, weights={self.weights})"


_TRIM = Packer(order="given", rank="given")


def _unique_names(programs: list[MemoryProgram]) -> list[str]:
    """Each member's ``name`` (class name if empty), with ``#2``, ``#3`` for repeats."""
    seen: dict[str, int] = {}
    out: list[str] = []
    for program in programs:
        base = getattr(program, "name", "") or type(program).__name__
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return out
