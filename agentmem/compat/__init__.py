"""Adapters that run memory programs written for other frameworks as agentmem plugins.

* :mod:`agentmem.compat.mstar` - M*'s format (``KnowledgeBase.write/read``,
  ``KnowledgeItem`` / ``Query`` dataclasses, instruction constants).
"""

from __future__ import annotations

from agentmem.compat.mstar import MStarProgram, MStarToolkit, is_mstar_module, mstar_program_class

__all__ = ["MStarProgram", "MStarToolkit", "is_mstar_module", "mstar_program_class"]
