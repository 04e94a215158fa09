"""The agent SDK: ``agentmem.Agent``.

Plumbing tests use a scripted fake ChatModel; the behaviour a user notices
(threads surviving a restart, the local model calling a tool, memory shared
across a user's threads and not across users, streaming, async) runs on the
real local model (marked ``llm``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from agentmem import Agent, AgentmemError, Reply, TurnTrace
from agentmem.errors import ConfigError, LLMError
from agentmem.sdk import StreamEvent


class ScriptedModel:
    """A fake ChatModel: picks ``tool`` when the user's message contains ``trigger``, answers with a fixed text."""

    model = "scripted"

    def __init__(
        self, answer: str = "noted", tool: str | None = None, trigger: str = "", arguments: dict | None = None
    ):
        self.answer, self.tool, self.trigger, self.arguments = answer, tool, trigger, arguments or {}
        self.prompts: list[list[dict[str, Any]]] = []

    def complete(self, messages, *, max_tokens=None, temperature=None, response_format=None, caller=None) -> str:
        self.prompts.append(messages)
        return self.answer

    def structured(self, messages, schema: type[BaseModel], *, caller=None, max_tokens=None) -> BaseModel:
        if "tool" in schema.model_fields:  # the decide step
            first_line = messages[-1]["content"].split("\n\n")[0]
            wanted = self.tool if self.tool and self.trigger and self.trigger in first_line else "none"
            return schema(tool=wanted)
        return schema(**self.arguments)


def get_weather(city: str) -> str:
    """The current weather in a city."""
    return f"Sunny, 23 degrees in {city}"


def broken_tool(city: str) -> str:
    """A tool that always fails."""
    raise RuntimeError(f"the weather service for {city} is down")


# -- plumbing (fake model) -----------------------------------------------------------------------
def test_reply_shape_and_thread_history(tmp_path: Path) -> None:
    with Agent(model=ScriptedModel("hello Ann"), store_dir=tmp_path, user_id="ann") as agent:
        reply = agent.chat("hi, I am Ann", thread_id="t1")
        assert isinstance(reply, Reply) and isinstance(reply.trace, TurnTrace)
        assert reply.text == "hello Ann" and reply.thread_id == "t1"
        assert [m.role for m in agent.history("t1")] == ["user", "assistant"]
        assert agent.history("never-used") == []
        assert agent.plugins == [] and agent.model == "scripted"


def test_threads_persist_and_feed_the_prompt(tmp_path: Path) -> None:
    with Agent(model=ScriptedModel("ok"), store_dir=tmp_path) as agent:
        agent.chat("the code word is pelican", thread_id="a")
        agent.chat("something else", thread_id="b")
    model = ScriptedModel("ok")
    with Agent(model=model, store_dir=tmp_path) as again:
        assert {t.id: t.messages for t in again.threads()} == {"a": 2, "b": 2}
        again.chat("what was the code word?", thread_id="a")
        sent = "\n".join(m["content"] for m in model.prompts[-1])
        assert "pelican" in sent  # the earlier turn of thread "a" is in the prompt
        assert "something else" not in sent  # thread "b" is not
        assert again.threads()[0].id == "a"  # most recently updated first


def test_tool_runs_and_its_result_reaches_the_answer_prompt(tmp_path: Path) -> None:
    model = ScriptedModel("It is sunny.", tool="get_weather", trigger="weather", arguments={"city": "Paris"})
    with Agent(model=model, tools=[get_weather], store_dir=tmp_path) as agent:
        reply = agent.chat("what's the weather in Paris?", thread_id="t")
        assert [(c.name, c.arguments, c.result) for c in reply.trace.tool_calls] == [
            ("get_weather", {"city": "Paris"}, "Sunny, 23 degrees in Paris")
        ]
        assert "Sunny, 23 degrees in Paris" in model.prompts[-1][-1]["content"]
        tool_msgs = [m for m in agent.history("t") if m.role == "tool"]
        assert tool_msgs[0].tool_name == "get_weather" and tool_msgs[0].tool_args == {"city": "Paris"}
        # a message that needs no tool calls none
        assert agent.chat("thanks!", thread_id="t").trace.tool_calls == []


def test_an_empty_answer_after_a_tool_ran_gives_the_tools_result(tmp_path: Path) -> None:
    model = ScriptedModel("", tool="get_weather", trigger="weather", arguments={"city": "Paris"})
    with Agent(model=model, tools=[get_weather], store_dir=tmp_path) as agent:
        assert agent.chat("what's the weather in Paris?").text == "Sunny, 23 degrees in Paris"
        assert agent.chat("thanks!").text == ""  # no tool ran: nothing to fall back on


