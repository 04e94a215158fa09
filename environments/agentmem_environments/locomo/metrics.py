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
drop the words a / an / the / and, collapse whitespace. Stemming follows the
Porter algorithm with the extensions of NLTK's default ``PorterStemmer`` mode,
which the upstream code uses; it is written here so that no NLTK is needed.

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
    "PorterStemmer",
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
# Porter stemmer (NLTK-extensions flavour)
# --------------------------------------------------------------------------

_VOWELS = frozenset("aeiou")

# Irregular forms NLTK's default mode maps directly.
_IRREGULAR: dict[str, str] = {
    "skies": "sky",
    "sky": "sky",
    "dying": "die",
    "lying": "lie",
    "tying": "tie",
    "news": "news",
    "innings": "inning",
    "inning": "inning",
    "outings": "outing",
    "outing": "outing",
    "cannings": "canning",
    "canning": "canning",
    "howe": "howe",
    "proceed": "proceed",
    "exceed": "exceed",
    "succeed": "succeed",
}


class PorterStemmer:
    """The Porter (1980) suffix stripper, with NLTK's default-mode departures.

    The departures: words of one or two letters are returned as they are; a
    few irregular forms are looked up; ``-ies``/``-ied`` on four-letter words
    keep their ``e`` ("dies" -> "die"); ``y`` becomes ``i`` only after a
    consonant that is not the first letter ("happy" -> "happi", "enjoy"
    stays); ``-bli`` -> ``-ble``, ``-alli`` -> ``-al`` (then step 2 again),
    ``-fulli`` -> ``-ful`` and ``-logi`` -> ``-log``; a two-letter
    vowel-consonant stem counts as ``*o``.
    """

    # --- letter classes and measures --------------------------------------

    @staticmethod
    def _consonant(word: str, i: int) -> bool:
        ch = word[i]
        if ch in _VOWELS:
            return False
        if ch == "y":
            return i == 0 or not PorterStemmer._consonant(word, i - 1)
        return True

    def _measure(self, stem: str) -> int:
        """m in [C](VC){m}[V]: the number of vowel-to-consonant transitions."""
        m = 0
        previous_vowel = False
        for i in range(len(stem)):
            cons = self._consonant(stem, i)
            if cons and previous_vowel:
                m += 1
            previous_vowel = not cons
        return m

    def _has_vowel(self, stem: str) -> bool:
        return any(not self._consonant(stem, i) for i in range(len(stem)))

    def _double_consonant(self, word: str) -> bool:
        return len(word) >= 2 and word[-1] == word[-2] and self._consonant(word, len(word) - 1)

    def _cvc(self, word: str) -> bool:
        """*o: the stem ends consonant-vowel-consonant, the last not w, x or y."""
        n = len(word)
        if n >= 3:
            return (
                self._consonant(word, n - 3)
                and not self._consonant(word, n - 2)
                and self._consonant(word, n - 1)
                and word[-1] not in "wxy"
            )
        if n == 2:
            return not self._consonant(word, 0) and self._consonant(word, 1)
        return False

    # --- rule tables --------------------------------------------------------

    def _rules(self, word: str, rules: list[tuple[str, str, Any]]) -> str:
        """Apply the first rule whose suffix matches; a failed condition ends the step."""
        for suffix, replacement, condition in rules:
            if word.endswith(suffix):
                stem = word[: len(word) - len(suffix)]
                if condition is None or condition(stem):
                    return stem + replacement
                return word
        return word

    def _positive(self, stem: str) -> bool:
        return self._measure(stem) > 0

    def _above_one(self, stem: str) -> bool:
        return self._measure(stem) > 1

    # --- steps ---------------------------------------------------------------

    def _step1a(self, word: str) -> str:
        if len(word) == 4 and word.endswith("ies"):
            return word[:-3] + "ie"
        return self._rules(word, [("sses", "ss", None), ("ies", "i", None), ("ss", "ss", None), ("s", "", None)])

    def _step1b(self, word: str) -> str:
        if word.endswith("ied"):
            return word[:-3] + ("ie" if len(word) == 4 else "i")
        if word.endswith("eed"):
            stem = word[:-3]
            return stem + "ee" if self._measure(stem) > 0 else word
        for suffix in ("ed", "ing"):
            if word.endswith(suffix) and self._has_vowel(word[: -len(suffix)]):
                return self._step1b_tidy(word[: -len(suffix)])
        return word

    def _step1b_tidy(self, stem: str) -> str:
        for suffix, replacement in (("at", "ate"), ("bl", "ble"), ("iz", "ize")):
            if stem.endswith(suffix):
                return stem[: -len(suffix)] + replacement
        if self._double_consonant(stem):
            return stem[:-1] if stem[-1] not in "lsz" else stem
        if self._measure(stem) == 1 and self._cvc(stem):
            return stem + "e"
        return stem

    def _step1c(self, word: str) -> str:
        if word.endswith("y") and len(word) > 2 and self._consonant(word, len(word) - 2):
            return word[:-1] + "i"
        return word

    def _step2(self, word: str) -> str:
        if word.endswith("alli") and self._positive(word[:-4]):
            return self._step2(word[:-4] + "al")
        p = self._positive
        rules: list[tuple[str, str, Any]] = [
            ("ational", "ate", p),
            ("tional", "tion", p),
            ("enci", "ence", p),
            ("anci", "ance", p),
            ("izer", "ize", p),
            ("bli", "ble", p),
            ("alli", "al", p),
            ("entli", "ent", p),
            ("eli", "e", p),
            ("ousli", "ous", p),
            ("ization", "ize", p),
            ("ation", "ate", p),
            ("ator", "ate", p),
            ("alism", "al", p),
            ("iveness", "ive", p),
            ("fulness", "ful", p),
            ("ousness", "ous", p),
            ("aliti", "al", p),
            ("iviti", "ive", p),
            ("biliti", "ble", p),
            ("fulli", "ful", p),
            # the "l" stays with the stem when measuring, so "geologi" -> "geolog"
            ("logi", "log", lambda stem: self._positive(stem + "l")),
        ]
        return self._rules(word, rules)

    def _step3(self, word: str) -> str:
        p = self._positive
        return self._rules(
            word,
            [
                ("icate", "ic", p),
                ("ative", "", p),
                ("alize", "al", p),
                ("iciti", "ic", p),
                ("ical", "ic", p),
                ("ful", "", p),
                ("ness", "", p),
            ],
        )

    def _step4(self, word: str) -> str:
        g = self._above_one
        return self._rules(
            word,
            [
                ("al", "", g),
                ("ance", "", g),
                ("ence", "", g),
                ("er", "", g),
                ("ic", "", g),
                ("able", "", g),
                ("ible", "", g),
                ("ant", "", g),
                ("ement", "", g),
                ("ment", "", g),
                ("ent", "", g),
                ("ion", "", lambda stem: self._measure(stem) > 1 and stem[-1:] in ("s", "t")),
                ("ou", "", g),
                ("ism", "", g),
                ("ate", "", g),
                ("iti", "", g),
                ("ous", "", g),
                ("ive", "", g),
                ("ize", "", g),
            ],
        )

    def _step5(self, word: str) -> str:
        if word.endswith("e"):
            stem = word[:-1]
            m = self._measure(stem)
            if m > 1 or (m == 1 and not self._cvc(stem)):
                word = stem
        if word.endswith("ll") and self._measure(word[:-1]) > 1:
            word = word[:-1]
        return word

    def stem(self, word: str) -> str:
        """The stem of one lowercase-able token."""
        w = word.lower()
        if w in _IRREGULAR:
            return _IRREGULAR[w]
        if len(w) <= 2:
            return w
        w = self._step1a(w)
        w = self._step1b(w)
        w = self._step1c(w)
        w = self._step2(w)
        w = self._step3(w)
        w = self._step4(w)
        w = self._step5(w)
        return w


_STEMMER = PorterStemmer()


@lru_cache(maxsize=65536)
def porter_stem(word: str) -> str:
    """Porter stem of ``word`` (memoised)."""
    return _STEMMER.stem(word)


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
