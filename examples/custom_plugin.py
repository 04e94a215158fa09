"""A memory plugin written inline: a MemoryProgram subclass used by an Agent, no packaging needed.

``NotesMemory`` keeps every user message that starts with "note:" in its own
SQLite table (through the toolkit, so it is scoped to the user) and recalls
the notes that share words with the question, within the token budget.

    python examples/custom_plugin.py            # the embedded local model
    python examples/custom_plugin.py openai/gpt-4o-mini
"""

from __future__ import annotations

import re
import sys
import tempfile
from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agentmem import Agent, Event, MemoryProgram, Query, Recall, RecallItem, Reply
from agentmem.toolkit import Toolkit

WORD = re.compile(r"[a-z0-9]+")


class NotesParams(BaseModel):
    """The plugin's knobs (evolution may tune them within these bounds)."""

    top_k: int = Field(3, ge=1, le=20)


class NotesMemory(MemoryProgram):
    """Remembers messages that start with "note:" and recalls them by shared words."""

    name: ClassVar[str] = "notes"
    Params: ClassVar[type[BaseModel]] = NotesParams
    templates: ClassVar[dict[str, str]] = {"usage": "The user's notes:\n{{ context }}"}

    def __init__(self, toolkit: Toolkit, params: Any = None) -> None:
        super().__init__(toolkit, params)
        self.toolkit.db.execute("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        self.toolkit.db.commit()

    def observe(self, event: Event) -> None:
        if event.kind == "message" and event.speaker == "user" and event.content.lower().startswith("note:"):
            self.toolkit.db.execute("INSERT INTO notes (text) VALUES (?)", (event.content[5:].strip(),))
            self.toolkit.db.commit()

    def recall(self, query: Query) -> Recall:
        asked = set(WORD.findall(query.text.lower()))
        rows = self.toolkit.db.execute("SELECT id, text FROM notes").fetchall()
        scored = sorted(((len(asked & set(WORD.findall(r["text"].lower()))), r) for r in rows), key=lambda p: -p[0])
        items, used, omitted = [], 0, 0
        for score, row in [p for p in scored if p[0] > 0][: self.params.top_k]:
            cost = self.toolkit.count_tokens(row["text"])
            if used + cost > query.budget_tokens:
                omitted += 1
                continue
            used += cost
            items.append(RecallItem(content=row["text"], score=float(score), source=self.name, tokens=cost,
                                    metadata={"id": str(row["id"])}))
        context = "\n".join(i.content for i in items)
        return Recall(items=items, omitted=omitted, plugin=self.name,
                      instructions=self.instructions(context=context) if items else "")


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
