"""The search space a memory program declares through its ``Params`` model.

Every field of a program's pydantic ``Params`` with bounds (``ge``/``le``), a
``bool`` type or a ``Literal`` type is a dimension evolution may mutate with
no code-writing LLM at all: integers step or jump within their bounds,
floats move by a fraction of their range, booleans flip, literals switch.
"""

from __future__ import annotations

import random
import typing
from typing import Any, SupportsFloat

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel
from pydantic.fields import FieldInfo


class Dimension:
    """One mutable parameter: its kind and its bounds or choices."""

    def __init__(
        self,
        name: str,
        kind: str,
        low: float | None = None,
        high: float | None = None,
        choices: list[Any] | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.low = low
        self.high = high
        self.choices = choices or []

    def mutate(self, value: Any, rng: random.Random) -> Any:
        if self.kind == "bool":
            return not value
        if self.kind == "choice":
            others = [c for c in self.choices if c != value]
            return rng.choice(others) if others else value
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            lo, hi = int(self.low), int(self.high)
            if rng.random() < 0.5:  # a small step ...
                step = max(1, round((hi - lo) * 0.15))
                new = value + rng.choice([-1, 1]) * rng.randint(1, step)
            else:  # ... or a jump anywhere in range
                new = rng.randint(lo, hi)
            new = min(hi, max(lo, new))
            return new if new != value else min(hi, max(lo, value + (1 if value < hi else -1)))
        span = self.high - self.low
        new = value + rng.gauss(0.0, 0.25 * span)
        return round(min(self.high, max(self.low, new)), 3)

    def __repr__(self) -> str:
        if self.kind == "choice":
            return f"{self.name}: one of {self.choices}"
        if self.kind == "bool":
            return f"{self.name}: bool"
        return f"{self.name}: {self.kind} in [{self.low}, {self.high}]"


class ParamSpace:
    """The mutable dimensions of a ``Params`` model."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.dimensions: list[Dimension] = []
        for name, field in model.model_fields.items():
            dim = _dimension(name, field)
            if dim is not None:
                self.dimensions.append(dim)

    def default(self) -> dict[str, Any]:
        return self.model().model_dump()

    def mutate(self, params: dict[str, Any], rng: random.Random, changes: int = 1) -> dict[str, Any]:
        """A copy of ``params`` with ``changes`` dimensions mutated (validated by the model)."""
        if not self.dimensions:
            return dict(params)
        child = dict(params)
        for dim in rng.sample(self.dimensions, k=min(changes, len(self.dimensions))):
            child[dim.name] = dim.mutate(child[dim.name], rng)
        return self.model.model_validate(child).model_dump()

    def __bool__(self) -> bool:
        return bool(self.dimensions)


def _dimension(name: str, field: FieldInfo) -> Dimension | None:
    annotation = field.annotation
    if annotation is bool:
        return Dimension(name, "bool")
    if typing.get_origin(annotation) is typing.Literal:
        return Dimension(name, "choice", choices=list(typing.get_args(annotation)))
    if annotation in (int, float):
        low: float | None = None
        high: float | None = None
        for meta in field.metadata:
            if isinstance(meta, Ge):
                low = _numeric_bound(meta.ge)
            elif isinstance(meta, Gt):
                low = _numeric_bound(meta.gt)
            elif isinstance(meta, Le):
                high = _numeric_bound(meta.le)
            elif isinstance(meta, Lt):
                high = _numeric_bound(meta.lt)
        if low is None or high is None:
            return None  # unbounded numbers are not searched
        return Dimension(name, "int" if annotation is int else "float", low, high)
    return None


def _numeric_bound(bound: object) -> float | None:
    """A field bound as a float (annotated_types allows any comparable; one with no float value is no bound)."""
    return float(bound) if isinstance(bound, SupportsFloat) else None
