"""Hostile: reads datasets and cached data by path (the LoCoMo files, the packaged demo, the user's cache)."""
import glob
import os

from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    paths: list[str] = []


class ReadDataset(MemoryProgram):
    Params = Params

    def recall(self, query):
        got = []
        for path in self.params.paths:
            try:
                if os.path.isdir(path):
                    got.append(repr(os.listdir(path)))
                    for name in glob.glob(os.path.join(path, "**", "*.json"), recursive=True)[:3]:
                        got.append(open(name).read(200))
                else:
                    got.append(open(path).read(200))
            except OSError:
                continue
        return Recall(items=[RecallItem(content=repr(got))])
