"""Memory programs in M*'s format run as M* runs them: one raw text per session, one item, one write.

The three programs are the project's own (examples/mstar): one keeps the raw
text (like M*'s vector_search seed), one keeps only the item (a summary), one
has a multi-field item (date, speakers, facts).
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agentmem.compat.mstar import MStarProgram, session_text
from agentmem.errors import InvalidReply, NoRoomForReply, PluginError
from agentmem.llm.meter import Meter
from agentmem.memory import MemoryProgram
from agentmem.registry import load_memory
from agentmem.toolkit import Stores, Toolkit
from agentmem.types import Episode, Event, Query, Scope
from tests.helpers import HashEmbedder

PROGRAMS = Path(__file__).resolve().parent.parent / "examples" / "mstar"
RAW_TEXT = PROGRAMS / "raw_text_search.py"
SUMMARY = PROGRAMS / "session_summary.py"
FACTS = PROGRAMS / "session_facts.py"

SESSIONS = {
    "s1": (
        "1:56 pm on 8 May, 2023",
        [
            ("Priya", "I just adopted a beagle puppy named Biscuit from the shelter!"),
            ("Daniel", "Congratulations! I started learning the cello last month."),
            ("Priya", "My sister Anika is moving to Lisbon in June for a new job."),
            ("Daniel", "I am running the Chicago marathon in October."),
        ],
    ),
    "s2": (
        "10:12 am on 20 May, 2023",
        [
            ("Daniel", "The cello teacher says I am ready for my first recital in July."),
            ("Priya", "Biscuit chewed through two of my sneakers this week, the little rascal."),
            ("Daniel", "I bought new running shoes for the marathon training."),
        ],
    ),
    "s3": (
        "4:30 pm on 2 June, 2023",
        [
            ("Priya", "Anika found a flat near the river in Lisbon, she sent photos."),
            ("Daniel", "My recital piece is the Bach cello suite number one."),
        ],
    ),
}


def _events(session: str) -> list[Event]:
    date, turns = SESSIONS[session]
    n = int(session[1:])
    when = datetime(2023, 5, n, 13, 56, tzinfo=UTC)
    return [
        Event.message(
            text, speaker=who, session_id=session, timestamp=when, metadata={"dia_id": f"D{n}:{i}", "date_time": date}
        )
        for i, (who, text) in enumerate(turns, start=1)
    ]


class ScriptedLLM:
    """Plumbing-only stand-in: answers each structured call from ``reply(schema, prompt)`` and records it.

    ``reply`` may return a dict (the object), or an exception to raise (as the real client raises
    InvalidReply or NoRoomForReply). Outcomes the toolkit notes go to a real Meter.
    """

    model = "scripted"

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.structured_calls: list[tuple[str, str]] = []  # (schema name, prompt)
        self.meter = Meter()

    def complete(self, messages, *, max_tokens=None, temperature=None, response_format=None, caller=None) -> str:
        self.meter.record(caller, 1, 1, 0.0)
        return "a plain completion"

    def structured(self, messages, schema, *, caller=None, max_tokens=None):
        prompt = messages[-1]["content"]
        self.structured_calls.append((schema.__name__, prompt))
        self.meter.record(caller, 1, 1, 0.0)
        answer = self.reply(schema, prompt)
        if isinstance(answer, BaseException):
            raise answer
        return schema.model_validate(answer)

    def note(self, event: str, caller: str | None = None) -> None:
        self.meter.note(event, caller)


def _memory(program: Path, tmp_path: Path, llm: Any, embedder: Any = None) -> MStarProgram:
    toolkit = Toolkit(
        scope=Scope(user_id="u"),
        stores=Stores(tmp_path),
        llm=llm,
        embedder=embedder or HashEmbedder(),
        namespace=program.stem,
    )
    memory = load_memory(str(program))(toolkit)
    assert isinstance(memory, MStarProgram)
    return memory


def _count_writes(memory: MStarProgram) -> list[str]:
    """The raw texts passed to ``kb.write``, in order (the program's own write still runs)."""
    seen: list[str] = []
    write = memory.kb.write

    def counting(item, raw_text):
        seen.append(raw_text)
        return write(item, raw_text)

    memory.kb.write = counting  # type: ignore[method-assign]
    return seen


def _live_through(memory: MStarProgram, sessions: list[str]) -> None:
    for session in sessions:
        for event in _events(session):
            memory.observe(event)
        memory.reflect(Episode(id=session))


def _facts_reply(schema, prompt):
    date = prompt.split("[", 1)[1].split("]", 1)[0]
    lines = [ln for ln in prompt.splitlines() if ": " in ln and ln.split(": ", 1)[0] in ("Priya", "Daniel")]
    return {"date": date, "speakers": ["Priya", "Daniel"], "facts": [ln.replace(": ", " said: ", 1) for ln in lines]}


# -- the contract ----------------------------------------------------------------------------


def test_load_memory_detects_an_mstar_file_and_returns_a_memory_program():
    cls = load_memory(str(FACTS))
    assert issubclass(cls, MemoryProgram) and issubclass(cls, MStarProgram)
    assert cls.name == "session_facts"
    assert cls.module.KnowledgeBase.__name__ == "KnowledgeBase"


def test_raw_text_program_one_call_per_session_and_each_raw_text_stored_once(tmp_path):
    llm = ScriptedLLM(lambda schema, prompt: {"summary": "they talked"})
    memory = _memory(RAW_TEXT, tmp_path, llm)
    writes = _count_writes(memory)
    _live_through(memory, ["s1", "s2", "s3"])

    assert len(llm.structured_calls) == 3  # one extraction call per session
    assert {name for name, _ in llm.structured_calls} == {"KnowledgeItem"}  # the program's own item, not a list
    assert writes == [session_text(_events(s)) for s in ("s1", "s2", "s3")]  # one write per raw text
    assert writes[0].startswith("[1:56 pm on 8 May, 2023]\nPriya: I just adopted")
    prompt = llm.structured_calls[0][1]
    assert prompt.startswith("Summarize the key information from the text.") and "Text:\n[1:56 pm on 8 May" in prompt

    stored = memory.kb.chunks.get()["documents"]
    for session in SESSIONS:  # every turn is stored exactly once: no duplicate fills the top-k
        for event in _events(session):
            assert sum(doc.count(f"{event.speaker}: {event.content}") for doc in stored) == 1

    recall = memory.recall(Query(text="What is the name of Priya's puppy?", budget_tokens=400))
    assert len(llm.structured_calls) == 3  # Query has one str field: filled without an LLM call
    assert "Biscuit" in recall.text()
    assert recall.instructions.startswith("Answer the question in a few words from the conversation excerpts")
    assert "D1:1" in recall.metadata_values("dia_id")  # the recalled turn traced back to its own dia_id
    memory.close()


def test_summary_program_keeps_only_the_item_one_per_session(tmp_path):
    llm = ScriptedLLM(
        lambda schema, prompt: {
            "summary": "On "
            + prompt.split("[", 1)[1].split("]", 1)[0]
            + " they talked about "
            + ("Biscuit the beagle" if "Biscuit" in prompt else "cello")
        }
    )
    memory = _memory(SUMMARY, tmp_path, llm)
    writes = _count_writes(memory)
    _live_through(memory, ["s1", "s2", "s3"])
    assert len(llm.structured_calls) == 3 and len(writes) == 3
    assert memory.kb.summaries.count() == 3
    assert all("Priya:" not in doc for doc in memory.kb.summaries.get()["documents"])  # no raw text kept
    recall = memory.recall(Query(text="What is the name of the beagle?", budget_tokens=200))
    assert "Biscuit" in recall.text()
    memory.close()


def test_multi_field_item_is_filled_in_one_call_and_written_once(tmp_path):
    llm = ScriptedLLM(_facts_reply)
    memory = _memory(FACTS, tmp_path, llm)
    writes = _count_writes(memory)
    _live_through(memory, ["s1", "s2"])
    assert len(llm.structured_calls) == 2 and len(writes) == 2
    rows = memory.toolkit.db.execute("SELECT date, speakers, fact FROM facts ORDER BY id").fetchall()
    assert len(rows) == 7 and tuple(rows[0])[:2] == ("1:56 pm on 8 May, 2023", "Priya, Daniel")
    schema_prompt = llm.structured_calls[0][1]
    assert "Take notes on the conversation." in schema_prompt
    recall = memory.recall(Query(text="Where is Anika moving?", budget_tokens=300))
    assert recall.items[0].content == "Notes taken from earlier conversations ([date] fact):"
    assert any("Lisbon" in i.content for i in recall.items)
    memory.close()


def test_a_session_events_arriving_without_reflect_are_one_raw_text_per_session(tmp_path):
    llm = ScriptedLLM(lambda schema, prompt: {"summary": "x"})
    memory = _memory(RAW_TEXT, tmp_path, llm)
    writes = _count_writes(memory)
    for session in ("s1", "s2", "s3"):  # no end_session: the next session's first event closes the previous one
        for event in _events(session):
            memory.observe(event)
    memory.close()
    assert len(llm.structured_calls) == 3 and len(writes) == 3


# -- failures: fallback, split ---------------------------------------------------------------


def test_failed_extraction_keeps_the_raw_text_once_with_an_item_built_from_it(tmp_path, caplog):
    def reply(schema, prompt):
        if "Anika found a flat" in prompt:  # session 3: the model gives nothing valid
            return InvalidReply("scripted model did not return a valid KnowledgeItem after a repair attempt")
        return _facts_reply(schema, prompt)

    llm = ScriptedLLM(reply)
    memory = _memory(FACTS, tmp_path, llm)
    writes = _count_writes(memory)
    with caplog.at_level(logging.WARNING):
        _live_through(memory, ["s1", "s2", "s3"])
    assert len(llm.structured_calls) == 3  # no second attempt at the item: the client already retried and repaired
    assert writes == [session_text(_events(s)) for s in ("s1", "s2", "s3")]  # still one write per raw text
    rows = memory.toolkit.db.execute(
        "SELECT date, speakers, fact FROM facts WHERE date = ?", ("4:30 pm on 2 June, 2023",)
    ).fetchall()
    assert len(rows) == 1  # one item built from the raw text: nothing lost, nothing duplicated
    assert rows[0][1] == "Priya, Daniel" and "Anika found a flat near the river" in rows[0][2]
    assert "Bach cello suite" in rows[0][2]
    assert llm.meter.events() == {"fallback": 1}
    assert any("no knowledge item for session s3" in r.getMessage() for r in caplog.records)
    recall = memory.recall(Query(text="Where did Anika find a flat?", budget_tokens=400))
    assert "D3:1" in recall.metadata_values("dia_id")
    memory.close()


def test_fallback_fills_raw_text_fields_and_leaves_other_types_empty(tmp_path):
    source = textwrap.dedent("""
        from dataclasses import dataclass, field
        INSTRUCTION_KNOWLEDGE_ITEM = "Extract."
        INSTRUCTION_QUERY = "Query."
        INSTRUCTION_RESPONSE = "Answer."
        ALWAYS_ON_KNOWLEDGE = ""

        @dataclass
        class KnowledgeItem:
            who: str
            when: str
            text: str
            importance: int
            tags: list[str] = field(default_factory=list)

        @dataclass
        class Query:
            q: str

        class KnowledgeBase:
            def __init__(self, toolkit):
                self.items = []
            def write(self, item, raw_text):
                self.items.append((item, raw_text))
            def read(self, query):
                return ""
    """)
    path = tmp_path / "typed_program.py"
    path.write_text(source)
    memory = _memory(path, tmp_path / "stores", ScriptedLLM(lambda s, p: InvalidReply("no")))
    _live_through(memory, ["s2"])
    [(item, raw_text)] = memory.kb.items
    assert (item.who, item.when, item.text, item.importance) == (
        "Daniel, Priya",
        "10:12 am on 20 May, 2023",
        raw_text,
        0,
    )
    assert item.tags == [raw_text]


def test_a_session_that_does_not_fit_the_context_is_split_logged_and_counted(tmp_path, caplog):
    def reply(schema, prompt):
        text = prompt.split("Text:\n", 1)[1].split("\n\nFill one", 1)[0]
        if text.count("\n") > 2:  # more than two turns does not fit this pretend context
            return NoRoomForReply(
                "the prompt leaves 40 of the model's 512 context tokens: give a smaller input", room=40
            )
        return {"summary": "part"}

    llm = ScriptedLLM(reply)
    memory = _memory(RAW_TEXT, tmp_path, llm)
    writes = _count_writes(memory)
    with caplog.at_level(logging.WARNING):
        _live_through(memory, ["s1"])
    # 4 turns: refused, then two halves of 2 turns, each one raw text with the session's date, one call, one write
    assert len(llm.structured_calls) == 3
    assert len(writes) == 2 and all(w.startswith("[1:56 pm on 8 May, 2023]\n") for w in writes)
    assert Counter(line for w in writes for line in w.splitlines()[1:]) == Counter(
        f"{e.speaker}: {e.content}" for e in _events("s1")
    )  # every turn once
    assert llm.meter.events() == {"split": 1}
    assert any(
        "does not fit the model's context" in r.getMessage() and "split" in r.getMessage() for r in caplog.records
    )
    memory.close()


def test_a_reply_that_runs_past_the_room_splits_the_session_through_the_real_client(tmp_path):
    """The LLM client with a backend that honours max_tokens: a reply cut at all the room the prompt
    leaves (finish_reason length) is not repaired; the adapter gives a smaller input instead."""
    from tests.test_llm_structured import LengthHonouringBackend, _llm, varied_text

    class PerInput(LengthHonouringBackend):
        def __call__(self, model, base, key, request, stream=False):
            whole = "Priya: I just adopted" in json.dumps(request["messages"]) and "Daniel: I am running" in json.dumps(
                request["messages"]
            )
            self.replies = [json.dumps({"summary": "word " + varied_text(3000 if whole else 20)})]
            return super().__call__(model, base, key, request, stream)

    backend = PerInput("{}")
    llm = _llm(backend, context=1500, structured_first_tokens=4096)  # no first cap below the room
    memory = _memory(RAW_TEXT, tmp_path, llm)
    writes = _count_writes(memory)
    _live_through(memory, ["s1"])
    assert len(writes) == 2  # the two halves
    assert backend.requests[0]["max_tokens"] > 1000  # the first attempt already had all the room: no cap to raise
    assert len(backend.requests) == 3
    assert llm.meter.events() == {"no_room": 1, "split": 1}
    memory.close()


def test_a_looping_reply_is_a_fallback_not_a_split_through_the_real_client(tmp_path):
    """A reply that loops until its limit cuts it (what the 0.5B does under the JSON grammar) is asked again
    once with a repetition penalty, then the session is written once with an item built from it: it is not
    split, and no attempt is given more room."""
    from agentmem.evaluation import ExtractionHealth
    from tests.test_llm_structured import LOOPING_SUMMARY, LengthHonouringBackend, _llm

    backend = LengthHonouringBackend(LOOPING_SUMMARY)
    llm = _llm(backend, context=8192)
    memory = _memory(RAW_TEXT, tmp_path, llm)
    writes = _count_writes(memory)
    _live_through(memory, ["s1"])
    assert writes == [session_text(_events("s1"))]  # one write of the whole session
    assert len(backend.requests) == 2 and backend.requests[1]["max_tokens"] == backend.requests[0]["max_tokens"]
    assert llm.meter.events() == {"degenerate": 1, "invalid": 1, "fallback": 1}
    health = ExtractionHealth.from_events(llm.meter.events())  # what an eval result reports
    assert (health.loops, health.failed, health.fallbacks, health.splits) == (1, 1, 1, 0)
    memory.close()


def test_eval_result_counts_failed_extractions_and_fallbacks(tmp_path):
    from agentmem.cli.main import print_result
    from agentmem.evaluation import run_eval
    from agentmem_environments.locomo.demo import DEMO_PATH

    calls = Counter()

    class FailingSometimes(ScriptedLLM):
        def structured(self, messages, schema, *, caller=None, max_tokens=None):
            calls["n"] += 1
            if calls["n"] % 2 == 0:  # every other session: the model gives nothing valid
                self.note("invalid", caller)
                self.meter.record(caller, 1, 1, 0.0)
                raise InvalidReply("scripted: no valid KnowledgeItem after a repair attempt")
            return super().structured(messages, schema, caller=caller)

    llm = FailingSometimes(lambda schema, prompt: {"summary": "they talked"})
    result = run_eval(
        "locomo", [str(RAW_TEXT)], llm=llm, embedder=HashEmbedder(), data=DEMO_PATH, limit=2, workdir=tmp_path
    )
    failures = calls["n"] // 2
    assert failures >= 1
    assert result.extraction.failed == failures and result.extraction.fallbacks == failures
    assert result.extraction.splits == 0
    assert json.loads(result.model_dump_json())["extraction"]["fallbacks"] == failures
    print_result(result)  # the summary table lists them (rendered by rich; not asserted on its layout)


# -- queries, the toolkit, malformed programs ----------------------------------------------------


def test_structured_query_dataclass_is_filled_by_the_llm_and_chroma_client_calls_work(tmp_path):
    source = textwrap.dedent("""
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
    """)
    path = tmp_path / "topics_program.py"
    path.write_text(source)

    def reply(schema, prompt):
        if schema.__name__ == "KnowledgeItem":
            return {"topic": "pets", "note": "Priya has a beagle called Biscuit"}
        return {"topic": "pets", "limit": 2}

    llm = ScriptedLLM(reply)
    memory = _memory(path, tmp_path / "stores", llm)
    memory.observe(_events("s1")[0])
    recall = memory.recall(Query(text="What pet does Priya have?"))
    assert [name for name, _ in llm.structured_calls] == ["KnowledgeItem", "Query"]
    assert "Pick the topic to look up." in llm.structured_calls[1][1]
    assert recall.text() == "Priya has a beagle called Biscuit"
    assert memory.kb.llm("hi") == "a plain completion"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            "INSTRUCTION_RESPONSE = 'x'\nclass KnowledgeBase:\n    def __init__(self, toolkit): pass\n",
            [
                "missing constants INSTRUCTION_KNOWLEDGE_ITEM, INSTRUCTION_QUERY, ALWAYS_ON_KNOWLEDGE",
                "missing dataclass KnowledgeItem",
                "missing dataclass Query",
                "missing method KnowledgeBase.write",
                "missing method KnowledgeBase.read",
            ],
        ),
        (
            "from dataclasses import dataclass\n"
            "INSTRUCTION_KNOWLEDGE_ITEM = INSTRUCTION_QUERY = INSTRUCTION_RESPONSE = ALWAYS_ON_KNOWLEDGE = ''\n"
            "@dataclass\nclass KnowledgeItem:\n    fact: str\n"
            "class Query:\n    question: str\n"
            "class KnowledgeBase:\n    def __init__(self, toolkit): pass\n"
            "    def write(self, item): pass\n    def read(self, query): return ''\n",
            ["Query must be a @dataclass", "KnowledgeBase.write(self, item, raw_text) has the wrong signature"],
        ),
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
def test_local_model_fills_one_item_per_session_and_the_fact_is_recalled(tmp_path, local_llm, embedder):
    memory = _memory(FACTS, tmp_path, local_llm, embedder)
    writes = _count_writes(memory)
    before = local_llm.meter.snapshot()
    _live_through(memory, ["s1", "s2"])
    spent = local_llm.meter.delta(before)
    extraction = spent["by_caller"]["session-facts.extract"]
    assert len(writes) == 2  # one write per session, whatever the model said
    # one call per session, plus at most one repair or length retry each; never a cut reply repaired
    assert 2 <= extraction["calls"] <= 4, spent
    assert spent["events"].get("no_room", 0) == 0, spent
    rows = memory.toolkit.db.execute("SELECT fact FROM facts").fetchall()
    assert rows, "the local model wrote no facts"
    recall = memory.recall(Query(text="What is the name of Priya's puppy?", budget_tokens=400))
    assert "biscuit" in recall.text().lower(), recall.text()
    memory.close()


@pytest.mark.llm
def test_cli_eval_runs_an_mstar_program_on_locomo(tmp_path):
    out = tmp_path / "result.json"
    from agentmem_environments.locomo.demo import DEMO_PATH

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmem.cli.main",
            "eval",
            "--env",
            "locomo",
            "--memory",
            str(RAW_TEXT),
            "--data",
            str(DEMO_PATH),
            "--limit",
            "2",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env=dict(os.environ, COLUMNS="200"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "f1" in proc.stdout and "failed extractions" in proc.stdout
    data = json.loads(out.read_text())
    assert data["questions"] == 2
    assert data["cost"]["llm_calls"] > 2  # extraction calls besides the two answers
    assert "extraction" in data
