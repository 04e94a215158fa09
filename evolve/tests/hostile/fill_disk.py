"""Hostile: fills its disk with many files, each under the file-size limit."""

from agentmem.memory import MemoryProgram
from agentmem.types import Recall

CHUNK = b"x" * (1 << 20)


class FillDisk(MemoryProgram):
    def observe(self, event):
        for i in range(100_000):
            with open(f"fill-{i}.bin", "wb") as fh:
                for _ in range(16):
                    fh.write(CHUNK)

    def recall(self, query):
        return Recall()
