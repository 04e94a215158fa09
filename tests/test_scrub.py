"""Freed memory cannot carry a deleted record into a new buffer (what Chroma then writes to disk)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from agentmem.scrub import scrub_freed_memory

_PROBE = """
import ctypes, sys
from agentmem.scrub import scrub_freed_memory
if sys.argv[1] == "scrub":
    assert scrub_freed_memory()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
secret = b"user lives in Denver " * 150
first = libc.malloc(len(secret))
ctypes.memmove(first, secret, len(secret))
libc.free(first)
again = libc.malloc(len(secret))
print(b"Denver" in ctypes.string_at(again, len(secret)))
"""


def _probe(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_a_new_heap_block_carries_nothing_of_a_freed_one() -> None:
    if not scrub_freed_memory():
        pytest.skip("not glibc: the allocator's own behaviour applies")
    assert _probe("plain") == "True"  # the threat is real: the allocator hands the old bytes back
    assert _probe("scrub") == "False"


def test_opening_an_embedded_chroma_turns_the_scrub_on(tmp_path) -> None:
    code = (
        "import agentmem.scrub as s; from agentmem.toolkit import Stores; "
        f"Stores({str(tmp_path)!r}).chroma; print(s._state)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(scrub_freed_memory())