def test_a_failing_tool_becomes_its_result_not_a_crash(tmp_path: Path) -> None:
    model = ScriptedModel("Sorry, no weather now.", tool="broken_tool", trigger="weather", arguments={"city": "Oslo"})
    with Agent(model=model, tools=[broken_tool], store_dir=tmp_path) as agent:
        reply = agent.chat("weather in Oslo?")
        (call,) = reply.trace.tool_calls
        assert call.result is None and call.error is not None and "service for Oslo is down" in call.error
        assert "service for Oslo is down" in model.prompts[-1][-1]["content"]
        assert reply.text == "Sorry, no weather now."


def test_memory_observes_the_turn_and_recall_is_traced(tmp_path: Path) -> None:
    with Agent(model=ScriptedModel("noted"), memory="episodic", store_dir=tmp_path, user_id="ann") as agent:
        first = agent.chat("I prefer aisle seats", thread_id="trip")
        assert first.trace.written["episodic"] == ["user: I prefer aisle seats", "assistant: noted"]
        second = agent.chat("which seat do I like?", thread_id="other")
        (detail,) = second.trace.recalls
        assert detail.plugin == "episodic"
        assert any("aisle seats" in item.text for item in detail.items)
        assert all(item.id for item in detail.items)


def test_forget_needs_a_plugin_that_can(tmp_path: Path) -> None:
    with Agent(model=ScriptedModel(), memory="episodic", store_dir=tmp_path) as agent:
        with pytest.raises(ConfigError, match="cannot forget"):
            agent.forget(query="anything")
        with pytest.raises(ConfigError):
            agent.forget()


def test_forget_soft_deletes_semantic_facts(tmp_path: Path) -> None:
    with Agent(model=ScriptedModel(), memory="semantic", store_dir=tmp_path, user_id="ann") as agent:
        semantic = agent.memory.members["semantic"]
        semantic.add_fact("Ann drinks green tea every morning", subject="Ann", key="drink")
        semantic.add_fact("Ann lives in Lisbon", subject="Ann", key="city")
        hits = agent.search_memory("what does Ann drink?")[0].items
        tea = next(i for i in hits if "green tea" in i.text)
        assert agent.forget(tea.id) == 1
        left = [i.text for d in agent.search_memory("what does Ann drink?") for i in d.items]
        assert not any("green tea" in t for t in left) and any("Lisbon" in t for t in left)
        assert agent.forget(query="Lisbon") >= 1
        assert agent.search_memory("Lisbon")[0].items == []


def test_bad_arguments_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(AgentmemError) as err:
        Agent(model=ScriptedModel(), memory="no-such-plugin", store_dir=tmp_path)
    assert "\n" not in str(err.value) and "no-such-plugin" in str(err.value)
    with pytest.raises(ConfigError):
        Agent(model=object(), store_dir=tmp_path)  # type: ignore[arg-type]
    agent = Agent(model=ScriptedModel(), store_dir=tmp_path)
    with pytest.raises(ConfigError, match="empty"):
        agent.chat("   ")
    agent.close()
    agent.close()
    with pytest.raises(ConfigError, match="closed"):
        agent.chat("hello")


def test_stream_events_and_async_with_a_fake(tmp_path: Path) -> None:
    with Agent(model=ScriptedModel("fine"), store_dir=tmp_path) as agent:
        events = list(agent.stream("hello", thread_id="s"))
        assert [e.kind for e in events] == ["token", "reply"]
        assert events[0].text == "fine" and events[-1].reply is not None and events[-1].reply.text == "fine"

        async def go() -> tuple[Reply, list[StreamEvent]]:
            reply = await agent.achat("again", thread_id="s")
            streamed = [e async for e in agent.astream("and again", thread_id="s")]
            return reply, streamed

        reply, streamed = asyncio.run(go())
        assert reply.text == "fine" and streamed[-1].kind == "reply"
        assert len(agent.history("s")) == 6


