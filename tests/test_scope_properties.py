"""Property tests: distinct scopes never share a key, a file or a collection, and never see each other's items.

The scope parts are drawn from values built to collide under the earlier
encoding (parts holding its ``\\x1f`` separator, ``run_id`` ``None`` against
``""``, names that differed only in punctuation, names past the old 120
character cut), plus arbitrary text. Every first-party plugin is exercised
through its LLM-free path with a deterministic embedder, so the whole file
runs in seconds.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmem.memory import MemoryProgram
from agentmem.registry import load_memory
from agentmem.toolkit import Stores, Toolkit, storage_name
from agentmem.types import Event, Query, Scope
from tests.helpers import HashEmbedder

# parts that collided before: the old separator inside a part, and "" next to None
_TRICKY = [
    "a",
    "b",
    "a\x1fb",
    "b\x1f",
    "\x1fb",
    "\x1f",
    "",
    "x/y",
    "x",
    "y",
    "ann",
    "ann/notes",
    "é",
    "a b",
    "a-b",
    "a_b",
]
_PART = st.one_of(st.sampled_from(_TRICKY), st.text(max_size=12))
_SCOPES = st.builds(Scope, user_id=_PART, agent_id=_PART, run_id=st.one_of(st.none(), _PART))


@st.composite
def _families(draw: st.DrawFn) -> list[Scope]:
    """Distinct scopes that all had one key under the earlier encoding.

    Every way of cutting ``"\\x1f".join(pieces)`` into (user, agent, run) at
    two separators spelled the same string there, and a run of ``""`` read
    as no run at all.
    """
    pieces = draw(st.lists(st.sampled_from(["a", "b", "", "x/y", "é", "ann"]), min_size=3, max_size=5))
    family: list[Scope] = []
    for i, j in itertools.combinations(range(1, len(pieces)), 2):
        user, agent, run = "\x1f".join(pieces[:i]), "\x1f".join(pieces[i:j]), "\x1f".join(pieces[j:])
        family.append(Scope(user_id=user, agent_id=agent, run_id=run))
        if run == "":
            family.append(Scope(user_id=user, agent_id=agent, run_id=None))
    return family


def _old_key(scope: Scope) -> str:
    raw = f"{scope.user_id}\x1f{scope.agent_id}\x1f{scope.run_id or ''}"
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()[:20]


# names that one spelling used to cover: punctuation, case of the old "-" mapping, long names
_NAMES = st.one_of(
    st.sampled_from(
        [
            "notes",
            "my_notes",
            "my-notes",
            "my notes",
            "my.notes",
            "-my-notes-",
            "n" * 99,
            "n" * 100,
            "n" * 101,
            "x" * 130,
        ]
    ),
    st.text(min_size=1, max_size=40),
)
# what chroma accepts as a collection name
_CHROMA_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{1,510})[A-Za-z0-9]")


@settings(max_examples=200, database=None, deadline=None)
@given(_families(), _SCOPES, _SCOPES)
def test_distinct_scopes_never_share_a_key(family: list[Scope], a: Scope, b: Scope) -> None:
    assert len({_old_key(s) for s in family}) == 1  # the family did collide before
    scopes = [*family, a, b]
    for x, y in itertools.combinations(scopes, 2):
        assert (x.key() == y.key()) == (x == y)
        assert (x.encoded() == y.encoded()) == (x == y)
    assert all(re.fullmatch(r"[0-9a-f]{20}", s.key()) for s in scopes)


@settings(max_examples=200, database=None, deadline=None)
@given(_NAMES, _NAMES)
def test_distinct_names_never_share_a_storage_name(a: str, b: str) -> None:
    assert (storage_name(a) == storage_name(b)) == (a == b)
    for name in (storage_name(a), storage_name(b)):
        assert "_" not in name and ".." not in name and len(name) <= 100
        assert re.fullmatch(r"[A-Za-z0-9.-]+", name) and name[0].isalnum() and name[-1].isalnum()


@settings(max_examples=200, database=None, deadline=None)
@given(st.tuples(_SCOPES, _NAMES, _NAMES), st.tuples(_SCOPES, _NAMES, _NAMES))
def test_distinct_scope_program_collection_triples_never_share_a_file_or_collection(
    first: tuple[Scope, str, str], second: tuple[Scope, str, str]
) -> None:
    stores = Stores.__new__(Stores)  # names only: nothing is opened
    stores.root = Path("/nonexistent")

    def where(triple: tuple[Scope, str, str]) -> tuple[str, str]:
        scope, program, collection = triple
        toolkit = Toolkit(scope=scope, stores=stores, namespace=program)
        db = f"scopes/{scope.key()}/{toolkit.storage_name}.sqlite"
        return db, f"am_{toolkit.storage_name}_{storage_name(collection)}_{scope.key()}"

    (db1, col1), (db2, col2) = where(first), where(second)
    assert (col1 == col2) == (first == second)
    assert (db1 == db2) == (first[:2] == second[:2])
    assert _CHROMA_NAME.fullmatch(col1) and ".." not in col1


# -- every first-party plugin: a scope never recalls another scope's items ----------------------------
def _write(memory: MemoryProgram, token: str) -> None:
    """Store one item that names ``token``, through the plugin's LLM-free path."""
    text = f"The secret word is {token}."
    name = type(memory).name
    if name == "episodic":
        memory.import_items([Event.message(text, speaker="user", session_id="s1")])  # type: ignore[attr-defined]
    elif name == "semantic":
        memory.import_items([text])  # type: ignore[attr-defined]
    elif name == "procedural":
        memory.import_items(
            [{"kind": "workflow", "when_to_use": f"asked for the secret word {token}", "content": text}]
        )  # type: ignore[attr-defined]
    elif name == "hierarchical":
        memory.import_items(
            [{"task": f"find the secret word {token}", "steps": [text], "outcome": text, "success": True}]
        )  # type: ignore[attr-defined]
    else:  # rag, full-context, none: observe, then end the session
        memory.observe(Event.message(text, speaker="user", session_id="s1"))
        from agentmem.types import Episode

        memory.reflect(Episode(task="chat"))


