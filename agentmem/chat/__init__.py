"""``agentmem chat``: a Textual terminal chat with a memory-backed agent, its memory shown as it works."""

from agentmem.chat.app import ChatApp
from agentmem.chat.commands import COMMANDS, ChatMessage, Command, Outcome, parse, run_command, transcript_markdown

__all__ = ["COMMANDS", "ChatApp", "ChatMessage", "Command", "Outcome", "parse", "run_command", "transcript_markdown"]
