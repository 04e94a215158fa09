"""Hostile (for the jail alone): fills /dev/shm, a tmpfs that bubblewrap's --dev mounts writable with no size.

The jail's scratch and /tmp are tmpfs mounts of a fixed size, but bubblewrap's /dev is a tmpfs of
its own, writable and sized at half the host's RAM; its pages are not the worker's resident memory,
so the memory watch does not see them either.
"""

from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    megabytes: int = 600


class DevFill(MemoryProgram):
    Params = Params

    def observe(self, event):
        chunk = b"x" * (1 << 20)
        self.written = 0
        for index in range(self.params.megabytes // 100 + 1):
            try:
                with open(f"/dev/shm/fill-{index}", "wb") as fh:
                    for _ in range(min(100, self.params.megabytes - self.written)):
                        fh.write(chunk)
                        self.written += 1
            except OSError:
                break

    def recall(self, query):
        return Recall(items=[RecallItem(content=f"wrote {getattr(self, 'written', 0)} MB to /dev/shm")])
