"""Two memory plugins composed: episodic (what was said, when) and semantic (facts about the user).

The token budget is split between them; each reply's trace shows what each
plugin recalled. ``end_thread`` lets memory reflect: the semantic plugin
extracts and reconciles facts from the conversation.

    python examples/two_plugins.py              # the embedded local model
    python examples/two_plugins.py openai/gpt-4o-mini
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

from agentmem import Agent, Reply


def main(model: Any = "local", store_dir: str | None = None) -> Reply:
    """Tell the agent about yourself in one thread, ask in another; returns the last reply."""
    store_dir = store_dir or tempfile.mkdtemp(prefix="agentmem-two-")
    with Agent(model=model, memory="episodic+semantic", user_id="ann", store_dir=store_dir) as agent:
        print("plugins:", agent.plugins)
        agent.chat("I'm vegetarian and I live in Lisbon.", thread_id="intro")
        agent.end_thread("intro")  # reflect: consolidate what the thread taught
        reply = agent.chat("Suggest a dinner for me tonight.", thread_id="dinner")
        for detail in reply.trace.recalls:
            print(f"[{detail.plugin}] {detail.tokens} tokens, {len(detail.items)} items")
            for item in detail.items:
                print(f"    {item.score:.2f}  {item.text}")
        print("answer:", reply.text)
        return reply


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "local")
