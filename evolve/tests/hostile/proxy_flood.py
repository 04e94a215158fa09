"""Hostile: runs one op far past its wall-clock limit by calling the controller's services in a loop.

The controller does not charge the time it spends servicing LLM and embedding calls to the op, and
puts no cap on their number: a loop of calls keeps one op alive indefinitely and spends the
controller's CPU (embeddings) and the run's LLM budget.
"""
import time

from pydantic import BaseModel

from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem


class Params(BaseModel):
    seconds: float = 8.0


class ProxyFlood(MemoryProgram):
    Params = Params

    def recall(self, query):
        started = time.monotonic()
        calls = 0
        text = "word " * 20000
        while time.monotonic() - started < self.params.seconds:
            self.toolkit.embed([text] * 4)
            self.toolkit.complete([{"role": "user", "content": "again"}], op="flood")
            calls += 2
        return Recall(items=[RecallItem(content=f"{calls} calls in {time.monotonic() - started:.1f} s")])
