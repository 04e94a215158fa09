"""Ingestion time per evaluation, before and after the shared embedding store.

What one evaluation pays to ingest a task's conversation into a memory
program (every event observed into a fresh store; no LLM involved for the
default ``episodic``), timed three ways with the real embedder:

* ``numpy_memo_only`` (before this change): the numpy forward pass and only
  the in-process memo evolution had, in a new process or a new run: every
  text is embedded;
* ``memo_only``: the same with the default (onnxruntime) forward pass;
* ``store_cold`` (after, first time anywhere): the same, also writing the
  shared on-disk store (its overhead);
* ``store_warm`` (after): another candidate, evaluation process or later run
  ingesting the same conversation: a new memo, the store already holding the
  vectors.

The store is a private temporary directory (the user's own is neither read
nor filled), so each run measures from scratch.

Usage::

    python benchmarks/bench_ingest.py [--env locomo --data ../shared/data/locomo/locomo6.json]
                                      [--env toolprefs] [--memory episodic] [--tasks 2] [--out FILE] [--note TEXT]

Prints a table and writes ``benchmarks/results/ingest.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import provenance  # benchmarks/provenance.py: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "ingest.json"
LOCOMO = ROOT.parent / "shared" / "data" / "locomo" / "locomo6.json"
MODES = ("numpy_memo_only", "memo_only", "store_cold", "store_warm")


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim, self.identity = inner, inner.name, inner.dim, inner.identity
        self.texts = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.texts += len(texts)
        return self.inner.embed(texts)


def ingest(task: Any, memory_name: str, embedder: Any, root: Path) -> float:
    """Seconds to observe every event of ``task`` into a fresh ``memory_name`` store."""
    from agentmem.registry import load_memory
    from agentmem.toolkit import Stores, Toolkit
    from agentmem.types import Scope

    cls = load_memory(memory_name)
    stores = Stores(root)
    try:
        toolkit = Toolkit(
            scope=Scope(user_id="bench", run_id=task.id), stores=stores, embedder=embedder, namespace=cls.name
        )
        memory = cls(toolkit, None)
        started = time.perf_counter()
        for session in task.sessions:
            for event in session.events:
                memory.observe(event)
        flush = getattr(memory, "_flush", None)
        if flush is not None:
            flush()
        seconds = time.perf_counter() - started
        memory.close()
        return seconds
    finally:
        stores.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="locomo" if LOCOMO.exists() else "toolprefs")
    parser.add_argument("--data", default=str(LOCOMO) if LOCOMO.exists() else None)
    parser.add_argument("--split", default="all")
    parser.add_argument("--memory", default="episodic")
    parser.add_argument("--tasks", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line about the machine's state (e.g. its load)")
    args = parser.parse_args(argv)

    from agentmem.embedding_cache import CachingEmbedder, EmbeddingStore
    from agentmem.embeddings import MiniLMEmbedder, default_embedder
    from agentmem.evaluation import make_environment

    environment = make_environment(args.env, data=args.data if args.env == "locomo" else None, seed=0)
    tasks = environment.tasks(split=args.split, limit=args.tasks)
    real = default_embedder()
    real.embed(["warm-up"])
    numpy_model = MiniLMEmbedder(real.model_dir, backend="numpy")
    numpy_model.embed(["warm-up"])
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    rows = []
    try:
        store_dir = work / "vectors"
        for task in tasks:
            events = sum(len(s.events) for s in task.sessions)
            row: dict[str, Any] = {"task": task.id, "events": events}
            for mode in MODES:
                counting = Counting(numpy_model if mode == "numpy_memo_only" else real)
                store = EmbeddingStore(store_dir / task.id) if mode.startswith("store_") else None
                embedder = CachingEmbedder(counting, store=store)
                seconds = ingest(task, args.memory, embedder, work / f"{task.id}-{mode}")
                row[mode] = {"seconds": round(seconds, 2), "texts_embedded": counting.texts}
                if store is not None:
                    store.close()
                print(
                    f"{task.id:>12} {events:>5} events {mode:>10}: {seconds:7.2f} s, {counting.texts} texts embedded",
                    flush=True,
                )
            row["speedup_vs_numpy_memo_only"] = round(
                row["numpy_memo_only"]["seconds"] / max(row["store_warm"]["seconds"], 1e-6), 1
            )
            rows.append(row)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def mean(mode: str) -> float:
        return round(statistics.fmean(r[mode]["seconds"] for r in rows), 2)

    summary = {mode: mean(mode) for mode in MODES}
    print("mean seconds per evaluation: " + ", ".join(f"{mode} {value}" for mode, value in summary.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                **provenance("bench_ingest.py", argv, args.note),
                "env": args.env,
                "split": args.split,
                "memory": args.memory,
                "embedder": {
                    "name": real.name,
                    "backend": getattr(real, "backend", "numpy"),
                    "identity": real.identity,
                },
                "mean_seconds_per_evaluation": summary,
                "tasks": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
