"""agentmem-evolve: discovers the memory program that scores best on an environment.

One file, one job (after OpenEvolve): :mod:`.controller` runs the loop,
:mod:`.archive` keeps programs and evaluations in SQLite, :mod:`.proposers`
makes children, :mod:`.selection` picks parents, :mod:`.evaluator` and
:mod:`.executor` score programs (locally or on Ray), :mod:`.sandbox` runs
untrusted candidates, :mod:`.report` and :mod:`.export` turn a run into a
page and a plugin package.
"""

from agentmem_evolve.config import RunConfig
from agentmem_evolve.controller import Controller

__all__ = ["Controller", "RunConfig"]
