"""Generate ``fixture_longmemeval.json``: a small file in LongMemEval's exact format, for tests and offline runs.

It is NOT the benchmark: 14 hand-written questions (two of each of the six
types, two abstention questions), each with its own short history of dated
user-assistant sessions (evidence sessions, with ``has_answer`` on the
evidence turns, mixed with filler sessions of everyday assistant chat),
sorted by date as in ``longmemeval_s``. Everything random (filler choice,
ids, dates) comes from one seed, so the file is reproducible::

    python -m agentmem_environments.longmemeval.fixture          # rewrite the committed file
    python -m agentmem_environments.longmemeval.fixture --check  # exit 1 if it differs
"""

from __future__ import annotations

import json
import random
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from agentmem_environments.fixture_cli import fixture_main

OUT = Path(__file__).with_name("fixture_longmemeval.json")
SEED = 16

Turn = tuple[str, str, bool]  # role, content, has_answer


class Scenario(TypedDict):
    """One question of the fixture: a row of :data:`SCENARIOS` (a new question, of any type, is one more row)."""

    type: str  # LongMemEval's question_type
    question: str
    answer: str | int
    sessions: list[tuple[int, list[Turn]]]  # evidence sessions: (day offset from the history's start, turns)
    abstention: NotRequired[bool]  # the question asks about something never said (the id ends in "_abs")


FILLERS: list[list[tuple[str, str]]] = [
    [
        ("user", "How do I convert a temperature from Celsius to Fahrenheit?"),
        ("assistant", "Multiply the Celsius value by 9/5 and add 32. For example, 20 C is 68 F."),
    ],
    [
        ("user", "Can you explain what a mutual fund is in simple terms?"),
        (
            "assistant",
            "A mutual fund pools money from many investors and a manager invests it in stocks, bonds or both.",
        ),
    ],
    [
        ("user", "What is a good way to keep basil fresh?"),
        (
            "assistant",
            "Trim the stems and keep the basil in a glass of water on the counter, loosely covered, away from "
            "the fridge.",
        ),
    ],
    [
        ("user", "Give me three tips for writing a clear email."),
        (
            "assistant",
            "Put the request in the first line, keep paragraphs short, and end with the exact next step you expect.",
        ),
    ],
    [
        ("user", "Why is the sky blue?"),
        (
            "assistant",
            "Air molecules scatter short blue wavelengths of sunlight much more than red ones, so blue light "
            "reaches us from all directions.",
        ),
    ],
    [
        ("user", "What is the difference between a list and a tuple in Python?"),
        (
            "assistant",
            "A list can be changed after it is created; a tuple cannot, which also makes tuples usable as "
            "dictionary keys.",
        ),
    ],
    [
        ("user", "How long should I steep green tea?"),
        ("assistant", "Two to three minutes in water around 80 C; longer or hotter makes it bitter."),
    ],
    [
        ("user", "Summarise the plot of Romeo and Juliet in two sentences."),
        (
            "assistant",
            "Two young lovers from feuding families in Verona marry in secret. A chain of misunderstandings "
            "ends with both of them dead, which reconciles their families.",
        ),
    ],
    [
        ("user", "What stretches help with a stiff neck?"),
        (
            "assistant",
            "Slow chin tucks, gentle side tilts and shoulder rolls, each held for about twenty seconds, usually help.",
        ),
    ],
    [
        ("user", "How many planets are in the solar system?"),
        ("assistant", "Eight: Mercury, Venus, Earth, Mars, Jupiter, Saturn, Uranus and Neptune."),
    ],
]

