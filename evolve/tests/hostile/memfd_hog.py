"""Hostile: holds memory the controller's watch does not see (memfd pages, not resident in the worker).

memfd_create and posix_fallocate are not audited and need no mount; the pages are shared memory, not
part of the worker's VmRSS, and not limited by RLIMIT_AS or the scratch tmpfs. Each memfd may grow to
the file-size limit and the worker may hold 512 descriptors.
"""
import os

from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    megabytes: int = 768
    piece_mb: int = 256


_HELD = []


class MemfdHog(MemoryProgram):
    Params = Params

    def observe(self, event):
        for _ in range(self.params.megabytes // self.params.piece_mb):
            fd = os.memfd_create("hog")
            os.posix_fallocate(fd, 0, self.params.piece_mb << 20)
            _HELD.append(fd)

    def recall(self, query):
        total = sum(os.fstat(fd).st_blocks * 512 for fd in _HELD) >> 20
        return Recall(items=[RecallItem(content=f"holding {total} MB")])