PLUGINS = ["episodic", "semantic", "procedural", "hierarchical", "rag", "full-context", "none"]
_TOKENS = iter(f"tok{n:05d}q" for n in range(10**5))


@pytest.fixture(scope="module")
def shared_root() -> Iterator[Path]:
    """One store root for every example, so later examples also meet what earlier ones wrote."""
    with tempfile.TemporaryDirectory(prefix="agentmem-scope-props-") as root:
        yield Path(root)


@pytest.mark.parametrize("plugin", PLUGINS)
def test_scopes_never_see_each_others_items(plugin: str, shared_root: Path) -> None:
    cls = load_memory(plugin)
    stores = Stores(shared_root / plugin)
    embedder = HashEmbedder()
    written: dict[tuple[Scope, str], set[str]] = {}  # (scope, program name) -> its tokens, over all examples
    recalls_own = {"none": False}.get(plugin, True)

    def open_memory(scope: Scope, program: str) -> MemoryProgram:
        return cls(Toolkit(scope=scope, stores=stores, embedder=embedder, namespace=program))

    @settings(max_examples=6, database=None, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_families(), _SCOPES, st.data())
    def check(family: list[Scope], stranger: Scope, data: st.DataObject) -> None:
        # scopes and program names that shared files or collections before (and one unrelated scope)
        names = [cls.name, "my_notes", "my-notes", "my notes"]
        owners = data.draw(
            st.lists(
                st.tuples(st.sampled_from([*family, stranger]), st.sampled_from(names)),
                min_size=2,
                max_size=3,
                unique=True,
            )
        )
        for owner in owners:
            token = next(_TOKENS)
            memory = open_memory(*owner)
            try:
                _write(memory, token)
            finally:
                memory.close()
            written.setdefault(owner, set()).add(token)
        every_token = {t for tokens in written.values() for t in tokens}
        question = "What is the secret word? " + " ".join(sorted(every_token))
        for owner in owners:
            memory = open_memory(*owner)
            try:
                recalled = memory.recall(Query(text=question, budget_tokens=4000)).text()
            finally:
                memory.close()
            seen = {t for t in every_token if t in recalled}
            foreign = seen - written[owner]
            assert not foreign, f"{plugin}: {owner} recalled items of another scope: {sorted(foreign)}"
            if recalls_own:
                assert seen, f"{plugin}: {owner} recalled none of its own items (the check would be vacuous)"

    try:
        check()
    finally:
        stores.close()
