"""Structured calls are never cut short by their own token limit (agentmem.llm.structured).

Plumbing tests with a scripted backend that honours ``max_tokens`` the way a
server does: a reply longer than the limit comes back cut, with
``finish_reason="length"``.
"""

from __future__ import annotations

import json
import random
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from agentmem.config import Settings
from agentmem.errors import InvalidReply, LLMError, NoRoomForReply
from agentmem.llm import LLM, transport
from agentmem.llm.structured import (
    REPETITION_PENALTY,
    UNBOUNDED_FIRST_LIMIT,
    estimate_prompt_tokens,
    looks_degenerate,
    plan_reply,
    schema_token_bound,
)
from agentmem.llm.tools import ToolSpec
from agentmem.tokens import count_tokens, truncate_to_tokens


class Summary(BaseModel):
    """A free-text summary: nothing in the schema bounds its length."""

    summary: str


class Fact(BaseModel):
    fact: str = Field(max_length=160)
    key: str = Field(max_length=40)


class Facts(BaseModel):
    facts: list[Fact] = Field(default_factory=list, max_length=8)


class Verdict(BaseModel):
    action: Literal["ADD", "UPDATE", "DELETE", "NOOP"]
    old: int = 0


class _Choice:
    def __init__(self, text: str, finish: str) -> None:
        self.message = type("M", (), {"content": text, "tool_calls": None})()
        self.finish_reason = finish


class _Response:
    def __init__(self, text: str, finish: str, completion_tokens: int) -> None:
        self.usage = type("U", (), {"prompt_tokens": 10, "completion_tokens": completion_tokens})()
        self.choices = [_Choice(text, finish)]


class LengthHonouringBackend:
    """Answers every request with ``reply``, cut to the request's ``max_tokens`` as a server cuts it."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.requests: list[dict] = []

    def __call__(self, model, base, key, request, stream=False):
        self.requests.append(request)
        full = self.replies[0] if len(self.replies) == 1 else self.replies.pop(0)
        limit = int(request["max_tokens"])
        if count_tokens(full) > limit:
            return _Response(truncate_to_tokens(full, limit), "length", limit)
        return _Response(full, "stop", count_tokens(full))


def _llm(backend: LengthHonouringBackend, *, context: int | None = None, **settings) -> LLM:
    from agentmem.llm import client

    client._import_litellm()
    llm = LLM(
        "openai/scripted",
        api_base="http://127.0.0.1:1/v1",
        settings=Settings(cache=False, **settings),
        retry_backoff=0.001,
    )
    llm._completion = backend  # type: ignore[method-assign]
    llm.context_window = lambda: context  # type: ignore[method-assign]
    return llm


def varied_text(words: int, seed: int = 7) -> str:
    """Long text that does not repeat itself (a long reply, not a looping one): seeded made-up words."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocabulary = ["".join(rng.choice(letters) for _ in range(rng.randint(3, 8))) for _ in range(2000)]
    return " ".join(rng.choice(vocabulary) for _ in range(words))


#: what the 0.5B wrote for a LoCoMo session under the JSON grammar: two sentences, looping past any room (~12k tokens)
LOOPING_SUMMARY = json.dumps(
    {
        "summary": "Caroline and Melanie had a great time at the pottery workshop. "
        + "The text also mentions that they are some of my fave memories. The text also mentions that they are "
        "great friends and community, and that their love and support really helped me through tough times. " * 300
    }
)
LONG_SUMMARY = json.dumps({"summary": "Caroline went to the LGBTQ support group on 7 May 2023. " + varied_text(420)})


def test_schema_bounds_follow_lengths_counts_and_enums():
    assert schema_token_bound(Summary.model_json_schema()) is None  # an unbounded string
    facts = schema_token_bound(Facts.model_json_schema())
    assert facts is not None and facts > 8 * (160 + 40)  # every fact at full length fits
    verdict = schema_token_bound(Verdict.model_json_schema())
    assert verdict is not None and verdict < 100
    assert schema_token_bound({"type": "array", "items": {"type": "string", "maxLength": 10}}) is None  # no maxItems


def test_plan_gives_the_room_the_prompt_leaves_and_refuses_a_prompt_that_leaves_none():
    messages = [{"role": "user", "content": "word " * 1000}]
    plan = plan_reply(messages, Summary.model_json_schema(), context_window=8192)
    assert plan.first == plan.room == 8192 - estimate_prompt_tokens(messages)
    bounded = plan_reply(messages, Verdict.model_json_schema(), context_window=8192)
    assert bounded.first == bounded.bound < bounded.room and bounded.after_cut(bounded.first) == bounded.room
    assert bounded.after_cut(bounded.room) is None  # cut at the full room: nothing more to give
    with pytest.raises(NoRoomForReply, match="give a smaller input"):
        plan_reply(messages, Summary.model_json_schema(), context_window=1100)
    unknown = plan_reply(messages, Summary.model_json_schema(), context_window=None)
    assert unknown.first == 4096 and unknown.after_cut(4096) == 8192


