"""A local OpenAI-compatible chat server that misbehaves on request (for the fault-injection tests).

Not a model: when it is not told to fail, it answers every chat completion
at once with a canned reply that is valid for the request - a call of the
first tool offered, with arguments made from the tool's JSON schema; a JSON
object for a ``response_format`` schema; else a short text. That is enough
for ``agentmem eval`` and ``agentmem evolve`` to run end to end through the
real litellm client against ``--model openai/fault --api-base <proxy.api_base>``.

Faults (``proxy.fault = ...``, switchable while a run is going):

- ``"ok"``: the canned reply.
- ``"refuse"``: the listening socket is closed, so connections are refused.
- ``"http500"``: ``500 Internal Server Error`` with a JSON error body.
- ``"stall"``: the request is read and nothing is ever answered (until the
  client gives up, or the proxy stops).
- ``"drop"``: the status line and headers of a 200 and half the body, then
  the connection is closed.
- ``"malformed"``: a 200 whose body is not JSON.
- ``"bad_content"``: a well-formed reply whose content (tool arguments, JSON
  object) is not valid JSON: the model's fault, not the server's.

``ok_first = n`` answers the next ``n`` requests normally before the fault
starts (a fault in the middle of a run; with "refuse" the listening socket
closes at that point). ``fail_first = n`` then applies the fault to ``n``
requests only and answers normally again (a transient outage). Every request
is counted in ``requests`` and ``by_fault``; ``on_request(n)``, when set, is
called with the request's number before it is answered (the kill tests kill
the client there).
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

FAULTS = ("ok", "refuse", "http500", "stall", "drop", "malformed", "bad_content")


def value_for(schema: dict[str, Any]) -> Any:
    """A value that satisfies a (simple) JSON schema: enum's first, else by type; objects get their required keys."""
    if not isinstance(schema, dict):
        return "x"
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    for combo in ("anyOf", "oneOf", "allOf"):
        if schema.get(combo):
            return value_for(schema[combo][0])
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {key: value_for(props.get(key, {})) for key in schema.get("required", list(props))}
    if kind == "array":
        return [value_for(schema.get("items") or {})] if schema.get("minItems") else []
    if kind == "integer":
        return int(schema.get("minimum", 1))
    if kind == "number":
        return float(schema.get("minimum", 1.0))
    if kind == "boolean":
        return True
    pattern = schema.get("pattern")
    if isinstance(pattern, str):  # the argument checks enforce it (jsonschema): a date or a time, as toolprefs asks
        return next((v for v in ("2024-01-01", "12:00", "x") if re.search(pattern, v)), "x")
    return "x"


def canned_reply(request: dict[str, Any], *, bad_content: bool = False) -> dict[str, Any]:
    """An OpenAI chat.completion object answering ``request``."""
    message: dict[str, Any] = {"role": "assistant", "content": None}
    tools = request.get("tools") or []
    response_format = request.get("response_format") or {}
    finish = "stop"
    if tools:
        function = tools[0].get("function", {})
        arguments = "{not json" if bad_content else json.dumps(value_for(function.get("parameters") or {}))
        message["tool_calls"] = [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": function.get("name", "tool"), "arguments": arguments},
            }
        ]
        finish = "tool_calls"
    elif response_format.get("type") in ("json_schema", "json_object"):
        inner = response_format.get("json_schema") or {}
        schema = inner.get("schema", response_format.get("schema") or {})
        message["content"] = "{not json" if bad_content else json.dumps(value_for(schema))
    else:
        message["content"] = "{not json" if bad_content else "ok"
    return {
        "id": "chatcmpl-fault",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.get("model", "fault"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    }


class FaultProxy:
    """The server, on 127.0.0.1 and a free port, in a daemon thread; ``stop()`` (or ``with``) ends it."""

    def __init__(self, fault: str = "ok") -> None:
        self._fault = "ok"
        self.fail_first: int | None = None
        self.ok_first = 0
        self.on_request: Callable[[int], None] | None = None
        self.requests = 0
        self.by_fault: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._release = threading.Event()  # set when the proxy stops: stalled handlers return
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.fault = fault

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def fault(self) -> str:
        return self._fault

    @fault.setter
    def fault(self, value: str) -> None:
        if value not in FAULTS:
            raise ValueError(f"unknown fault {value!r}; one of {FAULTS}")
        self._fault = value
        if value == "refuse" and self.ok_first <= 0:
            self._close()
        else:
            self._open()

    def next_fault(self) -> str:
        """The fault the next request gets (counting down ``fail_first``)."""
        with self._lock:
            self.requests += 1
            fault = self._fault
            if self.ok_first > 0:
                self.ok_first -= 1
                fault = "ok"
            elif self.fail_first is not None:
                if self.fail_first <= 0:
                    fault = "ok"
                else:
                    self.fail_first -= 1
            self.by_fault[fault] += 1
            return fault

    # -- the listening socket ------------------------------------------------------------------
    def _open(self) -> None:
        if self._server is not None:
            return
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                return None

            def do_GET(self) -> None:
                self._json(200, {"object": "list", "data": [{"id": "fault", "object": "model"}]})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b"{}"
                try:
                    request = json.loads(body)
                except ValueError:
                    request = {}
                fault = proxy.next_fault()
                if proxy.on_request is not None:
                    proxy.on_request(proxy.requests)
                if fault == "refuse":  # the fault begins now: this connection and every later one are refused
                    threading.Thread(target=proxy._close, daemon=True).start()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                if fault == "stall":
                    proxy._release.wait()
                    self.close_connection = True
                    return
                if fault == "http500":
                    self._json(500, {"error": {"message": "injected fault", "type": "server_error", "code": 500}})
                    return
                if fault == "malformed":
                    self._raw(200, b'{"id": "chatcmpl-fault", "choices": [{"message": ', "application/json")
                    return
                reply = json.dumps(canned_reply(request, bad_content=fault == "bad_content")).encode()
                if fault == "drop":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply[: len(reply) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self._raw(200, reply, "application/json")

            def _json(self, status: int, payload: Any) -> None:
                self._raw(status, json.dumps(payload).encode(), "application/json")

            def _raw(self, status: int, data: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")  # no kept-alive connection outlives a switch to "refuse"
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

        server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def stop(self) -> None:
        self._release.set()
        self._close()

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