# The table: build() turns each row into one instance, adding filler sessions, ids and dates from the seed.
SCENARIOS: list[Scenario] = [
    {
        "type": "single-session-user",
        "question": "What degree did I graduate with?",
        "answer": "Business Administration",
        "sessions": [
            (
                3,
                [
                    ("user", "I finally graduated last week with a degree in Business Administration!", True),
                    ("assistant", "Congratulations! That is a big achievement.", False),
                    ("user", "Thanks. Now I need help writing my first resume.", False),
                    ("assistant", "Happy to help. Start with a short summary of your goals.", False),
                ],
            )
        ],
    },
    {
        "type": "single-session-user",
        "question": "What is the name of my cat?",
        "answer": "Pixel",
        "sessions": [
            (
                5,
                [
                    ("user", "My cat Pixel keeps scratching the sofa. Any ideas?", True),
                    (
                        "assistant",
                        "Give Pixel a tall scratching post near the sofa and reward her for using it.",
                        False,
                    ),
                ],
            )
        ],
    },
    {
        "type": "single-session-assistant",
        "question": "Which book did you recommend to me for fantasy reading?",
        "answer": "The Name of the Wind",
        "sessions": [
            (
                2,
                [
                    ("user", "Can you recommend a fantasy novel for a long flight?", False),
                    (
                        "assistant",
                        "I recommend The Name of the Wind by Patrick Rothfuss: it is long and hard to put down.",
                        True,
                    ),
                    ("user", "Great, I will buy it at the airport.", False),
                ],
            )
        ],
    },
    {
        "type": "single-session-assistant",
        "question": "How many grams of flour did you say my pancake recipe needs?",
        "answer": 200,
        "sessions": [
            (
                4,
                [
                    ("user", "I want to make pancakes for four people. What do I need?", False),
                    ("assistant", "Use 200 grams of flour, two eggs, 300 ml of milk and a pinch of salt.", True),
                    ("user", "Perfect, thank you.", False),
                ],
            )
        ],
    },
    {
        "type": "single-session-preference",
        "question": "Can you suggest a dish for me to cook tonight?",
        "answer": "The user would prefer a vegetarian Thai dish, such as a vegetable green curry or tofu pad thai, "
        "since they are vegetarian and love Thai food.",
        "sessions": [
            (
                6,
                [
                    ("user", "I have been vegetarian for years and Thai food is my absolute favourite.", True),
                    ("assistant", "Thai cooking has many great vegetarian dishes.", False),
                ],
            )
        ],
    },
    {
        "type": "single-session-preference",
        "question": "Any ideas for a weekend trip?",
        "answer": "The user would prefer a quiet mountain hiking trip away from crowds, for example a less-known trail "
        "or a cabin in the mountains.",
        "sessions": [
            (
                1,
                [
                    ("user", "I love hiking in the mountains but I really can't stand crowded places.", True),
                    ("assistant", "Early starts and lesser-known trails are a good way to avoid the crowds.", False),
                ],
            )
        ],
    },
    {
        "type": "temporal-reasoning",
        "question": "How many days passed between the day I started learning the guitar and the day I played "
        "my first full song?",
        "answer": "9 days",
        "sessions": [
            (
                2,
                [
                    ("user", "I started learning the guitar today! My fingers already hurt.", True),
                    ("assistant", "That is normal at the start; short daily practice helps.", False),
                ],
            ),
            (
                11,
                [
                    ("user", "Today I played my first full song on the guitar, Wonderwall!", True),
                    ("assistant", "Well done, that is a real milestone.", False),
                ],
            ),
        ],
    },
    {
        "type": "temporal-reasoning",
        "question": "Which did I do first, visit the aquarium or go to the jazz concert?",
        "answer": "the aquarium",
        "sessions": [
            (
                3,
                [
                    ("user", "I visited the city aquarium today and saw the octopus exhibit.", True),
                    ("assistant", "Octopuses are fascinating; did you see it change colour?", False),
                ],
            ),
            (
                8,
                [
                    ("user", "Last night I went to a jazz concert downtown. The saxophonist was amazing.", True),
                    ("assistant", "Sounds like a wonderful evening.", False),
                ],
            ),
        ],
    },
    {
        "type": "knowledge-update",
        "question": "Which city do I live in now?",
        "answer": "Seattle",
        "sessions": [
            (
                1,
                [
                    ("user", "Living in Denver means I get a lot of sun, which I love.", True),
                    ("assistant", "Denver does have around 300 sunny days a year.", False),
                ],
            ),
            (
                9,
                [
                    ("user", "I just moved from Denver to Seattle for my new job, so I need rain gear.", True),
                    ("assistant", "A good waterproof jacket is the first thing to buy in Seattle.", False),
                ],
            ),
        ],
    },
    {
        "type": "knowledge-update",
        "question": "What is my personal best time for a 5k run?",
        "answer": "25 minutes",
        "sessions": [
            (
                2,
                [
                    ("user", "My personal best for a 5k is 27 minutes. I want to get faster.", True),
                    ("assistant", "Interval training once a week will help.", False),
                ],
            ),
            (
                10,
                [
                    ("user", "I set a new personal best at the 5k today: 25 minutes!", True),
                    ("assistant", "Two minutes faster, great progress.", False),
                ],
            ),
        ],
    },
    {
        "type": "multi-session",
        "question": "How many pets do I have in total?",
        "answer": 3,
        "sessions": [
            (
                2,
                [
                    ("user", "We adopted a dog from the shelter this weekend, a beagle.", True),
                    ("assistant", "Beagles are friendly and energetic.", False),
                ],
            ),
            (
                7,
                [
                    ("user", "I also bought two goldfish for my desk.", True),
                    ("assistant", "Goldfish need more space than people think.", False),
                ],
            ),
        ],
    },
    {
        "type": "multi-session",
        "question": "How much did I spend on the jacket and the boots in total?",
        "answer": "$200",
        "sessions": [
            (
                3,
                [
                    ("user", "I bought a blue rain jacket for $80 today.", True),
                    ("assistant", "Nice, blue jackets go with everything.", False),
                ],
            ),
            (
                6,
                [
                    ("user", "I got new hiking boots for $120.", True),
                    ("assistant", "Good boots are worth the money.", False),
                ],
            ),
        ],
    },
    {
        "type": "single-session-user",
        "question": "What is the name of my hamster?",
        "abstention": True,
        "answer": "The user never mentioned a hamster; they only mentioned a dog named Rex.",
        "sessions": [
            (
                4,
                [
                    ("user", "My dog Rex chewed my shoes again.", True),
                    ("assistant", "Chew toys and more exercise usually help with that.", False),
                ],
            )
        ],
    },
    {
        "type": "multi-session",
        "question": "How much did I spend on the hat and the scarf in total?",
        "abstention": True,
        "answer": "The user mentioned buying a scarf for $25 but never mentioned buying a hat.",
        "sessions": [
            (
                5,
                [
                    ("user", "I bought a warm wool scarf for $25.", True),
                    ("assistant", "Wool scarves are great for winter.", False),
                ],
            )
        ],
    },
]


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789abcdef") for _ in range(n))


