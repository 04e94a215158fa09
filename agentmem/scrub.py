"""Keep freed memory from reaching disk: glibc's ``M_PERTURB`` for processes that open an embedded Chroma.

Why this exists: Chroma (1.5) persists an HNSW index as its whole allocated
capacity (``data_level0.bin`` holds 100 slots after one item) and never
clears the unused slots, so whatever the allocator handed back lands on disk.
A CI run found ``{"chroma:document": "user lives in Denver"}``, a record of a
fact the user had since deleted, in an unused slot: "deleted means deleted,
on disk too" broke through memory we never wrote. With ``M_PERTURB`` set,
glibc fills every freed block with one byte and every new block with its
complement, so a fresh buffer can no longer carry an old record. The cost is
one ``memset`` per ``malloc``/``free`` of the C heap (Python's small objects
use their own arenas), small beside embedding and model calls.

No-op where the C library is not glibc (macOS, musl): there the allocator's
own behaviour applies and this guarantee is not made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_M_PERTURB = -6  # from glibc's <malloc.h>
_PERTURB_BYTE = 0x5A
_lock = threading.Lock()
_state: bool | None = None


def scrub_freed_memory() -> bool:
    """Turn on glibc's fill-on-free for this process (once); returns whether it is on."""
    global _state
    with _lock:
        if _state is None:
            _state = _mallopt(_M_PERTURB, _PERTURB_BYTE)
        return _state


def _mallopt(param: int, value: int) -> bool:
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it: other C libraries' mallopt take other numbers
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt(param, value) == 1
