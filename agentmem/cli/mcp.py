"""`agentmem mcp`: serve a memory configuration to MCP clients (desktop apps, agent frameworks).

Registered on the main app by :func:`register`; ``python -m agentmem.cli.mcp``
runs the command on its own (same options, same one-line errors). Nothing but
MCP messages ever goes to stdout: notices go to stderr, so the stdio
transport stays clean.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from agentmem.errors import AgentmemError, ConfigError

TRANSPORTS = ("stdio", "http")

HELP = """Serve a memory configuration over the Model Context Protocol.

\b
Transports:
  stdio (default)  the client starts `agentmem mcp` itself and talks over stdin/stdout
                   (desktop clients: Claude Desktop, Cursor, ...; one client per server)
  http             streamable HTTP at http://HOST:PORT/mcp, bound to 127.0.0.1 unless
                   --host says otherwise; many clients (and agent frameworks) share one server

\b
Tools: add_memory, search_memories, list_memories, delete_memory, delete_all_memories
(plus fact_history with semantic memory). Every tool takes user_id and agent_id;
memories never cross users, and delete_all_memories deletes one user's memories only.
Writes are durable when a tool returns. See docs/mcp.md for client configuration.
"""


def _parse_params(values: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"'{item}' is not key=value (e.g. --param top_k=5)")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _check_port(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror or exc}); pass another --port or --host"
            ) from None


def mcp_command(
    memory: Annotated[
        str,
        typer.Option(
            "--memory",
            help="memory configuration: plugins composed with '+' (episodic+semantic), a program .py path, or "
            "an installed (e.g. exported evolved) plugin's name",
        ),
    ] = "episodic",
    transport: Annotated[
        str,
        typer.Option(
            "--transport",
            "-t",
            help="stdio (default; the client launches the server) or http (streamable HTTP, for several clients)",
        ),
    ] = "stdio",
    host: Annotated[
        str,
        typer.Option(
            "--host",
            help="http: address to bind; loopback by default (anything else exposes every user's memories to "
            "the network)",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="http: port to listen on")] = 8765,
    path: Annotated[str, typer.Option("--path", help="http: the endpoint path")] = "/mcp",
    store_dir: Annotated[
        Path | None,
        typer.Option(
            "--store-dir", help="where the memories are kept (default: <agentmem home>/mcp); one server per directory"
        ),
    ] = None,
    user: Annotated[str, typer.Option("--user", "-u", help="user_id the tools use when a call gives none")] = "default",
    agent: Annotated[str, typer.Option("--agent", help="agent_id the tools use when a call gives none")] = "default",
    budget: Annotated[
        int | None,
        typer.Option("--budget", help="default token budget of search_memories (default: the recall_budget setting)"),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option("--param", help="memory parameter key=value, given to every plugin that declares it (repeatable)"),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="LLM for plugins that call one (semantic, procedural): 'local' or a litellm model string (env "
            "AGENTMEM_MODEL)",
        ),
    ] = None,
    api_base: Annotated[
        str | None, typer.Option("--api-base", help="OpenAI-compatible server URL for --model (env AGENTMEM_API_BASE)")
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="server log level on stderr: debug, info, warning, error")
    ] = "warning",
) -> None:
    """Serve a memory configuration over MCP: stdio (default) or streamable HTTP on loopback."""
    import logging

    from agentmem.grid import params_for
    from agentmem.mcp_server.service import MemoryService, parse_memory_spec

    transport = {"streamable-http": "http", "streamable_http": "http"}.get(transport, transport)
    if transport not in TRANSPORTS:
        raise typer.BadParameter(f"--transport must be stdio or http (got '{transport}')")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"--log-level must be debug, info, warning or error (got '{log_level}')")
    if not 1 <= port <= 65535:
        raise typer.BadParameter(f"--port must be between 1 and 65535 (got {port})")
    if not path.startswith("/"):
        raise typer.BadParameter(f"--path must start with / (got '{path}')")
    if budget is not None and not 1 <= budget <= 32_000:
        raise typer.BadParameter(f"--budget must be between 1 and 32000 (got {budget})")
    logging.basicConfig(stream=sys.stderr, level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    names = parse_memory_spec(memory)
    params = params_for(names, _parse_params(param)) if param else None
    if transport == "http":
        _check_port(host, port)  # before any store is opened: a busy port costs nothing
    from agentmem.config import load_settings
    from agentmem.llm import LLM

    settings = load_settings(model=model, api_base=api_base)
    budget = settings.recall_budget if budget is None else budget
    llm = LLM(settings.model, api_base=settings.api_base, api_key=settings.api_key, settings=settings)
    where = store_dir.expanduser() if store_dir is not None else settings.home / "mcp"
    service = MemoryService(
        names, where, llm=llm, params=params, budget_tokens=budget, chroma_host=settings.chroma_host
    )
    from agentmem.mcp_server.server import build_server

    server = build_server(service, default_user=user, default_agent=agent, log_level=log_level)
    extra = f" (+ {', '.join(service.capabilities)})" if service.capabilities else ""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        if transport == "stdio":
            _say(f"agentmem mcp: memory {service.label}{extra}, store {where}, over stdio")
            server.run("stdio")
        else:
            _serve_http(server, host=host, port=port, path=path, log_level=log_level)
    except KeyboardInterrupt:
        pass
    finally:
        service.close()
        _say("agentmem mcp: stopped; every acknowledged memory is stored")


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _serve_http(server: Any, *, host: str, port: int, path: str, log_level: str) -> None:
    import anyio
    import uvicorn

    app = server.streamable_http_app(streamable_http_path=path, host=host)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level.lower(), lifespan="on")
    web = uvicorn.Server(config)
    shown = f"[{host}]" if ":" in host else host
    if host not in ("127.0.0.1", "localhost", "::1"):
        _say(f"warning: bound to {host}: anyone who can reach this address can read and delete every user's memories")
    _say(f"agentmem mcp: serving {server.name} over streamable HTTP at http://{shown}:{port}{path}")
    anyio.run(web.serve)


def register(app: typer.Typer) -> None:
    """Add `mcp` to the `agentmem` command line."""
    app.command("mcp", help=HELP)(mcp_command)


def main() -> None:  # pragma: no cover - exercised through subprocess tests
    """``python -m agentmem.cli.mcp ...``: the command alone, with the CLI's error handling."""
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    app.command(help=HELP)(mcp_command)
    try:
        app()
    except AgentmemError as exc:
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        raise SystemExit(2) from None


if __name__ == "__main__":  # pragma: no cover
    main()