def _date(when: datetime) -> str:
    return when.strftime("%Y/%m/%d (%a) %H:%M")


def build(seed: int = SEED) -> list[dict[str, Any]]:
    """The fixture's instances (deterministic for a seed)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for sc in SCENARIOS:
        qid = _hex(rng, 8) + ("_abs" if sc.get("abstention") else "")
        start = datetime(2023, 3, 1, 9, 0) + timedelta(days=rng.randint(0, 120))
        sessions: list[tuple[datetime, str, list[dict[str, Any]], bool]] = []
        for k, (offset, turns) in enumerate(sc["sessions"]):
            when = start + timedelta(days=offset, hours=rng.randint(0, 10), minutes=rng.randint(0, 59))
            body = [{"role": r, "content": c, **({"has_answer": True} if h else {})} for r, c, h in turns]
            sessions.append((when, f"answer_{_hex(rng, 8)}_{k + 1}", body, True))
        for filler in rng.sample(FILLERS, 3):
            when = start + timedelta(days=rng.randint(0, 12), hours=rng.randint(0, 10), minutes=rng.randint(0, 59))
            sid = f"sharegpt_{_hex(rng, 7)}_0" if rng.random() < 0.5 else f"ultrachat_{rng.randint(100000, 999999)}"
            sessions.append((when, sid, [{"role": r, "content": c} for r, c in filler], False))
        sessions.sort(key=lambda s: s[0])
        last = sessions[-1][0]
        out.append(
            {
                "question_id": qid,
                "question_type": sc["type"],
                "question": sc["question"],
                "answer": sc["answer"],
                "question_date": _date(last + timedelta(days=rng.randint(1, 5), hours=rng.randint(0, 8))),
                "haystack_session_ids": [s[1] for s in sessions],
                "haystack_dates": [_date(s[0]) for s in sessions],
                "haystack_sessions": [s[2] for s in sessions],
                "answer_session_ids": [s[1] for s in sessions if s[3]],
            }
        )
    return out


def render(seed: int = SEED) -> str:
    return json.dumps(build(seed), indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    return fixture_main(argv, doc=__doc__ or "", out=OUT, render=render, count=lambda: f"{len(build())} instances")


if __name__ == "__main__":
    sys.exit(main())
