"""Who asked: call-context tags, per-tag totals, scopes and deltas of the LLM meter."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

from agentmem.config import Settings
from agentmem.llm import LLM, Meter
from agentmem.llm.cache import DiskCache
from agentmem.llm.context import bind, call_context, current_tags


def test_call_context_nests_overrides_and_removes():
    assert current_tags() == {}
    with call_context(env="locomo", task="conv-1") as tags:
        assert dict(tags) == {"env": "locomo", "task": "conv-1"}
        with call_context(task="conv-2", plugin="episodic", candidate=3):
            assert current_tags() == {"env": "locomo", "task": "conv-2", "plugin": "episodic", "candidate": "3"}
            with call_context(env=None):
                assert current_tags() == {"task": "conv-2", "plugin": "episodic", "candidate": "3"}
        assert current_tags() == {"env": "locomo", "task": "conv-1"}
    assert current_tags() == {}


def test_meter_records_under_caller_and_every_tag():
    meter = Meter()
    with call_context(env="locomo", task="t1"):
        with call_context(plugin="episodic", op="reflect"):
            meter.record("episodic.reflect", 10, 2, 0.5)
        meter.record("agent.answer", 20, 4, 1.0)
        with call_context(task="t2"):
            meter.record("agent.answer", 30, 6, 1.5, cache_hit=True)
    meter.record(None, 1, 1, 0.1)
    assert meter.by_tag("task")["t1"].calls == 2 and meter.by_tag("task")["t2"].cache_hits == 1
    assert meter.by_tag("env") == {"locomo": meter.by_tag("env")["locomo"]} and meter.by_tag("env")["locomo"].calls == 3
    assert meter.by_tag("plugin")["episodic"].prompt_tokens == 10
    assert meter.by_tag("op")["reflect"].completion_tokens == 2
    assert meter.by_tag("nothing") == {}
    assert meter.tags() == ["env", "op", "plugin", "task"]
    assert meter.by_caller()["agent.answer"].calls == 2 and meter.by_caller()["(untagged)"].calls == 1
    snap = json.loads(json.dumps(meter.snapshot()))
    assert snap["total"]["calls"] == 4
    assert snap["by_tag"]["task"]["t1"]["prompt_tokens"] == 30
    assert set(snap) == {"total", "by_caller", "by_tag", "events", "events_by_caller"}
    meter.reset()
    assert meter.snapshot()["by_tag"] == {} and meter.by_tag("task") == {}


def test_explicit_tags_override_the_context():
    meter = Meter()
    with call_context(env="a"):
        meter.record("x", 1, 1, 0.0, tags={"env": "b"})
    assert list(meter.by_tag("env")) == ["b"]


def test_delta_reports_only_what_changed():
    meter = Meter()
    with call_context(task="old"):
        meter.record("a", 5, 5, 1.0)
    before = meter.snapshot()
    with call_context(task="new"):
        meter.record("a", 1, 2, 0.25)
        meter.record("b", 3, 4, 0.5, error=True)
    spent = meter.delta(before)
    assert spent["total"] == {
        "calls": 2,
        "prompt_tokens": 4,
        "completion_tokens": 6,
        "seconds": 0.75,
        "cache_hits": 0,
        "errors": 1,
        "counted_tokens": 0,
    }
    assert set(spent["by_caller"]) == {"a", "b"} and spent["by_caller"]["a"]["calls"] == 1
    assert spent["by_tag"] == {"task": {"new": spent["total"]}}
    assert meter.delta(meter.snapshot())["total"]["calls"] == 0


def test_scope_is_exact_while_other_threads_share_the_meter():
    meter = Meter()
    results: dict[str, dict] = {}
    barrier = threading.Barrier(3)

    def run(name: str, n: int) -> None:
        with meter.scope(candidate=name) as spent:
            barrier.wait()
            for _ in range(n):
                meter.record(f"{name}.op", 1, 1, 0.0)
        results[name] = spent.snapshot()

    def noise() -> None:
        barrier.wait()
        for _ in range(50):
            meter.record("noise", 1, 1, 0.0)

    threads = [
        threading.Thread(target=run, args=("a", 30)),
        threading.Thread(target=run, args=("b", 70)),
        threading.Thread(target=noise),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["a"]["total"]["calls"] == 30 and list(results["a"]["by_caller"]) == ["a.op"]
    assert results["b"]["total"]["calls"] == 70 and results["b"]["by_tag"] == {
        "candidate": {"b": results["b"]["total"]}
    }
    assert meter.total().calls == 150
    assert meter.by_tag("candidate")["a"].calls == 30


def test_bind_carries_tags_and_scopes_into_worker_threads():
    meter = Meter()
    with meter.scope(env="locomo") as spent, ThreadPoolExecutor(2) as pool:
        with call_context(task="t"):
            list(pool.map(bind(lambda i: meter.record("bound", 1, 0, 0.0)), range(4)))
            pool.submit(lambda: meter.record("unbound", 1, 0, 0.0)).result()
    assert spent.total().calls == 4 and spent.by_tag("task")["t"].calls == 4
    assert meter.by_caller()["unbound"].calls == 1 and "unbound" not in spent.by_caller()
    assert meter.by_tag("env")["locomo"].calls == 4


def test_asyncio_tasks_inherit_the_context():
    meter = Meter()

    async def main() -> None:
        async def one(i: int) -> None:
            with call_context(op=f"op{i % 2}"):
                await asyncio.sleep(0)
                meter.record("async", 1, 1, 0.0)

        with call_context(env="async-env"):
            await asyncio.gather(*(one(i) for i in range(6)))

    asyncio.run(main())
    assert meter.by_tag("env")["async-env"].calls == 6
    assert {k: v.calls for k, v in meter.by_tag("op").items()} == {"op0": 3, "op1": 3}


def test_llm_calls_and_cache_hits_are_metered_under_the_context(tmp_path):
    from agentmem.llm import client

    client._import_litellm()

    def fake(model, base, key, request):
        usage = type("U", (), {"prompt_tokens": 9, "completion_tokens": 3})()
        message = type("M", (), {"content": "ok"})()
        return type("R", (), {"usage": usage, "choices": [type("C", (), {"message": message})()]})()

    llm = LLM(
        "openai/fake",
        api_base="http://127.0.0.1:1/v1",
        settings=Settings(cache=False),
        cache=DiskCache(tmp_path / "c.sqlite"),
    )
    llm._completion = fake  # type: ignore[method-assign]
    msgs = [{"role": "user", "content": "x"}]
    with llm.meter.scope(env="locomo", task="conv-1") as spent:
        with call_context(plugin="episodic", op="recall"):
            llm.complete(msgs, caller="episodic.recall")
            llm.complete(msgs, caller="episodic.recall")  # a cache hit
    llm.complete(msgs, caller="outside")
    recall = spent.by_tag("op")["recall"]
    assert (recall.calls, recall.cache_hits, recall.prompt_tokens) == (2, 1, 9)
    assert spent.total().calls == 2 and llm.meter.total().calls == 3
    assert llm.meter.by_tag("task")["conv-1"].model_calls == 1


def test_noted_outcomes_are_counted_in_total_per_caller_in_scopes_and_deltas():
    meter = Meter()
    meter.note("length_retry", "semantic.extract")
    before = meter.snapshot()
    with meter.scope(env="locomo") as spent:
        meter.note("fallback", "notes.extract")
        meter.note("length_retry", "semantic.extract", 2)
    assert meter.events() == {"fallback": 1, "length_retry": 3}
    assert spent.events() == {"fallback": 1, "length_retry": 2}  # the scope saw only its own
    delta = meter.delta(before)
    assert delta["events"] == {"fallback": 1, "length_retry": 2}
    assert delta["events_by_caller"] == {"notes.extract": {"fallback": 1}, "semantic.extract": {"length_retry": 2}}
    assert meter.total().calls == 0  # outcomes are not calls
    meter.reset()
    assert meter.events() == {}
