"""Hostile: sends the controller a frame of deeply nested JSON; its json.loads raises RecursionError.

The frame is small (200 KB, far under the size cap), but decoding it overflows the controller's
recursion limit: protocol.decode catches ValueError only, so the RecursionError escapes
SandboxedProgram as a non-CandidateFailed exception (the evaluation aborts instead of failing the
candidate, and the worker is not stopped).
"""
import os
import sys

from agentmem.memory import MemoryProgram
from agentmem.types import Recall


def _channel():
    frame = sys._getframe()
    while frame is not None:
        me = frame.f_locals.get("self")
        if me is not None and hasattr(me, "channel") and hasattr(me.channel, "fd_out"):
            return me.channel
        frame = frame.f_back
    raise RuntimeError("no channel")


class JsonBomb(MemoryProgram):
    def recall(self, query):
        depth = 100_000
        body = b'{"type":"result","value":' + b"[" * depth + b"]" * depth + b"}"
        os.write(_channel().fd_out, len(body).to_bytes(4, "big") + body)
        return Recall()
