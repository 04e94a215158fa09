"""textworld: embodied planning across episodes in generated text games (after ALFWorld-style evaluation).

A task is a run of ``episodes`` related games (same family and difficulty,
consecutive seeds) played one after another by the same agent with the same
memory. Each step the agent gets the game's objective, the last feedback and
its inventory, and must answer with one call of the ``command`` tool, whose
single parameter is an enum of the game's *admissible commands* (so even the
0.5B model can only type something the game understands). Every command and
the game's reply are observed as events; at the end of an episode an outcome
event and an :class:`~agentmem.types.Episode` (reward = normalised score,
success = won) let episodic, procedural and hierarchical memories carry what
worked into the next game of the family.

Games are generated offline with textworld's ``tw-make`` (families
``cooking``: ``tw-cooking --recipe R --take T --go G``; ``treasure_hunter``:
``tw-treasure_hunter --level L``) and cached under
``<AGENTMEM_CACHE_DIR or the user cache dir>/textworld/<family>-<params>-<seed>.z8``,
generated once behind a file lock (tests and runs share the cache safely).
Generation is deterministic: the same seed gives the same game file.

Splits are disjoint seed ranges (train / validation / test start at 1, 2 and
3 million, offset by ``seed`` * 10,000), so selection never sees a test game.
Tasks alternate between the families; ``limit`` caps the number of episodes.

Metrics per episode: ``success`` (won), ``score`` (score / max_score),
``steps`` (commands played), ``invalid`` (steps without a valid command).
By default the passive commands (look, inventory, examine ...) are not
offered (knob ``passive_commands``): the prompt already shows the room and
the inventory, and the small model otherwise examines one object forever.
The primary metric is the normalised ``score``: the small local model rarely
wins outright, and partial credit (e.g. taking the right ingredient) still
separates memory configurations. The LLM-free proxy is ``prior_recall``: for
every episode after the first, the fraction of steps whose recall surfaced an
event of an earlier episode of the same task (by ``event_ids``, or an item's
``metadata["tw_episode"]``); ``recall_nonempty`` is reported for every step.
``aggregate`` also breaks quality down by family and by episode index
(``score/episode_2`` vs ``score/episode_1`` shows learning across episodes).

Knobs (constructor arguments, or ``agentmem eval --data "episodes=2,max_steps=8"``):
see :class:`Options`. Needs the ``textworld`` package: install
``agentmem-environments[textworld]``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar, Literal

import jinja2
from pydantic import BaseModel, Field

from agentmem.environment import (
    AgentLike,
    Environment,
    Question,
    QuestionResult,
    Split,
    Task,
    TaskResult,
    check_split,
    parse_knobs,
    require_act,
)
from agentmem.errors import ConfigError, DataError
from agentmem.llm.tools import ToolSpec
from agentmem.types import Episode, Event

__all__ = ["TextWorldEnvironment", "Options", "GameSpec", "ensure_game", "game_path", "load_textworld"]

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = ("cooking", "treasure_hunter")
_SPLIT_BASE = {"train": 1_000_000, "validation": 2_000_000, "test": 3_000_000}
_SEED_STRIDE = 10_000
_HELDOUT_BASE = 10_000_000  # held-out test games: 10M + (heldout_seed mod 100k) * stride, below 2**31
_HELDOUT_VALUES = 100_000
_EXTRA_HINT = "install the extra: pip install 'agentmem-environments[textworld]'"
_RECALLED_TEXT_CHARS = 2000
_MAKE_TIMEOUT_S = 600

_JINJA = jinja2.Environment(
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
)


class Options(BaseModel):
    """The environment's knobs, bounded (the bounds are what a sweep may vary)."""

    episodes: int = Field(3, ge=1, le=10, description="games per task, played in order with the same memory")
    max_steps: int = Field(15, ge=1, le=100, description="commands per episode before it is cut off")
    tasks: int = Field(4, ge=1, le=50, description="tasks in validation and in test (train has twice as many)")
    families: str = Field(
        "cooking,treasure_hunter", description="comma-separated game families, alternated across tasks"
    )
    level: int = Field(5, ge=1, le=30, description="treasure_hunter difficulty (tw-make --level)")
    recipe: int = Field(1, ge=1, le=5, description="cooking: ingredients in the recipe (tw-make --recipe)")
    take: int = Field(1, ge=0, le=5, description="cooking: ingredients to find (tw-make --take)")
    go: Literal[1, 6, 9, 12] = Field(1, description="cooking: rooms in the world (tw-make --go)")
    passive_commands: bool = Field(
        False, description="offer look / inventory / examine too (the step prompt already shows the room and inventory)"
    )
    feedback_chars: int = Field(400, ge=80, le=4000, description="how much of the last game reply the agent sees")


