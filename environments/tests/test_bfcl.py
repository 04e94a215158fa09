"""bfcl-memory: BFCL v4's memory category, loaded from the real bfcl-eval package and scored by its own checker.

The package is installed (without dependencies) into agentmem's cache on
first use; the tests install it the same way and skip only when the install
fails for lack of network.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentmem.environment import Answer, Task
from agentmem.errors import ConfigError, DataError
from agentmem.types import Episode, Event, Recall, RecallItem
from agentmem_environments.bfcl import BFCLMemoryEnvironment
from agentmem_environments.bfcl.checker import CHECKER_MODULE, bfcl_correct, load_checker
from agentmem_environments.bfcl.install import (
    BFCL_VERSION,
    BFCLInstallError,
    ensure_bfcl,
    install_command,
    is_bfcl_root,
    resolve_bfcl_dir,
)

SCENARIO_QUESTIONS = {"customer": 30, "healthcare": 25, "finance": 25, "student": 50, "notetaker": 25}
SCENARIO_TURNS = {"customer": 109, "healthcare": 47, "finance": 35, "student": 108, "notetaker": 24}
_OFFLINE_HINTS = (
    "network",
    "connect",
    "resolve",
    "dns",
    "offline",
    "timed out",
    "timeout",
    "unreachable",
    "failed to fetch",
    "name or service",
    "temporary failure",
    "no route",
    "proxy",
)


def _install_or_skip(cache_dir: Path | None = None) -> Path:
    try:
        return ensure_bfcl(cache_dir)
    except BFCLInstallError as exc:
        text = f"{exc} {exc.output}".lower()
        if any(hint in text for hint in _OFFLINE_HINTS):
            pytest.skip(f"bfcl-eval could not be installed (no network to the package registry?): {exc}")
        raise


@pytest.fixture(scope="module")
def bfcl_root() -> Path:
    return _install_or_skip()


@pytest.fixture(scope="module")
def env(bfcl_root: Path) -> BFCLMemoryEnvironment:
    return BFCLMemoryEnvironment(bfcl_dir=str(bfcl_root))


# --------------------------------------------------------------------------- install


def test_install_is_idempotent_and_lands_in_its_own_folder(tmp_path):
    site = _install_or_skip(tmp_path)
    assert site == tmp_path / "bfcl" / BFCL_VERSION / "site" and is_bfcl_root(site)
    # no dependency came along: only the package and its metadata (and its console scripts)
    assert {p.name for p in site.iterdir() if not p.name.startswith(".")} <= {
        "bfcl_eval",
        f"bfcl_eval-{BFCL_VERSION}.dist-info",
        "bin",
    }
    stamp = (site / "bfcl_eval").stat().st_mtime_ns
    assert ensure_bfcl(tmp_path) == site and (site / "bfcl_eval").stat().st_mtime_ns == stamp
    assert not [p for p in site.parent.iterdir() if p.name.startswith(".install-")]


def test_install_command_pins_the_version_without_dependencies(tmp_path):
    cmd = install_command(tmp_path / "x")
    assert "--no-deps" in cmd and f"bfcl-eval=={BFCL_VERSION}" in cmd
    assert cmd[cmd.index("--target") + 1] == str(tmp_path / "x")


def test_without_uv_the_install_falls_back_to_pip(tmp_path, monkeypatch):
    from agentmem_environments.bfcl import install

    monkeypatch.setattr(install.shutil, "which", lambda name: None)
    monkeypatch.setattr(install, "_beside_python", lambda name: None)
    assert install_command(tmp_path / "x")[:4] == [sys.executable, "-m", "pip", "install"]
    assert is_bfcl_root(_install_or_skip(tmp_path))


def test_bfcl_dir_accepts_the_install_the_package_folder_and_rejects_other_folders(bfcl_root, tmp_path):
    assert resolve_bfcl_dir(bfcl_root) == bfcl_root.resolve()
    assert resolve_bfcl_dir(bfcl_root / "bfcl_eval") == bfcl_root.resolve()
    with pytest.raises(DataError) as err:
        resolve_bfcl_dir(tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(tmp_path) in message and "bfcl_dir" in message


def test_knobs_come_from_data_or_a_bare_path(bfcl_root):
    by_knob = BFCLMemoryEnvironment(data=f"bfcl_dir={bfcl_root}")
    by_path = BFCLMemoryEnvironment(data=str(bfcl_root))
    assert by_knob.root == by_path.root == bfcl_root.resolve()
    assert "bfcl_dir" in by_knob.source
    with pytest.raises(ConfigError, match="unknown knob backend"):
        BFCLMemoryEnvironment(data="backend=kv")


def test_missing_package_without_install_is_one_line_naming_the_fix(tmp_path):
    """In a fresh process (no bfcl_eval imported), an empty cache and install=false: one clear line."""
    code = (
        "from agentmem.errors import AgentmemError\n"
        "from agentmem_environments.bfcl import BFCLMemoryEnvironment\n"
        "try:\n"
        "    BFCLMemoryEnvironment(data='install=false').tasks('all')\n"
        "except AgentmemError as exc:\n"
        "    print('ERROR', exc)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTMEM_BFCL_DIR"}
    env["AGENTMEM_CACHE_DIR"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("ERROR")]
    assert len(lines) == 1, out.stdout + out.stderr
    assert "install=false" in lines[0] and "--no-deps --target" in lines[0] and "AGENTMEM_BFCL_DIR" in lines[0]


# --------------------------------------------------------------------------- the real data


def test_loader_reads_every_scenario_question_and_turn(env):
    tasks = env.tasks("all")
    assert {t.id: len(t.questions) for t in tasks} == SCENARIO_QUESTIONS
    assert {t.id: sum(len(s.events) for s in t.sessions) for t in tasks} == SCENARIO_TURNS
    assert sum(len(t.questions) for t in tasks) == 155
    customer = next(t for t in tasks if t.id == "customer")
    first = customer.questions[0]
    assert (first.id, first.text, first.metadata["ground_truth"]) == (
        "memory_0-customer-0",
        "What is my first name?",
        ["Michael"],
    )
    turns = {e.metadata["dia_id"]: e for s in customer.sessions for e in s.events}
    assert "My name is Michael" in turns[first.evidence[0]].content
    for task in tasks:
        events = [e for s in task.sessions for e in s.events]
        assert all(e.speaker == "user" and e.kind == "message" for e in events)
        assert [e.timestamp for e in events] == sorted(e.timestamp for e in events)
        assert len({e.id for e in events}) == len(events)
        for q in task.questions:
            assert q.category == task.id and q.metadata["ground_truth"] and len(q.evidence) == 1
    # answer_recall applies where the quoted turn holds a ground-truth string verbatim (not "3 pm" -> "03:00 PM")
    verbatim = [q for t in tasks for q in t.questions if q.metadata["answer_in_source"]]
    assert len(verbatim) == 138


def test_splits_are_by_scenario_fixed_and_disjoint(bfcl_root):
    a = BFCLMemoryEnvironment(bfcl_dir=str(bfcl_root), seed=0)
    b = BFCLMemoryEnvironment(bfcl_dir=str(bfcl_root), seed=0)
    splits = a.split_ids()
    assert splits == b.split_ids()
    named = [splits[s] for s in ("train", "validation", "test")]
    assert sorted(x for ids in named for x in ids) == sorted(SCENARIO_QUESTIONS)
    assert all(ids for ids in named) and len({x for ids in named for x in ids}) == 5
    assert [t.model_dump() for t in a.tasks("validation")] == [t.model_dump() for t in b.tasks("validation")]
    assert {t.id for t in a.tasks("test")} == set(splits["test"])
    others = [BFCLMemoryEnvironment(bfcl_dir=str(bfcl_root), seed=s).split_ids() for s in range(1, 6)]
    assert any(o != splits for o in others)


def test_limit_caps_questions(env):
    tasks = env.tasks("all", limit=7)
    assert sum(len(t.questions) for t in tasks) == 7
    assert env.tasks("validation", limit=0) == []
    with pytest.raises(ConfigError):
        env.tasks("dev")


# --------------------------------------------------------------------------- BFCL's checker


def test_the_checker_is_bfcls_own(bfcl_root):
    checker = load_checker(bfcl_root)
    assert checker.__module__ == CHECKER_MODULE
    assert bfcl_correct(checker, "You told me you are 35.", ["35", "thirty five"]) == 1.0
    assert bfcl_correct(checker, "{'answer': 'Seattle, WA', 'context': 'you said so'}", ["Seattle"]) == 1.0
    assert bfcl_correct(checker, "Strawberry-Matcha", ["strawberry matcha"]) == 0.0  # BFCL drops '-' without a space
    assert bfcl_correct(checker, "350", ["35"]) == 0.0  # whole words only
    assert bfcl_correct(checker, "I do not know", ["Michael"]) == 0.0


class ScriptedAgent:
    """Plumbing fake: answers from a script keyed by question and recalls the turns it is told to."""

    def __init__(self, task: Task, answers: dict[str, str], recall_evidence: bool) -> None:
        self.turns = {e.metadata["dia_id"]: e for s in task.sessions for e in s.events}
        self.by_text = {q.text: q for q in task.questions}
        self.answers = answers
        self.recall_evidence = recall_evidence
        self.observed: list[Event] = []
        self.episodes: list[Episode] = []

    def observe(self, event: Event) -> None:
        self.observed.append(event)

    def end_session(self, episode: Episode) -> None:
        self.episodes.append(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
        q = self.by_text[question]
        items = (
            [RecallItem(content=self.turns[d].content, metadata={"dia_id": d}) for d in q.evidence]
            if self.recall_evidence
            else []
        )
        return Answer(text=self.answers[q.id], recall=Recall(items=items))


def test_a_perfect_agent_scores_one_and_a_wrong_agent_zero(env):
    task = env.tasks("test")[0]
    perfect = ScriptedAgent(task, {q.id: f"{{'answer': '{q.answer}'}}" for q in task.questions}, recall_evidence=True)
    result = env.run_task(task, perfect)
    assert len(perfect.observed) == SCENARIO_TURNS[task.id] and len(perfect.episodes) == len(task.sessions)
    metrics = env.aggregate([result])
    assert metrics["questions"] == SCENARIO_QUESTIONS[task.id]
    assert metrics["accuracy"] == metrics[f"accuracy/{task.id}"] == 1.0
    assert metrics["answer_recall"] == 1.0 and metrics["evidence_recall"] == 1.0

    wrong = ScriptedAgent(task, {q.id: "I do not know" for q in task.questions}, recall_evidence=False)
    metrics = env.aggregate([env.run_task(task, wrong)])
    assert metrics["accuracy"] == 0.0 and metrics["answer_recall"] == 0.0 and metrics["evidence_recall"] == 0.0


def test_answer_recall_is_bfcls_checker_on_what_memory_brought_back(env):
    task = env.tasks("all", limit=1)[0]  # customer: "What is my first name?" -> Michael
    q = task.questions[0]
    agent = ScriptedAgent(task, {q.id: "Mike"}, recall_evidence=True)
    metrics = env.run_task(task, agent).questions[0].metrics
    assert {k: metrics[k] for k in ("accuracy", "answer_recall", "evidence_recall")} == {
        "accuracy": 0.0,
        "answer_recall": 1.0,
        "evidence_recall": 1.0,
    }
    assert metrics["proxy"] == 1.0 and metrics["proxy/answer_in_recall"] == 1.0  # the LLM-free proxy agrees
    # a question whose answer needs converting ("3 pm" -> "03:00 PM") gets no answer_recall, only evidence_recall
    notes = next(t for t in env.tasks("all") if t.id == "notetaker")
    q = next(q for q in notes.questions if q.id == "memory_137-notetaker-7")
    one = notes.model_copy(update={"questions": [q]})
    metrics = env.run_task(one, ScriptedAgent(one, {q.id: "05:00 PM"}, recall_evidence=True)).questions[0].metrics
    assert {k: v for k, v in metrics.items() if k != "recall/omitted"} == {
        "accuracy": 1.0,
        "evidence_recall": 1.0,
    }  # no proxy


# --------------------------------------------------------------------------- the real local model


@pytest.mark.llm
@pytest.mark.timeout(1200)
def test_real_model_with_episodic_memory(local_llm, embedder, env, tmp_path):
    """Three notetaker questions with the real 0.5B model: episodic memory recalls the quoted turns."""
    from agentmem.evaluation import run_eval

    result = run_eval(env, ["episodic"], llm=local_llm, embedder=embedder, split="test", limit=3, workdir=tmp_path)
    assert result.questions == 3 and result.env == "bfcl-memory"
    assert set(result.metrics) >= {"accuracy", "answer_recall", "evidence_recall"}
    assert result.metrics["evidence_recall"] >= 2 / 3 and result.metrics["answer_recall"] >= 2 / 3
    assert result.cost.llm_calls >= 3
    for q in result.tasks[0].questions:
        assert q.prediction.strip() and q.metrics["accuracy"] in (0.0, 1.0)
