"""Generate ``fixture_memoryagentbench.json``: small rows in MemoryAgentBench's exact row format, for tests and offline
runs.

NOT the benchmark. Three rows per competency, each a context of a few
thousand characters (the benchmark's loader rejects contexts under 2,000)
with two or three questions, in the sub-dataset families the benchmark uses:

* AR: ``ruler_qa`` (documents with facts to look up), ``eventqa`` (a story;
  which event comes next), ``longmemeval`` (a chat history);
* TTL: two ``icl`` rows (texts with numeric intent labels; label new texts),
  one ``recsys`` row (recommendation dialogues; an ``entity2id`` map is
  written beside the splits, as the benchmark ships ``entity2id.json``);
* LRU: two ``infbench_sum`` rows (a story to summarise, with key points), one
  ``detective_qa`` row (a mystery; name the culprit among three);
* CR: three ``factconsolidation`` rows (numbered facts, later ones
  overriding earlier ones; single- and multi-hop questions).

Deterministic for the seed::

    python -m agentmem_environments.memoryagentbench.fixture          # rewrite the committed file
    python -m agentmem_environments.memoryagentbench.fixture --check  # exit 1 if it differs
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path
from typing import Any

from agentmem_environments.fixture_cli import fixture_main

OUT = Path(__file__).with_name("fixture_memoryagentbench.json")
SEED = 16

PEOPLE = [
    "Amara Osei",
    "Bruno Keller",
    "Chen Wei",
    "Dalia Haddad",
    "Emil Novak",
    "Farah Siddiqui",
    "Goran Petrov",
    "Hana Sato",
    "Ivo Marin",
    "Jonas Berg",
    "Kira Lund",
    "Luca Ferri",
    "Mina Park",
    "Nils Ek",
    "Olga Ivanova",
]
PLACES = [
    "Velmora",
    "Stroud Harbor",
    "Quillon",
    "Ashgrove",
    "Tarvik",
    "Lornea",
    "Pellin Bay",
    "Dunmere",
    "Orsk",
    "Caldwick",
    "Nereth",
    "Isola Verde",
]
THINGS = [
    "lighthouse",
    "observatory",
    "bakery",
    "museum",
    "shipyard",
    "library",
    "orchard",
    "bridge",
    "theatre",
    "mill",
]
FILLER = [
    "The weather that season was mild, and most evenings ended with light rain over the hills.",
    "Visitors often remarked on the narrow streets and the smell of bread in the mornings.",
    "The local council met every second Tuesday to discuss roads, schools and the harbour.",
    "Trade along the coast had grown steadily for a decade, mostly in timber, wool and salt.",
    "Children in the town learned to swim early, because the river ran right through its centre.",
    "An old stone wall still marked where the market had stood before the great fire.",
    "Every spring a festival filled the square with music, lanterns and long wooden tables.",
    "The railway reached the valley late, and many families still travelled by cart.",
]


def _pad(rng: random.Random, lines: list[str], min_chars: int) -> str:
    """Interleave filler sentences until the text is long enough (keeps the facts in order)."""
    out: list[str] = []
    for line in lines:
        out.append(line)
        out.append(rng.choice(FILLER))
    while len(" ".join(out)) < min_chars:
        out.insert(rng.randrange(len(out) + 1), rng.choice(FILLER))
    return "\n".join(out)


def _row(context: str, questions: list[str], answers: list[list[str]], source: str, **meta: Any) -> dict[str, Any]:
    n = len(questions)
    metadata = {
        "demo": "",
        "haystack_sessions": [],
        "keypoints": [],
        "previous_events": [],
        "qa_pair_ids": [f"{source}_{i}" for i in range(n)],
        "question_dates": [],
        "question_ids": [str(i) for i in range(n)],
        "question_types": [],
        "source": source,
    }
    metadata.update(meta)
    return {"context": context, "questions": questions, "answers": answers, "metadata": metadata}


def _ruler(rng: random.Random) -> dict[str, Any]:
    people = rng.sample(PEOPLE, 6)
    places = rng.sample(PLACES, 6)
    things = rng.sample(THINGS, 6)
    years = [rng.randint(1850, 1990) for _ in range(6)]
    docs = [
        f"Document {i + 1}: The {things[i]} of {places[i]}. The {things[i]} of {places[i]} was founded in {years[i]} "
        f"by {people[i]}, who ran it for many years."
        for i in range(6)
    ]
    picks = rng.sample(range(6), 3)
    return _row(
        _pad(rng, docs, 2600),
        [
            f"Who founded the {things[i]} of {places[i]}?"
            if k % 2 == 0
            else f"In which year was the {things[i]} of {places[i]} founded?"
            for k, i in enumerate(picks)
        ],
        [[people[i]] if k % 2 == 0 else [str(years[i])] for k, i in enumerate(picks)],
        "ruler_qa_fixture",
    )


def _eventqa(rng: random.Random) -> dict[str, Any]:
    hero, friend = rng.sample(PEOPLE, 2)
    town = rng.choice(PLACES)
    events = [
        f"{hero} left {town} at dawn with a map and a lantern.",
        f"{hero} crossed the frozen river and lost the lantern in the ice.",
        f"{hero} met {friend} at an inn and traded the map for a horse.",
        f"{friend} warned {hero} about the wolves in the pass.",
        f"{hero} rode through the pass at night and reached the monastery.",
        f"The monks gave {hero} a sealed letter for the queen.",
        f"{hero} delivered the letter and was made captain of the guard.",
    ]
    qs, ans = [], []
    for cut in (2, 4, 5):
        before = " ".join(events[:cut])
        qs.append(f"So far: {before} What happens next?")
        ans.append([events[cut].rstrip(".")])
    return _row(_pad(rng, events, 2600), qs, ans, "eventqa_fixture", previous_events=events[:5])


def _longmemeval_chat(rng: random.Random) -> dict[str, Any]:
    pet, city, dish = (
        rng.choice(["Biscuit", "Luna", "Mochi"]),
        rng.choice(PLACES),
        rng.choice(["lentil soup", "paella", "ramen"]),
    )
    turns = [
        f"user: I adopted a puppy and named him {pet}.",
        "assistant: Congratulations! Puppies need lots of short walks.",
        f"user: Next month I move to {city} for work.",
        "assistant: Moving is a big step; make a checklist early.",
        f"user: My favourite thing to cook on Sundays is {dish}.",
        "assistant: That sounds delicious.",
    ]
    return _row(
        _pad(rng, turns, 2400),
        ["What is the name of my puppy?", "Which city am I moving to?", "What do I like to cook on Sundays?"],
        [[pet], [city], [dish]],
        "longmemeval_fixture",
        question_types=["single-session-user"] * 3,
    )


INTENTS = {
    0: [
        "I lost my card yesterday",
        "my card was stolen at the station",
        "I can't find my debit card anywhere",
        "please block my card, it is gone",
        "someone took my wallet with my card",
    ],
    1: [
        "what is my account balance",
        "how much money do I have left",
        "show me my balance please",
        "check the funds in my account",
        "tell me my current balance",
    ],
    2: [
        "send 50 euros to my sister",
        "transfer money to my savings",
        "I want to wire money abroad",
        "move 100 dollars to another account",
        "how do I pay my friend back",
    ],
    3: [
        "what is the dollar to euro rate",
        "how many yen for one pound",
        "exchange rate for swiss francs",
        "what's today's conversion rate to pesos",
        "is the euro strong against the dollar today",
    ],
}
HELD_OUT = {
    0: "my card has disappeared",
    1: "how much is in my account",
    2: "pay 20 pounds to my landlord",
    3: "current rate from euros to dollars",
}


def _icl(rng: random.Random, source: str, offset: int) -> dict[str, Any]:
    labels = {k: (k + offset) % 4 + 10 * (offset + 1) for k in INTENTS}  # the label numbers differ between rows
    examples = [(text, labels[k]) for k, texts in INTENTS.items() for text in texts]
    rng.shuffle(examples)
    lines = [f"{text}\nlabel: {label}" for text, label in examples] * 3
    asked = rng.sample(sorted(HELD_OUT), 3)
    return _row("\n".join(lines), [HELD_OUT[k] for k in asked], [[str(labels[k])] for k in asked], source)


MOVIES = [
    "Star Voyage",
    "The Quiet Harbor",
    "Midnight Express Line",
    "Paper Kingdoms",
    "The Last Orchard",
    "Robots of Summer",
    "Crimson Tide Pool",
    "A Winter in Lornea",
    "Detective Marlow",
    "Laughing Cats",
]


def _recsys(rng: random.Random) -> tuple[dict[str, Any], dict[str, int]]:
    entity2id = {f"<http://dbpedia.org/resource/{m.replace(' ', '_')}_(film)>": i for i, m in enumerate(MOVIES)}
    dialogues = []
    for _ in range(10):
        liked, suggested = rng.sample(MOVIES, 2)
        dialogues.append(
            f"User: I really enjoyed {liked}. Recommender: Then you will like {suggested}. User: Thanks, I'll watch it."
        )
    sci = [MOVIES.index("Star Voyage"), MOVIES.index("Robots of Summer")]
    q = [
        "User: I love science fiction with robots and space travel. What should I watch?",
        "User: Something cosy and slow, maybe set in a small town by the sea?",
    ]
    cosy = [MOVIES.index("The Quiet Harbor"), MOVIES.index("A Winter in Lornea")]
    return _row(
        _pad(rng, dialogues, 2400), q, [[str(i) for i in sci], [str(i) for i in cosy]], "recsys_fixture"
    ), entity2id


def _story(rng: random.Random, source: str) -> dict[str, Any]:
    a, b = rng.sample(PEOPLE, 2)
    town, thing = rng.choice(PLACES), rng.choice(THINGS)
    beats = [
        f"{a} inherited the old {thing} of {town} from an aunt she had never met.",
        f"The {thing} was near ruin, and the town wanted to tear it down.",
        f"{a} asked the builder {b} to help her repair it before winter.",
        "Together they found the aunt's diaries hidden under the floor.",
        f"The diaries proved that the {thing} had sheltered refugees during the war.",
        f"The town voted to protect the {thing}, and {a} opened it to visitors in spring.",
    ]
    summary = (
        f"{a} inherits a ruined {thing} in {town} and restores it with the builder {b}. Hidden diaries show it "
        f"sheltered refugees in the war, so the town protects it and {a} opens it to visitors."
    )
    keypoints = [
        f"{a} inherits the {thing} in {town}.",
        f"{a} and {b} repair the {thing}.",
        "Hidden diaries reveal it sheltered refugees during the war.",
        f"The town protects the {thing}.",
    ]
    return _row(
        _pad(rng, beats, 2600), ["Summarise the story in a few sentences."], [[summary]], source, keypoints=keypoints
    )


def _detective(rng: random.Random) -> dict[str, Any]:
    thief, innocent, other, det = rng.sample(PEOPLE, 4)
    clues = [
        f"Detective {det} was called to the manor after the emerald necklace vanished during dinner.",
        f"{innocent} had been in the garden the whole evening, as two gardeners confirmed.",
        f"{other} was playing the piano for the guests when the necklace disappeared.",
        f"Mud from the greenhouse was found on {thief}'s shoes, and the greenhouse door opened onto the study.",
        f"The necklace was kept in the study, and only {thief} had left the dining room during dinner.",
        f"{det} found the necklace wrapped in a napkin in {thief}'s coat pocket.",
    ]
    options = [thief, innocent, other]
    rng.shuffle(options)
    question = f"Who stole the emerald necklace: {options[0]}, {options[1]} or {options[2]}? Answer with the name only."
    return _row(_pad(rng, clues, 2600), [question], [[thief]], "detective_qa_fixture")


def _facts(rng: random.Random, source: str, multi_hop: bool) -> dict[str, Any]:
    people = rng.sample(PEOPLE, 5)
    places = rng.sample(PLACES, 8)
    facts: list[str] = []
    first = {p: places[i] for i, p in enumerate(people)}
    for p in people:
        facts.append(f"{p} lives in {first[p]}.")
    capitals = {pl: rng.choice(["Mayor Rask", "Mayor Obi", "Mayor Lind", "Mayor Sol"]) for pl in places}
    for pl in places:
        facts.append(f"The mayor of {pl} is {capitals[pl]}.")
    movers = rng.sample(people, 3)
    latest = dict(first)
    for p in movers:
        new = rng.choice([x for x in places if x != latest[p]])
        facts.append(f"{p} lives in {new}.")
        latest[p] = new
    older = facts[: len(people) + len(places)]
    rng.shuffle(older)  # the older facts in any order; the updates stay last
    facts[: len(older)] = older
    numbered = [f"{i}. {f}" for i, f in enumerate(facts)]
    context = "\n".join(numbered)
    while len(context) < 2200:  # more unrelated facts, numbered after the others
        extra = f"{len(numbered)}. The {rng.choice(THINGS)} of {rng.choice(PLACES)} opens at {rng.randint(6, 11)} am."
        numbered.insert(rng.randrange(len(numbered) - 3), extra)
        numbered = [f"{i}. {line.split('. ', 1)[1]}" for i, line in enumerate(numbered)]
        context = "\n".join(numbered)
    if multi_hop:
        qs = [f"Who is the mayor of the city where {p} lives?" for p in movers[:2]]
        ans = [[capitals[latest[p]]] for p in movers[:2]]
    else:
        qs = [f"Where does {p} live?" for p in movers]
        ans = [[latest[p]] for p in movers]
    return _row(context, qs, ans, source)


def build(seed: int = SEED) -> dict[str, Any]:
    rng = random.Random(seed)
    recsys, entity2id = _recsys(rng)
    return {
        "Accurate_Retrieval": [_ruler(rng), _eventqa(rng), _longmemeval_chat(rng)],
        "Test_Time_Learning": [_icl(rng, "icl_intents_fixture", 0), _icl(rng, "icl_intents_fixture", 1), recsys],
        "Long_Range_Understanding": [
            _story(rng, "infbench_sum_fixture"),
            _story(rng, "infbench_sum_fixture"),
            _detective(rng),
        ],
        "Conflict_Resolution": [
            _facts(rng, "factconsolidation_sh_fixture", False),
            _facts(rng, "factconsolidation_sh_fixture", False),
            _facts(rng, "factconsolidation_mh_fixture", True),
        ],
        "entity2id": entity2id,
    }


def render(seed: int = SEED) -> str:
    return json.dumps(build(seed), indent=1, ensure_ascii=False) + "\n"


def _count() -> str:
    return f"{sum(len(v) for k, v in build().items() if k != 'entity2id')} rows"


def main(argv: list[str] | None = None) -> int:
    return fixture_main(argv, doc=__doc__ or "", out=OUT, render=render, count=_count)


if __name__ == "__main__":
    sys.exit(main())
