"""Hostile: ignores SIGTERM and SIGINT, then spins, so that only a hard kill stops it."""
import signal

from agentmem.memory import MemoryProgram


class Stubborn(MemoryProgram):
    def observe(self, event):
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            try:
                signal.signal(sig, signal.SIG_IGN)
            except (OSError, ValueError, PermissionError):
                pass
        while True:
            pass

    def recall(self, query):
        raise AssertionError("unreachable")
