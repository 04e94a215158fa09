"""The command line the fixture generators share: rewrite the committed fixture file, or ``--check`` that it is current.

Each generator (``longmemeval.fixture``, ``memoryagentbench.fixture``) says
what its file is and how to render it; this module is the one place that
parses the arguments, compares or writes the file and prints the outcome.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

__all__ = ["fixture_main"]


def fixture_main(
    argv: list[str] | None, *, doc: str, out: Path, render: Callable[[], str], count: Callable[[], str]
) -> int:
    """Run a fixture generator's command line: 0 when the file was written or is up to date, 1 when it differs.

    ``doc`` is the generator's module docstring (its first line is the help text), ``render`` gives the file's
    text, ``count`` says how much was written (``"14 instances"``), for the line printed after a rewrite.
    """
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the committed file differs from a fresh one")
    parser.add_argument("--out", type=Path, default=out)
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print(f"{args.out}: {'up to date' if same else 'differs from the generator'}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({count()})")
    return 0
