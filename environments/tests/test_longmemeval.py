"""The LongMemEval environment: the official format's exact fields, the fixture, scoring, proxies, judge,
data policy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from agentmem.environment import Answer
from agentmem.errors import ConfigError, DataError, ModelError
from agentmem.types import Recall, RecallItem
from agentmem_environments.longmemeval import (
    ENV_DATA,
    FIXTURE_PATH,
    LongMemEvalEnvironment,
    _checked,
    declines,
    split_ids,
)
from agentmem_environments.longmemeval import fixture as fixture_gen
from agentmem_environments.longmemeval.loader import FIELDS, TURN_FIELDS, load_tasks, parse_date

OFFICIAL_FIELDS = [
    "question_id",
    "question_type",
    "question",
    "answer",
    "question_date",
    "haystack_session_ids",
    "haystack_dates",
    "haystack_sessions",
    "answer_session_ids",
]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch, tmp_path):
    monkeypatch.delenv(ENV_DATA, raising=False)
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(tmp_path / "cache"))

    def refuse(url, dest, **kw):
        raise ModelError(f"download of {url} failed (no network in tests)")

    monkeypatch.setattr("agentmem.fetch.http_download", refuse)


def _instance(qid: str = "e47becba", **over: Any) -> dict[str, Any]:
    """One instance written with the official field names and nothing else."""
    raw = {
        "question_id": qid,
        "question_type": "single-session-user",
        "question": "What degree did I graduate with?",
        "answer": "Business Administration",
        "question_date": "2023/05/30 (Tue) 23:40",
        "haystack_session_ids": ["sharegpt_yywfLhl_0", "answer_280352e9"],
        "haystack_dates": ["2023/05/20 (Sat) 02:21", "2023/05/25 (Thu) 10:00"],
        "haystack_sessions": [
            [{"role": "user", "content": "How do I boil an egg?"}, {"role": "assistant", "content": "Ten minutes."}],
            [
                {
                    "role": "user",
                    "content": "I graduated with a degree in Business Administration.",
                    "has_answer": True,
                },
                {"role": "assistant", "content": "Congratulations!"},
            ],
        ],
        "answer_session_ids": ["answer_280352e9"],
    }
    raw.update(over)
    return raw


def _write(tmp_path: Path, instances: list[dict[str, Any]]) -> Path:
    path = tmp_path / "lme.json"
    path.write_text(json.dumps(instances))
    return path


class ScriptedAgent:
    """Observes events and answers from a table, recalling the events whose text shares a word (plumbing only)."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.events: list[Any] = []
        self.sessions = 0
        self.contexts: list[dict[str, Any]] = []

    def observe(self, event: Any) -> None:
        self.events.append(event)

    def end_session(self, episode: Any) -> None:
        self.sessions += 1

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        self.contexts.append(context or {})
        words = {w.lower().strip("?.,") for w in question.split() if len(w) > 5}
        hits = [e for e in self.events if words & {w.lower().strip("?.,!") for w in e.content.split()}]
        recall = Recall(items=[RecallItem(content=e.content, event_ids=[e.id]) for e in hits])
        text = next((a for q, a in self.answers.items() if q in question), "no idea")
        return Answer(text=text, recall=recall)


def test_loader_reads_the_official_field_names(tmp_path):
    assert list(FIELDS) == OFFICIAL_FIELDS
    assert list(TURN_FIELDS) == ["role", "content", "has_answer"]
    raw = _instance()
    assert sorted(raw) == sorted(OFFICIAL_FIELDS)
    abstain = _instance("gpt4_0a1b2c3d_abs", answer=3, question="How many cats do I have?")
    task, abs_task = load_tasks(_write(tmp_path, [raw, abstain]))
    assert task.id == "e47becba" and [s.id for s in task.sessions] == ["sharegpt_yywfLhl_0", "answer_280352e9"]
    evidence = task.sessions[1].events[0]
    assert evidence.id == "e47becba:1:0" and evidence.metadata["has_answer"] is True
    assert evidence.speaker == "user" and evidence.session_id == "answer_280352e9"
    assert evidence.timestamp == parse_date("2023/05/25 (Thu) 10:00")
    q = task.questions[0]
    assert q.category == "single-session-user" and q.answer == "Business Administration"
    assert q.evidence == ["answer_280352e9"] and q.metadata["evidence_turns"] == ["e47becba:1:0"]
    assert q.metadata["question_date"] == "2023/05/30 (Tue) 23:40" and q.metadata["abstention"] is False
    aq = abs_task.questions[0]
    assert aq.metadata["abstention"] is True and aq.evidence == [] and aq.answer == "3"  # numeric answers are kept


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"haystack_dates": ["2023/05/20 (Sat) 02:21"]}, "differ in length"),
        ({"haystack_dates": ["May 20", "2023/05/25 (Thu) 10:00"]}, "is not like"),
        ({"question_date": "soon"}, "question_date"),
        ({"haystack_sessions": [[{"role": "robot", "content": "x"}], []]}, "role must be"),
    ],
)
def test_loader_errors_are_one_line(tmp_path, change, message):
    with pytest.raises(DataError, match=message) as err:
        load_tasks(_write(tmp_path, [_instance(**change)]))
    assert "\n" not in str(err.value)
    broken = _instance()
    del broken["question_date"]
    with pytest.raises(DataError, match="missing field"):
        load_tasks(_write(tmp_path, [broken]))


