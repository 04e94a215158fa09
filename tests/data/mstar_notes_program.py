"""Notes memory in M*'s program format: who said what, and when; recalled by meaning.

Each knowledge item is one fact with its speaker and date. ``write`` keeps the
item and the raw text it came from in SQLite and the fact as a document in the
Chroma collection; ``read`` runs a vector search for the question and returns
the nearest facts, one dated line each, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass

INSTRUCTION_KNOWLEDGE_ITEM = (
    "You take notes on a conversation. For each fact, event, plan or preference a speaker states, "
    "write one note: the speaker's name, the fact as a short complete sentence that names the people "
    "involved, and the date shown in brackets at the start of the line."
)
INSTRUCTION_QUERY = "Write the question to search the notes with."
INSTRUCTION_RESPONSE = (
    "Answer the question from the notes below in a few words. Notes are dated; use the dates for "
    "questions about when something happened."
)
ALWAYS_ON_KNOWLEDGE = "Notes taken from earlier conversations (date, speaker: fact):"

TOP_K = 8


@dataclass
class KnowledgeItem:
    speaker: str
    fact: str
    date: str


@dataclass
class Query:
    question: str


class KnowledgeBase:
    def __init__(self, toolkit):
        self.toolkit = toolkit
        self.db = toolkit.db
        self.notes = toolkit.chroma
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, speaker TEXT,"
            " fact TEXT, date TEXT, raw_text TEXT)"
        )
        self.db.commit()

    def write(self, item: KnowledgeItem, raw_text: str) -> None:
        fact = item.fact.strip()
        if not fact:
            return
        cur = self.db.execute(
            "INSERT INTO notes (speaker, fact, date, raw_text) VALUES (?, ?, ?, ?)",
            (item.speaker.strip(), fact, item.date.strip(), raw_text),
        )
        self.db.commit()
        self.notes.add(ids=[str(cur.lastrowid)], documents=[f"{item.speaker}: {fact}"])
        self.toolkit.logger.debug("note %s: %s", cur.lastrowid, fact)

    def read(self, query: Query) -> str:
        total = self.notes.count()
        if total == 0:
            return ""
        hits = self.notes.query(query_texts=[query.question], n_results=min(TOP_K, total))
        ids = sorted(int(i) for i in hits["ids"][0])
        marks = ",".join("?" * len(ids))
        rows = self.db.execute(f"SELECT date, speaker, fact FROM notes WHERE id IN ({marks}) ORDER BY id", ids)
        return "\n".join(f"[{date}] {speaker}: {fact}" for date, speaker, fact in rows)