_KNOBS = tuple(Options.model_fields)


class GameSpec(BaseModel):
    """One game: its family, difficulty parameters and seed (the cache key)."""

    family: Literal["cooking", "treasure_hunter"]
    params: dict[str, int]
    seed: int

    @property
    def key(self) -> str:
        params = "".join(f"{k[0]}{v}" for k, v in sorted(self.params.items()))
        return f"{self.family}-{params}-{self.seed}"

    def make_args(self) -> list[str]:
        if self.family == "cooking":
            return [
                "tw-cooking",
                "--recipe",
                str(self.params["recipe"]),
                "--take",
                str(self.params["take"]),
                "--go",
                str(self.params["go"]),
                "--seed",
                str(self.seed),
            ]
        return ["tw-treasure_hunter", "--level", str(self.params["level"]), "--seed", str(self.seed)]


# --------------------------------------------------------------------------- textworld and the game cache


def load_textworld() -> Any:
    """The ``textworld`` module, or a one-line ConfigError naming the extra to install."""
    try:
        import textworld
    except ImportError:
        raise ConfigError(f"textworld: the 'textworld' package is not installed; {_EXTRA_HINT}") from None
    return textworld


def _tw_make() -> str:
    """The ``tw-make`` executable next to this Python (a venv's bin), else on PATH."""
    here = Path(sys.executable).parent / ("tw-make.exe" if os.name == "nt" else "tw-make")
    if here.exists():
        return str(here)
    found = shutil.which("tw-make")
    if found is None:
        raise ConfigError(
            f"textworld: the 'tw-make' command was not found next to {sys.executable} or on PATH; {_EXTRA_HINT}"
        )
    return found


def cache_root() -> Path:
    """``$AGENTMEM_CACHE_DIR/textworld`` or the user cache dir's ``agentmem/textworld``."""
    from agentmem.config import cache_dir

    return cache_dir() / "textworld"


def game_path(spec: GameSpec) -> Path:
    return cache_root() / f"{spec.key}.z8"


def ensure_game(spec: GameSpec) -> Path:
    """The cached game file of ``spec``, generated once with ``tw-make`` under a file lock.

    Generation goes to a private temporary directory and the ``.z8`` is moved
    into place last, so a half-written game is never taken for a cached one.
    """
    path = game_path(spec)
    if path.exists() and path.with_suffix(".json").exists():
        return path
    load_textworld()
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path.with_suffix(".lock")), timeout=_MAKE_TIMEOUT_S * 2):
        if path.exists() and path.with_suffix(".json").exists():
            return path
        with tempfile.TemporaryDirectory(dir=path.parent, prefix=".make-") as tmp:
            out = Path(tmp) / "game.z8"
            cmd = [_tw_make(), *spec.make_args(), "--output", str(out), "-f", "--silent"]
            started = time.perf_counter()
            try:
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_MAKE_TIMEOUT_S, check=False)
            except subprocess.TimeoutExpired:
                raise DataError(
                    f"textworld: tw-make took over {_MAKE_TIMEOUT_S}s for {spec.key}; retry when the machine "
                    "is less busy"
                ) from None
            if proc.returncode != 0 or not out.exists():
                last = (proc.stderr or proc.stdout or "").strip().splitlines()[-1:] or ["no output"]
                raise DataError(
                    f"textworld: tw-make failed for {spec.key} ({last[0][:200]}); check the knobs or the "
                    "textworld install"
                )
            shutil.move(str(out.with_suffix(".json")), path.with_suffix(".json"))
            shutil.move(str(out), path)
            log.info("generated %s in %.1fs", path, time.perf_counter() - started)
    return path


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _is_banner(line: str) -> bool:
    """A line of the ASCII-art title (mostly symbols), not prose."""
    chars = [c for c in line if not c.isspace()]
    return bool(chars) and sum(c.isalpha() for c in chars) < 0.5 * len(chars)