def test_the_fixture_is_in_the_exact_format_and_up_to_date():
    data = json.loads(FIXTURE_PATH.read_text())
    for instance in data:
        assert list(instance) == OFFICIAL_FIELDS
        for session in instance["haystack_sessions"]:
            for turn in session:
                assert set(turn) <= set(TURN_FIELDS) and {"role", "content"} <= set(turn)
        assert set(instance["answer_session_ids"]) <= set(instance["haystack_session_ids"])
        dates = [parse_date(d) for d in instance["haystack_dates"]]
        assert dates == sorted(dates) and parse_date(instance["question_date"]) > dates[-1]
    types = {i["question_type"] for i in data}
    assert types == {
        "single-session-user",
        "single-session-assistant",
        "single-session-preference",
        "temporal-reasoning",
        "knowledge-update",
        "multi-session",
    }
    assert sum(i["question_id"].endswith("_abs") for i in data) == 2
    assert fixture_gen.render() == FIXTURE_PATH.read_text()  # the committed file is what the generator writes


def test_scoring_by_type_with_session_and_turn_recall(tmp_path):
    env = LongMemEvalEnvironment(str(FIXTURE_PATH))
    tasks = env.tasks(split="all")
    assert len(tasks) == 14 and env.source == str(FIXTURE_PATH)
    by_q = {t.questions[0].text: t for t in tasks}
    degree = by_q["What degree did I graduate with?"]
    agent = ScriptedAgent({"What degree": "Business Administration", "hamster": "I don't know, you never said"})
    result = env.run_task(degree, agent)
    q = result.questions[0]
    assert q.metrics["f1"] == 1.0 and q.metrics["exact_match"] == 1.0 and q.metrics["answer_contained"] == 1.0
    assert q.metrics["session_recall"] == 1.0 and q.metrics["turn_recall"] == 1.0
    assert (
        agent.sessions == len(degree.sessions)
        and agent.contexts[0]["now"] == degree.questions[0].metadata["question_date"]
    )
    hamster = env.run_task(by_q["What is the name of my hamster?"], agent)
    hq = hamster.questions[0]
    assert hq.metrics["f1"] == 1.0 and "session_recall" not in hq.metrics  # abstention: declining is right; no recall
    wrong = env.run_task(by_q["What is the name of my cat?"], ScriptedAgent({}))
    assert wrong.questions[0].metrics["f1"] == 0.0
    metrics = env.aggregate([result, hamster, wrong])
    assert metrics["questions"] == 3
    # the abstention question counts in its own type too, as upstream reports it
    assert metrics["f1/single-session-user"] == pytest.approx(2 / 3) and metrics["n/abstention"] == 1
    assert metrics["f1/abstention"] == 1.0 and "f1/task_avg" in metrics and "session_recall_any" in metrics


def test_declining_answers():
    assert declines("I don't know.") and declines("You never mentioned a hamster") and not declines("Pixel")


def test_splits_are_disjoint_cover_everything_and_spread_types():
    tasks = load_tasks(FIXTURE_PATH)
    splits = split_ids(tasks, seed=0)
    ids = [i for s in splits.values() for i in s]
    assert sorted(ids) == sorted(t.id for t in tasks) and len(ids) == len(set(ids))
    assert split_ids(tasks, seed=0) == splits and split_ids(tasks, seed=1) != splits
    assert all(splits[s] for s in ("train", "validation", "test"))


def test_without_data_or_network_the_fixture_is_used_and_said_so(caplog):
    env = LongMemEvalEnvironment()
    assert env.source.startswith("fixture") and len(env.tasks(split="all")) == 14
    assert any("not the benchmark" in r.getMessage() for r in caplog.records)


def test_the_environment_variable_and_knobs_pick_the_data(tmp_path, monkeypatch):
    path = _write(tmp_path, [_instance("a1"), _instance("a2"), _instance("a3")])
    monkeypatch.setenv(ENV_DATA, str(path))
    assert LongMemEvalEnvironment().source == str(path)
    assert LongMemEvalEnvironment(f"path={path},variant=oracle").options.variant == "oracle"
    with pytest.raises(ConfigError, match="variant"):
        LongMemEvalEnvironment("variant=xl")


def test_a_cached_official_file_is_checked(tmp_path):
    base = _instance()
    path = tmp_path / "longmemeval_s_cleaned.json"
    path.write_text(json.dumps([{**base, "question_id": f"q{i}"} for i in range(500)]))
    assert _checked(path) is not None and path.with_name(path.name + ".sha256").is_file()
    path.write_text(json.dumps([{**base, "question_id": f"q{i}", "answer": "changed"} for i in range(500)]))
    assert _checked(path) is None  # its sha256 no longer matches the one recorded at download
    short = tmp_path / "short.json"
    short.write_text(json.dumps([base]))
    assert _checked(short) is None  # not 500 instances


def test_the_judge_refuses_the_local_model_and_is_used_when_given():
    with pytest.raises(ConfigError, match="small embedded model"):
        LongMemEvalEnvironment(str(FIXTURE_PATH), judge_model="local")

    class SaysYes:  # plumbing: a stand-in for a strong judge model
        model = "yes-judge"
        prompts: list[str] = []

        def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
            self.prompts.append(messages[0]["content"])
            return "Yes."

    from agentmem_environments.judge import Judge

    env = LongMemEvalEnvironment(str(FIXTURE_PATH))
    env.judge = Judge(SaysYes(), env="longmemeval")
    task = next(t for t in env.tasks(split="all") if t.questions[0].category == "temporal-reasoning")
    result = env.run_task(task, ScriptedAgent({}))
    assert result.questions[0].metrics["judge_accuracy"] == 1.0
    assert "off by one" in SaysYes.prompts[-1]  # the temporal-reasoning criterion
    assert env.aggregate([result])["judge_accuracy/temporal-reasoning"] == 1.0


def test_registered_as_a_plugin():
    from agentmem.registry import discover

    found = {p.name: p for p in discover("environment")}
    assert found["longmemeval"].status == "ok" and found["memoryagentbench"].status == "ok"
