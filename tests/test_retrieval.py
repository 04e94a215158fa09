"""LLM-free retrieval helpers: BM25, reciprocal-rank fusion, tokens, overlap."""

from __future__ import annotations

import math

import pytest

from agentmem.retrieval import BM25Index, jaccard, reciprocal_rank_fusion, tokenize, top


def _index() -> BM25Index:
    index = BM25Index()
    index.add_many(
        [
            ("dog", "My dog Biscuit loves long walks in the park."),
            ("sister", "My sister lives in Lisbon and works as an architect."),
            ("cake", "Biscuit ate the birthday cake when nobody was looking."),
            ("code", "The storage locker code is QZ4817."),
        ]
    )
    return index


def test_bm25_ranks_rare_exact_words_first_and_matches_the_formula():
    index = _index()
    assert index.search("QZ4817", 1)[0][0] == "code"
    ranked = [d for d, _ in index.search("Biscuit cake", 3)]
    assert ranked[0] == "cake" and set(ranked) == {"cake", "dog"}
    # one term in one of four documents, tf 1: idf * (k1 + 1) / (1 + k1 * (1 - b + b * len / avg))
    lengths = {
        d: len(tokenize(t))
        for d, t in [
            ("dog", "My dog Biscuit loves long walks in the park."),
            ("sister", "My sister lives in Lisbon and works as an architect."),
            ("cake", "Biscuit ate the birthday cake when nobody was looking."),
            ("code", "The storage locker code is QZ4817."),
        ]
    }
    avg = sum(lengths.values()) / 4
    idf = math.log(1 + (4 - 1 + 0.5) / (1 + 0.5))
    expected = idf * 2.2 / (1 + 1.2 * (1 - 0.75 + 0.75 * lengths["sister"] / avg))
    assert index.scores("Lisbon")["sister"] == pytest.approx(expected, rel=1e-5)


def test_bm25_remove_and_replace_keep_the_index_consistent():
    index = _index()
    index.remove("cake")
    assert "cake" not in index and len(index) == 3
    assert [d for d, _ in index.search("cake", 5)] == []
    index.add("dog", "A cat named Pixel.")  # replaces the old text
    assert [d for d, _ in index.search("Biscuit", 5)] == []
    assert index.search("Pixel", 1)[0][0] == "dog"
    assert index.search("Lisbon", 5, allowed={"code"}) == []
    index.remove("absent")  # no-op


def test_bm25_search_is_deterministic_on_ties_and_handles_empty_input():
    index = BM25Index()
    assert index.search("anything") == []
    for doc in ("b", "a", "c"):
        index.add(doc, "same words here")
    assert [d for d, _ in index.search("words", 3)] == ["a", "b", "c"]
    assert index.search("", 3) == [] and index.search("words", 0) == []


def test_rank_fusion_rewards_agreement_and_respects_weights():
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["b", "a"]])
    assert top(fused, 2) == ["a", "b"] or top(fused, 2) == ["b", "a"]
    assert fused["c"] < fused["a"]
    lexical_only = reciprocal_rank_fusion([["a", "b"], ["b", "a"]], weights=[0.0, 1.0])
    assert top(lexical_only, 1) == ["b"]
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"]], weights=[1.0, 2.0])


def test_tokens_and_overlap():
    assert tokenize("Ann's dog, Biscuit, is 3!") == ["ann", "dog", "biscuit", "3"]
    assert jaccard("I love hiking.", "I LOVE hiking!!") == 1.0
    assert jaccard("hiking in the hills", "cooking pasta") == 0.0
