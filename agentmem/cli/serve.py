"""`agentmem serve`: run a local OpenAI-compatible model server until Ctrl-C / SIGTERM.

Registered on the main app by :func:`register`; ``python -m agentmem.cli.serve``
runs the command on its own (same options, same one-line errors).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from agentmem.cli.guard import check_file_target, run_guarded
from agentmem.errors import ConfigError


def serve_command(
    backend: Annotated[
        str, typer.Option("--backend", "-b", help="llamacpp (CPU, a GGUF file) or vllm (GPU, `vllm serve`)")
    ] = "llamacpp",
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="llamacpp: a known model name or a .gguf path (default: the embedded default); vllm: a "
            "Hugging Face model id or directory",
        ),
    ] = None,
    host: Annotated[
        str,
        typer.Option(
            "--host", help="address to bind; loopback by default (anything else exposes the server to the network)"
        ),
    ] = "127.0.0.1",
    port: Annotated[int | None, typer.Option("--port", "-p", help="port to listen on (default: a free one)")] = None,
    alias: Annotated[
        str | None,
        typer.Option(
            "--alias", help="llamacpp: the model name the server answers to (default: the model's short name)"
        ),
    ] = None,
    n_ctx: Annotated[
        int | None, typer.Option("--n-ctx", help="llamacpp: context length in tokens (default: setting n_ctx)")
    ] = None,
    threads: Annotated[
        int | None, typer.Option("--threads", help="llamacpp: CPU threads (default: every core)")
    ] = None,
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            help="llamacpp: requests at once (llama-cpp-python's server answers one at a time; more queue)",
        ),
    ] = 1,
    tensor_parallel_size: Annotated[
        int | None, typer.Option("--tensor-parallel-size", help="vllm: GPUs to shard the model over")
    ] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", help="vllm: context length in tokens")] = None,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option("--gpu-memory-utilization", help="vllm: fraction of GPU memory to use (0-1)")
    ] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--extra", help="an extra flag for the server command line (repeatable: --extra=--seed --extra=1)"
        ),
    ] = None,
    log: Annotated[
        Path | None,
        typer.Option(
            "--log", help="write the server's output here (default: a temporary file, removed after a clean stop)"
        ),
    ] = None,
    startup_timeout: Annotated[
        float | None,
        typer.Option(
            "--startup-timeout",
            help="seconds to wait for the server to answer (default 120 for llamacpp, 900 for vllm)",
        ),
    ] = None,
) -> None:
    """Start an OpenAI-compatible model server, print the --api-base to use, and serve until Ctrl-C / SIGTERM."""
    from agentmem.llm.serve import ServeOptions, build_server, serve_until_stopped

    if backend not in ("llamacpp", "vllm"):
        raise ConfigError(f"--backend must be llamacpp or vllm (got '{backend}')")
    if parallel < 1:
        raise ConfigError(f"--parallel must be at least 1 (got {parallel})")
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"--port must be from 1 to 65535 (got {port}); leave it out to take a free port")
    for flag, value, least in (
        ("--n-ctx", n_ctx, 256),
        ("--threads", threads, 1),
        ("--tensor-parallel-size", tensor_parallel_size, 1),
        ("--max-model-len", max_model_len, 1),
    ):
        if value is not None and value < least:
            raise ConfigError(f"{flag} must be at least {least} (got {value})")
    if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
        raise ConfigError(
            "--gpu-memory-utilization must be a fraction above 0 and at most 1 (got "
            f"{gpu_memory_utilization}), e.g. 0.9"
        )
    if startup_timeout is not None and not startup_timeout > 0:
        raise ConfigError(f"--startup-timeout must be a positive number of seconds (got {startup_timeout})")
    if not host.strip():
        raise ConfigError("--host is empty; give an address to bind, e.g. 127.0.0.1")
    if log is not None:
        check_file_target(log, "--log")
    opts = ServeOptions(
        backend=backend, model=model, host=host, port=port, alias=alias, n_ctx=n_ctx, threads=threads,
        parallel=parallel, tensor_parallel_size=tensor_parallel_size, max_model_len=max_model_len,
        gpu_memory_utilization=gpu_memory_utilization, extra=list(extra or []), log_path=log,
    )  # fmt: skip
    server = build_server(opts)
    what = getattr(server, "model", None) or server.model_path.name
    timeout = startup_timeout if startup_timeout is not None else (900.0 if backend == "vllm" else 120.0)
    _say(f"starting {server.backend} for {what} on {host}" + (f":{port}" if port else "") + "...")
    if backend == "llamacpp" and parallel > 1:
        _say(
            f"note: llama-cpp-python's server answers one request at a time; --parallel {parallel} only lets "
            "that many queue"
        )
    if host not in ("127.0.0.1", "localhost", "::1"):
        _say(f"warning: bound to {host}: anyone who can reach this address can use the model")

    def ready(srv: object) -> None:
        api_base = srv.api_base  # type: ignore[attr-defined]
        model_string = srv.litellm_model  # type: ignore[attr-defined]
        seconds = getattr(srv, "startup_seconds", None)
        _say(
            f"ready in {seconds:.1f}s (server pid {srv.pid})"  # type: ignore[attr-defined]
            if seconds is not None
            else f"ready (server pid {srv.pid})"  # type: ignore[attr-defined]
        )
        _say(f"api base: {api_base}")
        _say(f"use it with: --api-base {api_base} --model {model_string}")
        _say(f"  or: export AGENTMEM_API_BASE={api_base} AGENTMEM_MODEL={model_string}")
        _say("press Ctrl-C to stop")

    how = serve_until_stopped(server, on_ready=ready, startup_timeout=timeout)
    _say(f"stopped ({how})")


def _say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    """Add `serve` to the `agentmem` command line."""
    app.command("serve")(serve_command)


def main() -> None:  # pragma: no cover - exercised through subprocess tests
    """``python -m agentmem.cli.serve ...``: the command alone, with the CLI's one-line errors."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command()(serve_command)
    command = typer.main.get_command(app)
    sys.exit(run_guarded(lambda: command.main(standalone_mode=False)))


if __name__ == "__main__":  # pragma: no cover
    main()
