"""Answer scoring that needs no judge model: SQuAD-style normalisation, token F1, exact and substring match, ROUGE-L.

These follow the definitions the QA literature (and MemoryAgentBench's
``calculate_metrics``) uses, re-implemented here:

* normalise: lowercase, drop ASCII punctuation, drop the articles a / an /
  the, collapse whitespace;
* ``exact_match``: the normalised prediction equals the normalised reference;
* ``substring_match``: the normalised reference occurs in the normalised
  prediction (MemoryAgentBench's ``substring_exact_match``; LongMemEval's
  judge asks the same question: "does the response contain the answer");
* ``token_f1``: harmonic mean of token precision and recall (no stemming);
  a yes/no reference only matches a yes/no prediction;
* ``rouge_l``: F-measure of the longest common subsequence of Porter-stemmed
  lowercase alphanumeric tokens (the tokenisation of the ``rouge_score``
  package with ``use_stemmer=True``).

Several references: the best score over them.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable
from typing import Any

__all__ = [
    "best",
    "exact_match",
    "flatten_answers",
    "normalize",
    "rouge_l",
    "substring_match",
    "token_f1",
]

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SPECIAL = frozenset({"yes", "no", "noanswer"})
_ROUGE_TOKEN = re.compile(r"[a-z0-9]+")


def normalize(text: Any) -> str:
    """Lowercase, no punctuation, no articles, single spaces."""
    s = "".join(ch for ch in str(text).lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match(prediction: Any, reference: Any) -> float:
    return float(normalize(prediction) == normalize(reference))


def substring_match(prediction: Any, reference: Any) -> float:
    ref = normalize(reference)
    return float(bool(ref) and ref in normalize(prediction))


def token_f1(prediction: Any, reference: Any) -> float:
    pred, ref = normalize(prediction), normalize(reference)
    if (pred in _SPECIAL or ref in _SPECIAL) and pred != ref:
        return 0.0
    p_tokens, r_tokens = pred.split(), ref.split()
    same = sum((Counter(p_tokens) & Counter(r_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p_tokens), same / len(r_tokens)
    return 2 * precision * recall / (precision + recall)


def _rouge_tokens(text: Any) -> list[str]:
    from agentmem_environments.locomo.metrics import porter_stem

    return [porter_stem(t) if len(t) > 3 else t for t in _ROUGE_TOKEN.findall(str(text).lower())]


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(prediction: Any, reference: Any) -> float:
    """ROUGE-L F-measure (LCS over stemmed tokens)."""
    pred, ref = _rouge_tokens(prediction), _rouge_tokens(reference)
    lcs = _lcs(pred, ref)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(pred), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def flatten_answers(answers: Any) -> list[str]:
    """A reference given as a string, a number, a list or a list of lists, as a flat list of strings."""
    if answers is None:
        return []
    if isinstance(answers, (str, int, float)) and not isinstance(answers, bool):
        return [str(answers)]
    out: list[str] = []
    for item in answers if isinstance(answers, Iterable) else [answers]:
        out += flatten_answers(item)
    return out


def best(metric: Any, prediction: Any, references: list[str]) -> float:
    """The best ``metric(prediction, reference)`` over the references (0 without any)."""
    return max((float(metric(prediction, r)) for r in references), default=0.0)
