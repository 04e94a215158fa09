"""Hostile (for the jail alone): writes to a host file through the jail's own init process.

bubblewrap's pid 1 inside the jail keeps its stderr open: the controller's boot.log, a file on the host
in the controller's directory. /proc/1/fd/2 re-opens it for writing (same uid, same user namespace,
bwrap's init is dumpable): the program appends up to the file-size limit to a host file, outside its
scratch and past the controller's watch on worker.log.
"""
import os

from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    megabytes: int = 32


class BootLogWrite(MemoryProgram):
    Params = Params

    def recall(self, query):
        got = []
        try:
            fd = os.open("/proc/1/fd/2", os.O_WRONLY | os.O_APPEND)
            got.append(os.readlink(f"/proc/self/fd/{fd}"))
            for _ in range(self.params.megabytes):
                os.write(fd, b"y" * (1 << 20))
            got.append(f"wrote {os.fstat(fd).st_size >> 20} MB")
            os.close(fd)
        except OSError as exc:
            got.append(repr(exc))
        return Recall(items=[RecallItem(content=" | ".join(got))])
