"""Hostile: returns something that is not a Recall (a dict shaped like one, with a huge token claim)."""
from agentmem.memory import MemoryProgram


class WrongTypes(MemoryProgram):
    def recall(self, query):
        return {"items": [{"content": "x", "tokens": -5}], "omitted": "many"}
