"""Does the retriever matter under the notes line? Dense against hybrid, paired, on the 100 select requests.

render.py measured the program that structural operators reach from the
episodic seed (notes, 4 items, no stored replies of the agent, no dates)
under the old description line with both retrievers (0.533 dense, 0.529
hybrid), and under the notes line only with dense (0.573); its held-out
check (render-test.json, +0.067 over the seed) used dense as well. Every
evolution run's child keeps the lifted seed's hybrid retriever and gained
less on its test users (+0.021 in the ninth and tenth runs), so this asks
whether the swap-retriever operator is the missing step: the same program
under the notes line with each retriever, on the same requests as render.py.

    python benchmarks/evolve/retriever.py    # writes benchmarks/results/evolve/retriever.json

Every prompt goes through the LLM cache, so a rerun costs seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # render.py beside this file
from render import RESULTS, compare


def main(argv: list[str] | None = None) -> None:
    compare(
        "evolve/retriever.py", argv, {"hybrid": {"retriever": "hybrid"}, "dense": {"retriever": "dense"}},
        RESULTS / "retriever.json", __doc__,
    )  # fmt: skip


if __name__ == "__main__":
    main()
