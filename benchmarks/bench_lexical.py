"""The store's lexical index: the in-memory BM25 index against SQLite FTS5 (bm25 ranking), at 100k items.

The issue behind the core Store asked for "BM25, or SQLite FTS5 if it serves
as well and faster". Both index the same tokens (``agentmem.retrieval.tokenize``:
stop words and possessive 's dropped; FTS5 is fed the pre-tokenised text) of
the synthetic sentences ``bench_recall.py`` uses, then answer its 50 queries
for the top 30. Reported: search p50/p99, build time (FTS5's persists; the
in-memory index is rebuilt from SQLite on first use after every open), the
cost of adding 1,000 documents, and how much the two top-10s overlap.

Usage::

    python benchmarks/bench_lexical.py [--items 100000]

Prints the numbers and writes ``benchmarks/results/lexical.json``.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_recall import queries, sentences  # noqa: E402
from provenance import provenance  # noqa: E402 - benchmarks/provenance.py: the shared result header

from agentmem.retrieval import BM25Index, tokenize  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "lexical.json"


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    texts, asks = sentences(args.items), queries(50)
    db = sqlite3.connect(Path(tempfile.mkdtemp(prefix="bench-lexical-")) / "t.sqlite")
    db.execute("CREATE TABLE docs (seq INTEGER PRIMARY KEY, text TEXT)")
    db.executemany("INSERT INTO docs VALUES (?, ?)", list(enumerate(texts)))
    db.commit()

    t0 = time.perf_counter()
    db.execute("CREATE VIRTUAL TABLE fts USING fts5(body)")
    db.executemany(
        "INSERT INTO fts (rowid, body) VALUES (?, ?)", [(i, " ".join(tokenize(t))) for i, t in enumerate(texts)]
    )
    db.commit()
    fts_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    index = BM25Index()
    index.add_many((str(seq), text) for seq, text in db.execute("SELECT seq, text FROM docs"))
    bm25_build = time.perf_counter() - t0

    def fts_search(query: str, k: int = 30) -> list[tuple[str, float]]:
        terms = sorted(set(tokenize(query)))
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        sql = "SELECT rowid, bm25(fts) FROM fts WHERE fts MATCH ? ORDER BY bm25(fts) LIMIT ?"
        return [(str(r[0]), -r[1]) for r in db.execute(sql, (match, k))]

    searches = {"bm25": lambda q: index.search(q, 30), "fts5": fts_search}
    timing: dict[str, dict[str, float]] = {}
    for name, search in searches.items():
        search(asks[0])  # warm-up
        ms = []
        for q in asks:
            t0 = time.perf_counter()
            search(q)
            ms.append((time.perf_counter() - t0) * 1000.0)
        timing[name] = {"p50_ms": round(_percentile(ms, 0.5), 2), "p99_ms": round(_percentile(ms, 0.99), 2)}
    overlap = statistics.fmean(
        len({d for d, _ in index.search(q, 10)} & {d for d, _ in fts_search(q, 10)}) / 10 for q in asks
    )
    t0 = time.perf_counter()
    for i in range(1000):
        index.add(f"extra{i}", texts[i])
    bm25_add = time.perf_counter() - t0
    t0 = time.perf_counter()
    db.executemany(
        "INSERT INTO fts (rowid, body) VALUES (?, ?)",
        [(args.items + i, " ".join(tokenize(texts[i]))) for i in range(1000)],
    )
    db.commit()
    fts_add = time.perf_counter() - t0

    result = {
        **provenance("bench_lexical.py", argv, machine={"sqlite": sqlite3.sqlite_version}),
        "items": args.items,
        "queries": len(asks),
        "k": 30,
        "search": timing,
        "build_s": {"bm25_in_memory_on_open": round(bm25_build, 2), "fts5_once": round(fts_build, 2)},
        "add_1000_ms": {"bm25": round(bm25_add * 1000, 1), "fts5": round(fts_add * 1000, 1)},
        "top10_overlap": round(overlap, 3),
    }
    for name, t in timing.items():
        print(f"{name}: search p50 {t['p50_ms']} ms, p99 {t['p99_ms']} ms")
    print(f"build: bm25 {bm25_build:.1f} s (every open), fts5 {fts_build:.1f} s (once); top-10 overlap {overlap:.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
