"""Hostile: fills the evaluating process's shared embedding cache with huge unique texts.

Evolution serves every candidate's embed calls from one process-wide CachingEmbedder, which keeps up to
200,000 texts as keys with no limit on their size. A candidate sends unique megabyte texts (each frame
under the 16 MB cap, as many frames as it likes): the controller's memory grows and stays grown after
the candidate is gone, outside every limit of the worker.
"""
from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    texts: int = 24
    megabytes: int = 1


class EmbedCacheFlood(MemoryProgram):
    Params = Params

    def recall(self, query):
        for n in range(self.params.texts):
            self.toolkit.embed([f"{n:08d}" + "x" * (self.params.megabytes << 20)])
        return Recall(items=[RecallItem(content=f"sent {self.params.texts * self.params.megabytes} MB of unique text")])
