"""One agent: `agentmem eval` and evolution score the agent SDK users run (``agentmem.Agent``).

The plumbing tests use a fake model that records the messages it is sent and
answers with a fixed text; the real-model tests (marked ``llm``) show the same
on the local models: the SDK and the evaluation path answer a question alike,
and the conversational default (the 1.5B) replies to a statement instead of
echoing it.
"""

from __future__ import annotations

import difflib
import re
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from agentmem import Agent
from agentmem.agent import build_memory_stack
from agentmem.environment import AgentLike, Environment, Question, QuestionResult, Session, Split, Task, TaskResult
from agentmem.evaluation import run_eval
from agentmem.memory import MemoryProgram
from agentmem.prompts import render
from agentmem.toolkit import Stores
from agentmem.types import Episode, Event, Recall, Scope

HISTORY = [
    ("user", "Hi! My sister Ines lives in Porto and loves green tea."),
    ("assistant", "That sounds lovely."),
    ("user", "I am flying to Lisbon on Friday to see my parents."),
]
QUESTION = "Which city does Ines live in?"


class RecordingModel:
    """A fake ChatModel (plumbing only): records every prompt it is sent and answers with a fixed text."""

    model = "recording"

    def __init__(self, reply: str = "Porto") -> None:
        self.reply = reply
        self.prompts: list[dict[str, Any]] = []

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:
        self.prompts.append({"messages": messages, **kw})
        return self.reply

    def structured(self, messages: list[dict[str, Any]], schema: Any, **kw: Any) -> Any:  # pragma: no cover
        raise AssertionError("no structured calls expected")


def history_events() -> list[Event]:
    """The same events each time (ids and times fixed), so that two memories fed them hold the same."""
    return [
        Event.message(text, speaker=speaker, session_id="s1", id=f"e{n}", timestamp=datetime(2023, 5, 8, 13, n))
        for n, (speaker, text) in enumerate(HISTORY)
    ]


class OneQuestionEnvironment(Environment):
    """A benchmark of one task: the history above, then one question (scored by exact match)."""

    name: ClassVar[str] = "one-question"
    primary_metric: ClassVar[str] = "exact_match"

    def __init__(self, question: str = QUESTION, answer: str = "Porto") -> None:
        self.task = Task(
            id="t1",
            sessions=[Session(id="s1", events=history_events())],
            questions=[Question(id="q1", text=question, answer=answer)],
        )
        self.answers: list[Any] = []

    def tasks(self, split: Split = "validation", limit: int | None = None) -> list[Task]:
        return [self.task]

    def run_task(self, task: Task, agent: AgentLike) -> TaskResult:
        for session in task.sessions:
            for event in session.events:
                agent.observe(event)
            agent.end_session(Episode(id=session.id, task=task.id, events=session.events))
        results = []
        for question in task.questions:
            answer = agent.answer(question.text, context={})
            self.answers.append(answer)
            ok = float(answer.text.strip().lower() == question.answer.lower())
            results.append(
                QuestionResult(
                    question_id=question.id,
                    category="",
                    question=question.text,
                    reference=question.answer,
                    prediction=answer.text,
                    metrics={"exact_match": ok},
                )
            )
        return TaskResult(task_id=task.id, questions=results)

    def aggregate(self, results: list[TaskResult]) -> dict[str, float]:
        scores = [q.metrics["exact_match"] for r in results for q in r.questions]
        return {"exact_match": sum(scores) / max(len(scores), 1)}


def ask_through_eval(llm: Any, embedder: Any, workdir: Path) -> tuple[str, Recall]:
    """The question asked the way `agentmem eval` asks it (run_eval builds and drives the agent)."""
    env = OneQuestionEnvironment()
    workdir.mkdir(parents=True, exist_ok=True)
    result = run_eval(env, ["episodic"], llm=llm, embedder=embedder, split="all", workdir=workdir)
    assert result.questions == 1
    return result.tasks[0].questions[0].prediction, env.answers[0].recall


def ask_through_sdk(llm: Any, embedder: Any, workdir: Path) -> tuple[str, list[str]]:
    """The question asked by an SDK user (``Agent.answer``, the SDK's task call) whose agent has the same memory."""
    stores = Stores(workdir / "memory")
    programs = build_memory_stack(["episodic"], scope=Scope(user_id="ann"), stores=stores, llm=llm, embedder=embedder)
    try:
        with Agent(model=llm, memory=programs, store_dir=workdir / "agent") as agent:
            for event in history_events():
                agent.observe(event)
            agent.end_session(Episode(id="s1", task="t1", events=history_events()))
            answer = agent.answer(QUESTION)
            return answer.text, [i.content for i in answer.recall.items]
    finally:
        stores.close()


