"""The `agentmem` command line."""
