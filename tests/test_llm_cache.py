"""The on-disk LLM cache: keys, determinism, size bound, concurrent processes, wiring into LLM."""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
from pathlib import Path

import pytest

from agentmem.config import Settings, load_settings
from agentmem.llm import LLM
from agentmem.llm.cache import DiskCache, is_deterministic, request_key, shared_cache


def _request(**kw):
    base = {
        "model": "local:abc",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
        "temperature": 0,
        "response_format": None,
    }
    return {**base, **kw}


# -- keys and determinism -----------------------------------------------------------
def test_key_is_canonical_and_covers_model_messages_and_every_parameter():
    req = _request()
    reordered = dict(reversed(list(req.items())))
    assert request_key(req) == request_key(reordered)
    variants = [
        _request(model="local:def"),
        _request(model="hosted_vllm/Qwen/Qwen3-8B@http://gpu:8000/v1"),
        _request(messages=[{"role": "user", "content": "hi!"}]),
        _request(messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]),
        _request(max_tokens=17),
        _request(response_format={"type": "json_object"}),
        _request(seed=1),
        _request(seed=2),
    ]
    keys = {request_key(v) for v in variants}
    assert len(keys) == len(variants) and request_key(req) not in keys


def test_only_deterministic_requests_are_cached(tmp_path):
    assert is_deterministic(_request()) and is_deterministic(_request(temperature=0.0))
    assert not is_deterministic(_request(temperature=0.7))
    assert is_deterministic(_request(temperature=0.7, seed=3))
    cache = DiskCache(tmp_path / "c.sqlite")
    cache.put(_request(temperature=0.7), "random")
    assert cache.get(_request(temperature=0.7)) is None
    assert cache.stats()["entries"] == 0
    cache.put(_request(temperature=0.7, seed=3), "seeded")
    assert cache.get(_request(temperature=0.7, seed=3)) == "seeded"
    assert cache.get(_request(temperature=0.7, seed=4)) is None


def test_hits_misses_stats_and_clear(tmp_path):
    cache = DiskCache(tmp_path / "sub" / "c.sqlite")
    assert cache.get(_request()) is None
    cache.put(_request(), "hello ✓")
    assert cache.get(_request()) == "hello ✓"
    assert cache.get(_request()) == "hello ✓"
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["entries"]) == (2, 1, 1)
    assert stats["bytes"] > len("hello ✓") and stats["hit_rate"] == pytest.approx(2 / 3, abs=1e-3)
    # another object on the same file sees the entry; counts are per object
    other = DiskCache(tmp_path / "sub" / "c.sqlite")
    assert other.get(_request()) == "hello ✓" and other.hits == 1 and other.misses == 0
    cache.clear()
    assert cache.get(_request()) is None and other.get(_request()) is None
    assert cache.stats()["entries"] == 0 and cache.stats()["bytes"] == 0


def test_size_bound_evicts_least_recently_used(tmp_path):
    cache = DiskCache(tmp_path / "c.sqlite", max_bytes=4000)
    value = "x" * 300  # ~430 bytes a row with its key
    for i in range(6):
        cache.put(_request(max_tokens=i), value)
        time.sleep(0.002)
    assert cache.get(_request(max_tokens=0)) == value  # 0 is now the most recently used
    time.sleep(0.002)
    for i in range(6, 12):
        cache.put(_request(max_tokens=i), value)
        time.sleep(0.002)
    stats = cache.stats()
    assert stats["bytes"] <= 4000 and stats["evictions"] > 0
    assert cache.get(_request(max_tokens=0)) == value  # touched: kept
    assert cache.get(_request(max_tokens=1)) is None  # oldest untouched: gone
    assert cache.get(_request(max_tokens=11)) == value  # newest: kept
    # the running byte total matches the rows
    with sqlite3.connect(tmp_path / "c.sqlite") as db:
        assert db.execute("SELECT SUM(size) FROM entries").fetchone()[0] == stats["bytes"]
    # an answer bigger than the whole bound is not kept (and evicts nothing)
    cache.put(_request(max_tokens=99), "y" * 5000)
    assert cache.get(_request(max_tokens=99)) is None and cache.get(_request(max_tokens=11)) == value


