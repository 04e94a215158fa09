"""Selection strategies on constructed pools: each keeps the programs its design says it keeps."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agentmem_evolve.config import SelectionConfig
from agentmem_evolve.selection import (
    IslandsSelection,
    MapElitesSelection,
    ParetoSelection,
    Scored,
    SelectionStrategy,
    SoftmaxSelection,
    dominates,
    make_strategy,
    pareto_frontier,
)


def s(pid: str, score: float, tokens: float = 100.0, seconds: float = 1.0, island: int = 0, per=None, **desc) -> Scored:
    return Scored(
        program_id=pid,
        score=score,
        tokens=tokens,
        seconds=seconds,
        island=island,
        per_instance=per or {},
        descriptors={"tokens": tokens, **desc},
    )


def draws(strategy, pool, n=400, k=1, seed=0, iteration=0):
    rng = random.Random(seed)
    return Counter(pid for _ in range(n) for pid in strategy.select(pool, rng, k, iteration=iteration))


# -- softmax ----------------------------------------------------------------------------
def test_softmax_prefers_the_higher_score_at_low_temperature():
    pool = [s("low", 0.3), s("mid", 0.5), s("high", 0.6)]
    cold = draws(SoftmaxSelection(0.02), pool)
    assert cold["high"] > 0.98 * 400
    warm = draws(SoftmaxSelection(5.0), pool)
    assert min(warm.values()) > 80  # near uniform
    # weights follow exp((score - best) / T)
    assert SoftmaxSelection(0.1).weights(pool) == pytest.approx([pytest.approx(2.718281828**-3), 2.718281828**-1, 1.0])


def test_softmax_returns_distinct_parents_and_fewer_when_the_pool_is_small():
    pool = [s("a", 0.1), s("b", 0.9)]
    rng = random.Random(1)
    picked = SoftmaxSelection(0.05).select(pool, rng, 5, iteration=0)
    assert sorted(picked) == ["a", "b"]
    assert SoftmaxSelection(0.05).select([], rng, 2, iteration=0) == []
    only_top = SoftmaxSelection(10.0, population=1)
    assert set(draws(only_top, pool)) == {"b"}


# -- MAP-Elites -------------------------------------------------------------------------
def test_map_elites_keeps_one_elite_per_cell():
    pool = [
        # cheap, few items: two programs compete for the cell, the better one stays
        s("cheap_a", 0.2, tokens=10, recall_items=1),
        s("cheap_b", 0.4, tokens=11, recall_items=1),
        # expensive, many items
        s("rich_a", 0.9, tokens=10_000, recall_items=20),
        s("rich_b", 0.5, tokens=9_000, recall_items=19),
        # expensive, few items
        s("odd", 0.1, tokens=10_000, recall_items=1),
    ]
    strategy = MapElitesSelection(["tokens", "recall_items"], bins=2)
    elites = strategy.elites(pool)
    assert sorted(e.program_id for e in elites.values()) == ["cheap_b", "odd", "rich_a"]
    assert len(elites) == len(set(elites))
    counts = draws(strategy, pool, n=600)
    assert set(counts) == {"cheap_b", "odd", "rich_a"}
    assert min(counts.values()) > 150  # uniform over occupied cells, not over scores
    assert sorted(strategy.select(pool, random.Random(0), 10, iteration=0)) == ["cheap_b", "odd", "rich_a"]


def test_a_missing_descriptor_collapses_its_axis_instead_of_failing():
    pool = [s("a", 0.2, tokens=1), s("b", 0.3, tokens=1000)]
    elites = MapElitesSelection(["tokens", "not_reported"], bins=3).elites(pool)
    assert sorted(e.program_id for e in elites.values()) == ["a", "b"]


# -- islands ----------------------------------------------------------------------------
def island_pool():
    return [
        s("i0_best", 0.8, island=0),
        s("i0_other", 0.3, tokens=5000, island=0),
        s("i1_best", 0.6, island=1),
        s("i1_other", 0.2, tokens=5000, island=1),
    ]


def test_islands_evolve_separately_until_migration():
    strategy = IslandsSelection(islands=2, migration_interval=3, descriptors=["tokens"], bins=2, exploitation=1.0)
    pool, rng = island_pool(), random.Random(0)
    seen = [strategy.select(pool, rng, 1, iteration=it)[0] for it in (0, 0, 1, 1, 2, 2)]
    assert seen == ["i0_best", "i1_best"] * 3  # islands served in turn, each its own best
    assert strategy.migrants == {0: [], 1: []}
    strategy.select(pool, rng, 1, iteration=3)  # the schedule: a migration at iteration 3
    assert strategy.migrants == {0: ["i1_best"], 1: ["i0_best"]}
    assert [m["iteration"] for m in strategy.migrations] == [3]
    # island 1 now holds island 0's best by reference, and exploits it
    assert {x.program_id for x in strategy.members(pool, 1)} == {"i1_best", "i1_other", "i0_best"}
    strategy.select(pool, rng, 1, iteration=4)
    strategy.select(pool, rng, 1, iteration=5)
    assert len(strategy.migrations) == 1  # no second migration before iteration 6
    strategy.select(pool, rng, 1, iteration=6)
    assert len(strategy.migrations) == 2


def test_children_stay_on_their_parents_island_and_seeds_are_dealt_round_robin():
    strategy = IslandsSelection(islands=3, migration_interval=2, descriptors=["tokens"], bins=2)
    rng = random.Random(0)
    assert [strategy.assign_island([], rng) for _ in range(4)] == [0, 1, 2, 0]
    pool = [s("a", 0.5, island=0), s("b", 0.4, island=1), s("c", 0.3, island=2)]
    for it in range(3):
        (parent,) = strategy.select(pool, rng, 1, iteration=0)
        assert strategy.assign_island([parent], rng) == it
    # more parents than the island holds: inspirations come from the other islands
    assert len(set(strategy.select(pool, rng, 3, iteration=0))) == 3


def test_island_state_round_trips():
    a = IslandsSelection(islands=2, migration_interval=1, descriptors=["tokens"], bins=2)
    pool, rng = island_pool(), random.Random(0)
    for it in range(3):
        a.select(pool, rng, 1, iteration=it)
    b = IslandsSelection(islands=2, migration_interval=1, descriptors=["tokens"], bins=2)
    b.load_state(a.state())
    assert b.state() == a.state()
    assert a.select(pool, random.Random(9), 2, iteration=3) == b.select(pool, random.Random(9), 2, iteration=3)


# -- Pareto -----------------------------------------------------------------------------
def test_pareto_picks_only_per_instance_leaders():
    pool = [
        s("generalist", 0.7, per={"q1": 0.8, "q2": 0.8, "q3": 0.5, "q4": 0.0}),
        s("specialist", 0.5, per={"q1": 0.0, "q2": 0.0, "q3": 1.0, "q4": 0.0}),  # alone solves q3
        s("follower", 0.6, per={"q1": 0.8, "q2": 0.7, "q3": 0.4, "q4": 0.0}),  # leads only q1, as the generalist does
        s("loser", 0.1, per={"q1": 0.1, "q2": 0.1, "q3": 0.1, "q4": 0.0}),
    ]
    strategy = ParetoSelection()
    # q4: everybody ties, it distinguishes nobody; follower's {q1} is a strict subset of generalist's {q1, q2}
    assert strategy.leaders(pool) == {"generalist": {"q1", "q2"}, "specialist": {"q3"}, "follower": {"q1"}}
    # same cost for all, so the quality/cost front adds nobody but the generalist
    assert strategy.candidates(pool) == {"generalist": 2, "specialist": 1}
    counts = draws(strategy, pool, n=900)
    assert set(counts) == {"generalist", "specialist"}
    assert 1.5 < counts["generalist"] / counts["specialist"] < 2.6  # proportional to instances led


def test_pareto_keeps_a_cheap_program_that_leads_nothing():
    pool = [
        s("good", 0.8, tokens=500, seconds=2, per={"q1": 1.0, "q2": 0.6}),
        s("cheap", 0.3, tokens=10, seconds=1, per={"q1": 0.3, "q2": 0.3}),  # on the quality/cost front
        s("dear", 0.2, tokens=900, seconds=3, per={"q1": 0.2, "q2": 0.2}),  # leads nothing, costs more
    ]
    assert ParetoSelection().candidates(pool) == {"good": 2, "cheap": 1}
    assert set(draws(ParetoSelection(), pool)) == {"good", "cheap"}
    assert sorted(ParetoSelection().select(pool, random.Random(0), 3, iteration=0)) == ["cheap", "good"]


def test_the_quality_cost_frontier():
    pool = [
        s("cheap", 0.3, tokens=10),
        s("mid", 0.6, tokens=100),
        s("best", 0.9, tokens=1000),
        s("worse_and_dearer", 0.5, tokens=200),
        s("tie_dearer", 0.6, tokens=150),
    ]
    front = ParetoSelection().frontier(pool)
    assert [x.program_id for x in front] == ["cheap", "mid", "best"]
    assert pareto_frontier(pool) == front
    assert dominates(pool[1], pool[3]) and not dominates(pool[0], pool[2])


def test_make_strategy_from_config():
    assert isinstance(make_strategy(SelectionConfig()), ParetoSelection)
    for name, cls in [("softmax", SoftmaxSelection), ("islands", IslandsSelection), ("map-elites", MapElitesSelection)]:
        strategy = make_strategy(SelectionConfig(strategy=name))
        assert isinstance(strategy, cls) and isinstance(strategy, SelectionStrategy) and strategy.name == name
    assert make_strategy(SelectionConfig(strategy="softmax", temperature=0.2)).temperature == 0.2
    assert make_strategy({"strategy": "islands", "islands": 4}).islands == 4
