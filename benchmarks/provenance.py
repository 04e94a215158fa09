"""Where a benchmark result came from: the header every result file written by these scripts starts with.

One place for it so that every file names its commit, command and machine the same way (a number in the
docs is traced back through these fields).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The checked-out commit, or ``"unknown"`` outside a git checkout."""
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(script: str, argv: list[str] | None, note: str = "") -> dict[str, Any]:
    """``when``, ``git_commit``, ``command`` (``python benchmarks/<script> <args>``) and ``machine`` (with the
    load average at the end of the run, since a loaded machine makes every timing worse)."""
    return {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "command": f"python benchmarks/{script} " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {"python": platform.python_version(), "cpu": platform.processor() or platform.machine(),
                    "cores": os.cpu_count(), "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
                    "note": note},
    }
