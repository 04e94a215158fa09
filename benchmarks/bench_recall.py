"""Recall latency of memory plugins' LLM-free read paths, beside the floor their store sets.

Each plugin is filled through its own LLM-free bulk loader (``import_items``
or plain ``observe`` for the event stores) with synthetic, varied
sentences, then asked ``--queries`` distinct questions; the wall time of each
``recall`` call is recorded and reported as p50 / p99 / mean (with ``--repeats
N`` every question is asked N times and its median time kept, which steadies
a comparison of two versions on a noisy machine). Load time (items
per second) is reported too, for information.

Embeddings: by default (``--embedder minilm``) the real embedder users get
(:func:`agentmem.embeddings.default_embedder`). The corpus is embedded once
(through the shared on-disk embedding store, so a re-run does not embed it
again) and reused by every plugin; every question is embedded afresh inside
each timed ``recall``, as a user's would be. ``--embedder hash`` swaps in a
fast hashing embedder to time retrieval alone.

The floor, measured in the same run at each size: a raw Chroma collection
holding the same vectors, asked for the same ``k`` the plugin asked Chroma
for (recorded during its recalls), plus one real query embedding; the
``vs_floor_p99`` column is the plugin's recall p99 over the floor's.

Usage::

    python benchmarks/bench_recall.py [--items 100000 | --sizes 1000,10000,100000]
                                      [--plugins episodic,semantic,hierarchical] [--queries 50]
                                      [--budget 1024] [--embedder minilm|hash] [--repeats 1] [--out FILE]

Prints a table and writes ``benchmarks/results/recall.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from provenance import measured_commit, provenance  # benchmarks/provenance.py: the script's own folder is on sys.path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "recall.json"

NAMES = [
    "Ann",
    "Bo",
    "Caro",
    "Dev",
    "Ela",
    "Finn",
    "Gus",
    "Hana",
    "Ivo",
    "Jun",
    "Kai",
    "Lea",
    "Mo",
    "Nia",
    "Oto",
    "Pia",
]
PLACES = ["Lisbon", "Oslo", "Kyoto", "Lima", "Cairo", "Quebec", "Hanoi", "Porto", "Dakar", "Tbilisi", "Perth", "Bergen"]
THINGS = [
    "cello",
    "sourdough",
    "chess",
    "kayak",
    "watercolours",
    "marathon",
    "pottery",
    "salsa",
    "astronomy",
    "beekeeping",
    "origami",
    "climbing",
    "jazz",
    "gardening",
    "knitting",
    "photography",
    "sailing",
    "yoga",
    "poetry",
    "robotics",
]
TEMPLATES = [
    "{a} told {b} that the trip to {p} is planned for week {n}.",
    "{a} started learning {t} in {p} and practises {n} hours a week.",
    "{a} prefers {t} over {u}, especially on rainy days in {p}.",
    "{a} met {b} at the {t} club; they meet every {n} days.",
    "{a}'s favourite cafe in {p} serves {t}-themed cakes, table {n}.",
    "{a} lent {b} a book about {t}; it is due back on day {n}.",
    "When the task was to book a hotel in {p}, {a} forgot the date format and it failed (attempt {n}).",
    "{a} fixed the {t} workflow by checking the inventory first, step {n}.",
]


def sentences(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct synthetic memory sentences (names, places, hobbies, numbers), fixed by ``seed``."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tpl = TEMPLATES[i % len(TEMPLATES)]
        a, b = rng.sample(NAMES, 2)
        t, u = rng.sample(THINGS, 2)
        out.append(tpl.format(a=a, b=b, p=rng.choice(PLACES), t=t, u=u, n=i))
    return out


def queries(n: int, seed: int = 1) -> list[str]:
    """``n`` distinct questions (none embedded before its timed recall)."""
    rng = random.Random(seed)
    forms = [
        "What does {a} prefer on rainy days?",
        "When is the trip to {p}?",
        "Who did {a} meet at the {t} club?",
        "What went wrong when booking a hotel in {p}?",
        "How long does {a} practise {t}?",
        "Which book did {a} lend?",
    ]
    out: dict[str, None] = {}
    while len(out) < n:
        ask = rng.choice(forms).format(a=rng.choice(NAMES), p=rng.choice(PLACES), t=rng.choice(THINGS))
        out.setdefault(ask if ask not in out else f"{ask} (asked {len(out)})", None)
    return list(out)


class BenchEmbedder:
    """Corpus texts from the memo (embedded once for all plugins), every question computed live."""

    def __init__(self, corpus: Any, live: Any, questions: set[str]) -> None:
        self.corpus, self.live, self.questions = corpus, live, questions
        self.name, self.dim = live.name, live.dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        if any(t in self.questions for t in texts):
            return self.live.embed(texts)
        return self.corpus.embed(texts)


class _Memo:
    """An unbounded in-process memo of float32 vectors: the corpus memo for an agentmem from before
    ``agentmem.embedding_cache`` (bench_design_space's "before" side), whose own memo evicted within a batch."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.dim = inner, inner.name, inner.dim
        self.computed = 0
        self._vectors: dict[str, Any] = {}

    def embed(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        missing = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        for text, vector in zip(missing, self.inner.embed(missing) if missing else []):
            self._vectors[text] = np.asarray(vector, dtype=np.float32)
        self.computed += len(missing)
        return [self._vectors[t].tolist() for t in texts]


def corpus_memo(live: Any, max_items: int, *, persistent: bool) -> Any:
    """The memo the corpus is embedded through once for every plugin, size and the floor (with the user's
    shared embedding store when ``persistent``, so MiniLM vectors survive between runs)."""
    try:
        from agentmem.embedding_cache import CachingEmbedder, default_store
    except ImportError:  # an older agentmem being measured
        return _Memo(live)
    return CachingEmbedder(live, max_items=max_items, store=default_store() if persistent else None)


class HashEmbedder:
    """A fast, deterministic bag-of-words hashing embedder (retrieval-only timings)."""

    name = "hash-384"
    dim = 384

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            for word in text.lower().split():
                h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=4).digest(), "little")
                vec[h % self.dim] += 1.0 if h & 1 else -1.0
            norm = math.sqrt(sum(v * v for v in vec)) or 1.0
            out.append([v / norm for v in vec])
        return out


