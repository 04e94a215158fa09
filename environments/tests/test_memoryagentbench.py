"""The MemoryAgentBench environment: the official row format, chunking, the four competencies and their metrics."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agentmem.environment import Answer, Question
from agentmem.errors import ConfigError, DataError, ModelError
from agentmem.tokens import count_tokens
from agentmem.types import Recall, RecallItem
from agentmem_environments.memoryagentbench import (
    ENV_DATA,
    FIXTURE_PATH,
    MemoryAgentBenchEnvironment,
    split_ids,
)
from agentmem_environments.memoryagentbench import fixture as fixture_gen
from agentmem_environments.memoryagentbench.loader import (
    METADATA_FIELDS,
    ROW_FIELDS,
    SPLITS,
    chunk_text,
    load_rows,
    rows_to_tasks,
)

OFFICIAL_SPLITS = ["Accurate_Retrieval", "Test_Time_Learning", "Long_Range_Understanding", "Conflict_Resolution"]
OFFICIAL_ROW = ["context", "questions", "answers", "metadata"]
OFFICIAL_METADATA = [
    "demo",
    "haystack_sessions",
    "keypoints",
    "previous_events",
    "qa_pair_ids",
    "question_dates",
    "question_ids",
    "question_types",
    "source",
]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_DATA, raising=False)
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(url, dest, **kw):
        raise ModelError(f"download of {url} failed (no network in tests)")

    monkeypatch.setattr("agentmem.fetch.http_download", refuse)


def _row(source: str, context: str, questions: list[str], answers: list[list[str]], **meta: Any) -> dict[str, Any]:
    """A row with the official columns and the official metadata fields, nothing else."""
    metadata = {
        "demo": "",
        "haystack_sessions": [],
        "keypoints": [],
        "previous_events": [],
        "qa_pair_ids": [f"p{i}" for i in range(len(questions))],
        "question_dates": [],
        "question_ids": [],
        "question_types": [],
        "source": source,
    }
    metadata.update(meta)
    return {"context": context, "questions": questions, "answers": answers, "metadata": metadata}


class ScriptedAgent:
    """Answers from a table and recalls every observed chunk (plumbing only)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.events: list[Any] = []
        self.prompts: list[tuple[str, dict[str, Any]]] = []

    def observe(self, event: Any) -> None:
        self.events.append(event)

    def end_session(self, episode: Any) -> None:
        pass

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        self.prompts.append((question, context or {}))
        text = next((a for q, a in self.answers.items() if q in question), "no idea")
        return Answer(
            text=text, recall=Recall(items=[RecallItem(content=e.content, event_ids=[e.id]) for e in self.events])
        )


def test_official_names_and_the_loader_on_them(tmp_path):
    assert (
        list(SPLITS) == OFFICIAL_SPLITS
        and list(ROW_FIELDS) == OFFICIAL_ROW
        and list(METADATA_FIELDS) == OFFICIAL_METADATA
    )
    text = " ".join(f"Fact {i}: the harbour light number {i} is green." for i in range(200))
    data = {
        "Accurate_Retrieval": [
            _row(
                "ruler_qa1_197K", text, ["Which colour is light 7?", "Which colour is light 9?"], [["green"], ["green"]]
            )
        ],
        # the official rows leave the fields a source does not use null
        "Conflict_Resolution": [
            _row(
                "factconsolidation_sh_6k",
                "0. A is B.\n1. A is C.",
                ["What is A?"],
                [["C", "C"]],
                demo=None,
                haystack_sessions=None,
                keypoints=None,
                previous_events=None,
                question_dates=None,
                question_ids=None,
                question_types=None,
            )
        ],
    }
    path = tmp_path / "rows.json"
    path.write_text(json.dumps(data))
    by_split, entity2id = load_rows(path)
    assert entity2id is None and set(by_split) == {"Accurate_Retrieval", "Conflict_Resolution"}
    ar, cr = rows_to_tasks(by_split, chunk_tokens=128, origin=str(path))
    assert ar.id == "AR:ruler_qa1_197K:0" and ar.metadata["competency"] == "AR" and ar.metadata["family"] == "ruler_qa"
    assert len(ar.sessions) == 1 and len(ar.sessions[0].events) == ar.metadata["chunks"] > 1
    assert all(count_tokens(e.content) <= 128 for e in ar.sessions[0].events)
    assert " ".join(e.content for e in ar.sessions[0].events) == text  # chunks keep every word, in order
    assert [q.id for q in ar.questions] == ["AR:ruler_qa1_197K:0:p0", "AR:ruler_qa1_197K:0:p1"]
    assert cr.questions[0].metadata["answers"] == ["C", "C"] and cr.questions[0].category == "CR"
    rows_file = tmp_path / "rows.jsonl"  # a bare list of rows: the competency follows from the source
    rows_file.write_text(json.dumps(data["Conflict_Resolution"][0]) + "\n")
    (task,) = rows_to_tasks(load_rows(rows_file)[0], chunk_tokens=64, origin=str(rows_file))
    assert task.metadata["competency"] == "CR"


