"""The data shapes that cross every boundary: events, queries, recalls, episodes, scopes.

They are pydantic v2 models so that plugins, environments, the evolution
engine and worker processes can exchange them as JSON without guessing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

EventKind = Literal["message", "tool_call", "observation", "outcome"]


def _new_id() -> str:
    return uuid.uuid4().hex[:16]


def _now() -> datetime:
    return datetime.now(UTC)


class Scope(BaseModel):
    """Who a memory belongs to. Items stored under one scope are never seen from another.

    ``user_id`` is the person, ``agent_id`` the agent persona, ``run_id`` an
    optional run (an evaluation task, a chat thread) inside them.
    """

    model_config = ConfigDict(frozen=True)

    user_id: str = "default"
    agent_id: str = "default"
    run_id: str | None = None

    def encoded(self) -> str:
        """The three parts as one string they can be read back from, so no two scopes share it.

        Scopes written by earlier versions joined the parts with ``\\x1f`` and
        spelled "no run" as ``""``; that string is kept wherever it was already
        unambiguous (no part holds ``\\x1f``, ``run_id`` is not ``""``, the parts
        are valid UTF-8), so those stores keep their keys and move nothing. Any
        other scope is spelled ``scope/2:`` + a JSON list, which holds no
        ``\\x1f`` at all (JSON escapes control characters) while the first form
        holds exactly two: the two forms never meet, and each reads back.
        """
        parts = (self.user_id, self.agent_id, self.run_id)
        if _legacy_form_is_unambiguous(parts):
            return _legacy_form(parts)
        return "scope/2:" + json.dumps(list(parts), ensure_ascii=True)

    def key(self) -> str:
        """A short, filesystem- and collection-name-safe digest of :meth:`encoded` (distinct scopes, distinct keys)."""
        return hashlib.sha256(self.encoded().encode("utf-8")).hexdigest()[:20]

    def legacy_key(self) -> str | None:
        """The key an earlier version gave this scope, where it differs from :meth:`key` and is this scope's alone.

        ``None`` when the key did not change, when the old key is another
        scope's key today (``run_id=""`` had the key of ``run_id=None``, which
        keeps it and the data stored under it), or when the old version could
        not store this scope at all (parts that are not valid UTF-8).
        """
        parts = (self.user_id, self.agent_id, self.run_id)
        if _legacy_form_is_unambiguous(parts) or self.run_id == "" or not _is_utf8(parts):
            return None
        return hashlib.sha256(_legacy_form(parts).encode("utf-8")).hexdigest()[:20]


def _legacy_form(parts: tuple[str, str, str | None]) -> str:
    return f"{parts[0]}\x1f{parts[1]}\x1f{parts[2] or ''}"


def _is_utf8(parts: tuple[str, str, str | None]) -> bool:
    try:
        for part in parts:
            (part or "").encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates
        return False
    return True


def _legacy_form_is_unambiguous(parts: tuple[str, str, str | None]) -> bool:
    return parts[2] != "" and not any("\x1f" in (p or "") for p in parts) and _is_utf8(parts)


class Event(BaseModel):
    """One thing that happened: a message, a tool call, an observation, an outcome.

    ``session_id`` and ``timestamp`` place it in time; ``when`` is the time
    as the source states it ("1:56 pm on 8 May, 2023"), which memories show
    instead of the timestamp when it is set. ``metadata`` belongs to whoever
    made the event (an environment's own ids, for instance): memories carry
    ``id`` into ``RecallItem.event_ids`` and never read metadata, and the
    environment maps the ids back to its own.
    """

    id: str = Field(default_factory=_new_id)
    kind: EventKind = "message"
    content: str
    speaker: str | None = None
    tool_name: str | None = None
    arguments: dict[str, Any] | None = None
    reward: float | None = None
    session_id: str | None = None
    timestamp: datetime = Field(default_factory=_now)
    when: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def message(cls, content: str, speaker: str = "user", **kw: Any) -> Event:
        return cls(kind="message", content=content, speaker=speaker, **kw)

    @classmethod
    def tool_call(cls, tool_name: str, arguments: dict[str, Any], **kw: Any) -> Event:
        content = kw.pop("content", f"{tool_name}({arguments})")
        return cls(kind="tool_call", content=content, tool_name=tool_name, arguments=arguments, **kw)

    @classmethod
    def observation(cls, content: str, **kw: Any) -> Event:
        return cls(kind="observation", content=content, **kw)

    @classmethod
    def outcome(cls, content: str, reward: float | None = None, **kw: Any) -> Event:
        return cls(kind="outcome", content=content, reward=reward, **kw)

    def render(self) -> str:
        """The event as one line of text, as memories store and show it."""
        when = self.timestamp.strftime("%Y-%m-%d %H:%M")
        who = f"{self.speaker}: " if self.speaker else ""
        if self.kind == "tool_call":
            return f"[{when}] {who}called {self.tool_name} with {self.arguments}"
        if self.kind == "outcome":
            r = "" if self.reward is None else f" (reward {self.reward:g})"
            return f"[{when}] outcome{r}: {self.content}"
        return f"[{when}] {who}{self.content}"


#: The token budget of one recall when nothing says otherwise: the one place it is written (the
#: ``recall_budget`` setting of :mod:`agentmem.config` defaults to it). Kept here, beside :class:`Query`,
#: so that ``import agentmem`` and the sandbox worker need not load the settings machinery.
DEFAULT_RECALL_BUDGET = 1024


class Query(BaseModel):
    """What the agent asks its memory for, and how many tokens the answer may take."""

    text: str
    budget_tokens: int = Field(default=DEFAULT_RECALL_BUDGET, ge=0)
    timestamp: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class RecallItem(BaseModel):
    """One piece of recalled context, with why it was chosen."""

    content: str
    score: float = 0.0
    source: str = ""
    tokens: int = 0
    event_ids: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class Recall(BaseModel):
    """What a memory returns for a query: items within the token budget.

    ``omitted`` counts the items that matched but did not fit the budget, so
    that a caller can tell "nothing relevant" from "relevant but cut".
    """

    items: list[RecallItem] = Field(default_factory=list)
    omitted: int = 0
    plugin: str = ""
    instructions: str = ""

    @property
    def tokens(self) -> int:
        return sum(i.tokens for i in self.items)

    def text(self) -> str:
        """The recalled items as a context block for a prompt (empty if none)."""
        return "\n".join(i.content for i in self.items)

    def block(self) -> str:
        """What an agent puts in its prompt for this recall: the memory's own usage text (``instructions``, which
        embeds the items) when it wrote one, else :meth:`text`."""
        return self.instructions or self.text()

    def metadata_values(self, key: str) -> list[Any]:
        """Every value of ``metadata[key]`` across items (lists are flattened)."""
        out: list[Any] = []
        for item in self.items:
            value = item.metadata.get(key)
            if isinstance(value, list):
                out.extend(value)
            elif value is not None:
                out.append(value)
        return out


class Episode(BaseModel):
    """A finished session or episode, handed to ``reflect`` with its outcome."""

    id: str = Field(default_factory=_new_id)
    task: str = ""
    events: list[Event] = Field(default_factory=list)
    outcome: str | None = None
    reward: float | None = None
    success: bool | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
