"""Benchmark environments for agentmem.

Each environment registers itself under the entry-point group
``agentmem.environments`` (see this distribution's ``pyproject.toml``) and is
found there like any third-party one; nothing here imports them eagerly.

- ``locomo``: :class:`agentmem_environments.locomo.LocomoEnvironment`,
  question answering over long multi-session conversations.
"""
