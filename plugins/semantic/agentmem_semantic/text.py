"""LLM-free text helpers: the deterministic guards around what the small model writes.

A 0.5B model names the same topic "seat preference" once and "preferred
seat" the next time, writes "I" where it should write the speaker's name,
and answers DELETE where it means UPDATE. These helpers normalise keys and
subjects, spot negations and additive wording, and attribute a fact to the
turns it came from, so that reconciliation does not depend on the model
getting those details right.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentmem.retrieval import tokenize

_SUFFIXES = ("ences", "ence", "ings", "ing", "ed", "s")
_SYNONYMS = {"favourite": "favorite", "fav": "favorite", "colour": "color", "prefer": "prefer"}
_SELF = {"", "i", "me", "my", "myself", "speaker", "person", "he", "she", "they", "unknown", "none"}
_NEGATION = re.compile(
    r"\b(no longer|not|never|n't|anymore|any more|stopped|quit|gave up|sold|lost|ended|broke up|"
    r"doesn't|don't|isn't|aren't|wasn't|hasn't|no)\b",
    re.IGNORECASE,
)
_ADDITIVE = re.compile(r"\b(also|another|too|as well)\b", re.IGNORECASE)
_LOCOMO_DATE = re.compile(r"(\d{1,2})\s+([A-Za-z]+),?\s+(\d{4})")
_FIRST_PERSON = [
    (re.compile(r"\bI am\b|\bI'm\b"), "{s} is"),
    (re.compile(r"\bI have\b|\bI've\b"), "{s} has"),
    (re.compile(r"\bI was\b"), "{s} was"),
    (re.compile(r"\bI do\b"), "{s} does"),
    (re.compile(r"\bI go\b"), "{s} goes"),
    (re.compile(r"\b[Mm]y\b"), "{s}'s"),
    (re.compile(r"\b[Mm]yself\b"), "{s}"),
    (re.compile(r"\b[Mm]e\b"), "{s}"),
]
_ADVERBS = "just|really|now|also|still|actually|usually|often|never|always|recently|finally|currently|mostly"
_I_VERB = re.compile(rf"\bI ((?:(?:{_ADVERBS}) )*)([a-z]+)\b")
_FILLER = re.compile(
    r"^(?:(?:actually|well|yes|yeah|oh|so|hmm|um|guess what|by the way|btw)\b[,!.]?\s*)+", re.IGNORECASE
)
#: stems of attributes that hold one value at a time (a new value replaces the old one)
_SINGLE = frozenset(
    {"prefer", "favorit", "liv", "work", "nam", "job", "hometown", "birthday", "ag", "married", "studi"}
)
_FRAME_FILLER = frozenset({"now", "actually", "currently", "longer", "anymore", "still", "instead"})
_NOT_VERBS = frozenset(
    "can could will would should must may might just really also still now never always usually often recently"
    " actually finally even already only mostly sometimes don't didn't can't won't".split()
)


def stem(word: str) -> str:
    """A crude English stem: enough to make 'preferred', 'prefers' and 'preference' meet."""
    word = _SYNONYMS.get(word, word)
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3 and not word.endswith("ss"):
            word = word[: -len(suffix)]
            break
    if word.endswith("e") and len(word) >= 4:  # name/named, live/living, classes/class meet
        word = word[:-1]
    if len(word) >= 4 and word[-1] == word[-2] and word[-1] not in "aeiou":
        word = word[:-1]  # preferr -> prefer
    return _SYNONYMS.get(word, word)


def stems(text: str) -> set[str]:
    return {stem(t) for t in tokenize(text)}


#: words a faithful paraphrase adds freely (negation, time, the verbs facts are phrased with)
GENERIC = frozenset(
    stem(w)
    for w in (
        "no not never longer anymore now currently still also usually often recently prefer prefers like likes"
        " love loves enjoy enjoys has have named name called lives live works work person user".split()
    )
)


#: what small talk is made of: a "fact" with no other content word is chit-chat
CHITCHAT = frozenset(
    stem(w)
    for w in (
        "nice good great day congrats congratulations thanks thank hi hello hey bye goodbye cool wow awesome sure ok"
        " okay see talk later soon morning night evening glad hear sorry how doing fine well amazing happy lovely"
        " chat catch".split()
    )
)
_SPEAKER_PREFIX = re.compile(r"^([A-Z][\w .'-]{0,30}):\s+")
_FIRST_PERSON_LINE = re.compile(r"\b(I|I'm|I've|I'd|my|me)\b")


def strip_speaker(text: str, speakers: Sequence[str]) -> tuple[str, str]:
    """'Ann: I moved to Lisbon' (a copied transcript line) -> ('I moved to Lisbon', 'Ann')."""
    match = _SPEAKER_PREFIX.match(text)
    if match and match.group(1).strip().lower() in {s.lower() for s in speakers}:
        return text[match.end() :], match.group(1).strip()
    return text, ""


def is_chitchat(fact: str, names: set[str]) -> bool:
    """Whether a 'fact' holds nothing but names, generic verbs and small talk."""
    return not (stems(fact) - names - GENERIC - CHITCHAT)


def speaks_of_self(line: str) -> bool:
    """Whether a turn is in the first person (then the facts it states are about its speaker)."""
    return bool(_FIRST_PERSON_LINE.search(line))


def grounded(fact: str, heard: set[str], names: set[str]) -> float:
    """Share of a fact's content words (stems, without names and generic words) that occur in ``heard``."""
    words = stems(fact) - names - GENERIC
    if not words:
        return 1.0
    return len(words & heard) / len(words)