# -- plumbing (fake model) -----------------------------------------------------------------------
def test_sdk_and_eval_send_the_model_the_same_messages_and_give_the_same_answer(tmp_path: Path, embedder: Any) -> None:
    via_eval, via_sdk = RecordingModel(), RecordingModel()
    eval_answer, eval_recall = ask_through_eval(via_eval, embedder, tmp_path / "eval")
    sdk_answer, sdk_recalled = ask_through_sdk(via_sdk, embedder, tmp_path / "sdk")

    assert len(via_eval.prompts) == len(via_sdk.prompts) == 1  # one answering call each, no hidden second agent
    assert via_eval.prompts[0] == via_sdk.prompts[0]  # identical messages, token limit and caller
    sent = via_eval.prompts[0]["messages"]
    assert [m["role"] for m in sent] == ["system", "user"]
    assert sent[0]["content"].strip() == render("task_answer").strip()  # the task's instruction, nothing else
    assert "Ines lives in Porto" in sent[-1]["content"]  # the memory reached the prompt, beside the question
    assert sent[-1]["content"].rstrip().endswith(f"Question: {QUESTION}\nShort answer:")
    assert eval_answer == sdk_answer == "Porto"
    assert [i.content for i in eval_recall.items] == sdk_recalled


def test_scoring_never_lets_memory_observe_the_agents_own_answers(tmp_path: Path, embedder: Any) -> None:
    seen: list[Event] = []

    class Spy(MemoryProgram):
        name = "spy"

        def observe(self, event: Event) -> None:
            seen.append(event)

        def recall(self, query: Any) -> Recall:
            return Recall()

    def spies(scope: Scope, stores: Stores, llm: Any, embedder: Any, params: Any) -> list[MemoryProgram]:
        return [Spy(None)]  # type: ignore[arg-type]

    run_eval(
        OneQuestionEnvironment(),
        ["spy"],
        llm=RecordingModel("Porto"),
        embedder=embedder,
        split="all",
        workdir=tmp_path,
        memory_factory=spies,
    )
    assert [e.content for e in seen] == [text for _, text in HISTORY]  # the task's history, not the Q&A

    # an SDK conversation is remembered, question and answer
    seen.clear()
    with Agent(model=RecordingModel("Noted."), memory=[Spy(None)], store_dir=tmp_path / "sdk") as agent:  # type: ignore[arg-type]
        agent.chat("I like tea")
    assert [(e.speaker, e.content) for e in seen] == [("user", "I like tea"), ("assistant", "Noted.")]


def test_a_task_instruction_replaces_the_conversational_prompt_for_that_question(tmp_path: Path) -> None:
    llm = RecordingModel("first line\nsecond line")
    with Agent(model=llm, store_dir=tmp_path) as agent:
        agent.chat("hello")
        assert llm.prompts[-1]["messages"][0]["content"].startswith(render("persona"))
        assert llm.prompts[-1]["max_tokens"] == agent.max_reply_tokens

        short = agent.answer("Where?", context={"now": "8 May 2023"})
        system, user = (m["content"] for m in llm.prompts[-1]["messages"])
        assert system.strip() == render("task_answer").strip()
        assert "(Today is 8 May 2023.)\nQuestion: Where?" in user  # a task's date sits beside its question
        assert short.text == "first line" and llm.prompts[-1]["max_tokens"] == Agent.ANSWER_TOKENS

        whole = agent.answer("Solve it", context={"multiline": True, "max_tokens": 300})
        assert llm.prompts[-1]["messages"][0]["content"].startswith(render("task_solve"))
        assert whole.text == "first line\nsecond line" and llm.prompts[-1]["max_tokens"] == 300

        agent.answer("Q?", context={"instruction": "Answer in French."})
        assert llm.prompts[-1]["messages"][0]["content"].startswith("Answer in French.")
        assert [m["role"] for m in llm.prompts[-1]["messages"]] == ["system", "user"]  # each question is fresh

        agent.chat("again")  # the task's instruction does not stick to the conversation
        assert llm.prompts[-1]["messages"][0]["content"].startswith(render("persona"))
        assert {t.id for t in agent.threads()} == {"default"}  # task questions leave no thread behind