def test_a_reply_cut_by_its_limit_is_asked_again_with_the_room_left_not_repaired():
    backend = LengthHonouringBackend(LONG_SUMMARY)
    llm = _llm(backend, context=8192)
    got = llm.structured(
        [{"role": "user", "content": "Summarise the session."}], Summary, caller="t.summary", max_tokens=300
    )  # a caller's cap far below what the reply needs
    assert got.summary.startswith("Caroline went")
    assert [r["max_tokens"] for r in backend.requests][0] == 300
    assert backend.requests[1]["max_tokens"] > 7000  # all the room the prompt leaves
    assert len(backend.requests[1]["messages"]) == len(backend.requests[0]["messages"])  # the same request: no repair
    assert llm.meter.events() == {"length_retry": 1}


def test_a_reply_cut_at_the_full_room_raises_no_room_at_once():
    backend = LengthHonouringBackend(LONG_SUMMARY)
    llm = _llm(backend, context=700)
    with pytest.raises(NoRoomForReply) as info:
        llm.structured([{"role": "user", "content": "Summarise the session."}], Summary, caller="t.summary")
    assert len(backend.requests) == 1  # cut at the full room: neither repaired nor retried under the same limit
    assert "\n" not in str(info.value) and "smaller input" in str(info.value)
    assert isinstance(info.value, LLMError)
    assert llm.meter.events() == {"no_room": 1}


def test_with_an_unknown_context_the_limit_doubles_until_the_reply_fits():
    reply = json.dumps({"summary": "word " + varied_text(4000)})  # ~5,400 tokens: past the first 4,096
    backend = LengthHonouringBackend(reply)
    llm = _llm(backend, context=None)
    assert llm.structured([{"role": "user", "content": "x"}], Summary).summary.startswith("word")
    assert [r["max_tokens"] for r in backend.requests] == [4096, 8192]


def test_bounded_schema_limit_covers_a_full_length_reply():
    full = Facts(facts=[Fact(fact="x" * 160, key="y" * 40) for _ in range(8)]).model_dump_json()
    backend = LengthHonouringBackend(full)
    llm = _llm(backend, context=8192)
    assert len(llm.structured([{"role": "user", "content": "x"}], Facts).facts) == 8
    assert len(backend.requests) == 1


def test_raw_control_characters_inside_strings_are_read_not_refused():
    backend = LengthHonouringBackend('{"summary": "line one\nline two\ttabbed"}')
    llm = _llm(backend, context=8192)
    assert llm.structured([{"role": "user", "content": "x"}], Summary).summary == "line one\nline two\ttabbed"
    assert len(backend.requests) == 1


def test_an_invalid_complete_reply_is_repaired_once_then_invalid_reply():
    backend = LengthHonouringBackend('{"action": "MERGE"}', '{"action": "KEEP"}')
    llm = _llm(backend, context=8192)
    with pytest.raises(InvalidReply, match="after a repair attempt"):
        llm.structured([{"role": "user", "content": "x"}], Verdict, caller="t.verdict")
    assert len(backend.requests) == 2 and "not a valid Verdict" in backend.requests[1]["messages"][-1]["content"]
    assert llm.meter.events() == {"invalid": 1, "repair": 1}


def test_a_cut_json_reply_is_not_cached():
    class DictCache:
        def __init__(self) -> None:
            self.data: dict[str, str] = {}

        def get(self, request):
            return self.data.get(json.dumps(request, sort_keys=True))

        def put(self, request, text):
            self.data[json.dumps(request, sort_keys=True)] = text

    backend = LengthHonouringBackend(LONG_SUMMARY)
    llm = _llm(backend, context=8192)
    llm.cache = DictCache()
    llm.structured([{"role": "user", "content": "x"}], Summary, max_tokens=100)
    assert len(llm.cache.data) == 1  # only the complete reply was kept
    assert json.loads(next(iter(llm.cache.data.values())))["summary"].startswith("Caroline")


def test_tool_arguments_cut_by_the_limit_are_asked_again_with_room():
    def note(text: str) -> str:
        """Keep a note."""
        return text

    long_args = json.dumps({"text": "remember this detail " * 200})
    backend = LengthHonouringBackend(long_args)
    llm = _llm(backend, context=8192)
    call = llm.call_tool(
        [{"role": "user", "content": "note it"}], [ToolSpec.from_function(note)], tool="note", max_tokens=64
    )
    assert call.arguments["text"].startswith("remember this detail")
    assert [r["max_tokens"] for r in backend.requests][0] == 64 and backend.requests[1]["max_tokens"] > 7000