def subject_norm(subject: str) -> str:
    """Lowercase subject without articles ('The User' -> 'user'); '' when it names no one."""
    words = [w for w in tokenize(subject) if w not in {"the", "a"}]
    norm = " ".join(words)
    return "" if norm in _SELF else norm


def key_norm(key: str, subject: str = "") -> str:
    """A topic key as a sorted set of stems without the subject's name: order and inflection do not matter."""
    drop = set(tokenize(subject)) | {"user", "person"}
    words = sorted({stem(t) for t in tokenize(key) if t not in drop})
    return " ".join(words)


def key_overlap(a: str, b: str) -> float:
    """Jaccard overlap of two normalised keys (0 when either is empty)."""
    sa, sb = set(a.split()), set(b.split())
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def same_frame(a: str, b: str, names: set[str] = frozenset()) -> bool:  # type: ignore[assignment]
    """Whether two facts state one single-valued attribute with different values.

    'Ann prefers window seats on flights' / 'Ann now prefers aisle seats on
    flights': the same words around a short differing span, and an attribute
    that holds one value at a time (prefer, favourite, name, lives, works...).
    That is an UPDATE whatever topic keys the model wrote; events and hobbies
    (several at once) do not qualify.
    """
    wa = [stem(t) for t in tokenize(a) if t not in _FRAME_FILLER]
    wb = [stem(t) for t in tokenize(b) if t not in _FRAME_FILLER]
    if not (_SINGLE & set(wa) & set(wb)) or wa == wb:
        return False
    p = 0
    while p < min(len(wa), len(wb)) and wa[p] == wb[p]:
        p += 1
    q = 0
    while q < min(len(wa), len(wb)) - p and wa[-1 - q] == wb[-1 - q]:
        q += 1
    mid_a, mid_b = wa[p : len(wa) - q], wb[p : len(wb) - q]
    return p + q >= 3 and 0 < len(mid_a) <= 3 and 0 < len(mid_b) <= 3


def is_negation(text: str) -> bool:
    """Whether a fact says something stopped or is not so (what justifies a DELETE)."""
    return bool(_NEGATION.search(text))


def is_additive(text: str) -> bool:
    """Whether a fact adds to a topic ('also', 'another') rather than replacing its value."""
    return bool(_ADDITIVE.search(text))


def third_person(text: str, speaker: str | None) -> str:
    """Rewrite a first-person fact ('I prefer ...') with the speaker's name, as stored facts must read."""
    if not speaker:
        return text
    out = _FILLER.sub("", text)
    out = out[:1].upper() + out[1:] if out[:1].islower() and out[:2] != "i " else out
    for pattern, repl in _FIRST_PERSON:
        out = pattern.sub(repl.format(s=speaker), out)

    def agree(match: re.Match[str]) -> str:  # "I now prefer" -> "Ann now prefers"; past tense and modals stay
        adverbs, verb = match.group(1), match.group(2)
        if verb in _NOT_VERBS or verb.endswith(("ed", "s")):
            return f"{speaker} {adverbs}{verb}"
        ending = "es" if verb.endswith(("sh", "ch", "x", "o")) else "s"
        return f"{speaker} {adverbs}{verb}{ending}"

    return _I_VERB.sub(agree, out)


def first_sentence(text: str, max_words: int = 25) -> str:
    """The leading sentences of what the model wrote, up to ``max_words`` (small models run on)."""
    kept: list[str] = []
    count = 0
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = len(sentence.split())
        if kept and count + words > max_words:
            break
        kept.append(sentence)
        count += words
    return " ".join(kept).rstrip(".!").strip()


def short_date(date: str) -> str:
    """LoCoMo's '1:56 pm on 8 May, 2023' as '8 May 2023'; other dates unchanged."""
    match = _LOCOMO_DATE.search(date)
    if match:
        return f"{match.group(1)} {match.group(2)} {match.group(3)}"
    return date.strip()


def earlier_value(old: str, new: str, max_words: int = 12) -> str:
    """What an update replaced, without the words old and new share at the start.

    'Ann prefers window seats' -> 'Ann now prefers aisle seats' gives 'window seats':
    short enough to show next to the current value.
    """
    ow = old.split()
    shared = {w.lower().strip(".,!") for w in new.split()}
    i = 0
    while i < len(ow) - 1 and ow[i].lower().strip(".,!") in shared:
        i += 1  # leading words the new text repeats (even with 'now' inserted) say nothing
    rest = ow[i:]
    if len(rest) > max_words:
        rest = rest[:max_words] + ["..."]
    return " ".join(rest).rstrip(".")


def attribute(fact: str, lines: Sequence[str], subject: str = "") -> list[int]:
    """Indices of the lines a fact most likely came from (best word overlap; all lines if none overlaps).

    Provenance must name the turns that state a fact (LoCoMo's evidence), not
    the whole batch; the subject's own name is left out because it is in
    every line.
    """
    want = stems(fact) - stems(subject)
    if not want:
        return list(range(len(lines)))
    scores = [len(want & stems(line)) for line in lines]
    best = max(scores, default=0)
    if best == 0:
        return list(range(len(lines)))
    return [i for i, s in enumerate(scores) if s == best]
