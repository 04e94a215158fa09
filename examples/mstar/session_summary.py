"""Session summaries in M*'s program format: only the knowledge item is kept, never the raw text.

Each session becomes one summary the model writes (with the session's date);
``write`` adds the summary to the Chroma collection and ``read`` returns the
nearest summaries. What the summary leaves out is gone: this is the program
that shows what extraction alone preserves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSTRUCTION_KNOWLEDGE_ITEM = (
    "Summarize the conversation: who did, plans or likes what, with the names, places, numbers and dates it "
    "mentions. Start with the date shown in brackets."
)
INSTRUCTION_QUERY = "Write a search query for the information the question needs."
INSTRUCTION_RESPONSE = (
    "Answer the question in a few words from the session summaries above. Use their dates for questions about "
    "when something happened."
)
ALWAYS_ON_KNOWLEDGE = ""

TOP_K = 4


@dataclass
class KnowledgeItem:
    """A dated summary of one conversation session."""

    summary: str = field(metadata={"description": "the session's date, then what happened in it, naming the people"})


@dataclass
class Query:
    question: str


class KnowledgeBase:
    def __init__(self, toolkit):
        self.summaries = toolkit.chroma.get_or_create_collection("summaries")
        self.stored = self.summaries.count()

    def write(self, item: KnowledgeItem, raw_text: str) -> None:
        text = " ".join(item.summary.split())
        if not text:
            return
        self.summaries.add(ids=[f"summary-{self.stored}"], documents=[text])
        self.stored += 1

    def read(self, query: Query) -> str:
        if self.stored == 0:
            return ""
        hits = self.summaries.query(query_texts=[query.question], n_results=min(TOP_K, self.stored))
        return "\n".join(hits["documents"][0])
