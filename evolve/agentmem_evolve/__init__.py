"""agentmem-evolve: searches memory programs for the one that scores best on an environment."""

from agentmem_evolve.loop import Candidate, EvolutionResult, evolve
from agentmem_evolve.space import ParamSpace

__all__ = ["Candidate", "EvolutionResult", "ParamSpace", "evolve"]