def test_end_thread_reflects(tmp_path: Path) -> None:
    from agentmem.memory import MemoryProgram
    from agentmem.types import Recall

    class Spy(MemoryProgram):
        name = "spy"
        episodes: list = []

        def recall(self, query):
            return Recall(plugin=self.name)

        def reflect(self, episode):
            Spy.episodes.append(episode)

    from agentmem.toolkit import Stores, Toolkit
    from agentmem.types import Scope

    spy = Spy(Toolkit(scope=Scope(), stores=Stores(tmp_path / "spy")))
    with Agent(model=ScriptedModel("ok"), memory=[spy], store_dir=tmp_path, reflect_every=2) as agent:
        agent.chat("one", thread_id="r")
        assert Spy.episodes == []
        agent.chat("two", thread_id="r")  # every 2 turns
        assert len(Spy.episodes) == 1 and [e.content for e in Spy.episodes[0].events] == ["one", "ok", "two", "ok"]
        agent.end_thread("r", outcome="done")
        assert Spy.episodes[-1].outcome == "done" and Spy.episodes[-1].task == "r"


def test_dead_api_base_is_one_line_llm_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTMEM_MAX_RETRIES", "0")
    with Agent(model="openai/some-model", api_base="http://127.0.0.1:9/v1", store_dir=tmp_path) as agent:
        with pytest.raises(LLMError) as err:
            agent.chat("hello?")
        line = str(err.value)
        assert "\n" not in line and "127.0.0.1:9" in line and "api-base" in line
        with pytest.raises(LLMError):
            list(agent.stream("hello?"))
        assert agent.history("default")[-1].role == "user"  # the message is kept; no answer was invented


# -- the real local model ----------------------------------------------------------------------------
@pytest.mark.llm
@pytest.mark.timeout(600)
def test_local_thread_survives_a_restart(tmp_path: Path, local_llm) -> None:
    with Agent(model=local_llm, store_dir=tmp_path) as agent:
        agent.chat("Please remember: the code word is PELICAN.", thread_id="spy")
    with Agent(model=local_llm, store_dir=tmp_path) as again:
        history = again.history("spy")
        assert [m.role for m in history] == ["user", "assistant"] and "PELICAN" in history[0].content
        reply = again.chat("What is the code word I told you?", thread_id="spy")
        assert "pelican" in reply.text.lower()
        assert reply.trace.llm_calls >= 1 and reply.trace.completion_tokens > 0


