"""Pack: recalled items into the query's token budget, by score, shown in a declared order.

The budget is a hard limit, and a recall says what it cut: the packer takes
candidates best first, keeps each one that still fits (or, as a contiguous
window, stops at the first that does not), counts those it left out, and
presents what it kept in the order the program declares - best first
(``score``), best last (``score-last``: the best match nearest what follows
the memory block) or in time / transcript order (``position``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from agentmem.modules import Module, NoParams
from agentmem.store import StoredItem
from agentmem.tokens import count_tokens
from agentmem.types import RecallItem

__all__ = ["Candidate", "Packed", "Packer", "candidate"]

Order = Literal["score", "score-last", "position", "given"]


@dataclass
class Candidate:
    """An item that may be recalled, and where it sits in time or in the transcript (``position``)."""

    item: RecallItem
    position: float = 0.0


def candidate(
    item: StoredItem, content: str, score: float, source: str, *, position: float | None = None, **metadata: Any
) -> Candidate:
    """A stored item as a recall candidate: shown as ``content``, with its source events and its id
    (``metadata["item_id"]``, what ``forget`` takes); placed by its ``seq`` unless ``position`` says otherwise."""
    return Candidate(
        RecallItem(
            content=content,
            score=round(score, 4),
            source=source,
            event_ids=item.event_ids,
            metadata={"item_id": item.id, **metadata},
        ),
        float(item.seq if position is None else position),
    )


class Packed(NamedTuple):
    """What fit the budget (``tokens`` filled in, in the declared order) and how many candidates did not."""

    items: list[RecallItem]
    omitted: int

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)


#: the extra cost of adding a candidate given those already kept (headers, separators), beyond its own tokens
ExtraCost = Callable[[Candidate, Sequence[Candidate]], int]


class Packer(Module[Any]):
    """Candidates into a token budget.

    Candidates are considered best first (``rank="score"``) or as given
    (``rank="given"``: the caller's order, a member's own ranking). ``order``
    is how kept items are presented: ``score`` (best first), ``score-last``
    (best last), ``position`` (ascending: oldest first, transcript order) or
    ``given``. ``contiguous`` takes candidates as given and stops at the first
    that does not fit (a window of the newest events, say) instead of skipping
    it and trying the next. ``limit`` caps how many are kept.
    """

    name = "packer"
    kind = "packer"
    Params = NoParams

    def __init__(
        self,
        order: Order = "score",
        *,
        rank: Literal["score", "given"] = "score",
        contiguous: bool = False,
        limit: int | None = None,
    ) -> None:
        super().__init__()
        self.order = order
        self.rank = "given" if contiguous else rank
        self.contiguous = contiguous
        self.limit = limit

    def pack(self, candidates: Iterable[Candidate], budget: int, *, extra: ExtraCost | None = None) -> Packed:
        """Keep the best candidates that fit ``budget`` tokens; ``extra`` adds per-candidate overhead."""
        ranked = candidates if self.rank == "given" else sorted(candidates, key=lambda c: -c.item.score)
        kept: list[Candidate] = []
        used = omitted = 0
        for cand in ranked:
            if self.limit is not None and len(kept) >= self.limit:
                if self.contiguous:
                    break
                omitted += 1
                continue
            tokens = count_tokens(cand.item.content)
            cost = tokens + (extra(cand, kept) if extra else 0)
            if used + cost > budget:
                if self.contiguous:
                    break
                omitted += 1
                continue
            used += cost
            kept.append(Candidate(cand.item.model_copy(update={"tokens": tokens}), cand.position))
        if self.order == "position":
            kept.sort(key=lambda c: c.position)
        elif self.order == "score" and self.rank == "given":
            kept.sort(key=lambda c: -c.item.score)
        elif self.order == "score-last":
            kept.sort(key=lambda c: c.item.score)  # stable: equal scores keep the order they were kept in
        return Packed([c.item for c in kept], omitted)

    def __repr__(self) -> str:
        return f"Packer(order={self.order!r}, rank={self.rank!r}, contiguous={self.contiguous}, limit={self.limit})"
