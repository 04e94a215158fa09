"""Where a benchmark result came from: the header every result file written by these scripts starts with.

One place for it so that every file names its commit, command, machine and (where a model made the numbers)
model the same way: a number in the docs is traced back through these fields. The facts themselves are read
by :mod:`agentmem.provenance`, which grid and ``agentmem eval`` result files use too.
"""

from __future__ import annotations

import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agentmem import __version__

try:
    from agentmem import provenance as _facts
except ImportError:  # an older agentmem being measured (bench_design_space's "before" recall): this checkout's reader
    import importlib.util

    _spec = importlib.util.spec_from_file_location(
        "_agentmem_provenance", Path(__file__).resolve().parent.parent / "agentmem" / "provenance.py"
    )
    assert _spec is not None and _spec.loader is not None
    _facts = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_facts)

ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """The checked-out commit, or ``"unknown"`` outside a git checkout."""
    return _facts.git_commit(ROOT) or "unknown"


def git_dirty() -> bool | None:
    """Whether tracked files differ from the commit (a dirty tree's number is not that commit's); None outside git."""
    return _facts.git_dirty(ROOT)


def measured_commit(package: str = "agentmem") -> tuple[str | None, bool | None]:
    """The commit and tree state of the checkout ``package`` is imported from: an older checkout's when its virtual
    environment (or ``PYTHONPATH``) runs a current script (the numbers are that code's, so the header names it)."""
    import importlib

    where = _facts.package_checkout(Path(importlib.import_module(package).__file__ or ".").resolve().parent)
    if where is None:  # an installed copy: no commit of its own (the header then names this checkout's)
        return None, None
    return _facts.git_commit(where), _facts.git_dirty(where)


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded (a loaded machine makes every timing worse)."""
    return _facts.load_average()


def provenance(
    script: str,
    argv: list[str] | None,
    note: str = "",
    *,
    model: str | None = None,
    machine: dict[str, Any] | None = None,
    commit: str | None = None,
    dirty: bool | None = None,
) -> dict[str, Any]:
    """``when``, ``git_commit``, ``git_dirty``, ``command`` (``python benchmarks/<script> <args>``),
    ``agentmem_version``, ``machine`` (with the load average at the end of the run) and, for a benchmark whose
    numbers come from a model, ``model``.

    ``machine`` adds the script's own facts about the machine (a library's version, the load at the start);
    ``commit`` and ``dirty`` are the commit and tree state read when a long run started, if the script read them then.
    """
    header: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": commit or git_commit(),
        "git_dirty": git_dirty() if commit is None else dirty,
        "command": shlex.join(["python", f"benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])]),
        "agentmem_version": __version__,
        "machine": {
            **_facts.machine_facts(),
            **(machine or {}),
            "load_average_at_end": load_average(),
            "note": note,
        },
    }
    if model is not None:
        header["model"] = model
    return header
