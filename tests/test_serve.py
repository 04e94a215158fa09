"""`agentmem serve`: start, answer, print the api base, stop on SIGTERM with no orphan; retries."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import pytest
import typer
from typer.testing import CliRunner

from agentmem.config import Settings
from agentmem.errors import ModelError
from agentmem.llm import LLM
from agentmem.llm.serve import LlamaCppServer, ServeOptions, VLLMServer, build_server, resolve_gguf
from agentmem.llm.server import LocalServer, free_port

ROOT = Path(__file__).resolve().parent.parent


# -- helpers -------------------------------------------------------------------------------
def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def _serve(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "agentmem.cli.serve", *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, **(env or {})},
    )  # fmt: skip


def _read_until_ready(proc: subprocess.Popen[str], timeout: float) -> tuple[str, str, int]:
    """(api base, litellm model string, server pid) from the command's announcement."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:  # a thread: select() on a buffered text pipe misses lines already read ahead
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    api_base = model = pid = None
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.5)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if m := re.search(r"server pid (\d+)", line):
            pid = int(m.group(1))
        if m := re.search(r"--api-base (\S+) --model (\S+)", line):
            api_base, model = m.group(1), m.group(2)
        if line.startswith("press Ctrl-C"):
            break
    proc._pump_lines = lines  # type: ignore[attr-defined]  # the rest of stdout, for _stop
    assert api_base and model and pid, f"no announcement; stdout: {''.join(seen)!r}"
    return api_base, model, pid


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout: float = 30) -> str:
    """Signal the command, wait for it, and return what it printed after its announcement."""
    proc.send_signal(sig)
    proc.wait(timeout=timeout)
    lines = getattr(proc, "_pump_lines", None)
    if lines is None:
        return proc.communicate(timeout=timeout)[0]
    out = []
    while (line := lines.get(timeout=timeout)) is not None:
        out.append(line)
    return "".join(out)


# -- building the servers (no process) ----------------------------------------------------------
def test_vllm_command_line_passes_the_knobs_through():
    server = VLLMServer(
        "Qwen/Qwen3-8B", host="127.0.0.1", port=8123, tensor_parallel_size=2, max_model_len=8192,
        gpu_memory_utilization=0.85, extra=["--served-model-name", "qwen3", "--enforce-eager"],
    )  # fmt: skip
    assert server.vllm_command() == [
        "vllm", "serve", "Qwen/Qwen3-8B", "--host", "127.0.0.1", "--port", "8123",
        "--tensor-parallel-size", "2", "--max-model-len", "8192", "--gpu-memory-utilization", "0.85",
        "--served-model-name", "qwen3", "--enforce-eager",
    ]  # fmt: skip
    assert server.litellm_model == "hosted_vllm/qwen3" and server.api_base == "http://127.0.0.1:8123/v1"
    plain = VLLMServer("Qwen/Qwen3-8B", port=1)
    assert plain.vllm_command() == ["vllm", "serve", "Qwen/Qwen3-8B", "--host", "127.0.0.1", "--port", "1"]
    assert plain.litellm_model == "hosted_vllm/Qwen/Qwen3-8B"
    assert plain._command()[:2] == [sys.executable, "-c"] and plain._command()[4:6] == ["serve", "Qwen/Qwen3-8B"]


def test_vllm_missing_is_one_clear_line():
    proc = _serve(["--backend", "vllm", "--model", "Qwen/Qwen3-8B"], env={"PYTHONPATH": ""})
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pip install 'agentmem[vllm]'" in lines[0], err
    with pytest.raises(ModelError, match=r"pip install 'agentmem\[vllm\]'"):
        build_server(ServeOptions(backend="vllm", model="Qwen/Qwen3-8B"))


def test_llamacpp_model_names_and_paths_resolve(tmp_path):
    gguf = tmp_path / "my-model.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_gguf(str(gguf)) == (gguf.resolve(), "my-model.Q4")
    with pytest.raises(ModelError, match="does not exist"):
        resolve_gguf(str(tmp_path / "missing.gguf"))
    with pytest.raises(ModelError, match="--backend vllm"):
        resolve_gguf("Qwen/Qwen3-8B")
    server = build_server(ServeOptions(model=str(gguf), n_ctx=1024, threads=1, extra=["--n_batch", "64"]))
    assert isinstance(server, LlamaCppServer) and server.alias == "my-model.Q4"
    assert server.litellm_model == "openai/my-model.Q4" and server.host == "127.0.0.1"
    server.port = 5555
    cmd = server._command()
    assert cmd[-2:] == ["--n_batch", "64"] and cmd[cmd.index("--n_ctx") + 1] == "1024" and "5555" in cmd


