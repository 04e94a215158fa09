"""A memory plugin written inline: a MemoryProgram subclass used by an Agent, no packaging needed.

``NotesMemory`` keeps every user message that starts with "note:" in a core
``Store`` (SQLite, scoped to the user; words indexed with BM25, no vectors)
and recalls the notes that share words with the question with the core
lexical retriever and packer, within the token budget.

    python examples/custom_plugin.py            # the embedded local model
    python examples/custom_plugin.py openai/gpt-4o-mini
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agentmem import Agent, Event, MemoryProgram, Query, Recall, Reply
from agentmem.packer import Packer, candidate
from agentmem.retrievers import LexicalRetriever, Retrieval
from agentmem.store import StoredItem
from agentmem.toolkit import Toolkit


class NotesParams(BaseModel):
    """The plugin's knobs (evolution may tune them within these bounds)."""

    top_k: int = Field(3, ge=1, le=20)


class NotesMemory(MemoryProgram[NotesParams]):
    """Remembers messages that start with "note:" and recalls them by shared words."""

    name: ClassVar[str] = "notes"
    templates: ClassVar[dict[str, str]] = {"usage": "The user's notes:\n{{ context }}"}

    def __init__(self, toolkit: Toolkit, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.store = self.open_store("notes", dense=False)  # closed (and committed) with the program
        self.retrieval = Retrieval(LexicalRetriever())
        self.packer = Packer()

    def observe(self, event: Event) -> None:
        if event.kind == "message" and event.speaker == "user" and event.content.lower().startswith("note:"):
            self.store.add([StoredItem(text=event.content[5:].strip(), event_ids=[event.id])])

    def recall(self, query: Query) -> Recall:
        hits, ctx = self.retrieval.run(self.store, query.text, self.params.top_k)
        return self.recalled(
            self.packer.pack(
                (candidate(note, note.text, hit.score, self.name) for hit, note in ctx.found(hits)), query.budget_tokens
            )
        )


def main(model: Any = "local", store_dir: str | None = None) -> list[Reply]:
    """Take a note in one thread, ask about it in another; returns the replies."""
    store_dir = store_dir or tempfile.mkdtemp(prefix="agentmem-custom-")
    replies = []
    # the class itself: the Agent builds it with a toolkit scoped to this user
    with Agent(model=model, memory=[NotesMemory], user_id="ann", store_dir=store_dir) as agent:
        replies.append(agent.chat("note: the wifi password is tangerine42", thread_id="home"))
        replies.append(agent.chat("What is the wifi password?", thread_id="later"))
        for detail in replies[-1].trace.recalls:
            print(f"[{detail.plugin}] recalled: {[item.text for item in detail.items]}")
    for reply in replies:
        print(f"{reply.thread_id}: {reply.text}")
    return replies


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "local")
