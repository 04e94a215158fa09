"""Plumbing fakes shared by the evolution tests (never the default of anything a user runs)."""

from __future__ import annotations


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