@pytest.mark.llm
@pytest.mark.timeout(600)
def test_local_model_calls_a_tool(tmp_path: Path, local_llm) -> None:
    seen: list[str] = []

    def get_weather(city: str) -> str:
        """The current weather in a city."""
        seen.append(city)
        return f"Sunny and 23 degrees Celsius in {city}"

    with Agent(model=local_llm, tools=[get_weather], store_dir=tmp_path) as agent:
        reply = agent.chat("What's the weather in Paris?")
    assert seen == ["Paris"]
    assert [(c.name, c.arguments) for c in reply.trace.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert "23" in reply.text or "sunny" in reply.text.lower()


@pytest.mark.llm
@pytest.mark.timeout(600)
def test_local_memory_crosses_threads_not_users(tmp_path: Path, local_llm) -> None:
    with Agent(model=local_llm, memory="episodic", user_id="ann", store_dir=tmp_path) as ann:
        ann.chat("My favourite colour is teal.", thread_id="monday")
        reply = ann.chat("What is my favourite colour?", thread_id="friday")
        assert any("teal" in i.text for d in reply.trace.recalls for i in d.items)
        assert "teal" in reply.text.lower()
    with Agent(model=local_llm, memory="episodic", user_id="bob", store_dir=tmp_path) as bob:
        recalled = [i.text for d in bob.search_memory("favourite colour") for i in d.items]
        assert not any("teal" in t for t in recalled)


@pytest.mark.llm
@pytest.mark.timeout(600)
def test_local_stream_and_async(tmp_path: Path, local_llm) -> None:
    with Agent(model=local_llm, store_dir=tmp_path) as agent:
        events = list(agent.stream("Say hello in five words.", thread_id="s"))
        tokens = [e for e in events if e.kind == "token"]
        assert len(tokens) >= 2 and events[-1].kind == "reply" and events[:-1] == tokens
        assert events[-1].reply is not None
        assert events[-1].reply.text == "".join(t.text for t in tokens).strip()

        async def go() -> Reply:
            return await agent.achat("Now say goodbye.", thread_id="s")

        reply = asyncio.run(go())
        assert reply.text and len(agent.history("s")) == 4


# -- LLM.stream (plumbing: a scripted litellm response) ---------------------------------------------
class _Chunk:
    def __init__(self, text: str | None, usage: Any = None) -> None:
        from types import SimpleNamespace

        self.choices = [SimpleNamespace(delta=SimpleNamespace(content=text))]
        self.usage = usage


def _scripted_llm(monkeypatch: pytest.MonkeyPatch, pieces: list[Any], cache: Any = False):
    from agentmem.llm import LLM

    monkeypatch.setenv("AGENTMEM_MAX_RETRIES", "0")
    llm = LLM("openai/scripted", api_base="http://127.0.0.1:9/v1", cache=cache)
    calls: list[dict[str, Any]] = []

    def completion(model, base, key, request, *, stream=False):
        calls.append({"stream": stream, **request})

        def gen():
            for piece in pieces:
                if isinstance(piece, BaseException):
                    raise piece
                yield piece

        return gen()

    monkeypatch.setattr(llm, "_ensure_ready", lambda: None)
    monkeypatch.setattr(llm, "_completion", completion)
    return llm, calls


def test_llm_stream_yields_pieces_and_meters(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    usage = SimpleNamespace(prompt_tokens=11, completion_tokens=3)
    llm, calls = _scripted_llm(monkeypatch, [_Chunk(""), _Chunk("Hel"), _Chunk("lo!"), _Chunk(None, usage)])
    assert list(llm.stream([{"role": "user", "content": "hi"}], caller="t")) == ["Hel", "lo!"]
    assert calls[0]["stream"] is True
    total = llm.meter.total()
    assert (total.calls, total.prompt_tokens, total.completion_tokens) == (1, 11, 3)


def test_llm_stream_error_midway_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    llm, _ = _scripted_llm(monkeypatch, [_Chunk("Once upon"), ConnectionError("server went away")])
    got: list[str] = []
    with pytest.raises(LLMError) as err:
        for piece in llm.stream([{"role": "user", "content": "story"}]):
            got.append(piece)
    assert got == ["Once upon"]
    assert "\n" not in str(err.value) and "server went away" in str(err.value) and "broke off" in str(err.value)
    assert llm.meter.total().errors == 1


def test_llm_stream_cached_answer_is_one_chunk(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from agentmem.llm.cache import DiskCache

    cache = DiskCache(tmp_path / "cache.sqlite")
    llm, calls = _scripted_llm(monkeypatch, [_Chunk("The answer"), _Chunk(" is 42.")], cache=cache)
    ask = [{"role": "user", "content": "question"}]
    assert list(llm.stream(ask)) == ["The answer", " is 42."]
    assert list(llm.stream(ask)) == ["The answer is 42."]  # from the cache, one chunk
    assert len(calls) == 1 and llm.meter.total().cache_hits == 1

    async def collect() -> list[str]:
        return [p async for p in llm.astream(ask)]

    assert asyncio.run(collect()) == ["The answer is 42."]


def test_remote_models_use_native_function_calling(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A litellm model other than the local one gets ``tools=`` and answers from the result (scripted replies)."""
    from agentmem.llm import LLM

    llm = LLM("openai/scripted", api_base="http://127.0.0.1:9/v1", cache=False)
    requests: list[dict[str, Any]] = []

    def fake_call(request: dict[str, Any], caller: str | None) -> str:
        requests.append(request)
        return '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>'

    monkeypatch.setattr(llm, "_call", fake_call)
    monkeypatch.setattr(llm, "stream", lambda messages, **kw: iter(["Rome: ", "sunny."]))
    monkeypatch.setattr(llm, "structured", lambda messages, schema, **kw: schema(tool="none"))
    with Agent(model=llm, tools=[get_weather], store_dir=tmp_path) as agent:
        reply = agent.chat("weather in Rome?")
    assert requests[0]["tools"][0]["function"]["name"] == "get_weather" and requests[0]["tool_choice"] == "auto"
    assert [(c.name, c.arguments) for c in reply.trace.tool_calls] == [("get_weather", {"city": "Rome"})]
    assert reply.text == "Rome: sunny."


def test_arguments_the_model_cannot_fill_mean_no_call(tmp_path: Path) -> None:
    class NoArguments(ScriptedModel):
        def structured(self, messages, schema, *, caller=None, max_tokens=None):
            if "tool" in schema.model_fields:
                return schema(tool="get_weather")
            raise LLMError("scripted model did not return valid arguments for tool get_weather")

    with Agent(model=NoArguments("I could not check."), tools=[get_weather], store_dir=tmp_path) as agent:
        reply = agent.chat("weather?")
        (call,) = reply.trace.tool_calls
        assert call.result is None and call.error.startswith("not called:")
        assert reply.text == "I could not check."
        assert [m.role for m in agent.history()] == ["user", "assistant"]
