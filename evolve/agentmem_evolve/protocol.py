"""The wire between the controller and a sandbox worker: length-prefixed JSON frames.

Each frame is a 4-byte big-endian length followed by that many bytes of
UTF-8 JSON (one object). JSON, not pickle: the worker runs untrusted code,
and unpickling what it sends would hand it the controller. Every frame has
a size cap, checked from the header before the body is read, so a program
that returns a 100 MB recall costs the controller four bytes, not 100 MB.

This module imports nothing from agentmem (the worker loads it by file path
before anything else, and the controller imports it normally).

Messages (``type`` field):

* controller -> worker: ``op`` (``name`` + arguments), and ``return`` /
  ``raise`` answering a worker's ``call``;
* worker -> controller: ``hello`` (trusted imports done, policy in force),
  ``result`` / ``error`` ending an op, and ``call`` (an LLM, structured or
  embedding request the controller services), answered before the op goes on;
* controller -> worker, nested inside servicing a ``structured`` call:
  ``call`` with method ``validate`` (the worker checks a reply against the
  program's own schema).
"""

from __future__ import annotations

import json
import os
import select
import struct
import time
from collections.abc import Callable
from typing import Any

HEADER = struct.Struct(">I")
DEFAULT_MAX_BYTES = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The peer broke the protocol: ``kind`` is "output" (too big), "invalid", "eof" or "timeout"."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def encode(message: dict[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """One frame; raises :class:`ProtocolError` ("output") when the body exceeds ``max_bytes``."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")
    if len(body) > max_bytes:
        raise ProtocolError("output", f"message of {_mb(len(body))}, over the {_mb(max_bytes)} limit")
    return HEADER.pack(len(body)) + body


def write_frame(fd: int, message: dict[str, Any], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
    """Send one message on a raw file descriptor (blocking, all bytes)."""
    data = memoryview(encode(message, max_bytes))
    while data:
        sent = os.write(fd, data)
        data = data[sent:]


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def decode(body: bytes) -> dict[str, Any]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError, MemoryError) as exc:  # a nested-JSON bomb is unreadable too
        raise ProtocolError("invalid", f"unreadable message ({type(exc).__name__})") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise ProtocolError("invalid", "message is not an object with a 'type'")
    return message


def read_exact_blocking(fd: int, n: int) -> bytes:
    """``n`` bytes from ``fd``, blocking; EOF midway raises ProtocolError("eof")."""
    chunks: list[bytes] = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise ProtocolError("eof", "the other side closed the channel")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def read_frame_blocking(fd: int, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, Any]:
    """One message, blocking (the worker's side: it has nothing else to do meanwhile)."""
    (length,) = HEADER.unpack(read_exact_blocking(fd, HEADER.size))
    if length > max_bytes:
        raise ProtocolError("output", f"message of {_mb(length)} is over the {_mb(max_bytes)} limit")
    return decode(read_exact_blocking(fd, length))


class FrameReader:
    """Reads frames from a non-trusted peer with a deadline and a periodic watchdog.

    ``deadline`` is a callable returning the current deadline (monotonic
    seconds): the controller moves it while it services the worker's requests.
    ``watch`` runs every ``poll`` seconds while waiting (the memory watch) and
    may raise to abort.
    """

    def __init__(self, fd: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.fd = fd
        self.max_bytes = max_bytes
        self._buffer = bytearray()
        # poll(), not select(): select() refuses descriptors numbered 1024 or
        # more, which a long-lived host process easily reaches
        self._poller = select.poll()
        self._poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)

    def _fill(self, want: int, deadline: Callable[[], float], watch: Callable[[], None] | None, poll: float) -> None:
        while len(self._buffer) < want:
            remaining = deadline() - time.monotonic()
            if remaining <= 0:
                raise ProtocolError("timeout", "no reply in time")
            ready = self._poller.poll(max(0, int(min(poll, remaining) * 1000)))
            if watch is not None:
                watch()
            if not ready:
                continue
            chunk = os.read(self.fd, min(max(want - len(self._buffer), 1 << 16), 1 << 20))
            if not chunk:
                raise ProtocolError("eof", "the worker closed the channel")
            self._buffer += chunk

    def read(
        self, deadline: Callable[[], float], watch: Callable[[], None] | None = None, poll: float = 0.1
    ) -> dict[str, Any]:
        self._fill(HEADER.size, deadline, watch, poll)
        (length,) = HEADER.unpack(bytes(self._buffer[: HEADER.size]))
        if length > self.max_bytes:
            raise ProtocolError("output", f"reply of {_mb(length)} is over the {_mb(self.max_bytes)} message limit")
        self._fill(HEADER.size + length, deadline, watch, poll)
        body = bytes(self._buffer[HEADER.size : HEADER.size + length])
        del self._buffer[: HEADER.size + length]
        return decode(body)
