"""The core packer: items into a token budget by score, what was cut counted, shown in a declared order."""

from __future__ import annotations

from agentmem.packer import Candidate, Packer
from agentmem.tokens import count_tokens
from agentmem.types import RecallItem


def _cands(*specs: tuple[str, float, float]) -> list[Candidate]:
    return [Candidate(RecallItem(content=text, score=score), position) for text, score, position in specs]


CANDS = _cands(
    ("alpha beta gamma delta epsilon zeta", 0.2, 1.0),  # 7 tokens ("epsilon" is two pieces)
    ("one two", 0.9, 3.0),  # 2 tokens
    ("three four five", 0.5, 2.0),  # 3 tokens
)


def test_best_first_skipping_what_does_not_fit_and_counting_it():
    packed = Packer().pack(CANDS, 6)  # 2 + 3 fit; the 7-token one does not
    assert [i.content for i in packed.items] == ["one two", "three four five"] and packed.omitted == 1
    assert all(i.tokens == count_tokens(i.content) for i in packed.items) and packed.tokens == 5


def test_presented_by_position():
    packed = Packer(order="position").pack(CANDS, 100)
    assert [i.content for i in packed.items] == ["alpha beta gamma delta epsilon zeta", "three four five", "one two"]


def test_presented_best_last():
    packed = Packer(order="score-last").pack(_cands(("a", 0.5, 1.0), ("b", 0.9, 2.0), ("c", 0.2, 3.0)), 100)
    assert [i.content for i in packed.items] == ["c", "a", "b"]


def test_a_contiguous_window_stops_at_the_first_miss():
    newest_first = _cands(("new one", 1, 3), ("a much longer middle event here", 1, 2), ("old", 1, 1))
    packed = Packer(order="position", contiguous=True).pack(newest_first, 4)
    assert [i.content for i in packed.items] == ["new one"] and packed.omitted == 0  # the caller knows the total


def test_limit_extra_cost_and_given_rank():
    assert len(Packer(limit=1).pack(CANDS, 100).items) == 1
    assert Packer(limit=1).pack(CANDS, 100).omitted == 2
    # two tokens of overhead per item: only the best fits in 5
    assert [i.content for i in Packer().pack(CANDS, 5, extra=lambda c, kept: 2).items] == ["one two"]
    given = Packer(order="given", rank="given").pack(CANDS, 9)
    assert [i.content for i in given.items] == ["alpha beta gamma delta epsilon zeta", "one two"] and given.omitted == 1
    assert Packer().pack(CANDS, 0).items == [] and Packer().pack(CANDS, 0).omitted == 3
