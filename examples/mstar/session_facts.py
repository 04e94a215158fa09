"""Session facts in M*'s program format: a multi-field knowledge item, its facts recalled one by one.

Each session becomes one item: its date, its speakers and the facts they
state. ``write`` keeps the item in SQLite (one row per fact, with the date
and speakers) and each fact as a document in the Chroma collection; ``read``
returns the nearest facts, one dated line each, in the order they were said.
"""

from __future__ import annotations

from dataclasses import dataclass, field

INSTRUCTION_KNOWLEDGE_ITEM = (
    "Take notes on the conversation. List each fact, event, plan or preference a speaker states as one short "
    "sentence that names the person, and give the date shown in brackets."
)
INSTRUCTION_QUERY = "Write the question to search the notes with."
INSTRUCTION_RESPONSE = (
    "Answer the question from the notes above in a few words. Notes are dated; use the dates for questions about "
    "when something happened."
)
ALWAYS_ON_KNOWLEDGE = "Notes taken from earlier conversations ([date] fact):"

TOP_K = 8


@dataclass
class KnowledgeItem:
    """The facts stated in one conversation session."""

    # every field is required: a JSON-schema grammar then makes the model write all three
    date: str = field(metadata={"description": "the date shown in brackets at the start of the text"})
    speakers: list[str] = field(metadata={"description": "names of the people talking"})
    facts: list[str] = field(metadata={"description": "each fact as one short sentence naming the person"})


@dataclass
class Query:
    question: str


class KnowledgeBase:
    def __init__(self, toolkit):
        self.toolkit = toolkit
        self.db = toolkit.db
        self.notes = toolkit.chroma
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS facts (id INTEGER PRIMARY KEY AUTOINCREMENT, date TEXT, speakers TEXT,"
            " fact TEXT)"
        )
        self.db.commit()

    def write(self, item: KnowledgeItem, raw_text: str) -> None:
        speakers = ", ".join(s.strip() for s in item.speakers if s.strip())
        for fact in item.facts:
            fact = " ".join(fact.split())
            if not fact:
                continue
            cur = self.db.execute(
                "INSERT INTO facts (date, speakers, fact) VALUES (?, ?, ?)", (item.date.strip(), speakers, fact)
            )
            self.notes.add(ids=[str(cur.lastrowid)], documents=[fact])
        self.db.commit()

    def read(self, query: Query) -> str:
        total = self.notes.count()
        if total == 0:
            return ""
        hits = self.notes.query(query_texts=[query.question], n_results=min(TOP_K, total))
        ids = sorted(int(i) for i in hits["ids"][0])
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT date, fact FROM facts WHERE id IN ({marks}) ORDER BY id", ids)
        return "\n".join(f"[{date}] {fact}" for date, fact in rows)
