"""Errors a user can fix.

Every error here carries one line that says what went wrong, where, and how
to fix it. The CLI prints that line and exits non-zero instead of showing a
traceback; library users can catch :class:`AgentmemError`.
"""

from __future__ import annotations


class AgentmemError(Exception):
    """Base class: an error the user can act on. ``str(err)`` is one line."""


class ConfigError(AgentmemError):
    """A setting, flag or config file value is wrong."""


class PluginError(AgentmemError):
    """A memory plugin or environment cannot be found or loaded."""


class ModelError(AgentmemError):
    """A model file cannot be obtained, or fails its integrity check."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 does not match the one we know for it."""


class LLMError(AgentmemError):
    """An LLM call failed for good (after retries)."""


class LLMUnavailable(LLMError):
    """The model's server gave no answer after every retry: refused, timed out, dropped the connection, 5xx, 429.

    Unlike a reply that is wrong (invalid JSON, no valid tool call), this says
    nothing about the prompt or the memory behind it: an evaluation that met
    it has no score, and a run stops (resumably) instead of recording one.
    """


class DataError(AgentmemError):
    """An input data file is missing or malformed."""


class NoRoomForReply(LLMError):
    """A structured reply does not fit in what the model's context leaves after the prompt.

    Raised before the call when the prompt leaves too little room, or after a
    reply cut at the full room. The fix is a smaller input (callers that can,
    split it) or a model with a longer context. ``room``: the tokens there were.
    """

    def __init__(self, message: str, room: int | None = None) -> None:
        super().__init__(message)
        self.room = room


class InvalidReply(LLMError):
    """A model gave no object matching the schema, even after one repair request.

    ``reason``: what was wrong with the last reply (for callers that word their own error).
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
