"""Raw-text search in M*'s program format: each session's raw text, in chunks, recalled by meaning.

The program M*'s ``vector_search`` seed is: the knowledge item (a summary) is
asked for, as M* always asks, but only the raw text is kept. ``write`` cuts
the raw text into chunks of whole lines (each chunk keeps the session's date
line) and adds each chunk once to the Chroma collection; ``read`` returns the
nearest chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSTRUCTION_KNOWLEDGE_ITEM = "Summarize the key information from the text."
INSTRUCTION_QUERY = "Write a search query for the information the question needs."
INSTRUCTION_RESPONSE = (
    "Answer the question in a few words from the conversation excerpts above. Each excerpt starts with its date "
    "in brackets: use it for questions about when something happened."
)
ALWAYS_ON_KNOWLEDGE = ""

CHUNK_CHARS = 600
TOP_K = 5


@dataclass
class KnowledgeItem:
    """What was learnt from the text."""

    summary: str = field(metadata={"description": "what the text says, in one or two sentences"})


@dataclass
class Query:
    """A search over the stored conversation."""

    query_text: str = field(metadata={"description": "words that the wanted passage would contain"})


class KnowledgeBase:
    def __init__(self, toolkit):
        self.toolkit = toolkit
        self.chunks = toolkit.chroma.get_or_create_collection("raw_text")
        self.stored = self.chunks.count()

    def write(self, item: KnowledgeItem, raw_text: str) -> None:
        chunks = self._chunk(raw_text)
        self.chunks.add(ids=[f"chunk-{self.stored + i}" for i in range(len(chunks))], documents=chunks)
        self.stored += len(chunks)
        self.toolkit.logger.debug("stored %d chunks (%d in all)", len(chunks), self.stored)

    def read(self, query: Query) -> str:
        if self.stored == 0:
            return ""
        hits = self.chunks.query(query_texts=[query.query_text], n_results=min(TOP_K, self.stored))
        return "\n\n".join(hits["documents"][0])

    @staticmethod
    def _chunk(raw_text: str) -> list[str]:
        """Whole lines up to CHUNK_CHARS per chunk, each chunk led by the date line."""
        first, _, rest = raw_text.partition("\n")
        header = first if first.startswith("[") else ""
        lines = rest.splitlines() if header else raw_text.splitlines()
        chunks: list[str] = []
        current: list[str] = []
        for line in lines:
            if current and sum(len(x) + 1 for x in current) + len(line) > CHUNK_CHARS:
                chunks.append("\n".join([header, *current] if header else current))
                current = []
            current.append(line)
        if current or not chunks:
            chunks.append("\n".join([header, *current] if header else current))
        return chunks
