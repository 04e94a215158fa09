"""Seeded generation of toolprefs users: sessions of chatter with preferences, then tool requests.

One generated user is one :class:`~agentmem.environment.Task`. The user talks
with the assistant over ``sessions`` sessions. Spread over them, among
``distractors`` chatter turns per session, the user states one preference for
every parameter a later tool request will need; ``corrections`` of those
preferences are changed again in a later session (the later statement wins);
``state_tasks`` of the requests refer back to a task the user described and
broke off ("I have to fly to Oslo on 2024-05-02... my phone is ringing"), so
that even their stated values have to come from memory. The assistant answers
every user turn with a short acknowledgement that repeats nothing.

Every event carries ``metadata["dia_id"]`` (``"D<session>:<turn>"``, LoCoMo's
form) and ``metadata["date_time"]``; every question carries the expected call
(``metadata["tool"]``, ``metadata["arguments"]``), which arguments only
memory can supply (``metadata["memory_params"]``) and the turn that grounds each
(``metadata["grounding"]``), the superseded values of
corrected ones (``metadata["stale"]``) and the turns that stated them
(``metadata["stale_grounding"]``), and as ``evidence`` the dia_ids of the
statements that ground them.

Generation is pure Python with one ``random.Random`` per user, seeded by the
environment's seed and the user's index: the same options always give the
same users, byte for byte.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agentmem.environment import Question, Session, Task
from agentmem.types import Event
from agentmem_environments.toolprefs.domains import DISTRACTORS, DOMAINS, REPLIES, SLOTS, TOOLS, ToolDef

__all__ = ["GeneratorOptions", "generate_user", "generate_users", "render_call"]

_START = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)


class GeneratorOptions(BaseModel):
    """The knobs of the generator; the bounds keep episodes small enough to run and big enough to test."""

    model_config = ConfigDict(extra="forbid")

    users: int = Field(40, ge=3, le=1000, description="size of the user pool that the splits divide")
    sessions: int = Field(3, ge=1, le=12, description="conversation sessions per user before the requests")
    distractors: int = Field(3, ge=0, le=40, description="chatter turns per session that state no preference")
    corrections: int = Field(
        2, ge=0, le=8, description="preferences changed in a later session (capped by how many the user has)"
    )
    questions: int = Field(5, ge=1, le=12, description="tool requests per user")
    domains: int = Field(3, ge=1, le=len(DOMAINS), description="tool domains per user")
    state_tasks: int = Field(
        1, ge=0, le=12, description="requests whose stated values come from an interrupted earlier session"
    )


class _Statement(BaseModel):
    """A user turn to place: what it says and what it grounds."""

    text: str
    session: int
    grounds: list[str] = Field(
        default_factory=list
    )  # "pref:<slot>", "stale:<slot>" (superseded) or "state:<question index>"
    order: int = 0  # within one session, a correction goes after what it corrects
    dia_id: str = ""


def _date(rng: random.Random, base: datetime) -> str:
    return (base + timedelta(days=rng.randint(3, 40))).strftime("%Y-%m-%d")


def _given_values(tool: ToolDef, rng: random.Random, after: datetime) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, param in tool.given.items():
        if param.kind == "date":
            values[name] = _date(rng, after)
        elif param.kind == "time":
            values[name] = f"{rng.choice((12, 13, 18, 19, 20, 21)):02d}:{rng.choice((0, 30)):02d}"
        else:
            values[name] = rng.choice(param.pool)
    return values


def _locomo_date(when: datetime) -> str:
    """A session date as LoCoMo writes them ("2:00 pm on 17 March, 2024"): unlike the requests'
    ISO dates, so that a model filling a date copies the request's, not a memory's timestamp."""
    hour = when.hour % 12 or 12
    return (
        f"{hour}:{when.minute:02d} {'am' if when.hour < 12 else 'pm'} on {when.day} {when.strftime('%B')}, {when.year}"
    )


def render_call(tool: str, arguments: dict[str, Any]) -> str:
    """A call as one readable line: ``book_flight(destination="Oslo", seat="window")``."""
    args = ", ".join(f"{k}={json.dumps(v)}" for k, v in arguments.items())
    return f"{tool}({args})"


def generate_user(index: int, options: GeneratorOptions, seed: int = 0) -> Task:
    """User number ``index`` of the pool of ``seed``: always the same for the same arguments."""
    rng = random.Random(f"toolprefs:{seed}:{index}")
    task_id = f"user-{index:03d}"
    n_sessions = options.sessions

    # what the user will ask for: tools of a few domains, every tool once before any repeats
    domains = rng.sample(DOMAINS, k=options.domains)
    pool = [t for t in TOOLS.values() if t.domain in domains]
    chosen: list[ToolDef] = []
    while len(chosen) < options.questions:
        batch = pool[:]
        rng.shuffle(batch)
        chosen.extend(batch[: options.questions - len(chosen)])

    # the preferences those requests need, and which of them change later
    slots = list(dict.fromkeys(s for t in chosen for s in t.prefs))
    initial = {s: rng.choice(SLOTS[s].values) for s in slots}
    corrected = rng.sample(slots, k=min(options.corrections, len(slots)))
    final = dict(initial)
    for s in corrected:
        final[s] = rng.choice([v for v in SLOTS[s].values if v != initial[s]])

    # session dates; requests come after the last one
    dates = [_START + timedelta(days=rng.randint(0, 6))]
    for _ in range(n_sessions - 1):
        dates.append(dates[-1] + timedelta(days=rng.randint(2, 9), hours=rng.randint(-2, 8)))
    last = dates[-1]

    # requests: some refer back to a task stated earlier
    # (only tools asked for once: "the trip I mentioned" must name one trip)
    once = [i for i, t in enumerate(chosen) if sum(1 for u in chosen if u.name == t.name) == 1]
    state_idx = set(rng.sample(once, k=min(options.state_tasks, len(once))))
    givens = [_given_values(t, rng, last) for t in chosen]

    # statements, each placed in a session
    statements: list[_Statement] = []
    for s in slots:
        slot = SLOTS[s]
        if s in corrected and n_sessions > 1:
            first_session = rng.randint(1, n_sessions - 1)
            fix_session = rng.randint(first_session + 1, n_sessions)
        else:
            first_session = rng.randint(1, n_sessions)
            fix_session = first_session
        text = slot.say(rng.choice(slot.statements), initial[s])
        statements.append(
            _Statement(text=text, session=first_session, grounds=[f"stale:{s}"] if s in corrected else [f"pref:{s}"])
        )
        if s in corrected:
            text = slot.say(rng.choice(slot.corrections), final[s], initial[s])
            statements.append(_Statement(text=text, session=fix_session, grounds=[f"pref:{s}"], order=1))
    for i in sorted(state_idx):
        text = rng.choice(chosen[i].state_statements).format(**givens[i])
        statements.append(_Statement(text=text, session=rng.randint(1, n_sessions), grounds=[f"state:{i}"]))

    # sessions: statements and chatter shuffled; every user turn gets a short reply
    distractor_pool = list(DISTRACTORS)
    rng.shuffle(distractor_pool)
    sessions: list[Session] = []
    grounding: dict[str, str] = {}
    for number in range(1, n_sessions + 1):
        turns: list[_Statement | str] = [st for st in statements if st.session == number]
        for _ in range(options.distractors):
            if not distractor_pool:
                distractor_pool = list(DISTRACTORS)
                rng.shuffle(distractor_pool)
            turns.append(distractor_pool.pop())
        rng.shuffle(turns)
        if n_sessions == 1:  # a correction in the same session goes after what it corrects
            turns.sort(key=lambda t: t.order if isinstance(t, _Statement) else 0)
        when = dates[number - 1]
        stamp = _locomo_date(when)
        events: list[Event] = []
        session_id = f"{task_id}:S{number}"
        for turn in turns:
            text = turn.text if isinstance(turn, _Statement) else turn
            for speaker, content in (("user", text), ("assistant", rng.choice(REPLIES))):
                dia_id = f"D{number}:{len(events) + 1}"
                if speaker == "user" and isinstance(turn, _Statement):
                    for ground in turn.grounds:
                        grounding[ground] = dia_id
                events.append(
                    Event(
                        id=f"{task_id}:{dia_id}",
                        kind="message",
                        content=content,
                        speaker=speaker,
                        session_id=session_id,
                        timestamp=when + timedelta(minutes=len(events)),
                        when=stamp,
                        metadata={"dia_id": dia_id, "date_time": stamp},
                    )
                )
        sessions.append(Session(id=session_id, when=stamp, events=events))

    # the questions
    questions: list[Question] = []
    for i, tool in enumerate(chosen):
        given = givens[i]
        arguments = {**given, **{s: final[s] for s in tool.prefs}}
        sources = {s: grounding[f"pref:{s}"] for s in tool.prefs}
        if i in state_idx:
            text = rng.choice(tool.state_requests)
            memory_params = list(arguments)
            sources = {**{g: grounding[f"state:{i}"] for g in given}, **sources}
        else:
            text = rng.choice(tool.requests).format(**given)
            memory_params = list(tool.prefs)
        evidence = list(sources.values())
        stale = {s: initial[s] for s in tool.prefs if s in corrected}
        questions.append(
            Question(
                id=f"{task_id}:q{i}",
                text=text,
                answer=render_call(tool.name, arguments),
                category=tool.domain,
                evidence=list(dict.fromkeys(evidence)),
                metadata={
                    "tool": tool.name,
                    "arguments": arguments,
                    "memory_params": memory_params,
                    "grounding": sources,
                    "stale": stale,
                    # the turns stating the superseded values, for the LLM-free proxy (never shown to memory)
                    "stale_grounding": {p: grounding[f"stale:{p}"] for p in stale},
                    "tools": [t.name for t in TOOLS.values() if t.domain == tool.domain],
                    "state_task": i in state_idx,
                },
            )
        )
    return Task(
        id=task_id,
        sessions=sessions,
        questions=questions,
        metadata={
            "seed": seed,
            "domains": domains,
            "preferences": final,
            "superseded": {s: initial[s] for s in corrected},
            "now": _locomo_date(last),
        },
    )


def generate_users(options: GeneratorOptions, seed: int = 0) -> list[Task]:
    """The whole pool of users, in index order."""
    return [generate_user(i, options, seed) for i in range(options.users)]
