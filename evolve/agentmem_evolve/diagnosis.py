"""Why a question failed, decided without an LLM, so that reflection can aim at the commonest cause.

A small mutation model told only "these answers were wrong" proposes generic
changes (thresholds, keyword filters). Told instead that, say, 14 of 20
failures recalled a superseded preference ahead of its correction, with two
concrete cases, it can be asked for a change aimed at exactly that. The
classes (after GEPA's reflective dataset and M*'s failure transcripts):

* ``not_recalled``: the grounding (evidence turns, or the answer itself) is
  not in what memory returned, and memory reported nothing cut;
* ``cut_by_budget``: the grounding is missing while memory reported matches
  it had to leave out to stay within the token budget (``Recall.omitted``);
  a heuristic - the cut items were not inspected - that points at packing
  and ranking rather than at storing;
* ``stale_recalled``: a superseded value was recalled ahead of (or instead
  of) its correction;
* ``answer_wrong``: the grounding was recalled, yet the answer is wrong;
* ``wrong_form``: the grounding was recalled and the answer holds the right
  content, but in the wrong form (no call, the wrong tool, extra words).

Only environments that know each question's grounding make this possible
(:class:`agentmem.environment.ProxyScoring`: they record ``proxy/evidence``,
``proxy/stale``, ``proxy/answer_in_recall`` and ``recall/omitted`` per
question). Elsewhere every failure is ``unclassified`` and reflection falls
back to plain failure cases. Everything here runs in the trusted process,
on results the environment computed; nothing reaches a candidate.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

CLASSES: tuple[str, ...] = ("not_recalled", "cut_by_budget", "stale_recalled", "answer_wrong", "wrong_form")
UNCLASSIFIED = "unclassified"
METRIC_PREFIX = "diagnosis/"

LABELS: dict[str, str] = {
    "not_recalled": "the needed memory was not recalled",
    "cut_by_budget": "the needed memory was found but cut by the token budget",
    "stale_recalled": "an outdated (corrected) value was recalled ahead of the current one",
    "answer_wrong": "the needed memory was recalled but the answer was wrong",
    "wrong_form": "the answer had the right content in the wrong form",
    UNCLASSIFIED: "failed, cause unknown",
}

AIMS: dict[str, str] = {
    "not_recalled": "Make memory find the statements these requests need: store them so they can be found "
    "(keep preferences and facts, drop chatter) and search with the words they contain.",
    "cut_by_budget": "Fit the needed statements into the budget: rank the most relevant first, drop duplicates "
    "and low-scoring items, shorten what is returned.",
    "stale_recalled": "When two memories say different things about the same topic, prefer the newest: put it first "
    "or drop the older one, and mark it as the latest.",
    "answer_wrong": "Help the agent use what it was given: put the item that answers the request first and say "
    "plainly which remembered value to use.",
    "wrong_form": "Tell the agent exactly what form the answer must take (one tool call, the right tool, only "
    "the value).",
    UNCLASSIFIED: "Fix what makes these cases fail.",
}

_WORDS = re.compile(r"[a-z0-9]+")


def _tokens(text: str) -> set[str]:
    return set(_WORDS.findall(str(text).lower()))


def _form_problem(reference: str, prediction: str, metrics: dict[str, float]) -> bool:
    """The content is right but the form is not: no answer or call, the wrong tool, or the answer wrapped in extras."""
    text = str(prediction).strip()
    if not text or text.startswith("(no call"):
        return True
    if metrics.get("tool_match") == 0.0:
        return True
    wanted = _tokens(reference)
    return bool(wanted) and wanted <= _tokens(text)


def classify(metrics: dict[str, float], reference: str, prediction: str, score: float) -> str | None:
    """The class of one question's failure (``None``: it did not fail; ``unclassified``: no grounding to judge by)."""
    if score >= 0.999:
        return None
    if metrics.get("proxy/stale", 0.0) >= 1.0:
        return "stale_recalled"
    if "proxy/answer_in_recall" in metrics:
        grounded = metrics["proxy/answer_in_recall"] >= 1.0
    elif "proxy/evidence" in metrics:
        grounded = metrics["proxy/evidence"] >= 1.0
    else:
        return UNCLASSIFIED
    if not grounded:
        return "cut_by_budget" if metrics.get("recall/omitted", 0.0) > 0 else "not_recalled"
    return "wrong_form" if _form_problem(reference, prediction, metrics) else "answer_wrong"


class Diagnosis(BaseModel):
    """Failure counts per class over an evaluation's questions, and up to two examples of each."""

    counts: dict[str, int] = Field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)

    @property
    def largest(self) -> str | None:
        """The commonest diagnosed class (unclassified only when nothing else is known); ties go by CLASSES order."""
        known = [c for c in CLASSES if self.counts.get(c, 0) > 0]
        if known:
            return max(known, key=lambda c: (self.counts[c], -CLASSES.index(c)))
        return UNCLASSIFIED if self.counts.get(UNCLASSIFIED, 0) > 0 else None

    def metrics(self) -> dict[str, float]:
        """The counts as evaluation metrics (``diagnosis/<class>``), as the archive keeps them."""
        return {METRIC_PREFIX + c: float(n) for c, n in self.counts.items()}


def trace_of(question: Any, metric: str) -> dict[str, Any]:
    """A failure case as proposers show it (from a :class:`~agentmem.environment.QuestionResult`)."""
    return {
        "question": question.question[:600],
        "reference": question.reference[:300],
        "prediction": question.prediction[:300],
        "recalled": question.recalled[:900],
        "score": round(float(question.metrics.get(metric, 0.0)), 3),
        "category": question.category,
    }


def diagnose(questions: Iterable[Any], metric: str) -> Diagnosis:
    """Classify every failed question (``QuestionResult`` objects) by its recorded proxy facts; no LLM."""
    out = Diagnosis()
    for q in questions:
        label = classify(q.metrics, q.reference, q.prediction, float(q.metrics.get(metric, 0.0)))
        if label is None:
            continue
        out.counts[label] = out.counts.get(label, 0) + 1
        cases = out.examples.setdefault(label, [])
        if len(cases) < 2:
            cases.append({**trace_of(q, metric), "diagnosis": label})
    return out


def counts_from_metrics(metrics: Iterable[dict[str, float]]) -> dict[str, int]:
    """Diagnosis counts summed over evaluations' metrics (``diagnosis/<class>`` entries)."""
    total: dict[str, int] = {}
    for m in metrics:
        for key, value in m.items():
            if key.startswith(METRIC_PREFIX):
                name = key[len(METRIC_PREFIX) :]
                total[name] = total.get(name, 0) + int(value)
    return total


def prompt_view(counts: dict[str, int], traces: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the reflective prompt shows: every class's count, the largest class, its aim and two of its cases.

    ``None`` when nothing was diagnosed (no failures, or only unclassified
    ones): the prompt then shows plain failure cases as before.
    """
    diagnosis = Diagnosis(counts={k: v for k, v in counts.items() if v > 0})
    largest = diagnosis.largest
    if largest is None or largest == UNCLASSIFIED:
        return None
    examples = [t for t in traces if t.get("diagnosis") == largest][:2]
    rows = [
        {"name": c, "label": LABELS[c], "count": diagnosis.counts[c]}
        for c in sorted(diagnosis.counts, key=lambda c: -diagnosis.counts[c])
        if c in LABELS
    ]
    return {
        "counts": rows,
        "total": sum(diagnosis.counts.values()),
        "largest": largest,
        "label": LABELS[largest],
        "aim": AIMS[largest],
        "examples": examples,
    }
