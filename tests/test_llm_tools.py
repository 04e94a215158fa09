"""Tool calling: specs from functions, tool calls parsed from text, and calls from the real 0.5B model."""

from __future__ import annotations

import json
from typing import Literal

import pytest

from agentmem.errors import LLMError
from agentmem.llm import LLM, ToolCall, ToolCallError, ToolSpec, parse_tool_calls


def book_flight(destination: str, date: str, seat: Literal["window", "aisle"]) -> str:
    """Book a plane ticket.

    Args:
        destination: The city to fly to.
        date: The departure date, YYYY-MM-DD.
        seat: The seat preference.
    """
    return f"booked {destination} {date} {seat}"


def get_weather(city: str, unit: Literal["celsius", "fahrenheit"] = "celsius") -> str:
    """Get the current weather forecast for a city.

    :param city: The city name.
    :param unit: The temperature unit.
    """
    return f"sunny in {city}"


# -- specs ------------------------------------------------------------------------------------
def test_spec_from_function_uses_hints_defaults_and_docstring():
    spec = ToolSpec.from_function(book_flight)
    assert spec.name == "book_flight" and spec.description == "Book a plane ticket."
    params = spec.parameters
    assert params["type"] == "object" and params["required"] == ["destination", "date", "seat"]
    assert params["properties"]["seat"]["enum"] == ["window", "aisle"]
    assert params["properties"]["date"]["description"] == "The departure date, YYYY-MM-DD."
    assert params["additionalProperties"] is False and "title" not in params
    assert spec.openai()["function"]["name"] == "book_flight"

    weather = ToolSpec.from_function(get_weather)
    assert weather.parameters["required"] == ["city"]
    assert weather.parameters["properties"]["unit"]["default"] == "celsius"
    assert weather.parameters["properties"]["city"]["description"] == "The city name."
    assert weather(city="Oslo") == "sunny in Oslo"


def test_spec_validates_arguments():
    spec = ToolSpec.from_function(book_flight)
    good = {"destination": "Lisbon", "date": "2024-05-03", "seat": "window"}
    assert spec.validate_arguments(good) == good
    assert spec.validate_arguments(json.dumps(good)) == good
    with pytest.raises(ToolCallError, match="seat"):
        spec.validate_arguments({**good, "seat": "middle"})
    with pytest.raises(ToolCallError, match="Field required"):
        spec.validate_arguments({"destination": "Lisbon"})

    raw = ToolSpec(
        name="lookup",
        parameters={
            "type": "object",
            "properties": {"k": {"type": "integer"}},
            "required": ["k"],
            "additionalProperties": False,
        },
    )
    assert raw.validate_arguments({"k": 3}) == {"k": 3}
    with pytest.raises(ToolCallError, match="k: expected integer"):
        raw.validate_arguments({"k": "three"})
    with pytest.raises(ToolCallError, match="unexpected argument"):
        raw.validate_arguments({"k": 1, "j": 2})


def test_schema_checking_covers_refs_nesting_and_alternatives():
    """A raw schema's arguments are checked by jsonschema (``$ref``, nested arrays, ``anyOf``), in short lines."""
    schema = {
        "type": "object",
        "$defs": {
            "leg": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "nights": {"type": "integer"}},
                "required": ["city"],
                "additionalProperties": False,
            }
        },
        "properties": {
            "legs": {"type": "array", "items": {"$ref": "#/$defs/leg"}, "maxItems": 3},
            "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
        "required": ["legs"],
    }
    trip = ToolSpec(name="trip", parameters=schema)
    assert trip.validate_arguments({"legs": [{"city": "Oslo", "nights": 2}], "note": None})["legs"][0]["nights"] == 2
    with pytest.raises(ToolCallError) as err:
        trip.validate_arguments({"legs": [{"city": "Oslo", "nights": "two"}, {"nights": 1, "bus": True}], "note": 3})
    message = str(err.value)
    assert "legs.0.nights: expected integer, got str" in message
    assert "legs.1.city: Field required" in message and "+1 more" in message  # legs.1.bus, note: only three shown
    broken = ToolSpec(name="broken", parameters={"type": "object", "properties": {"k": {"type": "whole"}}})
    with pytest.raises(ToolCallError, match="schema"):
        broken.validate_arguments({"k": 1})