# -- loaders: how each plugin takes n items without an LLM ---------------------------------------
def _events(texts: list[str]) -> list[Any]:
    from agentmem.types import Event

    start = datetime(2023, 1, 1, tzinfo=UTC)
    return [
        Event.message(
            text,
            speaker=text.split()[0].rstrip("'s"),
            session_id=f"s{i // 20}",
            timestamp=start + timedelta(minutes=10 * i),
            metadata={"dia_id": f"D{i // 20 + 1}:{i % 20 + 1}"},
        )
        for i, text in enumerate(texts)
    ]


def _evidence(memory: Any) -> str:
    """The import field naming an item's source turns: ``event_ids``, or ``dia_ids`` in a plugin from before the
    design-space rebuild (bench_design_space runs this script under that commit's interpreter too)."""
    item = getattr(sys.modules[type(memory).__module__], "ImportItem", None)
    return "dia_ids" if "dia_ids" in getattr(item, "model_fields", {}) else "event_ids"


def _observe_all(memory: Any, texts: list[str]) -> None:
    for event in _events(texts):
        memory.observe(event)
    memory.reflect(None) if memory.name == "full-context" else None
    flush = getattr(memory, "_flush", None)
    if flush is not None:
        flush()


def _import_items(memory: Any, texts: list[str]) -> None:
    memory.import_items(_events(texts))


def _import_facts(memory: Any, texts: list[str]) -> None:
    key = _evidence(memory)
    memory.import_items(
        [
            {
                "text": text,
                "subject": text.split()[0].rstrip("'s"),
                "key": f"fact {i % 97}",
                "date": f"{1 + i % 28} May 2023",
                key: [f"D{i // 20 + 1}:{i % 20 + 1}"],
            }
            for i, text in enumerate(texts)
        ]
    )


def _import_tasks(memory: Any, texts: list[str]) -> None:
    key = _evidence(memory)
    memory.import_items(
        [
            {
                "task": text,
                "steps": [f"look at {text.split()[-1]}", f"do step {i % 7}", "check the result"],
                "success": i % 3 != 0,
                "outcome": "done" if i % 3 else "failed",
                key: [f"D{i // 20 + 1}:{i % 20 + 1}"],
                "insights": [f"When handling {THINGS[i % len(THINGS)]}, check the inventory first."]
                if i % 10 == 0
                else [],
            }
            for i, text in enumerate(texts)
        ]
    )


def _import_lessons(memory: Any, texts: list[str]) -> None:
    kinds = ["success_pattern", "failure_trigger", "comparative", "workflow"]
    memory.import_items(
        [
            {
                "kind": kinds[i % 4],
                "when_to_use": text,
                "content": f"Check the {THINGS[i % len(THINGS)]} list before step {i % 5}.",
                "task": text,
                "retrieved": i % 4,
                "helped": i % 3 % 2,
            }
            for i, text in enumerate(texts)
        ]
    )