def _writer(path: str, worker: int, n: int, queue) -> None:
    cache = DiskCache(path, max_bytes=50_000_000)
    wrong = 0
    for i in range(n):
        cache.put(_request(max_tokens=i, worker=worker), f"w{worker}-{i}")
        cache.put(_request(max_tokens=i, shared=True), f"shared-{i}")  # every worker writes these too
        got = cache.get(_request(max_tokens=i, worker=worker))
        wrong += got != f"w{worker}-{i}"
    queue.put((worker, wrong, cache.errors))


def test_concurrent_processes_do_not_corrupt_it(tmp_path):
    path = str(tmp_path / "c.sqlite")
    DiskCache(path).stats()  # the schema exists before the race (creation races are tested below too)
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    n = 150
    procs = [ctx.Process(target=_writer, args=(path, w, n, queue)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    results = sorted(queue.get(timeout=5) for _ in procs)
    assert all(wrong == 0 and errors == 0 for _, wrong, errors in results), results
    cache = DiskCache(path)
    assert cache.stats()["entries"] == 3 * n + n
    assert all(cache.get(_request(max_tokens=i, worker=w)) == f"w{w}-{i}" for w in range(3) for i in range(0, n, 7))
    assert cache.get(_request(max_tokens=5, shared=True)) == "shared-5"
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT SUM(size) FROM entries").fetchone()[0] == cache.stats()["bytes"]


def test_two_processes_creating_the_file_at_once(tmp_path):
    path = str(tmp_path / "fresh.sqlite")
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(path, w, 20, queue)) for w in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert all(wrong == 0 and errors == 0 for _, wrong, errors in (queue.get(timeout=5) for _ in procs))
    assert DiskCache(path).stats()["entries"] == 2 * 20 + 20


def test_a_damaged_cache_file_never_fails_the_call(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    cache = DiskCache(path)
    assert cache.get(_request()) is None
    cache.put(_request(), "x")  # logged and skipped
    assert cache.errors >= 2 and "going on without it" in caplog.text


# -- wiring into LLM ---------------------------------------------------------------------
class _Fake:
    """Counts calls; answers with the request's first message and a counter."""

    def __init__(self):
        self.calls = 0

    def __call__(self, model, base, key, request):
        self.calls += 1
        text = f"{request['messages'][0]['content']}#{self.calls}"
        usage = type("U", (), {"prompt_tokens": 5, "completion_tokens": 2})()
        message = type("M", (), {"content": text})()
        return type("R", (), {"usage": usage, "choices": [type("C", (), {"message": message})()]})()


def _llm(model="openai/fake", cache=None, settings=None, fake=None, **kw) -> LLM:
    from agentmem.llm import client

    client._import_litellm()
    llm = LLM(model, api_base="http://127.0.0.1:1/v1", settings=settings or Settings(cache=False), cache=cache, **kw)
    llm._completion = fake or _Fake()  # type: ignore[method-assign]
    return llm


def test_llm_repeated_deterministic_calls_make_no_new_model_call(tmp_path):
    cache = DiskCache(tmp_path / "c.sqlite")
    fake = _Fake()
    llm = _llm(cache=cache, fake=fake)
    msgs = [{"role": "user", "content": "q"}]
    first = llm.complete(msgs, caller="t")
    assert llm.complete(msgs, caller="t") == first and fake.calls == 1
    stats = llm.meter.by_caller()["t"]
    assert (stats.calls, stats.cache_hits, stats.model_calls, stats.prompt_tokens) == (2, 1, 1, 5)
    # a new client (a new run) on the same file: identical answer, zero model calls, zero tokens
    fake2 = _Fake()
    again = _llm(cache=DiskCache(tmp_path / "c.sqlite"), fake=fake2)
    assert again.complete(msgs) == first and fake2.calls == 0
    assert again.meter.total().cache_hits == 1 and again.meter.total().total_tokens == 0
    # spent nothing, but counted like the call it stands for: a warm cache makes no caller look cheaper
    assert again.meter.total().counted_tokens == stats.counted_tokens // 2 > 0


def test_llm_cache_key_changes_with_model_and_parameters(tmp_path):
    cache = DiskCache(tmp_path / "c.sqlite")
    fake = _Fake()
    msgs = [{"role": "user", "content": "q"}]
    llm = _llm(cache=cache, fake=fake)
    llm.complete(msgs)
    llm.complete(msgs, max_tokens=7)
    llm.complete(msgs, response_format={"type": "json_object"})
    llm.complete(msgs, seed=1)
    llm.complete(msgs, temperature=0.5)  # not deterministic: called, not kept
    llm.complete(msgs, temperature=0.5)
    assert fake.calls == 6 and cache.stats()["entries"] == 4
    llm.complete(msgs, temperature=0.5, seed=1)  # a seed makes it deterministic
    llm.complete(msgs, temperature=0.5, seed=1)
    assert fake.calls == 7
    other = _llm("openai/other-model", cache=cache, fake=fake)
    other.complete(msgs)
    assert fake.calls == 8  # another model never sees this one's answers


def test_settings_turn_the_default_disk_cache_on_and_off(tmp_path, monkeypatch):
    path = tmp_path / "mine.sqlite"
    # Settings(...) resolves the layers too (its arguments beat AGENTMEM_CACHE=0 of the test session)
    on = _llm(settings=Settings(cache=True, cache_path=path))
    assert isinstance(on.cache, DiskCache) and on.cache.path == path
    assert on.cache is _llm(settings=Settings(cache=True, cache_path=path)).cache  # one per file in a process
    assert _llm(settings=Settings(cache_path=path), cache=False).cache is None
    assert _llm(settings=Settings(cache=False, cache_path=path)).cache is None
    assert isinstance(_llm(settings=Settings(cache=False, cache_path=path), cache=True).cache, DiskCache)
    assert Settings(cache_dir=tmp_path).llm_cache_path == tmp_path / "llm-cache.sqlite"
    for var in ("AGENTMEM_CONFIG", "AGENTMEM_CACHE", "AGENTMEM_CACHE_PATH", "AGENTMEM_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("AGENTMEM_CACHE", "0")
    monkeypatch.setenv("AGENTMEM_CACHE_PATH", str(tmp_path / "env.sqlite"))
    settings = load_settings()
    assert settings.cache is False and settings.llm_cache_path == tmp_path / "env.sqlite"


def test_cache_off_calls_the_model_every_time(tmp_path):
    fake = _Fake()
    llm = _llm(cache=False, fake=fake)
    msgs = [{"role": "user", "content": "q"}]
    assert llm.complete(msgs) != llm.complete(msgs)
    assert fake.calls == 2 and llm.meter.total().cache_hits == 0


def test_shared_cache_is_one_object_per_file(tmp_path):
    assert shared_cache(tmp_path / "a.sqlite") is shared_cache(Path(str(tmp_path)) / "a.sqlite")
    assert shared_cache(tmp_path / "a.sqlite") is not shared_cache(tmp_path / "b.sqlite")


# -- the real local model --------------------------------------------------------------------
@pytest.mark.llm
def test_local_model_second_identical_call_is_a_cache_hit(tmp_path):
    cache = DiskCache(tmp_path / "c.sqlite")
    llm = LLM("local", cache=cache, max_tokens=24)
    msgs = [{"role": "user", "content": "Name one primary colour. One word."}]
    first = llm.complete(msgs, caller="test.cache")
    second = llm.complete(msgs, caller="test.cache")
    assert second == first and first.strip()
    stats = llm.meter.by_caller()["test.cache"]
    assert (stats.calls, stats.cache_hits, stats.model_calls) == (2, 1, 1)
    assert stats.prompt_tokens > 0 and cache.stats()["hits"] == 1 and cache.stats()["entries"] == 1
    # a second client (as a repeated run would have) gets it with zero LLM calls
    rerun = LLM("local", cache=DiskCache(tmp_path / "c.sqlite"), max_tokens=24)
    assert rerun.complete(msgs) == first
    assert rerun.meter.total().model_calls == 0 and rerun.meter.total().total_tokens == 0