def clean_feedback(text: str, limit: int = 400) -> str:
    """The game's reply without the ASCII-art banner, the prompt line and blank runs, cut to ``limit``."""
    lines = []
    for line in (text or "").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(">") or _is_banner(stripped):
            continue
        lines.append(stripped)
    out = " ".join(lines)
    return out if len(out) <= limit else out[: limit - 3].rstrip() + "..."


_PASSIVE = re.compile(r"^(look|inventory|examine\b.*)$")


def _offered(admissible: list[str], passive: bool) -> list[str]:
    """The commands offered to the agent: the admissible ones, less the passive ones unless ``passive``.

    Why: the step prompt already shows the room and the inventory, and the
    0.5B model, offered ``examine X`` first in an alphabetical enum, examines
    the same object for the whole episode; without them every choice changes
    the world. Passive commands stay when nothing else is admissible.
    """
    commands = [c for c in admissible if c.strip()]
    if passive:
        return commands
    active = [c for c in commands if not _PASSIVE.match(c.strip())]
    return active or commands


def command_tool(commands: list[str]) -> ToolSpec:
    """The one tool the agent gets: ``command``, an enum of the admissible commands."""
    return ToolSpec(
        name="command",
        description="type the next command into the text game",
        parameters={
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": list(commands), "description": "one of the game's valid commands"}
            },
            "required": ["command"],
            "additionalProperties": False,
        },
    )


# --------------------------------------------------------------------------- the environment


