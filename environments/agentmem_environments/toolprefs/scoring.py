"""Scoring a tool call against the expected one, and the LLM-free proxy.

Values are compared after light normalisation only (case, surrounding
whitespace and quotes, a trailing full stop, numbers written as strings): a
parameter is right when it is the value, not something like it. The proxy,
evidence recall, asks whether recall surfaced the statements that ground the
call: the event ids recalled items carry, mapped to the statements' turn
ids (``dia_id``) by the environment itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from agentmem_environments.locomo.metrics import recalled_dia_ids, turn_ids

__all__ = ["normalize_value", "score_call", "evidence_recall", "recalled_dia_ids", "turn_ids"]

_SPACES = re.compile(r"\s+")


def normalize_value(value: Any) -> str:
    """``value`` in a comparable form: ``" Window "`` -> ``"window"``, ``"21"``/``21``/``21.0`` -> ``"21"``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = _SPACES.sub(" ", str(value)).strip().strip("\"'").strip().rstrip(".").strip().lower()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else str(number)


def score_call(
    tool: str,
    arguments: dict[str, Any],
    expected_tool: str,
    expected: dict[str, Any],
    *,
    memory_params: Iterable[str] = (),
    stale: dict[str, Any] | None = None,
) -> dict[str, float]:
    """Per-call metrics.

    ``tool_match`` (the tool's name), ``param_accuracy`` (fraction of expected
    parameters exactly right; none are right under the wrong tool), ``exact``
    (right tool, every parameter right), ``memory_accuracy`` (the same fraction
    over the parameters only memory could supply) and, when the call needs a
    corrected preference, ``stale`` (fraction of those answered with the
    superseded value).
    """
    matched = tool == expected_tool
    right = {
        name: matched and name in arguments and normalize_value(arguments[name]) == normalize_value(value)
        for name, value in expected.items()
    }
    out: dict[str, float] = {
        "tool_match": float(matched),
        "param_accuracy": sum(right.values()) / len(right) if right else float(matched),
    }
    out["exact"] = float(matched and all(right.values()))
    from_memory = [p for p in memory_params if p in expected]
    if from_memory:
        out["memory_accuracy"] = sum(right[p] for p in from_memory) / len(from_memory)
    if stale:
        used_old = [
            matched and name in arguments and normalize_value(arguments[name]) == normalize_value(old)
            for name, old in stale.items()
        ]
        out["stale"] = sum(used_old) / len(used_old)
    return out


def evidence_recall(recalled: Iterable[Any], evidence: Iterable[str]) -> float | None:
    """Fraction of the grounding statement ids found among the recalled ids; ``None`` without evidence."""
    wanted = list(dict.fromkeys(str(e).strip().upper() for e in evidence))
    if not wanted:
        return None
    got = {str(r).strip().upper() for r in recalled}
    return sum(1 for w in wanted if w in got) / len(wanted)
