"""Tool calling that works with small local models as well as with native function calling.

A tool is described by a :class:`ToolSpec` (name, description, JSON schema of
its arguments), usually built from a plain typed function with
:meth:`ToolSpec.from_function`. :func:`call_tool` (``LLM.call_tool``) gets one
:class:`ToolCall` out of a model:

* local models, and any model when the tool is named: JSON-schema constrained
  output (llama.cpp turns the schema into a grammar). With no tool named, two
  constrained steps: first the tool's name (an enum of the names), then its
  arguments (that tool's parameter schema). Each step is fully constrained,
  which the 0.5B model follows far better than one free-form call object.
* remote models with no tool named: native function calling (``tools=`` and
  ``tool_choice="required"``), reading ``message.tool_calls`` and falling back
  to :func:`parse_tool_calls` on the reply text.

Arguments are validated against the schema; an invalid reply is sent back once
for repair, then a one-line :class:`~agentmem.errors.LLMError` is raised.

:func:`parse_tool_calls` finds tool calls written as text: JSON objects
``{"name": ..., "arguments": {...}}`` (also OpenAI's ``{"function": {...}}``
shape and lists of them), Qwen's ``<tool_call>...</tool_call>`` blocks, and
python-call style ``book_flight(destination="Lisbon", seat="window")``.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import typing
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import docstring_parser
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, create_model

from agentmem.errors import LLMError
from agentmem.llm.schemas import clean_schema, parse_json_object, response_format, schema_problems, validation_summary
from agentmem.llm.structured import ChatClient, Reply, ask_json, schema_token_bound, with_instruction
from agentmem.llm.transport import one_line, tool_calls_as_text

__all__ = [
    "ToolSpec",
    "ToolCall",
    "ToolCallError",
    "parse_tool_calls",
    "call_tool",
    "as_tool_specs",
    "tool_calls_as_text",
]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


class ToolCallError(LLMError):
    """A tool call that names a known tool but whose arguments do not fit its schema."""


class ToolClient(ChatClient, Protocol):
    """What tool calling needs of a client (:class:`agentmem.llm.LLM` is one)."""

    temperature: float
    seed: int | None

    def _call_reply(self, request: dict[str, Any], caller: str | None) -> Reply: ...


# -- specs -------------------------------------------------------------------------------
class ToolSpec(BaseModel):
    """A tool the model may call: its name, what it does, and the JSON schema of its arguments."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str = ""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    _args_model: type[BaseModel] | None = PrivateAttr(default=None)
    _fn: Callable[..., Any] | None = PrivateAttr(default=None)

    @classmethod
    def from_function(
        cls, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None
    ) -> ToolSpec:
        """The spec of a typed function: parameters from its type hints and defaults,
        descriptions from its docstring (first paragraph; ``Args:`` or ``:param x:`` lines)."""
        sig = inspect.signature(fn)
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception:
            hints = {k: p.annotation for k, p in sig.parameters.items()}
        summary, arg_docs = _describe_from_docstring(inspect.getdoc(fn) or "")
        fields: dict[str, Any] = {}
        for pname, param in sig.parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or pname in ("self", "cls"):
                continue
            hint = hints.get(pname, param.annotation)
            if hint is inspect.Parameter.empty:
                hint = Any
            default = ... if param.default is inspect.Parameter.empty else param.default
            fields[pname] = (hint, Field(default, description=arg_docs.get(pname)))
        tool_name = name or fn.__name__
        model = create_model(f"{tool_name}_arguments", __config__=ConfigDict(extra="forbid"), **fields)
        spec = cls(
            name=tool_name,
            description=description if description is not None else summary,
            parameters=clean_schema(model.model_json_schema()),
        )
        spec._args_model = model
        spec._fn = fn
        return spec

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools=`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def validate_arguments(self, arguments: Any) -> dict[str, Any]:
        """``arguments`` checked against the schema (coerced by pydantic for function specs);
        raises :class:`ToolCallError` with a short reason."""
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments) if arguments.strip() else {}
            except ValueError as exc:
                raise ToolCallError(f"{self.name}: arguments are not valid JSON ({exc})") from None
        if not isinstance(arguments, dict):
            raise ToolCallError(f"{self.name}: arguments must be an object, got {type(arguments).__name__}")
        if self._args_model is not None:
            try:
                return self._args_model.model_validate(arguments).model_dump(mode="json", exclude_unset=True)
            except ValidationError as exc:
                raise ToolCallError(f"{self.name}: {validation_summary(exc)}") from None
        problems = schema_problems(arguments, self.parameters)
        if problems:
            more = f" (+{len(problems) - 3} more)" if len(problems) > 3 else ""
            raise ToolCallError(f"{self.name}: {'; '.join(problems[:3])}{more}")
        return dict(arguments)

    def __call__(self, **arguments: Any) -> Any:
        """Run the function this spec was made from."""
        if self._fn is None:
            raise TypeError(f"tool {self.name!r} was not made from a function")
        return self._fn(**arguments)


class ToolCall(BaseModel):
    """One call of a tool: its name and (validated) arguments."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    id: str | None = None


def as_tool_specs(tools: Iterable[ToolSpec | Callable[..., Any]]) -> list[ToolSpec]:
    """``tools`` as specs (functions are described with :meth:`ToolSpec.from_function`)."""
    specs = [t if isinstance(t, ToolSpec) else ToolSpec.from_function(t) for t in tools]
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate tool names: {names}")
    return specs


# -- docstrings ---------------------------------------------------------------------------------
def _describe_from_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """(summary, {argument: description}) from a Google, reST (``:param x:``) or numpydoc docstring
    (parsed by ``docstring_parser``); the summary is the first paragraph, on one line."""
    parsed = docstring_parser.parse(doc)
    summary = parsed.short_description or ""
    if summary and parsed.long_description and not parsed.blank_after_short_description:
        summary = f"{summary} {parsed.long_description.split(chr(10) * 2, 1)[0]}"  # a summary wrapped over lines
    summary = " ".join(summary.split())
    args = {p.arg_name: " ".join((p.description or "").split()) for p in parsed.params}
    return summary, {k: v for k, v in args.items() if v}


# -- parsing tool calls written as text ----------------------------------------------------
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)
_NAME_KEYS = ("name", "tool", "tool_name", "function_name")
_ARG_KEYS = ("arguments", "parameters", "args", "input")


def parse_tool_calls(
    text: str | None,
    tools: Iterable[ToolSpec | Callable[..., Any]] | None = None,
    *,
    strict: bool = True,
) -> list[ToolCall]:
    """The tool calls written in ``text``, in order; ``[]`` when there are none.

    Recognised: ``<tool_call>{...}</tool_call>`` blocks; JSON objects with a
    ``name`` and ``arguments`` (or ``parameters``; also ``{"function": {...}}``
    and lists of calls); and python calls ``name(a=1, b="x")`` of known tools.
    With ``tools`` given, calls to unknown names are ignored and arguments are
    validated: an invalid call raises :class:`ToolCallError` (``strict``) or is
    dropped (``strict=False``).
    """
    if not text or not text.strip():
        return []
    specs = {s.name: s for s in as_tool_specs(tools)} if tools is not None else None
    raw: list[tuple[str, Any, str | None]] = []
    blocks = _TOOL_CALL_BLOCK.findall(text)
    if blocks:
        for block in blocks:
            raw += _json_calls(block) or _python_calls(block, specs)
    else:
        raw = _json_calls(text) or _python_calls(text, specs)
    calls: list[ToolCall] = []
    for name, arguments, call_id in raw:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            continue
        if specs is None:
            if isinstance(arguments, str):
                try:
                    arguments = json.loads(arguments) if arguments.strip() else {}
                except ValueError:
                    if strict:
                        raise ToolCallError(f"{name}: arguments are not valid JSON") from None
                    continue
            if not isinstance(arguments, dict):
                if strict:
                    raise ToolCallError(f"{name}: arguments must be an object")
                continue
            calls.append(ToolCall(name=name, arguments=arguments, id=call_id))
            continue
        spec = specs.get(name)
        if spec is None:
            continue
        try:
            calls.append(ToolCall(name=name, arguments=spec.validate_arguments(arguments), id=call_id))
        except ToolCallError:
            if strict:
                raise
    return calls


def _json_calls(text: str) -> list[tuple[str, Any, str | None]]:
    """Call-shaped dicts in every JSON value found in ``text``."""
    decoder = json.JSONDecoder()
    found: list[tuple[str, Any, str | None]] = []
    i = 0
    while i < len(text):
        if text[i] not in "{[":
            i += 1
            continue
        try:
            value, end = decoder.raw_decode(text, i)
        except ValueError:
            i += 1
            continue
        found += _walk(value)
        i = end
    return found


def _walk(value: Any) -> list[tuple[str, Any, str | None]]:
    if isinstance(value, list):
        return [c for item in value for c in _walk(item)]
    if not isinstance(value, dict):
        return []
    fn = value.get("function")
    if isinstance(fn, dict) and isinstance(fn.get("name"), str):  # OpenAI's tool_calls entry
        return [(fn["name"], fn.get("arguments", {}), value.get("id"))]
    name = next((value[k] for k in _NAME_KEYS if isinstance(value.get(k), str)), None)
    if name is not None:
        args_key = next((k for k in _ARG_KEYS if k in value), None)
        if args_key is not None or set(value) <= {*_NAME_KEYS, "id", "type"}:
            return [(name, value.get(args_key, {}) if args_key else {}, value.get("id"))]
    for key in ("tool_calls", "calls", "tools"):
        if isinstance(value.get(key), list):
            return _walk(value[key])
    return []


def _python_calls(text: str, specs: dict[str, ToolSpec] | None) -> list[tuple[str, Any, str | None]]:
    """``name(a=1, b="x")`` calls of known tools (literal arguments only)."""
    if not specs:
        return []
    pattern = re.compile(
        r"(?<![\w.])(" + "|".join(re.escape(n) for n in sorted(specs, key=len, reverse=True)) + r")\s*\("
    )
    found: list[tuple[str, Any, str | None]] = []
    pos = 0
    while True:
        m = pattern.search(text, pos)
        if not m:
            return found
        close = _matching_paren(text, m.end() - 1)
        if close is None:
            pos = m.end()
            continue
        name = m.group(1)
        args = _literal_arguments(text[m.end() : close], specs[name])
        if args is not None:
            found.append((name, args, None))
        pos = close + 1


def _matching_paren(text: str, open_at: int) -> int | None:
    depth, quote, i = 0, "", open_at
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _literal_arguments(inner: str, spec: ToolSpec) -> dict[str, Any] | None:
    try:
        node = ast.parse(f"f({inner})", mode="eval").body
    except SyntaxError:
        return None
    assert isinstance(node, ast.Call)
    order = list((spec.parameters.get("properties") or {}).keys())
    args: dict[str, Any] = {}
    try:
        for i, arg in enumerate(node.args):
            if i >= len(order):
                return None
            args[order[i]] = _literal(arg)
        for kw in node.keywords:
            if kw.arg is None:
                return None
            args[kw.arg] = _literal(kw.value)
    except ValueError:
        return None
    return args


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Name) and node.id in ("true", "false", "null"):  # JSON spellings
        return {"true": True, "false": False, "null": None}[node.id]
    return ast.literal_eval(node)


# -- getting a tool call from a model --------------------------------------------------------
def _constrained_json(
    llm: ToolClient,
    messages: list[dict[str, Any]],
    schema: dict[str, Any],
    schema_name: str,
    check: Callable[[Any], Any],
    caller: str | None,
    max_tokens: int | None,
    goal: str,
) -> Any:
    """One reply constrained to ``schema`` and passed through ``check`` (see :func:`agentmem.llm.structured.ask_json`:
    a limit from the schema and the room left, a cut reply asked again with room, one repair).
    Raises :class:`~agentmem.errors.InvalidReply` or :class:`~agentmem.errors.NoRoomForReply`."""

    def checked(text: str) -> Any:
        try:
            value = parse_json_object(text)
        except ValueError as exc:
            raise ValueError(f"not valid JSON ({one_line(exc, 160)})") from None
        try:
            return check(value)
        except ToolCallError as exc:
            raise ValueError(str(exc)) from None

    return ask_json(
        llm,
        messages,
        schema=schema,
        response_format=response_format(schema_name, schema, local=llm.is_local),
        check=checked,
        name=schema_name,
        caller=caller,
        max_tokens=max_tokens,
        goal=goal,
    )


def call_tool(
    llm: ToolClient,
    messages: list[dict[str, Any]],
    tools: Iterable[ToolSpec | Callable[..., Any]],
    *,
    tool: str | None = None,
    caller: str | None = None,
    max_tokens: int | None = None,
) -> ToolCall:
    """One validated :class:`ToolCall` from ``llm`` for ``messages`` (see the module's notes)."""
    specs = as_tool_specs(tools)
    if not specs:
        raise ValueError("call_tool needs at least one tool")
    by_name = {s.name: s for s in specs}
    if tool is not None and tool not in by_name:
        raise ValueError(f"unknown tool {tool!r} (known: {', '.join(by_name)})")
    if tool is None and not llm.is_local:
        return _native_call(llm, messages, specs, caller, max_tokens)

    if tool is None:
        if len(specs) == 1:
            tool = specs[0].name
        else:
            names = [s.name for s in specs]
            choose = with_instruction(
                messages,
                "Pick the tool for this request. Tools:\n"
                + "\n".join(f"{s.name} = {s.description or s.name}" for s in specs)
                + '\nAnswer as {"name": ...}.',
            )
            schema = {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": names}},
                "required": ["name"],
                "additionalProperties": False,
            }

            def check_name(value: Any) -> str:
                name = value.get("name") if isinstance(value, dict) else None
                if name not in by_name:
                    raise ToolCallError(f"name must be one of {names}")
                return name

            tool = _constrained_json(
                llm, choose, schema, "tool_choice", check_name, caller, None, goal=f"choose one of the tools {names}"
            )

    spec = by_name[tool]
    ask = with_instruction(
        messages,
        f"Fill in the arguments of `{spec.name}` ({spec.description or 'a tool'}) from the request above, "
        f"copying its words exactly. JSON schema:\n{json.dumps(spec.parameters, separators=(',', ':'))}",
    )
    arguments = _constrained_json(
        llm,
        ask,
        spec.parameters,
        spec.name,
        spec.validate_arguments,
        caller,
        max_tokens,
        goal=f"return valid arguments for tool {spec.name}",
    )
    return ToolCall(name=spec.name, arguments=arguments)


def _native_call(
    llm: ToolClient, messages: list[dict[str, Any]], specs: list[ToolSpec], caller: str | None, max_tokens: int | None
) -> ToolCall:
    """Native function calling (``tools=``), with the reply text parsed as a fallback.

    The limit follows from the tools' argument schemas and the room left; a reply
    cut by it is asked again with room; an invalid call gets one repair."""
    bounds = [schema_token_bound(s.parameters) for s in specs]
    if all(b is not None for b in bounds):
        cap = max(b for b in bounds if b is not None) + 32  # the name and the call's envelope
        max_tokens = cap if max_tokens is None else min(max_tokens, cap)

    def send(convo: list[dict[str, Any]], limit: int, penalty: float | None) -> Reply:
        request: dict[str, Any] = {
            "messages": convo,
            "max_tokens": limit,
            "temperature": llm.temperature,
            "response_format": None,
            "tools": [s.openai() for s in specs],
            "tool_choice": "required",
        }
        if llm.seed is not None:
            request["seed"] = int(llm.seed)
        if penalty:  # asked again after a reply that looped (agentmem.llm.structured)
            request["frequency_penalty"] = request["presence_penalty"] = penalty
        return llm._call_reply(request, caller)  # the text, with native tool_calls as <tool_call> blocks

    def checked(text: str) -> ToolCall:
        try:
            calls = parse_tool_calls(text, specs)
        except ToolCallError as exc:
            raise ValueError(str(exc)) from None
        if not calls:
            raise ValueError("no call of a known tool in the reply")
        return calls[0]

    names = [s.name for s in specs]
    return ask_json(
        llm,
        [dict(m) for m in messages],
        schema=None,
        response_format=None,
        check=checked,
        name="tool call",
        caller=caller,
        max_tokens=max_tokens,
        send=send,
        what="tool call",
        fix=f"Call exactly one of the tools {names} with arguments matching its schema.",
        goal="make a valid tool call",
    )
