"""Memory programs in M*'s format load from a file and run as agentmem plugins."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from agentmem.compat.mstar import MStarProgram
from agentmem.errors import PluginError
from agentmem.memory import MemoryProgram
from agentmem.registry import load_memory
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope

PROGRAM = Path(__file__).parent / "data" / "mstar_notes_program.py"

EVENTS = [
    ("Priya", "I just adopted a beagle puppy named Biscuit from the shelter!"),
    ("Daniel", "Congratulations! I started learning the cello last month."),
    ("Priya", "My sister Anika is moving to Lisbon in June for a new job."),
    ("Daniel", "I am running the Chicago marathon in October."),
]


def _events(session: str = "s1") -> list[Event]:
    when = datetime(2023, 5, 8, 13, 56, tzinfo=timezone.utc)
    return [
        Event.message(text, speaker=who, session_id=session, timestamp=when,
                      metadata={"dia_id": f"D1:{n}", "date_time": "1:56 pm on 8 May, 2023"})
        for n, (who, text) in enumerate(EVENTS, start=1)
    ]


class ScriptedLLM:
    """Plumbing-only stand-in: answers structured calls with fixed JSON and counts calls."""

    def __init__(self, replies: list[str]) -> None:
        self.replies = list(replies)
        self.calls: list[list[dict[str, Any]]] = []

    def complete(self, messages, *, max_tokens=None, temperature=None, response_format=None, caller=None) -> str:
        self.calls.append(messages)
        return self.replies.pop(0) if self.replies else "{}"

    def structured(self, messages, schema, *, caller=None):
        return schema.model_validate_json(self.complete(messages, caller=caller))


class HashEmbedder:
    """Plumbing-only embedder: bag of words hashed into 64 dimensions."""

    name = "hash"
    dim = 64

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            for word in text.lower().split():
                vec[hash(word.strip(".,!?:")) % self.dim] += 1.0
            norm = sum(v * v for v in vec) ** 0.5 or 1.0
            out.append([v / norm for v in vec])
        return out


def _toolkit(tmp_path: Path, llm: Any, embedder: Any, namespace: str = "mstar_notes_program") -> Toolkit:
    return Toolkit(scope=Scope(user_id="u"), stores=Stores(tmp_path), llm=llm, embedder=embedder, namespace=namespace)


def test_load_memory_detects_an_mstar_file_and_returns_a_memory_program():
    cls = load_memory(str(PROGRAM))
    assert issubclass(cls, MemoryProgram) and issubclass(cls, MStarProgram)
    assert cls.name == "mstar_notes_program"
    assert cls.module.KnowledgeBase.__name__ == "KnowledgeBase"


def test_observe_writes_items_in_one_call_per_chunk_and_recall_wraps_read(tmp_path):
    notes = [
        {"speaker": "Priya", "fact": "Priya adopted a beagle puppy named Biscuit", "date": "8 May 2023"},
        {"speaker": "Priya", "fact": "Priya's sister Anika moves to Lisbon in June", "date": "8 May 2023"},
    ]
    llm = ScriptedLLM([json.dumps({"items": notes})])
    cls = load_memory(str(PROGRAM))
    memory = cls(_toolkit(tmp_path, llm, HashEmbedder()))
    for event in _events():
        memory.observe(event)
    assert llm.calls == []  # buffered until the session ends
    memory.reflect(Episode(id="s1"))
    assert len(llm.calls) == 1  # 4 events, chunk_turns 7: one extraction call
    prompt = json.dumps(llm.calls[0])
    assert "take notes on a conversation" in prompt and "Biscuit" in prompt
    rows = memory.toolkit.db.execute("SELECT fact, raw_text FROM notes").fetchall()
    assert [r[0] for r in rows] == [n["fact"] for n in notes]
    assert "Chicago marathon" in rows[0][1]  # raw_text is the whole chunk of events

    recall = memory.recall(Query(text="What is the name of Priya's puppy?", budget_tokens=200))
    assert len(llm.calls) == 1  # Query has one str field: filled without an LLM call
    assert recall.items[0].content.startswith("Notes taken from earlier conversations")
    assert any("Biscuit" in i.content for i in recall.items)
    assert recall.instructions.startswith("Answer the question from the notes below")
    assert "Biscuit" in recall.instructions
    assert "D1:1" in recall.metadata_values("dia_id")  # evidence traced back to the chunk's turns

    small = memory.recall(Query(text="puppy", budget_tokens=12))
    assert small.tokens <= 12 and small.omitted >= 1
    memory.close()


def test_invalid_llm_json_falls_back_to_the_events_themselves(tmp_path):
    llm = ScriptedLLM(["not json", "still not json"])
    memory = load_memory(str(PROGRAM))(_toolkit(tmp_path, llm, HashEmbedder()))
    for event in _events():
        memory.observe(event)
    memory.reflect(Episode(id="s1"))
    rows = memory.toolkit.db.execute("SELECT speaker, fact, date FROM notes ORDER BY id").fetchall()
    assert len(rows) == 4 and tuple(rows[0]) == ("Priya", EVENTS[0][1], "1:56 pm on 8 May, 2023")


def test_structured_query_dataclass_is_filled_by_the_llm_and_chroma_client_calls_work(tmp_path):
    source = textwrap.dedent('''
        from dataclasses import dataclass, field
        INSTRUCTION_KNOWLEDGE_ITEM = "Extract a topic and a note."
        INSTRUCTION_QUERY = "Pick the topic to look up."
        INSTRUCTION_RESPONSE = "Answer from the notes."
        ALWAYS_ON_KNOWLEDGE = ""

        @dataclass
        class KnowledgeItem:
            topic: str
            note: str
            tags: list[str] = field(default_factory=list)

        @dataclass
        class Query:
            topic: str
            limit: int = 3

        class KnowledgeBase:
            def __init__(self, toolkit):
                self.col = toolkit.chroma.get_or_create_collection("topics")
                self.llm = toolkit.llm_completion
            def write(self, item, raw_text):
                self.col.add(ids=[item.topic], documents=[item.note], metadatas=[{"topic": item.topic}])
            def read(self, query):
                got = self.col.get(where={"topic": query.topic})
                return "\\n".join(got["documents"][: query.limit])
    ''')
    path = tmp_path / "topics_program.py"
    path.write_text(source)
    llm = ScriptedLLM([
        json.dumps({"items": [{"topic": "pets", "note": "Priya has a beagle called Biscuit"}]}),
        json.dumps({"topic": "pets", "limit": 2}),
        "a plain completion",
    ])
    memory = load_memory(str(path))(_toolkit(tmp_path / "stores", llm, HashEmbedder(), namespace="topics"))
    memory.observe(_events()[0])
    recall = memory.recall(Query(text="What pet does Priya have?"))
    assert len(llm.calls) == 2 and "Pick the topic to look up." in json.dumps(llm.calls[1])
    assert recall.text() == "Priya has a beagle called Biscuit"
    assert memory.kb.llm("hi") == "a plain completion"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("INSTRUCTION_RESPONSE = 'x'\nclass KnowledgeBase:\n    def __init__(self, toolkit): pass\n",
         ["missing constants INSTRUCTION_KNOWLEDGE_ITEM, INSTRUCTION_QUERY, ALWAYS_ON_KNOWLEDGE",
          "missing dataclass KnowledgeItem", "missing dataclass Query", "missing method KnowledgeBase.write",
          "missing method KnowledgeBase.read"]),
        ("from dataclasses import dataclass\n"
         "INSTRUCTION_KNOWLEDGE_ITEM = INSTRUCTION_QUERY = INSTRUCTION_RESPONSE = ALWAYS_ON_KNOWLEDGE = ''\n"
         "@dataclass\nclass KnowledgeItem:\n    fact: str\n"
         "class Query:\n    question: str\n"
         "class KnowledgeBase:\n    def __init__(self, toolkit): pass\n"
         "    def write(self, item): pass\n    def read(self, query): return ''\n",
         ["Query must be a @dataclass", "KnowledgeBase.write(self, item, raw_text) has the wrong signature"]),
    ],
)
def test_malformed_mstar_module_is_one_line_naming_what_is_missing(tmp_path, body, expected):
    path = tmp_path / "broken_program.py"
    path.write_text(body)
    with pytest.raises(PluginError) as info:
        load_memory(str(path))
    message = str(info.value)
    assert "\n" not in message and "broken_program.py" in message
    for part in expected:
        assert part in message, message


# -- with the real local model ------------------------------------------------------------


@pytest.mark.llm
def test_local_model_notes_are_written_and_the_relevant_fact_recalled(tmp_path, local_llm, embedder):
    memory = load_memory(str(PROGRAM))(_toolkit(tmp_path, local_llm, embedder))
    before = _calls(local_llm)
    for event in _events():
        memory.observe(event)
    memory.reflect(Episode(id="s1"))
    extraction_calls = _calls(local_llm) - before
    rows = memory.toolkit.db.execute("SELECT speaker, fact FROM notes").fetchall()
    assert rows, "the local model wrote no notes"
    recall = memory.recall(Query(text="What is the name of Priya's puppy?", budget_tokens=300))
    assert "biscuit" in recall.text().lower(), recall.text()
    assert "Answer the question from the notes below" in recall.instructions
    # one extraction call per chunk (plus at most one repair); the recall needs none
    assert _calls(local_llm) - before == extraction_calls
    assert 1 <= extraction_calls <= 2
    memory.close()


def _calls(llm: Any) -> int:
    return llm.meter.total().calls


@pytest.mark.llm
def test_cli_eval_runs_an_mstar_program_on_locomo(tmp_path):
    out = tmp_path / "result.json"
    from agentmem_environments.locomo.demo import DEMO_PATH

    proc = subprocess.run(
        [sys.executable, "-m", "agentmem.cli.main", "eval", "--env", "locomo", "--memory", str(PROGRAM),
         "--data", str(DEMO_PATH), "--limit", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=1200, env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "f1" in proc.stdout
    data = json.loads(out.read_text())
    assert data["questions"] == 2
    assert data["cost"]["llm_calls"] > 2  # extraction calls besides the two answers
