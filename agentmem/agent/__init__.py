"""Building memory stacks for the agent; the agent itself is :class:`agentmem.Agent` (``agentmem.sdk``)."""

from agentmem.agent.graph import MemoryAgent, build_memory_stack

__all__ = ["MemoryAgent", "build_memory_stack"]