def test_a_chat_turn_streams_and_a_task_answer_is_one_call_with_the_same_instruction(tmp_path: Path) -> None:
    class StreamingModel(RecordingModel):
        def stream(self, messages: list[dict[str, Any]], **kw: Any) -> Any:
            self.prompts.append({"messages": messages, "streamed": True, **kw})
            yield from ("Por", "to")

    llm = StreamingModel()
    with Agent(
        model=llm, store_dir=tmp_path, system_prompt=render("task_answer"), max_reply_tokens=Agent.ANSWER_TOKENS
    ) as agent:
        assert agent.chat(QUESTION).text == "Porto"
        assert agent.answer(QUESTION).text == "Porto"
    streamed, called = llm.prompts
    assert streamed.pop("streamed") and "streamed" not in called
    chat_messages, task_messages = streamed.pop("messages"), called.pop("messages")
    assert streamed == called  # the same token limit and caller
    # the same instruction; a chat turn keeps the date (and memory) in the system message, a task puts them
    # beside its question (task_answer_user.j2)
    assert chat_messages[0]["content"].startswith(render("task_answer").strip())
    assert task_messages[0]["content"].strip() == render("task_answer").strip()
    assert chat_messages[-1]["content"] == QUESTION
    assert task_messages[-1]["content"].rstrip().endswith(f"Question: {QUESTION}\nShort answer:")


def test_conversation_defaults_to_the_chat_model_and_evaluation_keeps_local(tmp_path: Path, monkeypatch: Any) -> None:
    from agentmem.config import load_settings
    from agentmem.llm import LLM
    from agentmem.llm.models import CHAT_MODEL, conversation_model

    config = tmp_path / "agentmem.toml"
    config.write_text("")
    monkeypatch.setenv("AGENTMEM_CONFIG", str(config))
    for var in ("AGENTMEM_MODEL", "AGENTMEM_API_BASE", "AGENTMEM_LOCAL_MODEL_PATH"):
        monkeypatch.delenv(var, raising=False)

    assert conversation_model(load_settings()) == f"local/{CHAT_MODEL}" == "local/qwen2.5-coder-1.5b"
    with Agent(store_dir=tmp_path / "a") as agent:
        assert agent.model == "local/qwen2.5-coder-1.5b"
    assert LLM.from_settings().model == "local"  # what `agentmem eval` and evolution run by default

    config.write_text('model = "local/qwen2.5-coder-0.5b"\n')  # a configured model wins over the chat default
    assert conversation_model(load_settings()) == "local/qwen2.5-coder-0.5b"
    monkeypatch.setenv("AGENTMEM_MODEL", "openai/gpt-4o-mini")
    with Agent(store_dir=tmp_path / "b") as agent:
        assert agent.model == "openai/gpt-4o-mini"


# -- the real local models ----------------------------------------------------------------------
def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


@pytest.mark.llm
def test_local_chat_replies_to_a_statement_instead_of_copying_it(tmp_path: Path, monkeypatch: Any) -> None:
    """`Agent()` with no model: the conversational default (the 1.5B) answers a statement in its own words."""
    config = tmp_path / "agentmem.toml"
    config.write_text("")
    monkeypatch.setenv("AGENTMEM_CONFIG", str(config))
    for var in ("AGENTMEM_MODEL", "AGENTMEM_API_BASE", "AGENTMEM_LOCAL_MODEL_PATH"):
        monkeypatch.delenv(var, raising=False)
    statement = "Hi! My sister Ines lives in Porto and loves green tea."
    with Agent(store_dir=tmp_path / "agent") as agent:
        assert agent.model == "local/qwen2.5-coder-1.5b"
        reply = agent.chat(statement).text
    said, heard = _words(reply), _words(statement)
    assert said, "empty reply"
    assert heard not in said and said not in heard, reply
    assert difflib.SequenceMatcher(None, said, heard).ratio() < 0.8, reply


@pytest.mark.llm
def test_local_sdk_and_eval_give_the_same_answer(tmp_path: Path, local_llm: Any, embedder: Any) -> None:
    eval_answer, _ = ask_through_eval(local_llm, embedder, tmp_path / "eval")
    sdk_answer, _ = ask_through_sdk(local_llm, embedder, tmp_path / "sdk")
    assert eval_answer == sdk_answer.strip().splitlines()[0].strip('"').strip()
    assert "porto" in eval_answer.lower()
