"""Query-embedding latency and batch throughput of all-MiniLM-L6-v2, per forward pass and thread count.

For each backend (``onnx``: onnxruntime on the graph built from the weights;
``numpy``: the numpy forward pass) and each thread count, times ``--queries``
distinct short questions embedded one at a time (what every recall pays) and
``--batch`` sentences embedded together (what ingestion pays), and checks the
vectors against the numpy pass on a fixed sample (cosine; the numpy pass is
itself tested against Hugging Face's reference values).

Usage::

    python benchmarks/bench_embedding.py [--queries 200] [--batch 256] [--threads 1,2] [--out FILE] [--note TEXT]

Prints a table and writes ``benchmarks/results/embedding.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from provenance import provenance  # benchmarks/provenance.py: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "embedding.json"
SAMPLE = [
    "I adopted a puppy last week",
    "Where does my sister live?",
    "",
    "Hello!",
    "Ünïcödé façade — naïve café 東京 😀 emoji",
    "My sister's wedding is on June 14th in Lisbon; I'm the maid of honor.",
    " ".join(f"word{i} longer text about memory and agents" for i in range(80)),
]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line about the machine's state (e.g. its load)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from bench_recall import queries, sentences

    from agentmem.embeddings import MiniLMEmbedder, locate_embedding_model

    model_dir = locate_embedding_model()
    asks = queries(args.queries)
    batch = sentences(args.batch, seed=7)
    reference = MiniLMEmbedder(model_dir, backend="numpy").embed_array(SAMPLE)
    rows: list[dict[str, Any]] = []
    for backend in ("onnx", "numpy"):
        for threads in [int(t) for t in args.threads.split(",") if t]:
            t0 = time.perf_counter()
            model = MiniLMEmbedder(model_dir, backend=backend, threads=threads)
            load_s = time.perf_counter() - t0
            for ask in asks[:5]:
                model.embed([ask])
            times = []
            for ask in asks:
                t0 = time.perf_counter()
                model.embed([ask])
                times.append((time.perf_counter() - t0) * 1000.0)
            t0 = time.perf_counter()
            model.embed(batch)
            batch_s = time.perf_counter() - t0
            cosines = (model.embed_array(SAMPLE) * reference).sum(axis=1)
            row = {
                "backend": backend,
                "threads": threads,
                "load_s": round(load_s, 2),
                "query_p50_ms": round(_percentile(times, 0.5), 2),
                "query_p99_ms": round(_percentile(times, 0.99), 2),
                "batch_texts_per_s": round(len(batch) / batch_s, 1),
                "min_cosine_vs_numpy": round(float(np.min(cosines)), 6),
            }
            rows.append(row)
            print(
                f"{backend:>6} threads {threads}: query p50 {row['query_p50_ms']:6.2f} ms, p99 "
                f"{row['query_p99_ms']:6.2f} ms; batch {row['batch_texts_per_s']:7.1f} texts/s; "
                f"load {row['load_s']:.2f} s; min cosine vs numpy {row['min_cosine_vs_numpy']}",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                **provenance("bench_embedding.py", argv, args.note),
                "queries": args.queries,
                "batch": args.batch,
                "results": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
