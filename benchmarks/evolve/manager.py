"""Does an LLM-free manager help the program render.py measured? Paired, on the same 100 select requests.

Of the requests that program gets wrong on render.py's select split, about
one in eight shows the stale value of a corrected preference, and a stale
statement takes one of its 4 recall slots from evidence it needed. The
``correct`` manager (agentmem.managers.Correction) hides the earlier
statement that a later one says it changes ("from now on", "switched", "now"),
keeping its history; the ``add-manager`` structural operator adds it. This
measures the program with the lifted seed's managers (consolidate) against
the same program with ``correct`` added, under the notes line.

    python benchmarks/evolve/manager.py      # writes benchmarks/results/evolve/manager.json

Every prompt goes through the LLM cache, so a rerun costs seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # render.py beside this file
from render import RESULTS, compare


def main(argv: list[str] | None = None) -> None:
    variants = {
        "consolidate": {"managers": ["consolidate"]},
        "consolidate + correct": {"managers": ["consolidate", "correct"]},
    }
    compare("evolve/manager.py", argv, variants, RESULTS / "manager.json", __doc__)


if __name__ == "__main__":
    main()
