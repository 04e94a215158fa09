"""Helpers shared by the tests of every folder (tests, environments, evolve): data paths and plumbing fakes.

The fakes stand in for a model in unit tests of plumbing only; nothing a user
runs defaults to them. Import them as ``from tests.helpers import ...`` (the
repository root is on ``sys.path`` through the root ``conftest.py``).
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
#: ``../shared/data`` beside the checkout (``AGENTMEM_SHARED_DATA`` points elsewhere); absent on a fresh clone
SHARED_DATA = Path(os.environ.get("AGENTMEM_SHARED_DATA") or ROOT.parent / "shared" / "data")


def shared_data_required() -> bool:
    """True under CI (``CI`` set) or with ``AGENTMEM_REQUIRE_SHARED=1``; ``AGENTMEM_REQUIRE_SHARED=0`` wins."""
    explicit = os.environ.get("AGENTMEM_REQUIRE_SHARED", "").strip().lower()
    if explicit:
        return explicit not in ("0", "false", "no", "off")
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def shared_data(*parts: str) -> Path:
    """The file ``parts`` under :data:`SHARED_DATA`: skips the test where it is absent, fails when required."""
    path = SHARED_DATA.joinpath(*parts)
    if path.is_file():
        return path
    reason = f"shared data file {path} is not here (the ../shared/data folder beside the checkout)"
    if shared_data_required():
        pytest.fail(f"{reason}; CI / AGENTMEM_REQUIRE_SHARED=1 requires it (AGENTMEM_REQUIRE_SHARED=0 to skip)")
    pytest.skip(reason)


#: Six facts of one user, two per session (episodic, baseline and assembled memories recall them).
FACTS = [
    "I adopted a golden retriever named Biscuit.",
    "My sister lives in Lisbon and works as an architect.",
    "I started learning the cello in March.",
    "The quarterly report is due on Friday.",
    "I am allergic to peanuts.",
    "We are planning a trip to Kyoto in autumn.",
]


def task_request(messages: list[dict[str, Any]]) -> str:
    """The request of an ``Agent.act`` prompt: the line after "Request: " in its user message (task_act_user.j2)."""
    return messages[-1]["content"].split("Request: ", 1)[1].splitlines()[0]


class FixedReplyLLM:
    """Answers every question with the same phrase and counts its calls (plumbing only)."""

    model = "scripted"

    def __init__(self, reply: str = "Biscuit") -> None:
        self.reply = reply
        self.calls = 0

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        self.calls += 1
        return self.reply

    def structured(self, messages: list[dict[str, Any]], schema: Any, **kw: Any) -> Any:  # pragma: no cover
        raise AssertionError("no structured calls expected")


class BagEmbedder:
    """Deterministic bag-of-letters vectors: similar texts get similar vectors, no model needed."""

    name = "bag"
    dim = 26

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * 26
            for ch in text.lower():
                if "a" <= ch <= "z":
                    v[ord(ch) - 97] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            out.append([x / norm for x in v])
        return out


class HashEmbedder:
    """Deterministic word-hash vectors: texts sharing words get similar vectors (no model needed)."""

    name = "hash"
    dim = 64

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * self.dim
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                v[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1.0
            norm = sum(x * x for x in v) ** 0.5 or 1.0
            out.append([x / norm for x in v])
        return out
