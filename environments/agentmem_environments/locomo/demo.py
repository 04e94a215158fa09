"""The LoCoMo demo set: two short conversations written for agentmem.

This is NOT the LoCoMo benchmark. It is a small set in the same file format
(``locomo10.json``), written by the project so that ``agentmem eval --env
locomo`` runs with no data file and no network. Its numbers say nothing about
LoCoMo; use the real file (``--data`` / ``AGENTMEM_LOCOMO_DATA``) for that.

Turns that questions point at carry a label; the builder turns labels into
``dia_id``s, so every question's evidence names the right turns.

Regenerate the shipped file with ``python -m agentmem_environments.locomo.demo``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DEMO_PATH = Path(__file__).with_name("demo_locomo.json")
DEMO_NOTE = "agentmem LoCoMo demo set (not the benchmark): written for the project, in the locomo10.json format"

# A turn: (speaker key "a"/"b", text, label or None, blip caption or None)
Turn = tuple[str, str, str | None, str | None]


def _t(who: str, text: str, label: str | None = None, caption: str | None = None) -> Turn:
    return (who, text, label, caption)


# ---------------------------------------------------------------------------
# Conversation 1: Priya (a) and Daniel (b)
# ---------------------------------------------------------------------------

_CONV1: dict[str, Any] = {
    "sample_id": "demo-priya-daniel",
    "speaker_a": "Priya",
    "speaker_b": "Daniel",
    "sessions": [
        (
            "10:14 am on 3 March, 2023",
            [
                _t("a", "Hey Daniel! It's been ages. How's everything going?"),
                _t(
                    "b",
                    "Priya! Good to hear from you. Busy, but good. I finally signed up for the Riverside Half "
                    "Marathon in June.",
                    "d_signup",
                ),
                _t("a", "No way, that's huge! Have you run that far before?"),
                _t("b", "Never. The longest I've done is about 10K, so I'm following a 14-week training plan."),
                _t("a", "That sounds intense. I've got news too: I adopted a dog last weekend!", "p_adopt"),
                _t("b", "Oh wow! What kind of dog?"),
                _t(
                    "a",
                    "She's a three-year-old beagle mix from the shelter on Elm Street. I named her Biscuit.",
                    "p_dog",
                    "a photo of a small brown and white dog sitting on a rug",
                ),
                _t("b", "Biscuit! That's adorable. How is she settling in?"),
                _t("a", "Pretty well. She's scared of the vacuum cleaner but loves car rides."),
                _t("b", "Ha, sounds like my old cat. Are you still working at the library?"),
                _t("a", "Yes, still at the city library, but now I run the children's reading program.", "p_job"),
                _t("b", "That suits you perfectly. You always had the best book recommendations.", "d_books"),
                _t("a", "Thanks! Good luck with the training. Let me know how the first long run goes."),
                _t("b", "Will do. Give Biscuit a pat from me!"),
            ],
        ),
        (
            "7:32 pm on 21 March, 2023",
            [
                _t("b", "Priya, I survived my first 15K run on Sunday!", "d_15k"),
                _t("a", "Amazing! How did you feel afterwards?"),
                _t(
                    "b",
                    "My legs were jelly, but I was proud. My sister Hannah biked next to me the whole way with water.",
                    "d_hannah",
                ),
                _t("a", "That's so sweet of her. Is she the one getting married this year?"),
                _t(
                    "b",
                    "Yes! Hannah's wedding is in Lisbon in September, so that's another reason to get fit.",
                    "d_wedding",
                ),
                _t("a", "Lisbon! I've always wanted to go there."),
                _t("b", "You should come along for a few days. How's Biscuit?"),
                _t(
                    "a",
                    "She's doing great. I started a pottery class on Tuesday evenings, so my neighbour walks her then.",
                    "p_pottery",
                ),
                _t("b", "Pottery? What have you made so far?"),
                _t(
                    "a",
                    "Mostly lopsided bowls. But I made a blue mug I'm actually proud of.",
                    "p_mug",
                    "a photo of a blue ceramic mug on a wooden table",
                ),
                _t("b", "That looks really professional!"),
                _t("a", "You're being kind. The teacher, Mrs. Okafor, says I have steady hands."),
                _t("b", "Maybe you can make me a medal holder for after the race."),
                _t("a", "Deal. Keep me posted on the training!"),
            ],
        ),
        (
            "2:05 pm on 16 May, 2023",
            [
                _t("a", "Hi Daniel! Sorry I've been quiet, work has been chaos."),
                _t("b", "No worries. What happened?"),
                _t(
                    "a",
                    "The children's reading program got a grant, so we're adding a Saturday storytime. I've "
                    "been hiring volunteers.",
                    "p_grant",
                ),
                _t("b", "Congratulations, that's a big deal!"),
                _t("a", "Thanks! How's the training? Only a few weeks until the race."),
                _t(
                    "b",
                    "Mixed news. I twisted my ankle on a trail run two weeks ago, so I had to rest for ten days.",
                    "d_ankle",
                ),
                _t("a", "Oh no! Is it okay now?"),
                _t(
                    "b",
                    "Mostly. My physio says I can still run the half, just slower. I'm aiming for under two "
                    "and a half hours now.",
                ),
                _t("a", "That's still great. Health first."),
                _t("b", "Yeah. Hannah keeps sending me stretching videos."),
                _t(
                    "a",
                    "Speaking of stretching, I started doing yoga every morning, with Biscuit lying next to my mat.",
                    "p_yoga",
                ),
                _t("b", "Ha, doga! Does she join in?"),
                _t(
                    "a",
                    "She mostly steals the cushion. I also booked my flights to Lisbon for the wedding week!",
                    "p_flights",
                ),
                _t("b", "Yay! Hannah will be thrilled."),
            ],
        ),
        (
            "6:48 pm on 12 June, 2023",
            [
                _t(
                    "b",
                    "Priya, I did it! I finished the Riverside Half Marathon yesterday in 2 hours 21 minutes.",
                    "d_finish",
                ),
                _t("a", "DANIEL! That's incredible! Congratulations!"),
                _t("b", "Thank you! My ankle held up. I cried a bit at the finish line, not going to lie."),
                _t("a", "You earned those tears. Did Hannah come?"),
                _t(
                    "b",
                    'She was at the finish with a sign that said "Run like Biscuit is chasing you."',
                    "d_sign",
                    "a photo of a woman holding a handmade sign at a race finish line",
                ),
                _t("a", "Hahaha, I love her already."),
                _t("b", "How's everything with you?"),
                _t(
                    "a",
                    "Good! I glazed and fired the medal holder I promised you. It's green with little running "
                    "shoes painted on it.",
                    "p_holder",
                ),
                _t("b", "You remembered! That's the best gift."),
                _t("a", "Of course. And Biscuit passed her obedience class last week."),
                _t("b", "Top of the class?"),
                _t("a", "Second place. She lost points for chasing a squirrel."),
                _t("b", "Classic beagle. So what's next for you?"),
                _t("a", "I'm thinking of signing up for a 5K myself. You've inspired me."),
            ],
        ),
    ],
    "qa": [
        ("What is the name of Priya's dog?", "Biscuit", ["p_dog"], 4),
        ("Where is Hannah's wedding taking place?", "Lisbon", ["d_wedding"], 4),
        ("How long did it take Daniel to finish the Riverside Half Marathon?", "2 hours 21 minutes", ["d_finish"], 4),
        (
            "What has Priya made in her pottery class?",
            "lopsided bowls, a blue mug, a medal holder",
            ["p_mug", "p_holder"],
            1,
        ),
        ("What new hobbies did Priya take up in 2023?", "pottery, yoga", ["p_pottery", "p_yoga"], 1),
        ("When did Priya adopt her dog?", "The weekend before 3 March 2023", ["p_adopt"], 2),
        ("When did Daniel run his first 15K?", "19 March 2023", ["d_15k"], 2),
        ("When did Daniel run the Riverside Half Marathon?", "11 June 2023", ["d_finish"], 2),
        (
            "Would Priya likely enjoy spending an afternoon in a bookshop?",
            "Likely yes; she works at the city library and gives great book recommendations",
            ["p_job", "d_books"],
            3,
        ),
        ("What is the name of Daniel's dog?", None, ["p_dog"], 5, "Biscuit"),
        ("What did Daniel make in his pottery class?", None, ["p_mug"], 5, "a blue mug"),
    ],
}


# ---------------------------------------------------------------------------
# Conversation 2: Lena (a) and Marcus (b)
# ---------------------------------------------------------------------------

_CONV2: dict[str, Any] = {
    "sample_id": "demo-lena-marcus",
    "speaker_a": "Lena",
    "speaker_b": "Marcus",
    "sessions": [
        (
            "9:20 am on 8 January, 2023",
            [
                _t("a", "Morning Marcus! Happy new year, a bit late."),
                _t("b", "Happy new year, Lena! How were the holidays?"),
                _t(
                    "a", "Lovely. And I have big news: I signed the lease for my own bakery on Maple Avenue!", "l_lease"
                ),
                _t("b", "What?! That's your dream. When does it open?"),
                _t("a", "If the renovations go well, in April. It's going to be called Rise & Crumb.", "l_name"),
                _t("b", "Great name. What will you sell?"),
                _t("a", "Sourdough mostly, plus cardamom buns from my grandmother's recipe.", "l_menu"),
                _t(
                    "b",
                    "I'll be your first customer. My news is smaller: I bought a secondhand acoustic guitar.",
                    "m_guitar",
                    "a photo of an acoustic guitar leaning against a sofa",
                ),
                _t("a", "Oh nice! Are you taking lessons?"),
                _t("b", "Just online videos for now. I can play three chords and my fingertips hurt."),
                _t("a", "That's how it starts. What song are you working on?"),
                _t("b", "Wonderwall, of course. My roommate is already sick of it.", "m_wonderwall"),
                _t("a", "Ha! Every guitarist's rite of passage."),
                _t("b", "Exactly. Good luck with the lease paperwork!"),
            ],
        ),
        (
            "4:45 pm on 2 February, 2023",
            [
                _t("b", "Lena, how are the renovations going?"),
                _t(
                    "a",
                    "Slowly. The electrician found old wiring, so we had to replace all of it. It cost twice "
                    "what I planned.",
                    "l_wiring",
                ),
                _t("b", "Ouch. Are you okay budget-wise?"),
                _t("a", "My brother Jonas lent me some money, thankfully. He's also building the shelves.", "l_jonas"),
                _t("b", "Family is the best."),
                _t("a", "How's the guitar going?"),
                _t("b", "Better! I signed up for weekly lessons with a teacher named Rosa.", "m_rosa"),
                _t("a", "Is she good?"),
                _t(
                    "b",
                    "She's great. She plays in a jazz trio downtown, and she wants me to learn to read music.",
                    "m_trio",
                ),
                _t("a", "That's a big step."),
                _t(
                    "b",
                    "Also, I got a promotion at work: I'm now the lead designer on the city transit app.",
                    "m_promotion",
                ),
                _t("a", "Marcus! Congratulations! We should celebrate."),
                _t("b", "Let's do it when your bakery opens. Free buns?"),
                _t("a", "For you, always."),
            ],
        ),
        (
            "11:10 am on 18 March, 2023",
            [
                _t("a", "Marcus, I burned my hand on the new oven yesterday.", "l_burn"),
                _t("b", "Oh no! Are you alright?"),
                _t("a", "It's just a small burn, but I'm typing with one hand."),
                _t("b", "Please be careful. How's everything else with the bakery?"),
                _t(
                    "a",
                    "We did a test bake for friends last weekend. The cardamom buns sold out in twenty minutes.",
                    "l_test",
                    "a photo of a tray of buns on a kitchen counter",
                ),
                _t("b", "Of course they did. What about the sourdough?"),
                _t(
                    "a",
                    "People liked it, but my starter was a bit sluggish. I named the starter Gerald, by the way.",
                    "l_gerald",
                ),
                _t("b", "Gerald the starter, I love it."),
                _t("a", "How are the lessons with Rosa?"),
                _t(
                    "b",
                    "Good. I played my first song all the way through at her student recital on Thursday evening.",
                    "m_recital",
                ),
                _t("a", "What did you play?"),
                _t("b", "Blackbird by the Beatles. My hands were shaking.", "m_blackbird"),
                _t("a", "That's a hard one! I'm proud of you."),
                _t("b", "Thanks. Now go and rest that hand!"),
            ],
        ),
        (
            "8:30 pm on 24 April, 2023",
            [
                _t("b", "So?? How was opening day?"),
                _t("a", "Rise & Crumb opened on Saturday and we had a line around the block!", "l_open"),
                _t(
                    "b", "I knew it! Sorry I couldn't make it, I was at my cousin's graduation in Chicago.", "m_chicago"
                ),
                _t("a", "No problem. Jonas handled the register and my mum packed boxes all day.", "l_family"),
                _t("b", "A real family business."),
                _t("a", "We sold 300 cardamom buns. I have never been this tired.", "l_300"),
                _t("b", "You deserve a week of sleep."),
                _t("a", "Ha, not happening. How was Chicago?"),
                _t(
                    "b",
                    "Windy and fun. I went to a blues club and got to jam with the band for one song.",
                    "m_blues",
                    "a photo of a man playing guitar on a small stage",
                ),
                _t("a", "Look at you! From three chords to jamming with a band."),
                _t("b", "Rosa says I'm ready to play in public. I'm thinking of trying an open mic night."),
                _t("a", "You could play at the bakery some Sunday morning!"),
                _t("b", "Are you serious? I'd love that."),
                _t("a", "Totally. Live music and fresh bread."),
            ],
        ),
        (
            "1:15 pm on 30 May, 2023",
            [
                _t(
                    "a",
                    "Marcus, your acoustic morning at the bakery on Sunday was a hit. Customers keep asking "
                    "when you're playing again!",
                    "l_acoustic",
                ),
                _t("b", "That made my month. I was so nervous before Blackbird."),
                _t("a", "You couldn't tell. We sold out of sourdough by ten."),
                _t("b", "Gerald must be in good shape then."),
                _t(
                    "a",
                    "Gerald is thriving. I'm also hiring my first employee, a pastry student named Amara.",
                    "l_amara",
                ),
                _t("b", "Big step!"),
                _t("a", "Yes, so I can finally take a day off. How is work?"),
                _t("b", "The transit app launched last week and it already has fifty thousand downloads.", "m_app"),
                _t("a", "That's huge! Was that your design?"),
                _t("b", "The whole interface, yes. My manager wants me to lead the next project too."),
                _t("a", "You're on a roll: a promotion, an app launch, and now a music career."),
                _t("b", "Ha, hardly a career. But I did buy an electric guitar with my bonus.", "m_electric"),
                _t("a", "Rosa must be proud."),
                _t("b", "She is. Next goal: learning jazz chords so I can sit in with her trio.", "m_jazz"),
            ],
        ),
    ],
    "qa": [
        ("What is the name of Lena's bakery?", "Rise & Crumb", ["l_name"], 4),
        ("What did Lena name her sourdough starter?", "Gerald", ["l_gerald"], 4),
        ("Who is Marcus's guitar teacher?", "Rosa", ["m_rosa"], 4),
        ("What songs has Marcus played on the guitar?", "Wonderwall, Blackbird", ["m_wonderwall", "m_blackbird"], 1),
        ("Which family members helped Lena with the bakery?", "her brother Jonas, her mum", ["l_jonas", "l_family"], 1),
        ("When did Lena's bakery open?", "22 April 2023", ["l_open"], 2),
        ("When did Lena burn her hand?", "17 March 2023", ["l_burn"], 2),
        ("When did Marcus play at Lena's bakery?", "28 May 2023", ["l_acoustic"], 2),
        (
            "Would Marcus likely enjoy a jazz concert?",
            "Likely yes; he wants to learn jazz chords to play with Rosa's jazz trio",
            ["m_trio", "m_jazz"],
            3,
        ),
        ("What did Marcus name his sourdough starter?", None, ["l_gerald"], 5, "Gerald"),
        ("Why did Lena go to Chicago?", None, ["m_chicago"], 5, "her cousin's graduation"),
    ],
}


def _build_sample(spec: dict[str, Any]) -> dict[str, Any]:
    names = {"a": spec["speaker_a"], "b": spec["speaker_b"]}
    conversation: dict[str, Any] = {"speaker_a": names["a"], "speaker_b": names["b"]}
    labels: dict[str, str] = {}
    for n, (date_time, turns) in enumerate(spec["sessions"], start=1):
        conversation[f"session_{n}_date_time"] = date_time
        rows = []
        for i, (who, text, label, caption) in enumerate(turns, start=1):
            dia_id = f"D{n}:{i}"
            row: dict[str, Any] = {"speaker": names[who], "dia_id": dia_id, "text": text}
            if caption:
                row["blip_caption"] = caption
            rows.append(row)
            if label:
                if label in labels:
                    raise ValueError(f"demo label {label!r} used twice")
                labels[label] = dia_id
        conversation[f"session_{n}"] = rows
    qa = []
    for entry in spec["qa"]:
        question, answer, evidence, category = entry[:4]
        row = {"question": question}
        if category == 5:
            row["adversarial_answer"] = entry[4]
        else:
            row["answer"] = answer
        row["evidence"] = [labels[label] for label in evidence]
        row["category"] = category
        qa.append(row)
    return {
        "sample_id": spec["sample_id"],
        "demo_note": DEMO_NOTE,
        "conversation": conversation,
        "qa": qa,
        "event_summary": {},
        "observation": {},
        "session_summary": {},
    }


def build_demo() -> list[dict[str, Any]]:
    """The demo set as the JSON-ready list that ``demo_locomo.json`` holds."""
    return [_build_sample(_CONV1), _build_sample(_CONV2)]


def write_demo(path: Path = DEMO_PATH) -> Path:
    """Write the demo set to ``path`` (the shipped file by default)."""
    path.write_text(json.dumps(build_demo(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":  # pragma: no cover - maintenance entry
    print(write_demo())
