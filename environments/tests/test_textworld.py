"""The textworld environment: cached deterministic games, splits, scripted play, clear errors, the real model."""

from __future__ import annotations

import sys
from typing import Any

import pytest

pytest.importorskip("textworld", reason="the textworld extra is not installed")
pytestmark = pytest.mark.filterwarnings(
    "ignore::UserWarning:jericho"
)  # "score detection disabled": textworld scores itself

from agentmem.environment import Action, Answer  # noqa: E402
from agentmem.errors import ConfigError  # noqa: E402
from agentmem.types import Episode, Event  # noqa: E402
from agentmem_environments import textworld as tw  # noqa: E402
from agentmem_environments.textworld import GameSpec, TextWorldEnvironment, clean_feedback, ensure_game  # noqa: E402


@pytest.fixture(scope="module")
def game_cache(tmp_path_factory):
    """One game cache for the module (games take seconds each to generate)."""
    return tmp_path_factory.mktemp("tw-cache")


@pytest.fixture(autouse=True)
def _cache_env(game_cache, monkeypatch):
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(game_cache))


class ScriptedAgent:
    """Plays the walkthrough ("walk"), or only ever looks ("look"); plumbing only."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.observed: list[Event] = []
        self.episodes: list[Episode] = []
        self.offered: list[list[str]] = []
        self.walkthroughs: dict[str, list[str]] = {}

    def observe(self, event: Event) -> None:
        self.observed.append(event)

    def end_session(self, episode: Episode) -> None:
        self.episodes.append(episode)

    def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:  # pragma: no cover
        raise AssertionError("textworld asks for actions, not answers")

    def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
        assert [t.name for t in tools] == ["command"]
        enum = tools[0].parameters["properties"]["command"]["enum"]
        self.offered.append(enum)
        if self.mode == "look":
            return Action(tool="command", arguments={"command": "look"})
        key = f"{context['category']}-{context['episode']}"
        plan = self.walkthroughs[key]
        return Action(tool="command", arguments={"command": plan[context["step"] - 1]})


def _walkthrough(spec: GameSpec) -> list[str]:
    import textworld

    game = textworld.start(str(ensure_game(spec)), request_infos=textworld.EnvInfos(policy_commands=True))
    try:
        return list(game.reset().policy_commands)
    finally:
        game.close()


# --------------------------------------------------------------------------- games and splits


def test_games_are_generated_once_cached_and_deterministic(game_cache, tmp_path, monkeypatch):
    spec = GameSpec(family="treasure_hunter", params={"level": 5}, seed=2_000_001)
    path = ensure_game(spec)
    assert path == game_cache / "textworld" / "treasure_hunter-l5-2000001.z8"
    assert path.exists() and path.with_suffix(".json").exists()
    digest, mtime = tw.file_digest(path), path.stat().st_mtime_ns
    # cached: a second call does not run tw-make again
    monkeypatch.setattr(tw.subprocess, "run", lambda *a, **k: pytest.fail("tw-make ran for a cached game"))
    assert ensure_game(spec) == path and path.stat().st_mtime_ns == mtime
    monkeypatch.undo()
    # the same seed in a fresh cache gives the same game file
    monkeypatch.setenv("AGENTMEM_CACHE_DIR", str(tmp_path))
    again = ensure_game(spec)
    assert again != path and tw.file_digest(again) == digest
    walk = _walkthrough(spec)
    assert walk and walk[-1].startswith("take")


def test_splits_use_disjoint_fixed_seeds_and_limit_caps_episodes():
    env = TextWorldEnvironment()
    seeds = env.split_seeds()
    assert {k: len(v) for k, v in seeds.items()} == {"train": 24, "validation": 12, "test": 12}
    sets = [set(v) for v in seeds.values()]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert seeds == TextWorldEnvironment().split_seeds()
    assert not set(TextWorldEnvironment(seed=1).split_seeds()["test"]) & sets[2]
    tasks = env.tasks("validation")
    assert [t.metadata["family"] for t in tasks] == ["cooking", "treasure_hunter"] * 2
    for t in tasks:  # related games: one family and difficulty, consecutive seeds
        games = [q.metadata["game"] for q in t.questions]
        assert len({(g["family"], str(g["params"])) for g in games}) == 1
        assert [g["seed"] for g in games] == list(range(games[0]["seed"], games[0]["seed"] + 3))
    assert [len(t.questions) for t in env.tasks("validation", limit=4)] == [3, 1]
    assert env.tasks("all", limit=0) == []
    assert len(env.tasks("all")) == 16
    assert "tw-make" in env.source


@pytest.mark.parametrize(
    "knobs,match",
    [
        ({"episodes": 0}, r"episodes"),
        ({"max_steps": 1000}, r"max_steps"),
        ({"families": "cooking,zork"}, r"unknown family zork; use cooking, treasure_hunter"),
        ({"stepz": 3}, r"unknown knob stepz; the knobs are episodes"),
        ({"data": "episodes"}, r"key=value"),
        ({"seed": 500}, r"seed must be from 0 to 99"),
    ],
)
def test_bad_knobs_are_one_line_config_errors(knobs, match):
    with pytest.raises(ConfigError, match=match) as info:
        TextWorldEnvironment(**knobs)
    assert "\n" not in str(info.value) and str(info.value).startswith("textworld:")


def test_bad_split_or_limit_is_a_config_error():
    env = TextWorldEnvironment()
    with pytest.raises(ConfigError, match="unknown split 'dev'"):
        env.tasks("dev")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="limit"):
        env.tasks("all", limit=-1)


def test_missing_textworld_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "textworld", None)  # import textworld now raises ImportError
    with pytest.raises(ConfigError, match=r"agentmem-environments\[textworld\]") as info:
        tw.load_textworld()
    assert "\n" not in str(info.value)
    env = TextWorldEnvironment()
    with pytest.raises(ConfigError, match=r"not installed"):
        env.run_task(env.tasks("validation", limit=1)[0], ScriptedAgent("look"))


def test_entry_point_finds_the_environment_and_knobs_come_from_data():
    from agentmem.evaluation import make_environment
    from agentmem.registry import load_environment

    assert load_environment("textworld") is TextWorldEnvironment
    env = make_environment("textworld", data="episodes=2, max_steps=8", seed=3)
    assert isinstance(env, TextWorldEnvironment)
    assert env.options.episodes == 2 and env.options.max_steps == 8 and env.seed == 3
    assert TextWorldEnvironment.primary_metric == "score" and TextWorldEnvironment.description


def test_passive_commands_are_dropped_unless_asked_for_or_nothing_else_is_left():
    admissible = ["examine cookbook", "go east", "inventory", "look", "take milk from fridge"]
    assert tw._offered(admissible, False) == ["go east", "take milk from fridge"]
    assert tw._offered(admissible, True) == admissible
    assert tw._offered(["look", "inventory"], False) == ["look", "inventory"]
    spec = tw.command_tool(["go east"])
    assert spec.name == "command" and spec.parameters["properties"]["command"]["enum"] == ["go east"]


def test_feedback_loses_the_banner_and_the_prompt():
    raw = "  $$$$  | $$__/ $$\n |  \\  _  |  \\ /      \\\n\nYou take the milk.\n\n>   -= Kitchen =-0/1"
    assert clean_feedback(raw) == "You take the milk."
    assert len(clean_feedback("word " * 200, 100)) == 100


# --------------------------------------------------------------------------- scripted play


def test_walkthrough_agent_wins_and_look_agent_scores_zero():
    env = TextWorldEnvironment(episodes=2, max_steps=8)
    tasks = env.tasks("validation", limit=4)  # a cooking task and a treasure-hunter task, two episodes each
    walker = ScriptedAgent("walk")
    for task in tasks:
        for q in task.questions:
            walker.walkthroughs[f"{q.category}-{q.metadata['episode']}"] = _walkthrough(GameSpec(**q.metadata["game"]))
    good = [env.run_task(t, walker) for t in tasks]
    metrics = env.aggregate(good)
    assert metrics["questions"] == 4
    assert metrics["success_rate"] == 1.0 and metrics["score"] == 1.0
    assert metrics["success_rate/cooking"] == metrics["success_rate/treasure_hunter"] == 1.0
    assert 1 <= metrics["steps"] <= 8
    assert good[0].questions[0].prediction == good[0].questions[0].reference  # the trail is the walkthrough
    # memory was fed: commands and replies, an outcome per episode, then the episode itself
    assert [ep.success for ep in walker.episodes] == [True] * 4
    assert all(ep.reward == 1.0 and ep.task for ep in walker.episodes)
    kinds = {e.kind for e in walker.observed}
    assert {"tool_call", "observation", "outcome"} <= kinds
    assert all(e.metadata["tw_episode"] for e in walker.observed)
    # by default the passive commands are not offered (the prompt shows room and inventory already)

    assert not any(c == "look" or c.startswith("examine") for offered in walker.offered for c in offered)

    idle = TextWorldEnvironment(episodes=2, max_steps=8, passive_commands=True)  # "look" offered again
    looker = ScriptedAgent("look")
    bad = idle.aggregate([idle.run_task(t, looker) for t in idle.tasks("validation", limit=4)])
    assert all("look" in offered for offered in looker.offered)
    assert bad["success_rate"] == 0.0 and bad["score"] == 0.0 and bad["steps"] == 8.0
    assert bad["invalid"] == 0.0 and bad["recall_nonempty"] == 0.0
    assert "score/episode_2" in bad and bad["prior_recall"] == 0.0


def test_an_agent_that_cannot_act_gets_a_clear_error():
    class AnswerOnly:
        def observe(self, event: Event) -> None: ...
        def end_session(self, episode: Episode) -> None: ...
        def answer(self, question: str, *, context: dict[str, Any] | None = None) -> Answer:
            return Answer(text="")

    env = TextWorldEnvironment()
    with pytest.raises(ConfigError, match="no act"):
        env.run_task(env.tasks("validation", limit=1)[0], AnswerOnly())


def test_a_model_with_no_valid_call_wastes_a_step_not_the_run():
    class Broken(ScriptedAgent):
        def act(self, instruction: str, tools: list[Any], *, context: dict[str, Any] | None = None) -> Action:
            return Action(error="local model did not return valid arguments")

    env = TextWorldEnvironment(episodes=1, max_steps=3)
    result = env.run_task(env.tasks("validation", limit=1)[0], Broken("walk"))
    q = result.questions[0]
    assert q.metrics["invalid"] == 1.0 and q.metrics["steps"] == 3.0 and q.metrics["score"] == 0.0
    assert q.prediction.startswith("(no valid command")


# --------------------------------------------------------------------------- the real local model


@pytest.mark.llm
@pytest.mark.timeout(1800)
def test_real_model_plays_two_episodes_with_episodic_memory(local_llm, embedder, tmp_path):
    """Two cooking episodes of at most 8 steps (<= 16 model calls plus repairs) with the real model."""
    from agentmem.evaluation import run_eval

    result = run_eval(
        "textworld",
        ["episodic"],
        llm=local_llm,
        embedder=embedder,
        split="validation",
        limit=2,
        data="episodes=2,max_steps=8",
        workdir=tmp_path,
    )
    assert result.questions == 2 and len(result.tasks[0].questions) == 2
    m = result.metrics
    assert 0.0 <= m["score"] <= 1.0 and 0.0 <= m["success_rate"] <= 1.0 and 1 <= m["steps"] <= 8
    # the schema's enum lets the model type only admissible commands
    assert m["invalid"] <= 0.25
    first, second = result.tasks[0].questions
    assert first.reference and first.prediction != "(no steps)"
    # in the second episode memory brings back the first one (the LLM-free proxy)
    assert m["recall_nonempty"] > 0.0 and second.metrics["prior_recall"] > 0.5
    assert 2 <= result.cost.llm_calls <= 40