def test_control_characters_are_read_through_a_schema_that_validates_json_only():
    """A sandboxed program's schema validates JSON text in its worker: the lenient read re-encodes for it."""
    from agentmem.llm.structured import validate_reply

    class JsonOnly(Summary):
        @classmethod
        def model_validate(cls, obj, *args, **kwargs):  # type: ignore[override]
            raise AssertionError("only model_validate_json may be used")

    assert validate_reply(JsonOnly, '{"summary": "a\nb"}').summary == "a\nb"
    with pytest.raises(ValueError):
        validate_reply(JsonOnly, '{"other": 1}')


# -- replies that loop -----------------------------------------------------------------------


def test_looping_replies_are_told_from_long_ones():
    assert looks_degenerate(LOOPING_SUMMARY)
    assert looks_degenerate('{"summary": "a' + " \n" * 800)  # whitespace to the limit
    assert looks_degenerate('{"summary": "' + "!" * 2000)  # one character
    assert not looks_degenerate(LONG_SUMMARY) and not looks_degenerate(varied_text(3000))
    assert not looks_degenerate("ok " * 20)  # too short to judge


def test_an_unbounded_schema_is_first_given_the_configured_limit_then_the_room():
    backend = LengthHonouringBackend(json.dumps({"summary": varied_text(1500)}))  # long, not looping
    llm = _llm(backend, context=8192)
    assert llm.structured([{"role": "user", "content": "x"}], Summary).summary
    limits = [r["max_tokens"] for r in backend.requests]
    assert limits[0] == UNBOUNDED_FIRST_LIMIT and limits[1] > 7000  # a long varied reply still gets all the room
    assert not any("frequency_penalty" in r for r in backend.requests)
    assert llm.meter.events() == {"length_retry": 1}
    small = LengthHonouringBackend('{"summary": "short"}')
    _llm(small, context=8192, structured_first_tokens=256).structured([{"role": "user", "content": "x"}], Summary)
    assert small.requests[0]["max_tokens"] == 256
    bounded = LengthHonouringBackend('{"action": "ADD"}')
    _llm(bounded, context=8192).structured([{"role": "user", "content": "x"}], Verdict)
    assert bounded.requests[0]["max_tokens"] < 100  # a bounded schema keeps its own bound


def test_a_looping_cut_reply_is_asked_again_once_with_a_penalty_then_invalid_reply_never_more_room():
    backend = LengthHonouringBackend(LOOPING_SUMMARY)
    llm = _llm(backend, context=8192)
    with pytest.raises(InvalidReply, match="repeated itself") as info:
        llm.structured([{"role": "user", "content": "Summarise the session."}], Summary, caller="t.summary")
    assert "\n" not in str(info.value)
    assert [r["max_tokens"] for r in backend.requests] == [UNBOUNDED_FIRST_LIMIT] * 2  # never more room
    assert "frequency_penalty" not in backend.requests[0]
    assert backend.requests[1]["frequency_penalty"] == backend.requests[1]["presence_penalty"] == REPETITION_PENALTY
    assert backend.requests[1]["messages"] == backend.requests[0]["messages"]  # the same request: no repair
    assert llm.meter.events() == {"degenerate": 1, "invalid": 1}


def test_a_loop_that_the_penalty_cures_gives_the_item():
    backend = LengthHonouringBackend(LOOPING_SUMMARY, '{"summary": "Caroline and Melanie made pots."}')
    llm = _llm(backend, context=8192)
    got = llm.structured([{"role": "user", "content": "x"}], Summary)
    assert got.summary == "Caroline and Melanie made pots."
    assert len(backend.requests) == 2 and backend.requests[1]["frequency_penalty"] == REPETITION_PENALTY
    assert llm.meter.events() == {"degenerate": 1}


def test_a_loop_found_after_a_length_retry_is_penalised_back_at_the_first_limit():
    backend = LengthHonouringBackend(json.dumps({"summary": varied_text(1500)}), LOOPING_SUMMARY, LOOPING_SUMMARY)
    llm = _llm(backend, context=8192)
    with pytest.raises(InvalidReply):
        llm.structured([{"role": "user", "content": "x"}], Summary)
    limits = [r["max_tokens"] for r in backend.requests]
    assert limits[0] == limits[2] == UNBOUNDED_FIRST_LIMIT and limits[1] > 7000


def test_the_penalty_reaches_the_server_only_when_set(monkeypatch):
    sent: list[dict] = []

    class FakeLitellm:
        @staticmethod
        def completion(**kwargs):
            sent.append(kwargs)

    monkeypatch.setattr(transport, "import_litellm", lambda: FakeLitellm)
    target = transport.Target("openai/x", None, None)
    base = {"messages": [], "max_tokens": 8, "temperature": 0.0}
    transport.completion(target, base, timeout=1)
    transport.completion(target, {**base, "frequency_penalty": 0.5, "presence_penalty": 0.5}, timeout=1)
    assert "frequency_penalty" not in sent[0] and "presence_penalty" not in sent[0]
    assert sent[1]["frequency_penalty"] == sent[1]["presence_penalty"] == 0.5
