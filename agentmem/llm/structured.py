"""Structured output that is never cut short by its own token limit.

Every call in agentmem that asks a model for a JSON object (semantic facts,
summaries, notes, M* knowledge items, tool arguments, queries) goes through
:func:`ask_json`, directly or through :meth:`agentmem.llm.LLM.structured` and
:func:`agentmem.llm.tools.call_tool`. The rules it keeps:

* **The limit follows from the schema and the room left.** A reply may take
  as many tokens as the schema can need (:func:`schema_token_bound`: string
  lengths, item counts, enums) but never more than the context has left after
  the prompt (:func:`plan_reply`). A schema with unbounded strings or lists is
  first given at most ``structured_first_tokens`` (setting, default
  :data:`UNBOUNDED_FIRST_LIMIT`): a summary or a list of facts seldom needs
  more, and a small model that loops under the JSON grammar would otherwise
  spend the whole context (thousands of tokens, minutes on a CPU) before the
  loop is seen.
* **A cut reply is recognised by its finish reason** (``"length"``), not by a
  JSON error, and is asked again with room: with all the room left when the
  first limit was smaller, or (context unknown) with twice the limit. It is
  never sent back for "repair" under the same limit.
* **A cut reply that loops is not given more room**, nor is its input split:
  a reply that repeats itself (:func:`looks_degenerate`: most of the word
  n-grams at its end are repeats, or its end compresses like a run of one
  pattern) would loop in any room. It is asked again once at the first limit
  with a repetition penalty (OpenAI ``frequency_penalty`` and
  ``presence_penalty``: :data:`REPETITION_PENALTY`); if that reply loops too,
  the call fails as :class:`~agentmem.errors.InvalidReply` at once (callers
  fall back as for any invalid reply: the M* adapter writes the raw text with
  an item built from it). A penalised reply that is long but not looping
  gets the length retry above, still penalised.
* **When no room is left**, :class:`~agentmem.errors.NoRoomForReply` is
  raised, before the call when the prompt itself leaves too little room, or
  after a reply cut at the full room. Callers that can give a smaller input
  (the M* adapter splits a session, semantic memory splits a batch) catch it
  and do so.
* **A complete but invalid reply gets one repair** (the validation error is
  sent back), then :class:`~agentmem.errors.InvalidReply`.
* JSON strings holding raw control characters (llama.cpp's grammar lets a
  model write a bare newline inside a string) are read leniently rather
  than refused.

Each outcome is counted on the client's meter (:meth:`Meter.note
<agentmem.llm.meter.Meter.note>`): ``length_retry``, ``repair``, and the two
ways a call fails, ``no_room`` and ``invalid``, and ``degenerate`` (a looping
reply asked again with the penalty); evaluation results report
them (:class:`agentmem.evaluation.ExtractionHealth`).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from jinja2 import Environment, StrictUndefined
from pydantic import BaseModel, ValidationError

from agentmem.config import DEFAULT_STRUCTURED_FIRST_TOKENS
from agentmem.errors import InvalidReply, NoRoomForReply
from agentmem.llm import schemas
from agentmem.llm.schemas import extract_json, parse_json_object, validation_summary
from agentmem.llm.transport import Reply
from agentmem.tokens import count_tokens

T = TypeVar("T", bound=BaseModel)
V = TypeVar("V")

__all__ = [
    "ChatClient",
    "Reply",
    "ReplyPlan",
    "ask_json",
    "estimate_prompt_tokens",
    "extract_json",
    "looks_degenerate",
    "parse_json_object",
    "plan_reply",
    "schema_token_bound",
    "structured",
    "validate_reply",
    "validation_summary",
]

# -- prompts (Jinja2) ----------------------------------------------------------------
_jinja = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
SCHEMA_INSTRUCTION = _jinja.from_string(
    "Reply with only a JSON object (no prose, no code fence) that matches this JSON schema:\n{{ schema }}"
)
#: sent back (once) with the reason when a complete reply is not valid; ``what`` names what was asked for
REPAIR_REQUEST = _jinja.from_string("Your reply was not a valid {{ what }}: {{ error }}\n{{ fix }}")
#: the ``fix`` of :data:`REPAIR_REQUEST` for a reply that must be one JSON object
JSON_FIX = "Reply again with only the corrected JSON object that matches the schema."
#: the one line raised when the repaired reply is still not valid; ``goal`` says what the model had to do
GAVE_UP = "{model} did not {goal} after a repair attempt ({error}): try a larger model (--model) or simplify the schema"

#: the least room a reply is given when its schema does not bound it lower
MIN_REPLY_TOKENS = 128
#: first limit, and the ceiling of doubling, when the model's context size is unknown
UNKNOWN_CONTEXT_FIRST_LIMIT = 4096
UNKNOWN_CONTEXT_MAX_LIMIT = 32768
#: the first limit of a reply whose schema is unbounded, when the client has no settings (``structured_first_tokens``)
UNBOUNDED_FIRST_LIMIT = DEFAULT_STRUCTURED_FIRST_TOKENS
#: frequency and presence penalty of the one retry after a reply that looped
REPETITION_PENALTY = 0.5
#: a cut reply loops when, among the word n-grams of its last words, this share are repeats ...
_LOOP_NGRAM = 6
_LOOP_TAIL_WORDS = 400
_LOOP_MIN_WORDS = 60
_LOOP_REPEATED_SHARE = 0.5
#: ... or when its last characters compress this well (a run of whitespace, one character, one short phrase)
_LOOP_TAIL_CHARS = 4000
_LOOP_MIN_CHARS = 400
_LOOP_COMPRESSION = 5.0
#: the token counter is within ~10% of real tokenizers: keep this much more for the prompt
_PROMPT_SAFETY = 1.15
_PROMPT_MARGIN = 32
_PER_MESSAGE = 6  # role markers of the chat template


class ChatClient(Protocol):
    """What structured output needs of a client (:class:`agentmem.llm.LLM` is one); typed
    here rather than imported, so that the client may import this module without a cycle."""

    is_local: bool

    def complete_reply(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        response_format: dict[str, Any] | None = None,
        caller: str | None = None,
        repetition_penalty: float | None = None,
    ) -> Reply: ...

    def describe(self) -> str: ...


# -- how long a reply may be ---------------------------------------------------------
_FORMAT_TOKENS = {"date-time": 24, "date": 12, "time": 16, "uuid": 40, "duration": 24, "ipv4": 20}


def schema_token_bound(schema: Mapping[str, Any]) -> int | None:
    """The most tokens a JSON value matching ``schema`` can take, or ``None`` when unbounded.

    Strings count one token per allowed character (tokens are seldom shorter),
    lists ``maxItems`` times their item, objects their declared properties with
    key names and punctuation; a string without ``maxLength`` or a list without
    ``maxItems`` is unbounded. The estimate is generous (a limit costs nothing
    unless the model uses it) and, where it still falls short, a cut reply is
    asked again with all the room left.
    """
    bound = _bound(schema, schema, frozenset())
    if bound is None:
        return None
    return int(bound * 1.25) + 16  # whitespace the grammar allows between values


def _bound(node: Any, root: Mapping[str, Any], seen: frozenset[str]) -> int | None:
    if not isinstance(node, Mapping):
        return None
    ref = node.get("$ref")
    if isinstance(ref, str):
        if ref in seen or not ref.startswith("#/"):
            return None  # recursive (or external) schema: no bound
        target: Any = root
        for part in ref[2:].split("/"):
            target = target.get(part) if isinstance(target, Mapping) else None
        return _bound(target, root, seen | {ref})
    for key in ("anyOf", "oneOf"):
        if isinstance(node.get(key), list):
            bounds = [_bound(option, root, seen) for option in node[key]]
            return None if not bounds or any(b is None for b in bounds) else max(b for b in bounds if b is not None)
    if isinstance(node.get("allOf"), list) and node["allOf"]:
        return _bound(node["allOf"][0], root, seen)
    if "const" in node:
        return count_tokens(json.dumps(node["const"])) + 4
    if isinstance(node.get("enum"), list) and node["enum"]:
        return max(count_tokens(json.dumps(v)) for v in node["enum"]) + 4
    kind = node.get("type")
    if isinstance(kind, list):
        bounds = [_bound({**node, "type": k}, root, seen) for k in kind]
        return None if any(b is None for b in bounds) else max(b for b in bounds if b is not None)
    if kind == "string":
        if isinstance(node.get("maxLength"), int):
            return int(node["maxLength"]) + 4
        return _FORMAT_TOKENS.get(str(node.get("format")))
    if kind == "integer":
        return 20
    if kind == "number":
        return 40
    if kind in ("boolean", "null"):
        return 2
    if kind == "array":
        items = node.get("prefixItems") if isinstance(node.get("prefixItems"), list) else None
        if items is not None and node.get("items") is False:
            bounds = [_bound(i, root, seen) for i in items]
            return None if any(b is None for b in bounds) else 4 + sum(b + 2 for b in bounds if b is not None)
        most = node.get("maxItems")
        if not isinstance(most, int):
            return None
        item = _bound(node.get("items", {}), root, seen) if most else 0
        return None if item is None else 4 + most * (item + 2)
    if kind == "object" or "properties" in node:
        props = node.get("properties")
        if not isinstance(props, Mapping) or not props:
            return None  # a free-form mapping
        total = 4
        for name, sub in props.items():
            value = _bound(sub, root, seen)
            if value is None:
                return None
            total += count_tokens(json.dumps(name)) + 4 + value
        return total
    return None  # Any


def estimate_prompt_tokens(messages: list[dict[str, Any]]) -> int:
    """Tokens the prompt will take, estimated on the safe side (no tokenizer download)."""
    raw = 12
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):  # OpenAI content parts
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
        raw += count_tokens(str(content or "")) + _PER_MESSAGE
        if message.get("tool_calls"):
            raw += count_tokens(json.dumps(message["tool_calls"], default=str))
    return int(raw * _PROMPT_SAFETY) + _PROMPT_MARGIN


@dataclass(frozen=True)
class ReplyPlan:
    """The token limits a structured reply is given: the first one, and where retries stop."""

    first: int
    room: int | None  # what the context leaves after the prompt (None: the context size is unknown)
    bound: int | None  # what the schema can need (None: unbounded)

    def after_cut(self, limit: int) -> int | None:
        """The limit to ask again with after a reply was cut at ``limit``; ``None`` when no room is left."""
        if self.room is not None:
            return self.room if limit < self.room else None
        return min(limit * 2, UNKNOWN_CONTEXT_MAX_LIMIT) if limit < UNKNOWN_CONTEXT_MAX_LIMIT else None


def plan_reply(
    messages: list[dict[str, Any]],
    schema: Mapping[str, Any] | None,
    *,
    context_window: int | None,
    max_output: int | None = None,
    requested: int | None = None,
    unbounded_first: int | None = None,
) -> ReplyPlan:
    """The limits of a reply to ``messages`` that must match ``schema``.

    ``context_window``: the model's context in tokens (``None``: unknown);
    ``max_output``: the most the backend lets a reply take; ``requested``: a
    caller's own cap for the first attempt (retries may exceed it);
    ``unbounded_first``: the first limit of a reply whose schema is unbounded
    when the context is known (``None``: all the room; retries may exceed it). Raises
    :class:`NoRoomForReply` when the prompt leaves less than the reply needs
    (its schema bound, at most :data:`MIN_REPLY_TOKENS`).
    """
    bound = schema_token_bound(schema) if schema is not None else None
    room: int | None = None
    prompt = estimate_prompt_tokens(messages)
    if context_window is not None:
        room = context_window - prompt
        if max_output is not None:
            room = min(room, max_output)
        needed = min(bound, MIN_REPLY_TOKENS) if bound is not None else MIN_REPLY_TOKENS
        if room < needed:
            raise NoRoomForReply(
                f"the prompt (about {prompt} tokens) leaves {max(room, 0)} of the model's {context_window} context "
                f"tokens for a reply that needs at least {needed}: give a smaller input or a model with a "
                "longer context",
                room=max(room, 0),
            )
    elif max_output is not None:
        room = max_output
    first_cap = unbounded_first if bound is None and room is not None else None
    candidates = [c for c in (requested, bound, room, first_cap) if c is not None and c > 0]
    first = min(candidates) if candidates else UNKNOWN_CONTEXT_FIRST_LIMIT
    return ReplyPlan(first=first, room=room, bound=bound)


def looks_degenerate(text: str) -> bool:
    """Whether a cut reply is looping rather than long: the small models' failure under a JSON grammar.

    A reply that runs into its limit because it repeats a sentence, a phrase,
    or whitespace would run into any limit; a long but varied one only needs
    room. Two cheap signs, either of which suffices: among the last
    ``_LOOP_TAIL_WORDS`` words, at least half of the ``_LOOP_NGRAM``-word
    sequences occur earlier in that tail (a loop of sentences), or the last
    ``_LOOP_TAIL_CHARS`` characters compress ``_LOOP_COMPRESSION`` times or
    better (whitespace, one character, one short phrase; prose and JSON
    compress 2-3 times). Short texts are never judged.
    """
    tail = text[-_LOOP_TAIL_CHARS:].encode()
    if len(tail) >= _LOOP_MIN_CHARS and len(tail) >= _LOOP_COMPRESSION * len(zlib.compress(tail)):
        return True
    words = text.split()[-_LOOP_TAIL_WORDS:]
    if len(words) < _LOOP_MIN_WORDS:
        return False
    grams = [tuple(words[i : i + _LOOP_NGRAM]) for i in range(len(words) - _LOOP_NGRAM + 1)]
    return 1 - len(set(grams)) / len(grams) >= _LOOP_REPEATED_SHARE


# -- reading a reply -----------------------------------------------------------------
def validate_reply(schema: type[T], text: str) -> T:
    """``text`` parsed into ``schema``; strings with raw control characters are accepted.

    Such a reply is re-encoded as strict JSON and validated again through the
    schema's own ``model_validate_json`` (so a sandboxed program's schema, which
    validates in its worker, reads it too).
    """
    body = extract_json(text)
    try:
        return schema.model_validate_json(body)
    except ValueError as exc:  # pydantic's ValidationError is one
        if _strict_json_ok(body):
            raise  # well-formed JSON that the schema refused: for the repair request
        try:
            value = json.loads(body, strict=False)
        except ValueError:
            raise exc from None
    return schema.model_validate_json(json.dumps(value))


def _strict_json_ok(body: str) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def with_instruction(messages: list[dict[str, Any]], instruction: str) -> list[dict[str, Any]]:
    """``messages`` with ``instruction`` appended to the last user message (or as a new one)."""
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] = f"{message['content']}\n\n{instruction}"
            return out
    out.append({"role": "user", "content": instruction})
    return out


# -- the loop -------------------------------------------------------------------------
def _note(llm: Any, event: str, caller: str | None) -> None:
    note = getattr(llm, "note", None)
    if callable(note):
        note(event, caller)


def ask_json(
    llm: ChatClient,
    messages: list[dict[str, Any]],
    *,
    schema: Mapping[str, Any] | None,
    response_format: dict[str, Any] | None,
    check: Callable[[str], V],
    name: str,
    caller: str | None = None,
    max_tokens: int | None = None,
    send: Callable[[list[dict[str, Any]], int, float | None], Reply] | None = None,
    what: str | None = None,
    fix: str = JSON_FIX,
    goal: str | None = None,
) -> V:
    """One JSON reply to ``messages`` that passes ``check``, by the rules of this module.

    ``check`` turns the reply text into the value (raising ``ValueError`` or a
    ``ValidationError`` when it is not valid). An invalid reply is sent back
    once as :data:`REPAIR_REQUEST` with the reason: ``what`` names what was
    asked for (default ``"<name> object"``) and ``fix`` how to answer; if the
    repaired reply is not valid either, :data:`GAVE_UP` says the model did not
    ``goal`` (default ``"return a valid <name>"``). ``send`` makes one call with a token limit
    and a repetition penalty (``None``: none) (default: :meth:`LLM.complete_reply` with
    ``response_format``). A cut reply that loops (:func:`looks_degenerate`) is asked
    again once with :data:`REPETITION_PENALTY`, then fails as :class:`InvalidReply`. Raises
    :class:`NoRoomForReply` or :class:`InvalidReply` (both
    :class:`~agentmem.errors.LLMError`).
    """

    def complete(convo: list[dict[str, Any]], limit: int, penalty: float | None) -> Reply:
        if penalty is None:  # clients (and test doubles) that know no penalty are asked as before
            return llm.complete_reply(convo, max_tokens=limit, response_format=response_format, caller=caller)
        return llm.complete_reply(
            convo, max_tokens=limit, response_format=response_format, caller=caller, repetition_penalty=penalty
        )

    call = send or complete
    context_window, max_output = _limits_of(llm)
    first_cap = _unbounded_first(llm)
    convo = messages
    repaired = False
    penalty: float | None = None
    error = ""
    try:
        plan = plan_reply(
            convo,
            schema,
            context_window=context_window,
            max_output=max_output,
            requested=max_tokens,
            unbounded_first=first_cap,
        )
        limit = plan.first
        while True:
            reply = call(convo, limit, penalty)
            if reply.cut and looks_degenerate(reply.text):
                if penalty is None:  # more room would only hold more of the loop: penalise it once
                    _note(llm, "degenerate", caller)
                    penalty = REPETITION_PENALTY
                    limit = plan.first
                    continue
                _note(llm, "invalid", caller)
                error = f"the reply repeated itself until its {limit}-token limit cut it, twice"
                raise InvalidReply(
                    f"{_describe(llm)} did not {goal or f'return a valid {name}'}: the {name} reply repeated itself "
                    f"until its {limit}-token limit cut it, also with a repetition penalty: try a larger model "
                    "(--model) or a shorter input",
                    reason=error,
                )
            if reply.cut:
                following = plan.after_cut(limit)
                if following is None:
                    raise NoRoomForReply(
                        f"{_describe(llm)}: the {name} reply did not fit in the {limit} tokens the context left "
                        "for it: give a smaller input or a model with a longer context",
                        room=limit,
                    )
                _note(llm, "length_retry", caller)
                limit = following
                continue
            try:
                return check(reply.text)
            except (ValidationError, ValueError) as exc:
                error = validation_summary(exc)
            if repaired:
                _note(llm, "invalid", caller)
                raise InvalidReply(
                    GAVE_UP.format(model=_describe(llm), goal=goal or f"return a valid {name}", error=error),
                    reason=error,
                )
            repaired = True
            _note(llm, "repair", caller)
            request = REPAIR_REQUEST.render(what=what or f"{name} object", error=error, fix=fix)
            convo = [*convo, {"role": "assistant", "content": reply.text}, {"role": "user", "content": request}]
            plan = plan_reply(
                convo,
                schema,
                context_window=context_window,
                max_output=max_output,
                requested=max_tokens,
                unbounded_first=first_cap,
            )
            limit = plan.first
    except NoRoomForReply:
        _note(llm, "no_room", caller)
        raise


def structured(
    llm: ChatClient,
    messages: list[dict[str, Any]],
    schema: type[T],
    *,
    caller: str | None = None,
    max_tokens: int | None = None,
) -> T:
    """``messages`` answered as a ``schema`` object (see :meth:`agentmem.llm.LLM.structured`)."""
    json_schema = schema.model_json_schema()
    instruction = SCHEMA_INSTRUCTION.render(schema=json.dumps(json_schema, separators=(",", ":")))
    return ask_json(
        llm,
        with_instruction(messages, instruction),
        schema=json_schema,
        response_format=schemas.response_format(schema.__name__, json_schema, local=getattr(llm, "is_local", False)),
        check=lambda text: validate_reply(schema, text),
        name=schema.__name__,
        caller=caller,
        max_tokens=max_tokens,
    )


def _limits_of(llm: Any) -> tuple[int | None, int | None]:
    window = getattr(llm, "context_window", None)
    output = getattr(llm, "max_output_tokens", None)
    return (window() if callable(window) else None, output() if callable(output) else None)


def _unbounded_first(llm: Any) -> int:
    """The first limit of a reply with an unbounded schema: the client's settings, else the default."""
    value = getattr(getattr(llm, "settings", None), "structured_first_tokens", None)
    return int(value) if isinstance(value, int) and value > 0 else UNBOUNDED_FIRST_LIMIT


def _describe(llm: Any) -> str:
    describe = getattr(llm, "describe", None)
    return describe() if callable(describe) else str(getattr(llm, "model", "the model"))
