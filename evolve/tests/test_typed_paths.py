"""The small helpers the type check made explicit: search-space bounds, jail backend choice, distribution names,
and how the controller reads a worker's untrusted failure reports. Each keeps the behaviour the untyped code had."""

from __future__ import annotations

from decimal import Decimal
from email.message import Message
from importlib import metadata
from typing import Annotated, Any, Literal

import pytest
from annotated_types import Ge, Le
from pydantic import BaseModel, Field

from agentmem_evolve.jail import JailUnavailable, _distribution_name, choose_backend
from agentmem_evolve.sandbox import _is_failure_kind, _object_field
from agentmem_evolve.space import ParamSpace, _numeric_bound


class _Params(BaseModel):
    top_k: int = Field(5, ge=1, le=20)
    threshold: float = Field(0.5, gt=0.0, lt=1.0)
    window: Annotated[int, Ge(Decimal(2)), Le(Decimal(8))] = 4
    unbounded: int = 3
    half_bounded: int = Field(3, ge=0)
    rerank: bool = False
    mode: Literal["a", "b"] = "a"


def test_the_search_space_reads_inclusive_exclusive_and_decimal_bounds_as_floats():
    dims = {d.name: d for d in ParamSpace(_Params).dimensions}
    assert set(dims) == {"top_k", "threshold", "window", "rerank", "mode"}  # no bound, no search
    assert (dims["top_k"].kind, dims["top_k"].low, dims["top_k"].high) == ("int", 1.0, 20.0)
    assert (dims["threshold"].kind, dims["threshold"].low, dims["threshold"].high) == ("float", 0.0, 1.0)
    assert (dims["window"].low, dims["window"].high) == (2.0, 8.0)
    assert all(isinstance(v, float) for d in dims.values() if d.kind in ("int", "float") for v in (d.low, d.high))


def test_a_bound_without_a_float_value_is_no_bound():
    assert _numeric_bound(3) == 3.0 and _numeric_bound(Decimal("2.5")) == 2.5
    assert _numeric_bound("a") is None and _numeric_bound(None) is None  # comparable, but nothing to sample


def test_choose_backend_refuses_unknown_names_and_an_unallowed_none_in_one_line():
    with pytest.raises(JailUnavailable, match="unknown sandbox jail 'docker'"):
        choose_backend("docker")
    with pytest.raises(JailUnavailable, match="--allow-unjailed"):
        choose_backend("none")
    assert choose_backend("none", allow_unjailed=True) == "none"


class _Dist(metadata.Distribution):
    """A distribution whose metadata is given, not read from disk."""

    def __init__(self, fields: dict[str, str]) -> None:
        self._fields = fields

    def read_text(self, filename: str) -> str | None:
        if filename != "METADATA":
            return None
        message = Message()
        for key, value in self._fields.items():
            message[key] = value
        return message.as_string()

    def locate_file(self, path: Any) -> Any:
        raise FileNotFoundError(path)


def test_a_distribution_without_a_name_is_named_empty():
    assert _distribution_name(_Dist({"Name": "agentmem-notes", "Version": "1"})) == "agentmem-notes"
    assert _distribution_name(_Dist({"Version": "1"})) == ""


def test_a_worker_failure_kind_is_trusted_only_when_known():
    assert _is_failure_kind("timeout") and _is_failure_kind("denied")
    assert not _is_failure_kind("rootkit") and not _is_failure_kind(["timeout"]) and not _is_failure_kind(None)


def test_a_worker_message_field_is_an_object_or_empty():
    message = {"tags": {"plugin": "notes"}, "options": ["max_tokens"], "schema": None}
    assert _object_field(message, "tags") == {"plugin": "notes"}
    assert _object_field(message, "options") == {}
    assert _object_field(message, "schema") == {}
    assert _object_field(message, "missing") == {}