def test_register_adds_the_serve_command():
    from agentmem.cli.serve import register

    app = typer.Typer()
    register(app)

    @app.command("other")
    def other() -> None:  # a second command, so that "serve" must be named
        pass

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    for flag in ("--backend", "--model", "--host", "--port", "--n-ctx", "--threads", "--parallel",
                 "--tensor-parallel-size", "--max-model-len", "--gpu-memory-utilization", "--extra"):  # fmt: skip
        assert flag in result.output


# -- the whole command against a stand-in vLLM (no GPU needed) ------------------------------------
FAKE_VLLM = """
import json, os, signal, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def main():
    args = sys.argv[1:]
    assert args[0] == "serve", args
    with open(os.environ["FAKE_VLLM_ARGV"], "w") as fh:
        json.dump({"argv": sys.argv, "pid": os.getpid(), "pgid": os.getpgrp()}, fh)
    host, port = args[args.index("--host") + 1], int(args[args.index("--port") + 1])
    model = args[1]

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _send(self, body):
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._send({"object": "list", "data": [{"id": model, "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            text = "echo: " + body["messages"][-1]["content"]
            self._send({"id": "x", "object": "chat.completion", "created": 0, "model": model,
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    # a worker in the same process group, as vLLM has
    import subprocess
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    ThreadingHTTPServer((host, port), H).serve_forever()
"""


@pytest.fixture
def fake_vllm(tmp_path):
    pkg = tmp_path / "fakevllm" / "vllm" / "entrypoints" / "cli"
    pkg.mkdir(parents=True)
    for folder in (pkg, pkg.parent, pkg.parent.parent):
        (folder / "__init__.py").write_text("")
    (pkg / "main.py").write_text(textwrap.dedent(FAKE_VLLM))
    return {"PYTHONPATH": str(tmp_path / "fakevllm"), "FAKE_VLLM_ARGV": str(tmp_path / "argv.json")}


def test_serve_vllm_starts_answers_and_stops_without_orphans(fake_vllm):
    port = free_port()
    proc = _serve(
        ["--backend", "vllm", "--model", "org/fake-model", "--port", str(port), "--tensor-parallel-size", "1",
         "--max-model-len", "2048", "--gpu-memory-utilization", "0.5", "--extra=--enforce-eager"],
        env=fake_vllm,
    )  # fmt: skip
    try:
        api_base, model, pid = _read_until_ready(proc, 60)
        assert api_base == f"http://127.0.0.1:{port}/v1" and model == "hosted_vllm/org/fake-model"
        launched = json.loads(Path(fake_vllm["FAKE_VLLM_ARGV"]).read_text())
        assert launched["pid"] == pid and launched["pgid"] == pid
        assert launched["argv"][1:] == [
            "serve", "org/fake-model", "--host", "127.0.0.1", "--port", str(port), "--tensor-parallel-size", "1",
            "--max-model-len", "2048", "--gpu-memory-utilization", "0.5", "--enforce-eager",
        ]  # fmt: skip
        llm = LLM(model, api_base=api_base, settings=Settings(cache=False, max_retries=0))
        assert llm.complete([{"role": "user", "content": "ping"}]) == "echo: ping"
        assert len(_group_members(pid)) == 2  # the server and its worker
    finally:
        out = _stop(proc)
    assert proc.returncode == 0 and "stopped (SIGTERM)" in out
    assert not _alive(pid) and not _group_members(pid)


def test_serve_stops_on_ctrl_c_too(fake_vllm):
    proc = _serve(["--backend", "vllm", "--model", "org/fake-model"], env=fake_vllm)
    try:
        _, _, pid = _read_until_ready(proc, 60)
    finally:
        out = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0 and "stopped (SIGINT)" in out and not _group_members(pid)


