"""The toolprefs environment: generation, splits, knobs, corrections, scoring, the agent's act()."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agentmem.environment import Action, Answer, Task
from agentmem.errors import ConfigError
from agentmem.llm.tools import ToolCall
from agentmem.types import Episode, Event, Recall, RecallItem
from agentmem_environments.toolprefs import ToolPrefsEnvironment
from agentmem_environments.toolprefs.domains import DOMAINS, SLOTS, TOOLS
from agentmem_environments.toolprefs.scoring import evidence_recall, normalize_value, score_call
from tests.helpers import task_request


def _turns(task: Task) -> dict[str, Event]:
    return {e.metadata["dia_id"]: e for s in task.sessions for e in s.events}


def _position(dia_id: str) -> tuple[int, int]:
    session, turn = re.match(r"D(\d+):(\d+)$", dia_id).groups()  # type: ignore[union-attr]
    return int(session), int(turn)


# --------------------------------------------------------------------------- generation


def test_same_seed_same_users_other_seed_other_users():
    a = [t.model_dump() for t in ToolPrefsEnvironment(seed=0).tasks("all")]
    b = [t.model_dump() for t in ToolPrefsEnvironment(seed=0).tasks("all")]
    assert a == b
    c = [t.model_dump() for t in ToolPrefsEnvironment(seed=1).tasks("all")]
    assert a != c
    assert [q.text for q in ToolPrefsEnvironment(seed=0).tasks("all")[0].questions] == [
        q["text"] for q in a[0]["questions"]
    ]


def test_splits_are_fixed_disjoint_and_cover_the_pool():
    env = ToolPrefsEnvironment(seed=0)
    ids = {s: [t.id for t in env.tasks(s)] for s in ("train", "validation", "test")}
    assert {k: len(v) for k, v in ids.items()} == {"train": 20, "validation": 10, "test": 10}
    sets = [set(v) for v in ids.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == {t.id for t in env.tasks("all")}
    assert ids == {s: [t.id for t in ToolPrefsEnvironment(seed=0).tasks(s)] for s in ids}
    assert ToolPrefsEnvironment(seed=5).split_ids() != env.split_ids()


def test_default_size_is_small_enough_for_the_local_model():
    env = ToolPrefsEnvironment()
    tasks = env.tasks("all")
    assert len(tasks) == 40 and all(len(t.questions) == 5 for t in tasks)
    assert all(len(t.sessions) == 3 for t in tasks)
    user_turns = [sum(1 for s in t.sessions for e in s.events if e.speaker == "user") for t in tasks]
    assert 12 <= sum(user_turns) / len(user_turns) <= 24
    # the README's command: the first 20 questions of "all" are four users, every domain asked about
    first = env.tasks("all", limit=20)
    assert [len(t.questions) for t in first] == [5, 5, 5, 5]
    assert {q.category for t in first for q in t.questions} == set(DOMAINS)
    assert "generated" in env.source and "seed 0" in env.source


def test_every_event_carries_a_dia_id_and_date_and_questions_point_at_real_turns():
    for task in ToolPrefsEnvironment().tasks("all"):
        turns = _turns(task)
        assert len(turns) == sum(len(s.events) for s in task.sessions)  # ids are unique
        for session in task.sessions:
            assert all(e.metadata["date_time"] == session.when == e.when for e in session.events)
            assert [e.speaker for e in session.events] == ["user", "assistant"] * (len(session.events) // 2)
        for q in task.questions:
            assert q.evidence and all(turns[d].speaker == "user" for d in q.evidence)
            tool = TOOLS[q.metadata["tool"]]
            assert q.category == tool.domain and q.metadata["tool"] in q.metadata["tools"]
            assert set(q.metadata["arguments"]) == set(tool.given) | set(tool.prefs)
            # every grounding statement really states a value of the call
            said = " ".join(turns[d].content.lower() for d in q.evidence)
            for name in q.metadata["memory_params"]:
                assert str(q.metadata["arguments"][name]).lower() in said, (q.id, name)


def test_requests_state_their_given_values_and_leave_preferences_to_memory():
    for task in ToolPrefsEnvironment().tasks("all"):
        for q in task.questions:
            tool = TOOLS[q.metadata["tool"]]
            args = q.metadata["arguments"]
            if q.metadata["state_task"]:
                assert set(q.metadata["memory_params"]) == set(args)
                assert not any(str(args[g]) in q.text for g in tool.given)
            else:
                assert set(q.metadata["memory_params"]) == set(tool.prefs)
                assert all(str(args[g]) in q.text for g in tool.given)
            for pref in tool.prefs:
                if SLOTS[pref].kind == "string":
                    assert not re.search(rf"\b{re.escape(str(args[pref]).lower())}\b", q.text.lower()), (q.id, pref)


# --------------------------------------------------------------------------- knobs


def test_knobs_change_the_data_as_documented():
    base = ToolPrefsEnvironment(users=6).tasks("all")
    assert len(base) == 6
    five = ToolPrefsEnvironment(users=6, sessions=5).tasks("all")
    assert all(len(t.sessions) == 5 for t in five)

    def user_turns(tasks: list[Task]) -> list[int]:
        return [sum(1 for s in t.sessions for e in s.events if e.speaker == "user") for t in tasks]

    quiet = ToolPrefsEnvironment(users=6, distractors=0).tasks("all")
    noisy = ToolPrefsEnvironment(users=6, distractors=7).tasks("all")
    assert [n - q for n, q in zip(user_turns(noisy), user_turns(quiet))] == [3 * 7] * 6
    assert all(len(t.questions) == 7 for t in ToolPrefsEnvironment(users=6, questions=7).tasks("all"))
    assert all(
        not q.metadata["state_task"]
        for t in ToolPrefsEnvironment(users=6, state_tasks=0).tasks("all")
        for q in t.questions
    )
    assert all(
        sum(q.metadata["state_task"] for q in t.questions) == 2
        for t in ToolPrefsEnvironment(users=6, state_tasks=2).tasks("all")
    )
    assert all(len(t.metadata["domains"]) == 1 for t in ToolPrefsEnvironment(users=6, domains=1).tasks("all"))
    none = ToolPrefsEnvironment(users=6, corrections=0).tasks("all")
    assert all(t.metadata["superseded"] == {} and not any(q.metadata["stale"] for q in t.questions) for t in none)
    many = ToolPrefsEnvironment(users=6, corrections=4).tasks("all")
    assert all(len(t.metadata["superseded"]) == 4 for t in many)
    # knobs from the CLI's --data, as key=value pairs
    from agentmem.evaluation import make_environment

    env = make_environment("toolprefs", data="sessions=2, distractors=1", seed=3)
    assert isinstance(env, ToolPrefsEnvironment)
    assert env.options.sessions == 2 and env.options.distractors == 1 and env.seed == 3


def test_corrections_the_later_statement_wins():
    tasks = ToolPrefsEnvironment(corrections=3).tasks("all")
    checked = 0
    for task in tasks:
        turns = _turns(task)
        superseded = task.metadata["superseded"]
        assert len(superseded) == 3
        for q in task.questions:
            for slot, old in q.metadata["stale"].items():
                new = q.metadata["arguments"][slot]
                assert new == task.metadata["preferences"][slot] and new != old == superseded[slot]
                # the grounding turn is the correction: it states the new value, after a turn that stated the old
                ground = q.metadata["grounding"][slot]
                assert ground in q.evidence and str(new).lower() in turns[ground].content.lower()
                earlier = [
                    d
                    for d, e in turns.items()
                    if any(SLOTS[slot].say(t, old) == e.content for t in SLOTS[slot].statements)
                ]
                assert len(earlier) == 1 and _position(earlier[0])[0] < _position(ground)[0]  # an earlier session
                checked += 1
    assert checked > 20
    # with one session, the correction still comes later in it
    for task in ToolPrefsEnvironment(users=5, sessions=1, corrections=2).tasks("all"):
        turns = _turns(task)
        for q in task.questions:
            for slot, old in q.metadata["stale"].items():
                first = [
                    d
                    for d, e in turns.items()
                    if any(SLOTS[slot].say(t, old) == e.content for t in SLOTS[slot].statements)
                ]
                assert len(first) == 1 and _position(first[0]) < _position(q.metadata["grounding"][slot])


@pytest.mark.parametrize(
    "knobs,match",
    [
        ({"sessions": 0}, r"sessions .* from 1 to 12"),
        ({"distractors": 99}, r"distractors .* from 0 to 40"),
        ({"corrections": -1}, r"corrections"),
        ({"users": 2}, r"users .* from 3 to 1000"),
        ({"sessionz": 3}, r"unknown knob sessionz; the knobs are users, sessions"),
        ({"data": "sessions=x"}, r"sessions"),
        ({"data": "sessions"}, r"key=value"),
    ],
)
def test_bad_knobs_are_one_line_config_errors(knobs, match):
    with pytest.raises(ConfigError, match=match) as info:
        ToolPrefsEnvironment(**knobs)
    assert "\n" not in str(info.value) and str(info.value).startswith("toolprefs:")


def test_bad_split_or_limit_is_a_config_error():
    env = ToolPrefsEnvironment()
    with pytest.raises(ConfigError, match="unknown split 'dev'; use one of train, validation, test, all"):
        env.tasks("dev")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limit"):
        env.tasks("all", limit=-1)
    assert env.tasks("all", limit=0) == []
    assert [len(t.questions) for t in env.tasks("validation", limit=7)] == [5, 2]


def test_entry_point_finds_the_environment():
    from agentmem.registry import load_environment

    cls = load_environment("toolprefs")
    assert cls is ToolPrefsEnvironment
    assert cls.primary_metric == "param_accuracy" and cls.description


# --------------------------------------------------------------------------- scoring


def test_normalisation_is_light():
    assert normalize_value(" Window ") == "window"
    assert normalize_value("21") == normalize_value(21) == normalize_value(21.0) == normalize_value("21.0") == "21"
    assert normalize_value("Google   Meet.") == "google meet"
    assert normalize_value("'aisle'") == "aisle"
    assert normalize_value("window seat") != normalize_value("window")


def test_score_call():
    expected = {"destination": "Oslo", "seat": "window", "meal": "vegan"}
    perfect = score_call(
        "book_flight",
        {"destination": "oslo", "seat": "Window", "meal": "vegan"},
        "book_flight",
        expected,
        memory_params=["seat", "meal"],
        stale={"seat": "aisle"},
    )
    assert perfect == {"tool_match": 1.0, "param_accuracy": 1.0, "exact": 1.0, "memory_accuracy": 1.0, "stale": 0.0}
    old = score_call(
        "book_flight",
        {"destination": "Oslo", "seat": "aisle", "meal": "vegan"},
        "book_flight",
        expected,
        memory_params=["seat", "meal"],
        stale={"seat": "aisle"},
    )
    assert old["stale"] == 1.0 and old["exact"] == 0.0 and old["param_accuracy"] == pytest.approx(2 / 3)
    assert old["memory_accuracy"] == 0.5
    wrong_tool = score_call(
        "book_hotel", {"destination": "Oslo", "seat": "window", "meal": "vegan"}, "book_flight", expected
    )
    assert wrong_tool == {"tool_match": 0.0, "param_accuracy": 0.0, "exact": 0.0}
    missing = score_call("book_flight", {"destination": "Oslo"}, "book_flight", expected)
    assert missing["param_accuracy"] == pytest.approx(1 / 3) and missing["exact"] == 0.0


def test_evidence_recall_on_known_recalls():
    assert evidence_recall(["D1:3", "D2:5"], ["D1:3", "D2:5"]) == 1.0
    assert evidence_recall(["D1:3", "D9:9"], ["D1:3", "D2:5"]) == 0.5
    assert evidence_recall(["d2:5"], ["D2:5"]) == 1.0
    assert evidence_recall([], ["D1:3"]) == 0.0
    assert evidence_recall(["D1:3"], []) is None


class ScriptedAgent:
    """Answers from the ground truth (or wrongly, or with the superseded values); plumbing only."""

    def __init__(self, task: Task, mode: str) -> None:
        self.by_text = {q.text: q for q in task.questions}
        self.mode = mode
        self.observed: list[Event] = []
        self.episodes: list[Episode] = []
        self.offered: list[list[str]] = []

    def observe(self, event: Event) -> None:
        self.observed.append(event)

    def end_session(self, episode: Episode) -> None:
        self.episodes.append(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:  # pragma: no cover
        raise AssertionError("toolprefs asks for actions, not answers")

    def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
        q = self.by_text[instruction]
        self.offered.append([t.name for t in tools])
        args = dict(q.metadata["arguments"])
        if self.mode == "perfect":
            recall = Recall(items=[RecallItem(content="x", metadata={"dia_id": list(q.evidence)})])
            return Action(tool=q.metadata["tool"], arguments=args, recall=recall)
        if self.mode == "stale":
            args.update(q.metadata["stale"])
            return Action(tool=q.metadata["tool"], arguments=args)
        wrong = next(t.name for t in tools if t.name != q.metadata["tool"])
        return Action(
            tool=wrong,
            arguments={k: "banana" for k in args},
            recall=Recall(items=[RecallItem(content="x", metadata={"dia_id": "D9:99"})]),
        )


def test_a_perfect_agent_scores_one_and_a_wrong_agent_zero():
    env = ToolPrefsEnvironment()
    tasks = env.tasks("validation")
    perfect, wrong = [], []
    for task in tasks:
        agent = ScriptedAgent(task, "perfect")
        perfect.append(env.run_task(task, agent))
        assert [e.id for e in agent.observed] == [e.id for s in task.sessions for e in s.events]
        assert [ep.id for ep in agent.episodes] == [s.id for s in task.sessions]
        assert all(len(names) == 2 for names in agent.offered)  # the two tools of the request's domain
        wrong.append(env.run_task(task, ScriptedAgent(task, "wrong")))
    good = env.aggregate(perfect)
    assert good["questions"] == 50
    for key in ("param_accuracy", "exact", "tool_match", "memory_accuracy", "evidence_recall"):
        assert good[key] == 1.0, key
    assert good["stale_rate"] == 0.0
    assert sum(good[f"n/{d}"] for d in DOMAINS if f"n/{d}" in good) == 50
    assert all(good[f"param_accuracy/{d}"] == 1.0 for d in DOMAINS if f"n/{d}" in good)
    bad = env.aggregate(wrong)
    for key in ("param_accuracy", "exact", "tool_match", "memory_accuracy", "evidence_recall"):
        assert bad[key] == 0.0, key
    assert perfect[0].questions[0].prediction == perfect[0].questions[0].reference


def test_a_stale_agent_shows_in_stale_rate():
    env = ToolPrefsEnvironment()
    results = [env.run_task(t, ScriptedAgent(t, "stale")) for t in env.tasks("validation")]
    metrics = env.aggregate(results)
    assert metrics["stale_rate"] == 1.0
    assert 0.0 < metrics["exact"] < 1.0 and metrics["memory_accuracy"] < 1.0


def test_an_agent_that_cannot_act_gets_a_clear_error():
    class AnswerOnly:
        def observe(self, event: Event) -> None: ...
        def end_session(self, episode: Episode) -> None: ...
        def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
            return Answer(text="")

    env = ToolPrefsEnvironment()
    with pytest.raises(ConfigError, match="no act"):
        env.run_task(env.tasks("all", limit=1)[0], AnswerOnly())


# --------------------------------------------------------------------------- the agent's act() through run_eval


class OracleLLM:
    """A fake LLM whose call_tool reads the request out of the prompt and answers it (plumbing only)."""

    def __init__(self, env: ToolPrefsEnvironment) -> None:
        self.calls: list[tuple[list[dict[str, Any]], list[str]]] = []
        self.expected = {q.text: q.metadata for t in env.tasks("all", limit=5) for q in t.questions}

    def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:  # pragma: no cover
        raise AssertionError("no free completions expected")

    def structured(
        self, messages: list[dict[str, Any]], schema: Any, *, caller: str | None = None
    ) -> Any:  # pragma: no cover
        raise AssertionError("no structured calls expected")

    def call_tool(
        self, messages: list[dict[str, Any]], tools: list[Any], *, caller: str | None = None, **kw: Any
    ) -> ToolCall:
        self.calls.append((messages, [t.name for t in tools]))
        meta = self.expected[task_request(messages)]
        return ToolCall(name=meta["tool"], arguments=meta["arguments"])


class HashEmbedder:
    name = "hash"
    dim = 8

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * 7 for _ in texts]


def test_memory_agent_acts_with_memories_first_in_the_prompt(tmp_path):
    from agentmem.evaluation import run_eval

    env = ToolPrefsEnvironment()
    llm = OracleLLM(env)
    ticks: list[int] = []
    result = run_eval(
        env,
        ["full-context"],
        llm=llm,
        embedder=HashEmbedder(),
        split="all",
        limit=5,
        workdir=tmp_path,
        progress=lambda done, total, m: ticks.append(done),
    )
    assert result.questions == 5 and result.metrics["param_accuracy"] == 1.0
    assert result.metrics["evidence_recall"] > 0.5
    assert ticks[:5] == [1, 2, 3, 4, 5]
    task = env.tasks("all", limit=5)[0]
    turns = _turns(task)
    messages, offered = llm.calls[0]
    assert offered == [t.name for t in env.tools_for(task.questions[0])] and len(offered) == 2
    # the agent's turn prompt: the task's instruction as the system message; the memories, then the request
    assert [m["role"] for m in messages] == ["system", "user"]
    statement = turns[task.questions[0].evidence[0]].content
    assert "later statement" in messages[0]["content"] and statement not in messages[0]["content"]
    memory, request = messages[1]["content"].split("Request: ")
    assert statement in memory and request.startswith(task.questions[0].text)


# --------------------------------------------------------------------------- the real local model


@pytest.mark.llm
@pytest.mark.timeout(1800)
def test_real_model_grounds_tool_calls_in_remembered_preferences(local_llm, embedder, tmp_path):
    """Two requests with the real model: memory (episodic) fills preferences that no memory can only guess."""
    from agentmem.evaluation import run_eval

    env = ToolPrefsEnvironment()
    episodic = run_eval(
        env, ["episodic"], llm=local_llm, embedder=embedder, split="validation", limit=4, workdir=tmp_path
    )
    none = run_eval(env, ["none"], llm=local_llm, embedder=embedder, split="validation", limit=4, workdir=tmp_path)
    assert episodic.questions == none.questions == 4
    # recall surfaces the grounding statements
    assert episodic.metrics["evidence_recall"] >= 0.75
    # the model picks the right tool for most requests and fills real calls
    assert episodic.metrics["tool_match"] >= 0.75
    assert episodic.cost.llm_calls >= 4
    # remembering beats guessing on the parameters only memory can supply
    assert episodic.metrics["memory_accuracy"] > none.metrics["memory_accuracy"]


def test_a_model_that_makes_no_valid_call_costs_one_question_not_the_run():
    from agentmem.agent import MemoryAgent
    from agentmem.errors import LLMError

    class FailingLLM(OracleLLM):
        def call_tool(self, messages: list[dict[str, Any]], tools: list[Any], **kw: Any) -> ToolCall:
            raise LLMError("local model did not return valid arguments for tool book_flight after a repair attempt")

    env = ToolPrefsEnvironment()
    task = env.tasks("all", limit=2)[0]
    agent = MemoryAgent(FailingLLM(env), [])
    result = env.run_task(task, agent)
    assert [q.metrics["param_accuracy"] for q in result.questions] == [0.0, 0.0]
    assert result.questions[0].prediction.startswith("(no call: local model did not return valid arguments")

    class NoTools:
        def complete(self, messages: list[dict[str, Any]], **kw: Any) -> str:  # pragma: no cover
            return ""

    with pytest.raises(ConfigError, match="cannot call tools"):
        MemoryAgent(NoTools(), []).act("Book me a flight.", env.tools_for(task.questions[0]))


def test_a_heldout_seed_replaces_the_test_users_only():
    """Evolution passes a secret held-out seed: train and validation stay, the test users are new."""
    usual = ToolPrefsEnvironment()
    heldout = ToolPrefsEnvironment(heldout_seed=987654321)
    other = ToolPrefsEnvironment(heldout_seed=123)
    for split in ("train", "validation"):
        assert [t.id for t in heldout.tasks(split)] == [t.id for t in usual.tasks(split)]
    test_ids = [t.id for t in heldout.tasks("test")]
    assert len(test_ids) == len(usual.tasks("test")) and all(i.startswith("heldout-") for i in test_ids)
    usual_requests = {q.text for t in usual.tasks("all") for q in t.questions}
    heldout_requests = [q.answer for t in heldout.tasks("test") for q in t.questions]
    assert heldout_requests != [q.answer for t in other.tasks("test") for q in t.questions]
    # the default seed's users (what a candidate could regenerate) do not predict the held-out calls
    assert {q.text for t in heldout.tasks("test") for q in t.questions} - usual_requests