def test_loader_errors_are_one_line(tmp_path):
    cases = [
        ({"Accurate_Retrieval": [{"context": "x", "questions": ["q"]}]}, "missing field"),
        ({"Accurate_Retrieval": [_row("ruler_qa", "", ["q"], [["a"]])]}, "context is empty"),
        ({"Accurate_Retrieval": [_row("ruler_qa", "ctx", ["q1", "q2"], [["a"]])]}, "2 questions but 1"),
        ({"Made_Up": []}, "unknown split"),
        ([_row("mystery_source", "ctx", ["q"], [["a"]])], "cannot tell the competency"),
    ]
    for n, (data, message) in enumerate(cases):
        path = tmp_path / f"bad{n}.json"
        path.write_text(json.dumps(data))
        with pytest.raises(DataError, match=message) as err:
            rows_to_tasks(load_rows(path)[0], chunk_tokens=64, origin=str(path))
        assert "\n" not in str(err.value)


def test_parquet_needs_pyarrow_and_says_how_to_get_it(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pyarrow(name, *args, **kw):
        if name.startswith("pyarrow"):
            raise ImportError("no pyarrow")
        return real(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_pyarrow)
    (tmp_path / "Conflict_Resolution-00000-of-00001.parquet").write_bytes(b"PAR1")
    with pytest.raises(DataError, match=r"pip install 'agentmem-environments\[memoryagentbench\]'"):
        load_rows(tmp_path)


def test_chunks_cut_long_sentences_and_keep_order():
    text = "Short one. " + "word " * 300 + "end."
    chunks = chunk_text(text, 50)
    assert chunks[0].startswith("Short one.") and all(count_tokens(c) <= 50 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


def test_the_fixture_has_the_official_shape_and_is_up_to_date():
    data = json.loads(FIXTURE_PATH.read_text())
    assert [k for k in data if k != "entity2id"] == OFFICIAL_SPLITS
    for split in OFFICIAL_SPLITS:
        assert len(data[split]) == 3
        for row in data[split]:
            assert list(row) == OFFICIAL_ROW and list(row["metadata"]) == OFFICIAL_METADATA
            assert len(row["context"]) > 2000  # the benchmark's own loader asserts this
            assert len(row["questions"]) == len(row["answers"]) and all(isinstance(a, list) for a in row["answers"])
    assert fixture_gen.render() == FIXTURE_PATH.read_text()


def test_each_competency_is_scored_by_its_own_metric():
    env = MemoryAgentBenchEnvironment(str(FIXTURE_PATH))
    tasks = env.tasks(split="all")
    assert {t.metadata["competency"] for t in tasks} == {"AR", "TTL", "LRU", "CR"}

    def q(family: str, answers: list[str], category: str, **meta: Any) -> Question:
        return Question(
            id="x",
            text="?",
            answer=answers[0],
            category=category,
            metadata={"family": family, "answers": answers, **meta},
        )

    ruler = env.score(q("ruler_qa", ["Amara Osei"], "AR"), "It was Amara Osei.", "the museum was founded by Amara Osei")
    assert ruler["accuracy"] == 1.0 and ruler["exact_match"] == 0.0 and ruler["answer_in_recall"] == 1.0
    icl = env.score(q("icl", ["21"], "TTL"), "label: 21")
    assert icl["accuracy"] == 1.0 and "answer_in_recall" not in icl  # a leading "label:" is read flexibly
    assert env.score(q("icl", ["21"], "TTL"), "label 21 or 22")["accuracy"] == 0.0  # exact match, not containment
    fact = env.score(q("factconsolidation", ["Tarvik"], "CR"), "Tarvik")
    assert fact["accuracy"] == 1.0
    summary = env.score(
        q("infbench_sum", ["Ann restores the mill with Bob."], "LRU"), "Ann and Bob restore the old mill."
    )
    assert 0 < summary["rougeL_f1"] < 1 and summary["accuracy"] == summary["rougeL_f1"]
    detective = env.score(q("detective_qa", ["His hand and his eyesight"], "LRU"), "his hand and his eyesight.")
    assert (
        detective["accuracy"] == 1.0 and env.score(q("detective_qa", ["Ann"], "LRU"), "Ann or Bob")["accuracy"] == 0.0
    )
    event = env.score(q("eventqa", ["Olga met Bruno at an inn"], "AR"), "Olga met Bruno at an inn and left")
    assert event["eventqa_recall"] == 1.0 and event["accuracy"] == 1.0


def test_recsys_recall_maps_answer_ids_to_titles():
    env = MemoryAgentBenchEnvironment(str(FIXTURE_PATH))
    task = next(t for t in env.tasks(split="all") if t.metadata["family"] == "recsys")
    question = task.questions[0]  # science fiction: Star Voyage (0), Robots of Summer (5)
    listing = "1. Robots of Summer (2019)\n2. Laughing Cats\n3. Star Voyge\n4. Paper Kingdoms"
    m = env.score(question, listing)
    assert (
        m["recsys_recall@1"] == 0.5 and m["recsys_recall@5"] == 1.0 and m["accuracy"] == 1.0
    )  # "Star Voyge" ~ closest


def test_a_task_feeds_chunks_in_order_then_asks_with_the_family_prompt():
    env = MemoryAgentBenchEnvironment(f"path={FIXTURE_PATH},chunk_tokens=128,competencies=TTL+CR")
    tasks = env.tasks(split="all")
    assert {t.metadata["competency"] for t in tasks} == {"TTL", "CR"}
    icl = next(t for t in tasks if t.metadata["family"] == "icl")
    agent = ScriptedAgent({"how much is in my account": "11"})
    result = env.run_task(icl, agent)
    assert [e.id for e in agent.events] == [e.id for e in icl.sessions[0].events]
    prompt, context = agent.prompts[0]
    assert "numeric label" in prompt and context["max_tokens"] == 16 and "multiline" not in context
    assert result.questions[0].metrics["accuracy"] == 1.0
    metrics = env.aggregate([result])
    assert metrics["accuracy/TTL"] == pytest.approx(1 / 3) and metrics["n/TTL"] == 3
    assert "accuracy/competency_avg" in metrics and "accuracy/source/icl_intents_fixture" in metrics


def test_splits_stratify_by_competency():
    env = MemoryAgentBenchEnvironment(str(FIXTURE_PATH))
    tasks = env.tasks(split="all")
    splits = split_ids(tasks, seed=0)
    for name in ("train", "validation", "test"):
        assert {t.metadata["competency"] for t in tasks if t.id in splits[name]} == {"AR", "TTL", "LRU", "CR"}
    ids = [i for s in splits.values() for i in s]
    assert sorted(ids) == sorted(t.id for t in tasks) and len(set(ids)) == len(ids)


def test_knobs_are_checked_in_one_line():
    with pytest.raises(ConfigError, match="competency"):
        MemoryAgentBenchEnvironment("competencies=AR+XYZ")
    with pytest.raises(ConfigError, match="chunk_tokens"):
        MemoryAgentBenchEnvironment("chunk_tokens=5")
    with pytest.raises(ConfigError, match="small embedded model"):
        MemoryAgentBenchEnvironment(judge_model="local")


def test_without_data_or_network_the_fixture_is_used_and_said_so(caplog):
    env = MemoryAgentBenchEnvironment()
    assert env.source.startswith("fixture") and len(env.tasks(split="all")) == 12
    assert any("not the benchmark" in r.getMessage() for r in caplog.records)
