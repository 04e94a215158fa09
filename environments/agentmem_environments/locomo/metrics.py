"""LoCoMo scoring, re-implemented after the paper's evaluation code.

Maharana et al., "Evaluating Very Long-Term Conversational Memory of LLM
Agents" (ACL 2024) score answers with token-level F1 over normalised,
Porter-stemmed tokens, with one rule per question category:

- category 1 (multi-hop): the reference and the prediction are split on
  commas; each reference part is matched by its best prediction part and the
  F1 values are averaged over the reference parts;
- category 2 (temporal) and 4 (single-hop): plain token F1;
- category 3 (open-domain): token F1 against the part of the reference
  before the first ``;`` (the rest is the annotators' explanation);
- category 5 (adversarial): 1 when the prediction declines ("not mentioned",
  "no information available", ...), else 0.

Normalisation (as upstream): drop commas, lowercase, drop ASCII punctuation,
drop the words a / an / the / and, collapse whitespace. Stemming is NLTK's
``PorterStemmer`` in its default mode, the one the upstream code uses (it
needs no downloaded NLTK data; NLTK is imported on the first stem, since
importing it takes about a second).

The LLM-free proxy is :func:`evidence_recall`: the fraction of a question's
evidence turns (``dia_id`` such as ``D3:7``) that memory brought back.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

__all__ = [
    "ABSTENTION_PHRASES",
    "canonical_dia_id",
    "recalled_dia_ids",
    "turn_ids",
    "evidence_recall",
    "f1_score",
    "is_abstention",
    "locomo_f1",
    "multi_answer_f1",
    "normalize_answer",
    "porter_stem",
    "tokens",
]


# --------------------------------------------------------------------------
# Porter stemmer: NLTK's, as the upstream scorer
# --------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _stemmer() -> Any:
    from nltk.stem.porter import PorterStemmer

    return PorterStemmer()  # mode NLTK_EXTENSIONS, NLTK's default and the upstream scorer's


@lru_cache(maxsize=65536)
def porter_stem(word: str) -> str:
    """Porter stem of ``word``, lowercased (NLTK's ``PorterStemmer().stem``, memoised)."""
    return str(_stemmer().stem(word))


# --------------------------------------------------------------------------
# Normalisation and F1
# --------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_DROPPED_WORDS = re.compile(r"\b(a|an|the|and)\b")


def normalize_answer(text: Any) -> str:
    """Upstream normalisation: no commas, lowercase, no punctuation, no a/an/the/and, single spaces."""
    s = str(text).replace(",", "").lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = _DROPPED_WORDS.sub(" ", s)
    return " ".join(s.split())


def tokens(text: Any) -> list[str]:
    """Normalised, stemmed tokens of ``text``."""
    return [porter_stem(w) for w in normalize_answer(text).split()]


def f1_score(prediction: Any, reference: Any) -> float:
    """Token-level F1 between two answers (0.0 when nothing is shared)."""
    pred = tokens(prediction)
    ref = tokens(reference)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def multi_answer_f1(prediction: Any, reference: Any) -> float:
    """Category-1 F1: mean over comma-separated reference parts of the best part-wise F1."""
    parts = [p.strip() for p in str(prediction).split(",")]
    refs = [r.strip() for r in str(reference).split(",")]
    return sum(max(f1_score(p, r) for p in parts) for r in refs) / len(refs)


# The upstream scorer accepts the first two; the others are the same refusal
# in words small models tend to use.
ABSTENTION_PHRASES: tuple[str, ...] = (
    "not mentioned",
    "no information available",
    "never mentioned",
    "isn't mentioned",
    "wasn't mentioned",
    "no mention",
    "no information",
    "doesn't mention",
    "does not mention",
    "did not mention",
    "didn't mention",
)


def is_abstention(prediction: Any) -> bool:
    """Does the prediction decline to answer (what category 5 rewards)?"""
    text = str(prediction).lower().replace("\u2019", "'")
    return any(phrase in text for phrase in ABSTENTION_PHRASES)


def locomo_f1(prediction: Any, reference: Any, category: str | int) -> float:
    """The LoCoMo score of one answer, by question category ("1".."5")."""
    cat = str(category).strip()
    if cat == "5":
        return 1.0 if is_abstention(prediction) else 0.0
    if cat == "1":
        return float(multi_answer_f1(prediction, reference))
    ref = str(reference)
    if cat == "3":
        ref = ref.split(";")[0].strip()
    return float(f1_score(prediction, ref))


# --------------------------------------------------------------------------
# Evidence recall (LLM-free proxy)
# --------------------------------------------------------------------------

_DIA_ID = re.compile(r"D\s*:?\s*(\d+)\s*:\s*(\d+)", re.IGNORECASE)


def canonical_dia_id(value: Any) -> list[str]:
    """Every dia_id written in ``value`` ("D3:7", "d3:7", "D:3:7", "D3:7; D4:1"), canonical form."""
    return [f"D{int(a)}:{int(b)}" for a, b in _DIA_ID.findall(str(value))]


def evidence_recall(recalled_dia_ids: Iterable[Any], evidence: Iterable[Any]) -> float | None:
    """Fraction of the evidence dia_ids found among the recalled ones; ``None`` without evidence."""
    wanted: list[str] = []
    for item in evidence:
        for dia in canonical_dia_id(item):
            if dia not in wanted:
                wanted.append(dia)
    if not wanted:
        return None
    got: set[str] = set()
    for item in recalled_dia_ids:
        got.update(canonical_dia_id(item))
    return sum(1 for dia in wanted if dia in got) / len(wanted)


def turn_ids(task: Any) -> dict[str, str]:
    """The environment's own map from each event id of ``task`` to its turn id (``metadata["dia_id"]``)."""
    return {e.id: str(e.metadata["dia_id"]) for s in task.sessions for e in s.events if "dia_id" in e.metadata}


def recalled_dia_ids(items: Iterable[Any], turns: Mapping[str, str] | None = None) -> list[str]:
    """The turn ids recalled items point at, in order: their ``event_ids`` mapped through ``turns``
    (memories carry event ids, the environment knows its turns), plus any ``metadata["dia_id"]`` a
    program copied itself (lists flattened)."""
    out: list[str] = []
    for item in items:
        if turns:
            out.extend(turns[e] for e in item.event_ids if e in turns)
        value = item.metadata.get("dia_id")
        values = value if isinstance(value, list) else [value]
        out.extend(str(v) for v in values if v is not None)
    return out