LOADERS: dict[str, Callable[[Any, list[str]], None]] = {
    "none": lambda memory, texts: None,
    "full-context": _observe_all,
    "rag": _observe_all,
    "episodic": _import_items,
    "semantic": _import_facts,
    "procedural": _import_lessons,
    "hierarchical": _import_tasks,
}


def _memory(name: str, root: Path, embedder: Any) -> Any:
    from agentmem.registry import load_memory
    from agentmem.toolkit import Stores, Toolkit
    from agentmem.types import Scope

    cls = load_memory(name)
    toolkit = Toolkit(scope=Scope(user_id="bench"), stores=Stores(root), embedder=embedder, namespace=cls.name)
    return cls(toolkit, None)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    pos = (len(ordered) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _ChromaQueries:
    """Records the ``n_results`` of every Chroma query made while active (the k a plugin asks its store for)."""

    def __init__(self) -> None:
        self.k: list[int] = []

    def __enter__(self) -> _ChromaQueries:
        from chromadb.api.models.Collection import Collection

        self._original = original = Collection.query
        seen = self.k

        def query(collection: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(int(kwargs.get("n_results", 10)))
            return original(collection, *args, **kwargs)

        Collection.query = query  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        from chromadb.api.models.Collection import Collection

        Collection.query = self._original  # type: ignore[method-assign]


def bench_one(
    name: str, size: int, texts: list[str], asks: list[str], embedder: Any, budget: int, repeats: int = 1
) -> dict[str, Any]:
    from agentmem.types import Query

    root = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        memory = _memory(name, root, embedder)
        started = time.perf_counter()
        LOADERS[name](memory, texts[:size])
        load_s = time.perf_counter() - started
        memory.recall(Query(text="warm-up question", budget_tokens=budget))  # first-use index builds
        passes: list[list[float]] = []
        items = []
        with _ChromaQueries() as chroma:
            for number in range(repeats):
                times = []
                for ask in asks:
                    t0 = time.perf_counter()
                    got = memory.recall(Query(text=ask, budget_tokens=budget))
                    times.append((time.perf_counter() - t0) * 1000.0)
                    if number == 0:
                        items.append(len(got.items))
                passes.append(times)
        memory.close()
        # each question's median over the passes: one pass right after a long load is at the mercy of whatever
        # else the machine does in those seconds, and comparing two versions needs less noise than that
        times = [statistics.median(column) for column in zip(*passes)]
        return {
            "plugin": name,
            "items": size,
            "load_s": round(load_s, 2),
            "load_items_per_s": round(size / load_s, 1) if load_s > 0 else None,
            "p50_ms": round(_percentile(times, 0.5), 2),
            "p99_ms": round(_percentile(times, 0.99), 2),
            "mean_ms": round(statistics.fmean(times), 2),
            "mean_items": round(statistics.fmean(items), 1),
            "chroma_k": max(chroma.k) if chroma.k else None,
            "chroma_queries_per_recall": round(len(chroma.k) / len(asks) / repeats, 2),
            "repeats": repeats,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)
        gc.collect()


def bench_floor(
    size: int, texts: list[str], asks: list[str], corpus: Any, live: Any, ks: list[int]
) -> list[dict[str, Any]]:
    """A raw Chroma query of ``k`` over the same ``size`` vectors, plus one live query embedding, per question."""
    import chromadb
    from chromadb.config import Settings

    root = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    try:
        client = chromadb.PersistentClient(path=str(root), settings=Settings(anonymized_telemetry=False))
        collection = client.create_collection("floor", embedding_function=None, metadata={"hnsw:space": "cosine"})
        step = 4096
        for start in range(0, size, step):
            part = texts[start : min(start + step, size)]
            collection.add(
                ids=[str(start + i) for i in range(len(part))], embeddings=corpus.embed(part), documents=part
            )
        collection.query(query_embeddings=live.embed(["warm-up question"]), n_results=max(ks))
        rows = []
        for k in sorted(set(ks)):
            times = []
            for ask in asks:
                t0 = time.perf_counter()
                vector = live.embed([ask])
                collection.query(query_embeddings=vector, n_results=min(k, size), include=["distances"])
                times.append((time.perf_counter() - t0) * 1000.0)
            rows.append(
                {
                    "items": size,
                    "k": k,
                    "p50_ms": round(_percentile(times, 0.5), 2),
                    "p99_ms": round(_percentile(times, 0.99), 2),
                }
            )
        return rows
    finally:
        shutil.rmtree(root, ignore_errors=True)
        gc.collect()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--items", type=int, default=None, help="one store size (overrides --sizes)")
    parser.add_argument("--plugins", default="episodic,semantic,hierarchical")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--budget", type=int, default=1024)
    parser.add_argument(
        "--repeats", type=int, default=1, help="ask every question this many times; its median time is recorded"
    )
    parser.add_argument("--embedder", choices=["minilm", "hash"], default="minilm")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--note", default="", help="a line about the machine's state (e.g. its load)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error(f"--repeats {args.repeats}: each question must be timed at least once; give 1 or more")
    sizes = [args.items] if args.items else [int(s) for s in args.sizes.split(",") if s]
    names = [n for n in args.plugins.split(",") if n]
    unknown = [n for n in names if n not in LOADERS]
    if unknown:
        print(f"no bulk loader for {', '.join(unknown)}; known: {', '.join(LOADERS)}", file=sys.stderr)
        return 2
    from agentmem.embeddings import default_embedder

    commit, dirty = measured_commit()  # read before the run, as a long run's commit should be
    texts = sentences(max(sizes))
    asks = queries(args.queries)
    live: Any = default_embedder() if args.embedder == "minilm" else HashEmbedder()
    corpus = corpus_memo(live, max(sizes) + 1000, persistent=args.embedder == "minilm")
    t0 = time.perf_counter()
    for start in range(0, len(texts), 512):  # the corpus once, shared by every plugin, size and the floor
        corpus.embed(texts[start : start + 512])
    print(
        f"corpus of {len(texts)} sentences ready in {time.perf_counter() - t0:.0f} s "
        f"({getattr(corpus, 'computed', 0)} embedded, {getattr(corpus, 'from_store', 0)} from the store)",
        flush=True,
    )
    embedder = BenchEmbedder(corpus, live, set(asks))
    real = default_embedder()
    real.embed(["warm-up"])
    query_ms = []
    for ask in asks:
        t0 = time.perf_counter()
        real.embed([ask])
        query_ms.append((time.perf_counter() - t0) * 1000.0)
    query_embedding = {
        "backend": getattr(real, "backend", "numpy"),
        "p50_ms": round(_percentile(query_ms, 0.5), 2),
        "p99_ms": round(_percentile(query_ms, 0.99), 2),
    }
    print(
        f"MiniLM query embedding ({query_embedding['backend']}): p50 {query_embedding['p50_ms']} ms, "
        f"p99 {query_embedding['p99_ms']} ms",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    for size in sizes:
        at_size = []
        for name in names:
            row = bench_one(name, size, texts, asks, embedder, args.budget, args.repeats)
            at_size.append(row)
            print(
                f"{name:>13} {size:>7} items: p50 {row['p50_ms']:8.2f} ms  p99 {row['p99_ms']:8.2f} ms"
                f"  (k {row['chroma_k']}, load {row['load_s']:.1f} s, {row['mean_items']} items recalled)",
                flush=True,
            )
        ks = sorted({r["chroma_k"] for r in at_size if r["chroma_k"]}) or [8]
        floor = bench_floor(size, texts, asks, corpus, live, ks)
        floors.extend(floor)
        by_k = {f["k"]: f for f in floor}
        for row in at_size:
            base = by_k.get(row["chroma_k"]) if row["chroma_k"] else None
            row["floor_p99_ms"] = base["p99_ms"] if base else None
            row["vs_floor_p99"] = round(row["p99_ms"] / base["p99_ms"], 2) if base and base["p99_ms"] else None
            print(
                f"{row['plugin']:>13} {size:>7} items: recall p99 {row['p99_ms']:.2f} ms vs floor p99 "
                f"{row['floor_p99_ms']} ms (raw Chroma k={row['chroma_k']} + one query embedding): "
                f"x{row['vs_floor_p99']}",
                flush=True,
            )
        rows.extend(at_size)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                # the commit of the agentmem measured, which is not this script's when an older checkout's
                # interpreter runs it
                **provenance("bench_recall.py", argv, args.note, commit=commit, dirty=dirty),
                "embedder": args.embedder,
                "query_embedding_ms": query_embedding,
                "queries": args.queries,
                "repeats": args.repeats,
                "budget_tokens": args.budget,
                "results": rows,
                "floor": floors,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