class TextWorldEnvironment(Environment):
    """Related text games played in sequence with one memory; normalised score, success, steps."""

    name: ClassVar[str] = "textworld"
    description: ClassVar[str] = (
        "textworld: several episodes of related generated text games (cooking, treasure hunter) with one memory "
        "(normalised score, success rate, steps; prior-episode recall); generated offline with tw-make"
    )
    primary_metric: ClassVar[str] = "score"

    templates: ClassVar[dict[str, str]] = {
        # what the agent is asked each step; short, because it is also the recall query
        "instruction": (
            "Goal: {{ objective }}\n"
            "Game says: {{ feedback }}\n"
            "You carry: {{ inventory }}\n"
            "{% if trail %}Your commands so far: {{ trail | join(', ') }}\n{% endif %}"
            "Choose the next command that moves toward the goal; do not repeat a command that changed nothing."
        ),
        "outcome": (
            "{{ family }} game {{ episode }}: {% if won %}WON{% else %}not won{% endif %} "
            "(score {{ score }}/{{ max_score }}) with commands: {{ trail | join(', ') }}"
        ),
    }

    def __init__(
        self, data: str | Path | None = None, *, seed: int = 0, heldout_seed: int | None = None, **knobs: Any
    ) -> None:
        self.options = parse_knobs("textworld", Options, data, knobs)
        families = [f.strip() for f in self.options.families.replace(";", ",").split(",") if f.strip()]
        bad = [f for f in families if f not in FAMILIES]
        if bad or not families:
            raise ConfigError(
                f"textworld: unknown family {', '.join(bad) or '(none)'}; use {', '.join(FAMILIES)} (comma-separated)"
            )
        if not 0 <= int(seed) < 100:
            raise ConfigError(
                f"textworld: seed must be from 0 to 99, got {seed}; the seed picks disjoint game-seed ranges"
            )
        self.families = families
        self.seed = int(seed)
        # evolution draws this in secret: the test games then come from a range no candidate can name
        self.heldout_seed = None if heldout_seed is None else int(heldout_seed) % _HELDOUT_VALUES

    @property
    def source(self) -> str:
        o = self.options
        return (
            f"generated with tw-make (seed {self.seed}: families {','.join(self.families)}, {o.episodes} "
            "episodes per task, "
            f"max {o.max_steps} steps; cooking recipe {o.recipe} take {o.take} go {o.go}; treasure_hunter "
            f"level {o.level})"
        )

    def _params(self, family: str) -> dict[str, int]:
        o = self.options
        return {"recipe": o.recipe, "take": o.take, "go": o.go} if family == "cooking" else {"level": o.level}

    def _task_count(self, split: str) -> int:
        return self.options.tasks * (2 if split == "train" else 1)

    def _task(self, split: str, index: int) -> Task:
        family = self.families[index % len(self.families)]
        if split == "test" and self.heldout_seed is not None:
            first = _HELDOUT_BASE + self.heldout_seed * _SEED_STRIDE + index * self.options.episodes
        else:
            first = _SPLIT_BASE[split] + self.seed * _SEED_STRIDE + index * self.options.episodes
        specs = [
            GameSpec(family=family, params=self._params(family), seed=first + k) for k in range(self.options.episodes)
        ]
        task_id = f"{split}-{specs[0].key}"
        questions = [
            Question(
                id=f"{task_id}/e{k + 1}",
                text=f"play {spec.key}",
                answer="",  # the walkthrough, known once the game is generated (see run_task)
                category=family,
                metadata={"game": spec.model_dump(), "episode": k + 1},
            )
            for k, spec in enumerate(specs)
        ]
        return Task(id=task_id, questions=questions, metadata={"family": family, "split": split})

    def split_seeds(self) -> dict[str, list[int]]:
        """The game seeds of each split (disjoint by construction)."""
        return {
            split: [
                q.metadata["game"]["seed"]
                for t in (self._task(split, i) for i in range(self._task_count(split)))
                for q in t.questions
            ]
            for split in ("train", "validation", "test")
        }

    def tasks(self, split: Split = "validation", limit: int | None = None) -> list[Task]:
        check_split("textworld", split, limit, unit="episodes")
        splits = ("train", "validation", "test") if split == "all" else (split,)
        out: list[Task] = []
        remaining = limit
        for name in splits:
            for i in range(self._task_count(name)):
                if remaining is not None and remaining <= 0:
                    return out
                task = self._task(name, i)
                if remaining is not None:
                    task.questions = task.questions[:remaining]
                    remaining -= len(task.questions)
                out.append(task)
        return out

    # ------------------------------------------------------------------ playing

    def run_task(self, task: Task, agent: AgentLike) -> TaskResult:
        act = require_act("textworld", agent)
        textworld = load_textworld()
        started = time.perf_counter()
        results: list[QuestionResult] = []
        earlier_ids: set[str] = set()
        for question in task.questions:
            spec = GameSpec(**question.metadata["game"])
            path = ensure_game(spec)
            result, ids = self._play(textworld, path, spec, question, act, agent, earlier_ids)
            earlier_ids |= ids
            results.append(result)
        return TaskResult(task_id=task.id, questions=results, seconds=round(time.perf_counter() - started, 3))

    def _play(
        self,
        textworld: Any,
        path: Path,
        spec: GameSpec,
        question: Question,
        act: Any,
        agent: AgentLike,
        earlier_ids: set[str],
    ) -> tuple[QuestionResult, set[str]]:
        """One episode: step until won, lost or ``max_steps``; feed memory; score."""
        o = self.options
        infos = textworld.EnvInfos(
            admissible_commands=True,
            description=True,
            inventory=True,
            objective=True,
            max_score=True,
            won=True,
            lost=True,
            policy_commands=True,
        )
        with warnings.catch_warnings():  # jericho warns that score detection is off; textworld scores itself
            warnings.simplefilter("ignore")
            game = textworld.start(str(path), request_infos=infos)
        episode_no = int(question.metadata["episode"])
        session = f"{question.id}"
        meta = {"tw_episode": question.id, "tw_family": spec.family, "tw_game": spec.key}
        events: list[Event] = []
        trail: list[str] = []
        steps = invalid = nonempty = prior_hits = 0
        recalled_text = ""
        try:
            gs = game.reset()
            walkthrough = list(gs.policy_commands or [])
            objective = " ".join(str(gs.objective or "").split())
            max_score = float(gs.max_score or 1) or 1.0
            feedback = clean_feedback(gs.description or gs.feedback, o.feedback_chars)
            first = Event.observation(feedback, speaker="game", session_id=session, metadata=dict(meta))
            agent.observe(first)
            events.append(first)
            done = False
            while not done and steps < o.max_steps:
                commands = _offered(gs.admissible_commands or [], o.passive_commands)
                if not commands:
                    break
                instruction = _JINJA.from_string(self.templates["instruction"]).render(
                    objective=objective,
                    feedback=feedback,
                    trail=trail[-6:],
                    inventory=clean_feedback(gs.inventory, 160) or "nothing",
                )
                action = act(
                    instruction,
                    [command_tool(commands)],
                    context={"category": spec.family, "episode": episode_no, "step": steps + 1},
                )
                steps += 1
                items = action.recall.items
                if items:
                    nonempty += 1
                    recalled_text = action.recall.text()[:_RECALLED_TEXT_CHARS]
                if any(
                    set(i.event_ids) & earlier_ids or (i.metadata.get("tw_episode") not in (None, question.id))
                    for i in items
                ):
                    prior_hits += 1
                command = str(action.arguments.get("command", "")) if action.tool == "command" else ""
                if command not in commands:
                    invalid += 1
                    trail.append(f"(no valid command: {(action.error or command)[:60]})")
                    continue
                trail.append(command)
                gs, _reward, done = game.step(command)
                feedback = clean_feedback(gs.feedback, o.feedback_chars)
                for event in (
                    Event.tool_call(
                        "command",
                        {"command": command},
                        content=command,
                        speaker="player",
                        session_id=session,
                        metadata=dict(meta),
                    ),
                    Event.observation(feedback, speaker="game", session_id=session, metadata=dict(meta)),
                ):
                    agent.observe(event)
                    events.append(event)
            won, lost = bool(gs.won), bool(gs.lost)
            score = float(gs.score or 0)
        finally:
            game.close()
        norm = max(0.0, min(1.0, score / max_score))
        played = [c for c in trail if not c.startswith("(")]
        summary = _JINJA.from_string(self.templates["outcome"]).render(
            family=spec.family.replace("_", " "),
            episode=episode_no,
            won=won,
            score=f"{score:g}",
            max_score=f"{max_score:g}",
            trail=played or ["(none)"],
        )
        outcome = Event.outcome(summary, reward=norm, session_id=session, metadata=dict(meta))
        agent.observe(outcome)
        events.append(outcome)
        agent.end_session(
            Episode(
                id=session,
                task=objective,
                events=events,
                outcome=summary,
                reward=norm,
                success=won,
                metadata={**meta, "lost": lost, "steps": steps},
            )
        )
        metrics = {
            "success": float(won),
            "lost": float(lost),
            "score": norm,
            "steps": float(steps),
            "invalid": invalid / steps if steps else 0.0,
            "recall_nonempty": nonempty / steps if steps else 0.0,
            "episode": float(episode_no),
        }
        if episode_no > 1 and steps:
            metrics["prior_recall"] = prior_hits / steps
        log.debug("%s won=%s score=%s steps=%s trail=%s", question.id, won, norm, steps, trail)
        result = QuestionResult(
            question_id=question.id,
            category=spec.family,
            question=objective,
            reference=" > ".join(walkthrough),
            prediction=" > ".join(trail) or "(no steps)",
            metrics=metrics,
            recalled=recalled_text,
        )
        return result, {e.id for e in events}

    def aggregate(self, results: list[TaskResult]) -> dict[str, float]:
        questions = [q for r in results for q in r.questions]
        out: dict[str, float] = {"questions": float(len(questions))}
        if not questions:
            return out
        out["success_rate"] = _mean(q.metrics.get("success", 0.0) for q in questions)
        for key in ("score", "steps", "invalid", "recall_nonempty"):
            out[key] = _mean(q.metrics.get(key, 0.0) for q in questions)
        out["lost_rate"] = _mean(q.metrics.get("lost", 0.0) for q in questions)
        prior = [q.metrics["prior_recall"] for q in questions if "prior_recall" in q.metrics]
        if prior:
            out["prior_recall"] = _mean(prior)
        for family in FAMILIES:
            group = [q for q in questions if q.category == family]
            if group:
                out[f"success_rate/{family}"] = _mean(q.metrics.get("success", 0.0) for q in group)
                out[f"score/{family}"] = _mean(q.metrics.get("score", 0.0) for q in group)
                out[f"steps/{family}"] = _mean(q.metrics.get("steps", 0.0) for q in group)
                out[f"n/{family}"] = float(len(group))
        for k in sorted({int(q.metrics.get("episode", 1)) for q in questions}):
            group = [q for q in questions if int(q.metrics.get("episode", 1)) == k]
            out[f"score/episode_{k}"] = _mean(q.metrics.get("score", 0.0) for q in group)
            out[f"success_rate/episode_{k}"] = _mean(q.metrics.get("success", 0.0) for q in group)
        return out


def _mean(values: Any) -> float:
    items = list(values)
    return float(sum(items) / len(items)) if items else 0.0
