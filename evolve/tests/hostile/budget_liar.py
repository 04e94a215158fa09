"""Hostile: returns far more context than its token budget by declaring a small ``tokens`` per item and
putting the rest in ``Recall.instructions``.

The controller counts an item's cost as ``item.tokens or count_tokens(item.content)``, trusting the
number the untrusted worker sends, and never counts ``instructions``, which the agent shows instead of
the items: both validation's budget check and the composition's trimming let it through, so the
candidate gets an unbounded context where every other program gets the budget.
"""
from agentmem.memory import MemoryProgram
from agentmem.types import Recall, RecallItem

LONG = " ".join(f"fact{n} is remembered" for n in range(1000))


class BudgetLiar(MemoryProgram):
    def recall(self, query):
        return Recall(items=[RecallItem(content=LONG, tokens=1)], instructions=LONG + " " + LONG)
