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

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from agentmem.stats import mean_interval
from agentmem_evolve.operators import usage_line

sys.path.insert(0, str(Path(__file__).resolve().parent))  # render.py beside this file
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/provenance.py
from provenance import provenance  # the shared result header
from render import RESULTS, _interval, designed_program, evaluate_cell, paired, param_accuracy


def main(argv: list[str] | None = None) -> None:
    compare(
        "evolve/retriever.py", argv, {"hybrid": {"retriever": "hybrid"}, "dense": {"retriever": "dense"}},
        RESULTS / "retriever.json", __doc__,
    )  # fmt: skip


def compare(
    script: str, argv: list[str] | None, variants: dict[str, dict[str, Any]], default_out: Path, doc: str | None
) -> None:
    """Each variant of the program render.py measured (``designed_program`` under the notes line, with the
    variant's design choices on top), paired against the first, on render.py's 100 select requests."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--users", type=int, default=152)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)

    line = usage_line("description", "oldest first", False, "notes")
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as programs:
        for i, (name, choice) in enumerate(variants.items()):
            path = Path(programs, f"variant{i}.py")
            path.write_text(designed_program(choice, line))
            cell = evaluate_cell(str(path), args.users, "validation", args.limit, args.model)
            scores[name] = param_accuracy(cell)
            print(f"{name}: {np.mean(list(scores[name].values())):.3f}", flush=True)

    first, *others = variants
    result = {
        **provenance(script, argv, model=args.model),
        "data": f"toolprefs users={args.users}, validation split, first {args.limit} requests (render.py's)",
        "program": "the lifted episodic seed: notes under the notes line, top_k 4, no stored replies, no dates",
        "variants": {
            name: {"design": variants[name], "param_accuracy": _interval(mean_interval(list(values.values())))}
            for name, values in scores.items()
        },
        "paired": {f"{name} - {first}": paired(scores[name], scores[first]) for name in others},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
