"""Where a result came from: the command, agentmem's version and commit, the model, the date and the machine.

A score in a results table is only worth what one can learn about how it was
made. Grid results (``grid.json`` and each cell's file), ``agentmem eval``
result files and the benchmark scripts' result files
(``benchmarks/provenance.py`` builds its header from these functions) all
name their origin the same way, so a number is traced back through the
same fields wherever it was written.

The commit is that of the git checkout agentmem itself is imported from
(what code made the numbers), read only when the package's files are tracked
there; an installed agentmem, or one outside any checkout, records none, and
a missing ``git`` never fails a run.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Provenance",
    "cli_command",
    "collect",
    "git_commit",
    "git_dirty",
    "load_average",
    "machine_facts",
]

PACKAGE_DIR = Path(__file__).resolve().parent
_GIT_SECONDS = 10


class Provenance(BaseModel):
    """The origin of a result file's numbers."""

    model_config = ConfigDict(extra="allow")

    when: str = Field(description="when the run started, ISO 8601 in UTC")
    command: str = Field(description="the command line as it was run")
    agentmem_version: str
    git_commit: str | None = Field(None, description="agentmem's commit; None outside a git checkout")
    git_dirty: bool | None = Field(
        None, description="whether tracked files differed from that commit (the numbers are not quite its)"
    )
    model: str | None = None
    machine: dict[str, Any] = Field(default_factory=dict)

    def short(self) -> str:
        """``agentmem 0.1.0, commit 1a2b3c4d (dirty), 2025-01-01T00:00:00+00:00, 2 cores, Python 3.11.7``."""
        commit = "no git checkout" if self.git_commit is None else f"commit {self.git_commit[:8]}"
        if self.git_dirty:
            commit += " (uncommitted changes)"
        machine = ", ".join(
            part
            for part in (
                f"{self.machine['cores']} cores" if self.machine.get("cores") else "",
                f"Python {self.machine['python']}" if self.machine.get("python") else "",
            )
            if part
        )
        return ", ".join(part for part in (f"agentmem {self.agentmem_version}", commit, self.when, machine) if part)


def _git(args: list[str], where: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=True, timeout=_GIT_SECONDS
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout


def package_checkout(package_dir: Path) -> Path | None:
    """``package_dir`` when the checkout it sits in tracks its files, else None: an installed package, or one
    beside someone else's repository (a virtual environment inside a checkout), has no commit of its own."""
    if _git(["ls-files", "--error-unmatch", "__init__.py"], package_dir) is None:
        return None
    return package_dir


def _checkout(where: Path | None) -> Path | None:
    """``where``, or agentmem's own folder when its files are tracked by the checkout it sits in."""
    return where if where is not None else package_checkout(PACKAGE_DIR)


def git_commit(where: Path | None = None) -> str | None:
    """The commit checked out at ``where`` (default: agentmem's own checkout), or None outside a git checkout."""
    checkout = _checkout(where)
    out = _git(["rev-parse", "HEAD"], checkout) if checkout is not None else None
    if out is None or not out.strip():
        return None
    return out.strip()


#: tracked folders of result files, not code: a benchmark that runs after another in one sitting (which rewrote
#: its committed result file) still measured a clean commit
_NOT_CODE = ("benchmarks/results",)


def git_dirty(where: Path | None = None) -> bool | None:
    """Whether tracked files other than result files (``_NOT_CODE``) differ from the commit at ``where``
    (default: agentmem's own checkout); None outside git."""
    checkout = _checkout(where)
    spec = ["--", ":(top)", *(f":(top,exclude){folder}" for folder in _NOT_CODE)]
    out = _git(["status", "--porcelain", "--untracked-files=no", *spec], checkout) if checkout is not None else None
    return bool(out.strip()) if out is not None else None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded (a loaded machine makes every timing worse)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # not available on this platform
        return []


def machine_facts() -> dict[str, Any]:
    """Python's version, the processor, the number of cores and the platform."""
    return {
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
    }


def cli_command() -> str:
    """The ``agentmem`` command line this process runs, as a shell would take it."""
    return shlex.join(["agentmem", *sys.argv[1:]])


def collect(
    command: str | Sequence[str] | None = None, *, model: str | None = None, where: Path | None = None
) -> Provenance:
    """This run's provenance: ``command`` (default: ``sys.argv``), agentmem's version and commit, ``model``,
    now, and the machine (its load average now).
    """
    from agentmem import __version__

    if command is None:
        command = sys.argv
    return Provenance(
        when=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command if isinstance(command, str) else shlex.join(command),
        agentmem_version=__version__,
        git_commit=git_commit(where),
        git_dirty=git_dirty(where),
        model=model,
        machine={**machine_facts(), "load_average": load_average()},
    )
