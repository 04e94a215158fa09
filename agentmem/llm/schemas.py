"""JSON and JSON-schema helpers of the LLM layer, in one place.

* :func:`response_format` is the one way a JSON schema becomes a request's
  ``response_format``: OpenAI's ``json_schema`` for litellm providers, and
  llama-cpp-python's ``{"type": "json_object", "schema": ...}`` for the
  embedded local server (:func:`for_llama_cpp` translates a request written
  the OpenAI way).
* :func:`extract_json` / :func:`parse_json_object` read the JSON value out of a
  reply (code fences, surrounding prose, raw control characters in strings).
* :func:`schema_problems` checks a value against a JSON schema with the
  ``jsonschema`` library and words each problem in one short line that a small
  model can act on when it is sent back for repair.
* :func:`clean_schema` drops pydantic's ``title`` noise; :func:`validation_summary`
  words a pydantic error (or any exception) the same short way.

Nothing here imports the client, the tools or the structured-output loop, so
each of those may use these helpers without an import cycle.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

__all__ = [
    "clean_schema",
    "extract_json",
    "for_llama_cpp",
    "parse_json_object",
    "response_format",
    "schema_problems",
    "validation_summary",
]


# -- response formats -----------------------------------------------------------------------
def response_format(name: str, schema: Mapping[str, Any], *, local: bool) -> dict[str, Any]:
    """The ``response_format`` that constrains a reply to ``schema``.

    ``local``: the embedded llama.cpp server, which takes the schema under
    ``json_object`` (it compiles it to a grammar); every other backend gets
    OpenAI's ``json_schema`` form, which litellm passes on or translates.
    """
    if local:
        return {"type": "json_object", "schema": dict(schema)}
    return {"type": "json_schema", "json_schema": {"name": name, "schema": dict(schema)}}


def for_llama_cpp(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    """``response_format`` as llama-cpp-python's server reads it (OpenAI's ``json_schema`` moved under
    ``json_object``); anything else is returned as it is."""
    if not response_format or response_format.get("type") != "json_schema":
        return response_format
    inner = response_format.get("json_schema") or {}
    return {"type": "json_object", "schema": inner.get("schema", inner)}


# -- reading JSON out of a reply ---------------------------------------------------------------
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def extract_json(text: str) -> str:
    """The JSON object in a reply, without code fences or surrounding prose."""
    stripped = text.strip()
    fence = _FENCE.search(stripped)
    if fence:
        stripped = fence.group(1).strip()
    if not stripped.startswith("{"):
        start, end = stripped.find("{"), stripped.rfind("}")
        if start != -1 and end > start:
            stripped = stripped[start : end + 1]
    return stripped


def parse_json_object(text: str) -> Any:
    """The JSON value in ``text``, accepting raw control characters inside strings."""
    return json.loads(extract_json(text), strict=False)


# -- schemas -----------------------------------------------------------------------------------
def clean_schema(schema: Any) -> Any:
    """Drop pydantic's ``title`` noise (not field names) so small models see a short schema."""
    if isinstance(schema, dict):
        out = {}
        for key, value in schema.items():
            if key == "title" and isinstance(value, str):
                continue
            if key in ("properties", "$defs", "definitions") and isinstance(value, dict):
                out[key] = {k: clean_schema(v) for k, v in value.items()}
            else:
                out[key] = clean_schema(value)
        return out
    if isinstance(schema, list):
        return [clean_schema(v) for v in schema]
    return schema


def schema_problems(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """What is wrong with ``value`` under the JSON schema ``schema``, one short line each (``[]``: valid).

    The checking is ``jsonschema``'s (the validator the schema's ``$schema``
    names, else the latest draft); the wording is ours, because these lines
    go back to the model in a repair request: ``date: Field required``,
    ``k: expected integer, got str``, ``j: unexpected argument``. A schema
    that is itself broken is reported as one problem rather than raised.
    """
    import jsonschema
    from jsonschema.exceptions import SchemaError, UnknownType

    validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        errors = sorted(validator_class(schema).iter_errors(value), key=lambda e: [str(p) for p in e.absolute_path])
        return [line for error in errors for line in _worded(error)]
    except (SchemaError, UnknownType) as exc:
        return [f"the schema itself is not valid ({' '.join(str(exc).split())[:160]})"]
    except Exception as exc:
        return [f"the schema could not be checked ({type(exc).__name__}: {' '.join(str(exc).split())[:160]})"]


def _worded(error: Any) -> list[str]:
    """One jsonschema error as the short lines :func:`schema_problems` gives."""
    path = ".".join(str(p) for p in error.absolute_path)
    at = path or "(root)"
    prefix = f"{path}." if path else ""
    kind, expected, instance = error.validator, error.validator_value, error.instance
    if kind == "required" and isinstance(instance, dict):
        return [f"{prefix}{name}: Field required" for name in expected if name not in instance][:1] or [
            f"{at}: {error.message}"
        ]
    if kind == "additionalProperties" and isinstance(instance, dict):
        known = set((error.schema.get("properties") or {}).keys())
        patterns = list((error.schema.get("patternProperties") or {}).keys())
        extra = [k for k in instance if k not in known and not any(re.search(p, k) for p in patterns)]
        return [f"{prefix}{k}: unexpected argument" for k in extra] or [f"{at}: {error.message}"]
    if kind == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return [f"{at}: expected {'/'.join(kinds)}, got {type(instance).__name__}"]
    if kind == "enum":
        return [f"{at}: must be one of {expected}"]
    if kind == "const":
        return [f"{at}: must be {expected!r}"]
    if kind in ("anyOf", "oneOf"):
        return [f"{at}: does not match any allowed form"]
    return [f"{at}: {error.message}"]


def validation_summary(exc: BaseException, limit: int = 3) -> str:
    """A short reason for a repair request or an error line (at most ``limit`` problems)."""
    if isinstance(exc, ValidationError):
        parts = []
        for err in exc.errors()[:limit]:
            loc = ".".join(str(x) for x in err.get("loc", ())) or "(root)"
            parts.append(f"{loc}: {err.get('msg')}")
        more = exc.error_count() - len(parts)
        return "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:197] + "..."