def search_notes(query: str, limit: int = 5) -> list[str]:
    """Search the notes for a phrase,
    newest first.

    Parameters
    ----------
    query : str
        The words to look for.
    limit : int
        How many notes at most.
    """
    return []


def test_numpydoc_docstrings_and_wrapped_summaries_are_read():
    spec = ToolSpec.from_function(search_notes)
    assert spec.description == "Search the notes for a phrase, newest first."
    assert spec.parameters["properties"]["query"]["description"] == "The words to look for."
    assert spec.parameters["properties"]["limit"]["description"] == "How many notes at most."


# -- parsing calls written as text -------------------------------------------------------------
TOOLS = [book_flight, get_weather]
LISBON = {"destination": "Lisbon", "date": "2024-05-03", "seat": "window"}


@pytest.mark.parametrize(
    "text",
    [
        '{"name": "book_flight", "arguments": {"destination": "Lisbon", "date": "2024-05-03", "seat": "window"}}',
        'Sure! ```json\n{"name": "book_flight", "parameters": {"destination": "Lisbon", "date": "2024-05-03",'
        ' "seat": "window"}}\n``` done.',
        '<tool_call>\n{"name": "book_flight", "arguments": {"destination": "Lisbon", "date": "2024-05-03",'
        ' "seat": "window"}}\n</tool_call>',
        '[{"id": "c1", "type": "function", "function": {"name": "book_flight", "arguments":'
        ' "{\\"destination\\": \\"Lisbon\\", \\"date\\": \\"2024-05-03\\", \\"seat\\": \\"window\\"}"}}]',
        'I will call book_flight(destination="Lisbon", date="2024-05-03", seat="window") now.',
        "book_flight('Lisbon', '2024-05-03', seat='window')",
    ],
    ids=["json", "fenced-parameters", "qwen-block", "openai-list", "python-kw", "python-positional"],
)
def test_parse_tool_calls_formats(text):
    calls = parse_tool_calls(text, TOOLS)
    assert [(c.name, c.arguments) for c in calls] == [("book_flight", LISBON)]
    assert calls[0].id == ("c1" if '"c1"' in text else None)


def test_parse_several_calls_and_unknown_names():
    text = (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>\n'
        '<tool_call>{"name": "launch_rocket", "arguments": {}}</tool_call>\n'
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome", "unit": "fahrenheit"}}</tool_call>'
    )
    calls = parse_tool_calls(text, TOOLS)
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"city": "Oslo"}),
        ("get_weather", {"city": "Rome", "unit": "fahrenheit"}),
    ]
    # with no specs, any well-formed call is returned unchecked
    assert len(parse_tool_calls(text)) == 3


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "I cannot help with that.",
        '{"answer": 42}',
        "{not json at all",
        "book_flight(",
        "print('x')",
        "<tool_call>garbage</tool_call>",
        '{"name": "rm_rf", "arguments": {"path": "/"}}',
    ],
)
def test_parse_tool_calls_on_garbage_is_empty(text):
    assert parse_tool_calls(text, TOOLS) == []


def test_parse_tool_calls_bad_arguments_is_a_clear_error():
    text = '{"name": "book_flight", "arguments": {"destination": "Lisbon", "date": "2024-05-03", "seat": "middle"}}'
    with pytest.raises(ToolCallError) as err:
        parse_tool_calls(text, TOOLS)
    assert "book_flight" in str(err.value) and "seat" in str(err.value) and "\n" not in str(err.value)
    assert parse_tool_calls(text, TOOLS, strict=False) == []


# -- LLM.call_tool plumbing (scripted replies) ---------------------------------------------------
class _Usage:
    prompt_tokens = 5
    completion_tokens = 2


class _Message:
    def __init__(self, content, tool_calls=None):
        self.content = content
        self.tool_calls = tool_calls


class _Fn:
    def __init__(self, name, arguments):
        self.name, self.arguments = name, arguments


class _TC:
    def __init__(self, name, arguments, id="call_1"):
        self.id, self.type, self.function = id, "function", _Fn(name, arguments)