# -- the real llama.cpp server ---------------------------------------------------------------------
@pytest.mark.llm
def test_serve_llamacpp_answers_at_the_printed_api_base_and_leaves_no_process():
    proc = _serve(["--backend", "llamacpp", "--n-ctx", "1024"])
    try:
        api_base, model, pid = _read_until_ready(proc, 180)
        assert api_base.startswith("http://127.0.0.1:") and model == "openai/qwen2.5-coder-0.5b"
        reply = httpx.post(
            f"{api_base}/chat/completions",
            json={"model": model.split("/", 1)[1], "max_tokens": 8, "temperature": 0,
                  "messages": [{"role": "user", "content": "Say hello."}]},
            timeout=120,
        ).json()  # fmt: skip
        assert reply["choices"][0]["message"]["content"].strip()
        llm = LLM(model, api_base=api_base, settings=Settings(cache=False, max_retries=0), max_tokens=8)
        assert llm.complete([{"role": "user", "content": "Say hi."}]).strip()
        assert _group_members(pid)
    finally:
        out = _stop(proc)
    assert proc.returncode == 0 and "stopped (SIGTERM)" in out
    assert not _alive(pid) and not _group_members(pid)


@pytest.mark.llm
def test_a_call_succeeds_against_a_server_that_comes_up_late():
    from agentmem.llm.models import ensure_model

    port = free_port()
    llm = LLM(
        "openai/local", api_base=f"http://127.0.0.1:{port}/v1",
        settings=Settings(cache=False, max_retries=8), retry_backoff=0.5, max_backoff=4.0, max_tokens=8,
    )  # fmt: skip
    attempts: list[float] = []
    real = llm._completion
    llm._completion = lambda *a: (attempts.append(time.monotonic()), real(*a))[1]  # type: ignore[method-assign]
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            outcome["text"] = llm.complete([{"role": "user", "content": "Say yes."}], caller="test.late")
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=call)
    thread.start()
    time.sleep(2.0)
    server = LocalServer(ensure_model(), port=port, n_ctx=1024)
    try:
        server.start()
        thread.join(120)
    finally:
        server.stop()
    assert "error" not in outcome, outcome.get("error")
    assert str(outcome["text"]).strip() and len(attempts) >= 2
    stats = llm.meter.by_caller()["test.late"]
    assert stats.calls == 1 and stats.errors == 0 and stats.completion_tokens >= 1


# -- one local server per machine ------------------------------------------------------------
_OWNER = """
import sys, time
from agentmem.llm import LLM
llm = LLM("local", cache=False)
llm.complete([{"role": "user", "content": "Say hi."}], max_tokens=2)
print("PID", llm.server.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.llm
def test_processes_share_one_local_server_and_survive_its_owner_exiting(tmp_path, monkeypatch):
    """A second process attaches to the first one's model server; when the owner dies, calls go on."""
    import agentmem.llm.server as server_mod
    from agentmem.llm import LLM

    monkeypatch.setenv("AGENTMEM_SERVER_REGISTRY", str(tmp_path / "registry"))
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, AGENTMEM_SERVER_REGISTRY=str(tmp_path / "registry")),
    )
    try:
        line = owner.stdout.readline()  # type: ignore[union-attr]
        assert line.startswith("PID"), line
        owner_server_pid = int(line.split()[1])
        server_mod.stop_shared_servers()  # forget any server this test process already runs
        llm = LLM("local", cache=False)
        assert llm.complete([{"role": "user", "content": "Say yes."}], max_tokens=2)
        assert isinstance(llm.server, server_mod.AttachedServer)
        assert llm.server.pid == owner_server_pid
    finally:
        owner.kill()
        owner.wait(timeout=30)
    deadline = time.time() + 30
    while server_mod._pid_alive(owner_server_pid) and time.time() < deadline:  # its watchdog stops it
        time.sleep(0.5)
    # the owner is gone: the next call finds no live server, starts one here and registers it
    assert llm.complete([{"role": "user", "content": "Say no."}], max_tokens=2)
    assert isinstance(llm.server, server_mod.LocalServer) and llm.server.is_running()
    record = json.loads(next((tmp_path / "registry").glob("*.json")).read_text())
    assert record["pid"] == llm.server.pid and record["owner"] == os.getpid()
    server_mod.stop_shared_servers()
    assert not list((tmp_path / "registry").glob("*.json"))


def test_an_attached_server_whose_owner_exited_counts_as_gone():
    """Its watchdog is stopping it: clients must start or find another instead of retrying a dying one."""
    import subprocess
    import sys

    from agentmem.llm.server import AttachedServer

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = {"api_base": "http://127.0.0.1:9/v1", "model_path": "/m.gguf", "pid": os.getpid(), "owner": dead.pid}
    assert not AttachedServer(record).is_running()
    assert AttachedServer({**record, "owner": os.getpid()}).is_running()
