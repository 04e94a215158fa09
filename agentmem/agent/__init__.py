"""The agent runtime: a LangGraph graph that recalls, responds and observes."""

from agentmem.agent.graph import MemoryAgent, build_memory_stack

__all__ = ["MemoryAgent", "build_memory_stack"]
