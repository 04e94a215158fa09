"""The LLM client, its meter, its settings, and the embedded llama.cpp server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from pydantic import BaseModel

from agentmem.config import Settings, load_settings
from agentmem.errors import ConfigError, LLMError
from agentmem.llm import LLM, Meter
from agentmem.llm.server import LocalServer, free_port
from agentmem.toolkit import ChatModel


# -- settings -----------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in list(os.environ):
        if var.startswith("AGENTMEM_"):
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # no ./agentmem.toml
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def test_settings_precedence_flags_env_file_defaults(clean_env, monkeypatch):
    config = clean_env / "agentmem.toml"
    config.write_text('model = "openai/gpt-4o-mini"\nmax_retries = 5\nn_ctx = 4096\ncache_dir = "cache"\n')
    s = load_settings()
    assert (s.model, s.max_retries, s.n_ctx, s.max_concurrency) == ("openai/gpt-4o-mini", 5, 4096, 4)
    assert s.cache_dir == clean_env / "cache"  # relative to the file

    monkeypatch.setenv("AGENTMEM_MODEL", "hosted_vllm/Qwen/Qwen3-8B")
    monkeypatch.setenv("AGENTMEM_API_BASE", "http://gpu:8000/v1")
    monkeypatch.setenv("AGENTMEM_EMBEDDING_PATH", "~/minilm")
    s = load_settings()
    assert s.model == "hosted_vllm/Qwen/Qwen3-8B" and s.api_base == "http://gpu:8000/v1"
    assert s.embedding_model_path == Path("~/minilm").expanduser()

    s = load_settings(model="local/qwen2.5-coder-1.5b", api_base=None)
    # the flag names another model: the api base the environment set for its model does not follow
    assert s.model == "local/qwen2.5-coder-1.5b" and s.api_base is None and s.is_local


def test_config_file_from_agentmem_config(clean_env, monkeypatch):
    other = clean_env / "elsewhere.toml"
    other.write_text("max_concurrency = 9\n")
    monkeypatch.setenv("AGENTMEM_CONFIG", str(other))
    assert load_settings().max_concurrency == 9
    monkeypatch.setenv("AGENTMEM_CONFIG", str(clean_env / "missing.toml"))
    with pytest.raises(ConfigError, match="AGENTMEM_CONFIG"):
        load_settings()


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        ({"env": {"AGENTMEM_N_CTX": "lots"}}, "environment variable AGENTMEM_N_CTX"),
        ({"file": "max_retries = -1\n"}, "config file"),
        ({"file": "modle = 'local'\n"}, "unknown key(s) modle"),
        ({"file": "model = \n"}, "not valid TOML"),
        ({"env": {"AGENTMEM_MODEL": "local/llama-99b"}}, "unknown local model 'llama-99b'"),
        ({"flags": {"max_concurrency": 0}}, "the command line"),
    ],
)
def test_bad_settings_are_one_line_naming_the_source(clean_env, monkeypatch, setup, expected):
    for var, value in setup.get("env", {}).items():
        monkeypatch.setenv(var, value)
    if "file" in setup:
        (clean_env / "agentmem.toml").write_text(setup["file"])
    with pytest.raises(ConfigError) as err:
        load_settings(**setup.get("flags", {}))
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


# -- meter ----------------------------------------------------------------------------
def test_meter_counts_per_caller_and_is_thread_safe():
    meter = Meter()

    def work():
        for _ in range(500):
            meter.record("episodic.recall", 10, 2, 0.001)
            meter.record(None, 1, 1, 0.0, cache_hit=True)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    meter.record("episodic.reflect", 0, 0, 0.5, error=True)
    total = meter.total()
    assert (total.calls, total.prompt_tokens, total.completion_tokens) == (4001, 22000, 6000)
    assert (total.cache_hits, total.errors) == (2000, 1)
    by = meter.by_caller()
    assert by["episodic.recall"].calls == 2000 and by["(untagged)"].cache_hits == 2000
    snap = json.loads(json.dumps(meter.snapshot()))
    assert snap["total"]["calls"] == 4001 and set(snap["by_caller"]) == {
        "episodic.recall",
        "episodic.reflect",
        "(untagged)",
    }
    meter.reset()
    assert meter.total().calls == 0 and meter.by_caller() == {}


# -- client plumbing (no model) --------------------------------------------------------
def _settings(**kw) -> Settings:
    return Settings(**{"cache": False, **kw})


def test_llm_satisfies_chat_model_and_describes_itself():
    assert isinstance(LLM("local", settings=_settings()), ChatModel)
    assert LLM("local", settings=_settings()).describe() == "local qwen2.5-coder-0.5b (llama.cpp)"
    assert LLM("local/qwen2.5-coder-1.5b", settings=_settings()).describe() == "local qwen2.5-coder-1.5b (llama.cpp)"
    remote = LLM("hosted_vllm/Qwen/Qwen3-8B", api_base="http://gpu:8000/v1", settings=_settings())
    assert remote.model == "hosted_vllm/Qwen/Qwen3-8B" and "http://gpu:8000/v1" in remote.describe()
    assert LLM(settings=_settings(model="openai/gpt-4o-mini")).model == "openai/gpt-4o-mini"


def test_nothing_listening_fails_after_retries_with_one_line():
    port = free_port()
    llm = LLM(
        "openai/some-model",
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key="sk-test",
        settings=_settings(max_retries=2),
        retry_backoff=0.01,
    )
    attempts = []
    real = llm._completion
    llm._completion = lambda *a: (attempts.append(1), real(*a))[1]  # type: ignore[method-assign]
    with pytest.raises(LLMError) as err:
        llm.complete([{"role": "user", "content": "hi"}], caller="test.dead")
    message = str(err.value)
    assert len(attempts) == 3
    assert "\n" not in message
    assert f"127.0.0.1:{port}" in message and "after 3 attempts" in message and "api-base" in message
    stats = llm.meter.by_caller()["test.dead"]
    assert stats.calls == 1 and stats.errors == 1


class _Usage:
    prompt_tokens = 7
    completion_tokens = 3


class _Response:
    def __init__(self, text: str) -> None:
        self.usage = _Usage()
        self.choices = [type("C", (), {"message": type("M", (), {"content": text})()})()]


class _Fake:
    """Scripted replies for plumbing tests: exceptions are raised, strings answered."""

    def __init__(self, *script):
        self.script = list(script)
        self.requests = []

    def __call__(self, model, base, key, request):
        self.requests.append(request)
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        return _Response(item)


def _remote(fake: _Fake, **kw) -> LLM:
    from agentmem.llm import client

    client._import_litellm()
    llm = LLM("openai/fake", api_base="http://127.0.0.1:1/v1", settings=_settings(**kw), retry_backoff=0.001)
    llm._completion = fake  # type: ignore[method-assign]
    return llm


def test_transient_errors_are_retried_and_others_are_not():
    from agentmem.llm import client

    litellm = client._import_litellm()
    busy = litellm.exceptions.RateLimitError("slow down", llm_provider="openai", model="fake")
    fake = _Fake(busy, busy, "ok")
    llm = _remote(fake, max_retries=3)
    assert llm.complete([{"role": "user", "content": "x"}], caller="c") == "ok"
    assert len(fake.requests) == 3
    assert llm.meter.total().prompt_tokens == 7 and llm.meter.total().calls == 1

    denied = litellm.exceptions.AuthenticationError("bad key", llm_provider="openai", model="fake")
    fake = _Fake(denied, "never")
    llm = _remote(fake, max_retries=3)
    with pytest.raises(LLMError, match="check the API key"):
        llm.complete([{"role": "user", "content": "x"}])
    assert len(fake.requests) == 1


class Fact(BaseModel):
    subject: str
    value: int


def test_structured_repairs_once_then_gives_up():
    fake = _Fake('{"subject": "age"}', '{"subject": "age", "value": 3}')
    llm = _remote(fake)
    assert llm.structured([{"role": "user", "content": "x"}], Fact) == Fact(subject="age", value=3)
    repair = fake.requests[1]["messages"][-1]["content"]
    assert "value" in repair and "Field required" in repair
    assert fake.requests[0]["response_format"]["type"] == "json_schema"

    llm = _remote(_Fake("no json here", '```json\n{"subject": 1}\n```'))
    with pytest.raises(LLMError, match="did not return a valid Fact after a repair attempt"):
        llm.structured([{"role": "user", "content": "x"}], Fact)


def test_deterministic_calls_can_be_answered_by_a_cache():
    class DictCache:
        def __init__(self):
            self.data = {}

        def get(self, request):
            return self.data.get(json.dumps(request, sort_keys=True))

        def put(self, request, text):
            self.data[json.dumps(request, sort_keys=True)] = text

    fake = _Fake("first")
    llm = _remote(fake)
    llm.cache = DictCache()
    messages = [{"role": "user", "content": "x"}]
    assert llm.complete(messages) == "first"
    assert llm.complete(messages) == "first"  # from the cache: the fake has no second reply
    assert llm.meter.total().cache_hits == 1 and llm.meter.total().calls == 2


# -- the real local model ------------------------------------------------------------------
@pytest.mark.llm
def test_local_model_answers_sensibly(local_llm):
    answer = local_llm.complete(
        [{"role": "user", "content": "What is the capital of France? Answer in one word."}], caller="test.capital"
    )
    assert "paris" in answer.lower()
    stats = local_llm.meter.by_caller()["test.capital"]
    assert stats.calls == 1 and stats.prompt_tokens > 10 and stats.completion_tokens >= 1 and stats.seconds > 0


class Address(BaseModel):
    city: str
    country: str


class Person(BaseModel):
    name: str
    age: int
    hobbies: list[str]
    address: Address


@pytest.mark.llm
def test_local_structured_output_follows_the_schema(local_llm):
    person = local_llm.structured(
        [{"role": "user", "content": "Bob is 42 and lives in Lyon, France. He likes chess and hiking."}],
        Person,
        caller="test.structured",
    )
    assert isinstance(person, Person)
    assert person.name == "Bob" and person.age == 42 and person.address.city == "Lyon"
    assert local_llm.meter.by_caller()["test.structured"].calls >= 1


@pytest.mark.llm
def test_local_json_schema_response_format_is_grammar_constrained(local_llm):
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string", "enum": ["yes", "no"]}, "confidence": {"type": "integer"}},
        "required": ["answer", "confidence"],
    }
    text = local_llm.complete(
        [{"role": "user", "content": "Is water wet?"}],
        response_format={"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}},
        max_tokens=64,
    )
    data = json.loads(text)
    assert data["answer"] in {"yes", "no"} and isinstance(data["confidence"], int)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _group_members(pid):
            return True
        time.sleep(0.1)
    return False


@pytest.mark.llm
def test_local_server_starts_answers_and_stops_without_orphans():
    import httpx

    from agentmem.llm.models import ensure_model

    with LocalServer(ensure_model(), n_ctx=2048) as server:
        assert server.api_base.startswith("http://127.0.0.1:") and server.api_base.endswith("/v1")
        models = httpx.get(server.api_base + "/models", timeout=5).json()
        assert models["data"][0]["id"] == "local"
        pid = server.pid
        assert pid is not None and _group_members(pid)
    assert _wait_gone(pid, 2)
    assert not server.is_running()


@pytest.mark.llm
def test_local_server_dies_with_a_killed_parent(tmp_path):
    """A parent killed with SIGKILL runs no atexit hooks; the server notices and exits by itself."""
    script = textwrap.dedent(
        """
        import sys, time
        from pathlib import Path
        from agentmem.llm.models import ensure_model
        from agentmem.llm.server import LocalServer
        server = LocalServer(ensure_model(), n_ctx=1024, log_path=Path(sys.argv[1])).start()
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "server.log")], stdout=subprocess.PIPE, text=True
    )
    try:
        pid = int(parent.stdout.readline())
        assert _group_members(pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    assert _wait_gone(pid, 5), "llama.cpp server outlived its parent"


@pytest.mark.llm
def test_a_server_that_cannot_load_its_model_reports_why(tmp_path):
    from agentmem.errors import ModelError

    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"this is not a gguf file" * 100)
    with pytest.raises(ModelError) as err:
        LocalServer(bogus, log_path=tmp_path / "server.log").start(timeout=60)
    message = str(err.value)
    assert "exited with code" in message and "Failed to load model" in message and "\n" not in message
    assert str(tmp_path / "server.log") in message