class _Fake:
    def __init__(self, *messages):
        self.script = list(messages)
        self.requests = []

    def __call__(self, model, base, key, request):
        self.requests.append(request)
        item = self.script.pop(0)
        msg = item if isinstance(item, _Message) else _Message(item)
        response = type("R", (), {})()
        response.usage = _Usage()
        response.choices = [type("C", (), {"message": msg})()]
        return response


def _remote(fake):
    from agentmem.config import load_settings
    from agentmem.llm import client

    client._import_litellm()
    llm = LLM("openai/fake", api_base="http://127.0.0.1:1/v1", settings=load_settings(cache=False))
    llm._completion = fake  # type: ignore[method-assign]
    return llm


def test_remote_native_tool_calls_are_read_and_metered():
    fake = _Fake(_Message(None, [_TC("get_weather", json.dumps({"city": "Oslo"}))]))
    llm = _remote(fake)
    call = llm.call_tool([{"role": "user", "content": "weather in Oslo?"}], TOOLS, caller="t.tools")
    assert call == ToolCall(name="get_weather", arguments={"city": "Oslo"}, id="call_1")
    request = fake.requests[0]
    assert [t["function"]["name"] for t in request["tools"]] == ["book_flight", "get_weather"]
    assert request["tool_choice"] == "required"
    assert llm.meter.by_caller()["t.tools"].calls == 1


def test_remote_falls_back_to_text_then_repairs_once_then_fails():
    fake = _Fake('<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>')
    assert _remote(fake).call_tool([{"role": "user", "content": "x"}], TOOLS).arguments == {"city": "Rome"}

    fake = _Fake(
        '{"name": "get_weather", "arguments": {"unit": "kelvin"}}',
        _Message("", [_TC("get_weather", '{"city": "Rome"}')]),
    )
    assert _remote(fake).call_tool([{"role": "user", "content": "x"}], TOOLS).arguments == {"city": "Rome"}
    assert "not a valid tool call" in fake.requests[1]["messages"][-1]["content"]

    fake = _Fake("no idea", "still no idea")
    with pytest.raises(LLMError, match="did not make a valid tool call after a repair attempt") as err:
        _remote(fake).call_tool([{"role": "user", "content": "x"}], TOOLS)
    assert "\n" not in str(err.value)


def test_named_tool_uses_constrained_arguments_with_one_repair():
    fake = _Fake('{"destination": "Lisbon", "date": "2024-05-03", "seat": "middle"}', json.dumps(LISBON))
    llm = _remote(fake)
    call = llm.call_tool([{"role": "user", "content": "x"}], TOOLS, tool="book_flight")
    assert call == ToolCall(name="book_flight", arguments=LISBON)
    fmt = fake.requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["schema"]["properties"]["seat"]["enum"] == [
        "window",
        "aisle",
    ]
    assert "tools" not in fake.requests[0]
    with pytest.raises(ValueError, match="unknown tool"):
        llm.call_tool([{"role": "user", "content": "x"}], TOOLS, tool="nope")


# -- the real local model -----------------------------------------------------------------------
@pytest.mark.llm
def test_local_named_tool_call(local_llm):
    messages = [{"role": "user", "content": "Book me a flight to Lisbon on 2024-05-03, I want a window seat"}]
    call = local_llm.call_tool(messages, [book_flight], tool="book_flight", caller="test.tools")
    assert call.name == "book_flight"
    assert call.arguments == {"destination": "Lisbon", "date": "2024-05-03", "seat": "window"}


@pytest.mark.llm
def test_local_model_chooses_the_right_tool(local_llm):
    flight = local_llm.call_tool(
        [{"role": "user", "content": "Book me a flight to Lisbon on 2024-05-03, I want a window seat"}],
        [get_weather, book_flight],
    )
    assert flight.name == "book_flight" and flight.arguments["destination"] == "Lisbon"
    weather = local_llm.call_tool(
        [{"role": "user", "content": "What is the weather like in Paris right now?"}],
        [book_flight, get_weather],
    )
    assert weather.name == "get_weather" and weather.arguments["city"] == "Paris"
