"""BFCL v4 memory category (being built)."""

from agentmem.environment import Environment


class BFCLMemoryEnvironment(Environment):  # placeholder until the environment lands
    name = "bfcl-memory"
