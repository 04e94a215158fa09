"""Evolve a memory program from Python: the episodic plugin, tuned on a small slice of toolprefs.

Run it with `python examples/evolve_from_python.py [RUN_DIR]`; look at the
result with `agentmem evolve report RUN_DIR`.
"""

import sys
from pathlib import Path

from agentmem_evolve import Controller, RunConfig


def main(run_dir: str = "runs/example-evolution", iterations: int = 1) -> dict:
    config = RunConfig.from_dict(
        {
            "environment": {"name": "toolprefs", "minibatch": 2, "validation_limit": 2, "test_limit": 2},
            "seeds": ["episodic"],
            "budget": {"iterations": iterations},
            # the LLM-free proxy (ingest and recall) on 20 questions, not the default 200: a demo in minutes
            "cascade": {"proxy_questions": 20},
            # structured mutation needs no code-writing model; add "reflective" to let an LLM rewrite hooks
            "proposers": {"weights": {"mutate": 1.0}, "children_per_iteration": 1},
        }
    )
    controller = Controller.create(Path(run_dir), config)
    try:
        summary = controller.run()
    finally:
        controller.close()
    best = summary["best"]
    print(f"best program {best['id']} ({best['operator']}): {best['score']:.3f} on the validation slice")
    return summary


if __name__ == "__main__":
    main(*sys.argv[1:2])
