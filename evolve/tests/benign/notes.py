"""A tiny pure-python memory: keeps every message, recalls the ones sharing words with the query.

It asks the LLM for a one-line summary in reflect(), so its LLM calls show in the controller's meter.
"""

from typing import ClassVar

from pydantic import BaseModel, Field

from agentmem.memory import MemoryProgram
from agentmem.types import Episode, Event, Query, Recall, RecallItem


class NotesParams(BaseModel):
    top_k: int = Field(4, ge=1, le=20)
    summarise: bool = True


class Notes(MemoryProgram):
    name: ClassVar[str] = "notes"
    Params: ClassVar[type[BaseModel]] = NotesParams

    def __init__(self, toolkit, params=None):
        super().__init__(toolkit, params)
        self.notes: list[tuple[str, list[str]]] = []
        self.summaries: list[str] = []

    def observe(self, event: Event) -> None:
        dia = [str(event.metadata["dia_id"])] if "dia_id" in event.metadata else []
        self.notes.append((event.render(), dia))

    def recall(self, query: Query) -> Recall:
        words = set(query.text.lower().split())
        scored = sorted(
            ((len(words & set(text.lower().split())), i) for i, (text, _) in enumerate(self.notes)), reverse=True
        )
        items, used = [], 0
        for score, i in scored[: self.params.top_k]:
            text, dia = self.notes[i]
            cost = self.toolkit.count_tokens(text)
            if used + cost > query.budget_tokens:
                continue
            used += cost
            items.append(RecallItem(content=text, score=float(score), tokens=cost, metadata={"dia_id": dia}))
        return Recall(items=items, plugin=self.name)

    def reflect(self, episode: Episode) -> None:
        if self.params.summarise and episode.events:
            text = "\n".join(e.render() for e in episode.events[-5:])
            summary = self.toolkit.complete(
                [{"role": "user", "content": "Summarise in one line:\n" + text}],
                op="reflect",
                max_tokens=32,
                temperature=0.0,
            )
            self.summaries.append(summary.strip())
