"""The LLM answer cache: agentmem's SQLite LRU cache against diskcache's, on the same work.

Issue 14 asked whether ``diskcache`` (already installed: llama-cpp-python
depends on it) can replace ``agentmem/llm/cache.py``. Both are SQLite files
shared by processes with a least-recently-used size bound; this measures
what differs for our use, with the same keys (sha256 of the request with the
model identity) and answers of ~1 KB:

* ``put_us`` / ``get_us``: median microseconds per write / per hit, one process;
* ``entries_kept_at_64kib``: entries kept after 500 writes under a 64 KiB bound
  (diskcache counts SQLite pages into its bound, we count the rows' bytes);
* ``three_processes_s``: wall time of three processes each writing and reading
  back 200 entries at once, and whether every read was right;
* ``evictions_counted``: whether the cache can say how many entries it evicted.

Usage::

    python benchmarks/bench_llm_cache.py [--n 1000] [--repeats 3]

Prints a table and writes ``benchmarks/results/llm_cache.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import provenance  # benchmarks/provenance.py: the shared result header

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "llm_cache.json"
ANSWER = "The answer, about one kilobyte long. " * 28


def _request(i: int, tag: str = "") -> dict[str, Any]:
    return {
        "model": "local:0123abcd",
        "messages": [{"role": "user", "content": f"question {tag}{i}"}],
        "max_tokens": 256,
        "temperature": 0.0,
        "response_format": None,
    }


class _Ours:
    def __init__(self, where: Path, max_bytes: int) -> None:
        from agentmem.llm.cache import DiskCache

        self.cache = DiskCache(where / "llm-cache.sqlite", max_bytes=max_bytes)

    def put(self, request: dict[str, Any], text: str) -> None:
        self.cache.put(request, text)

    def get(self, request: dict[str, Any]) -> str | None:
        return self.cache.get(request)

    def entries(self) -> int:
        return int(self.cache.stats()["entries"])


class _Diskcache:
    def __init__(self, where: Path, max_bytes: int) -> None:
        import diskcache

        self.cache = diskcache.Cache(
            str(where / "diskcache"), size_limit=max_bytes, eviction_policy="least-recently-used"
        )

    def put(self, request: dict[str, Any], text: str) -> None:
        from agentmem.llm.cache import request_key

        self.cache.set(request_key(request), text)

    def get(self, request: dict[str, Any]) -> str | None:
        from agentmem.llm.cache import request_key

        return self.cache.get(request_key(request))

    def entries(self) -> int:
        return len(self.cache)


KINDS = {"agentmem": _Ours, "diskcache": _Diskcache}


def _speed(kind: str, n: int) -> tuple[float, float]:
    cache = KINDS[kind](Path(tempfile.mkdtemp(prefix="bench-cache-")), 512 * 1024 * 1024)
    started = time.perf_counter()
    for i in range(n):
        cache.put(_request(i), ANSWER)
    put = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for i in range(n):
        assert cache.get(_request(i)) == ANSWER
    get = (time.perf_counter() - started) / n * 1e6
    return put, get


def _kept_under(kind: str, max_bytes: int, writes: int = 500) -> int:
    cache = KINDS[kind](Path(tempfile.mkdtemp(prefix="bench-cache-")), max_bytes)
    for i in range(writes):
        cache.put(_request(i), ANSWER)
    return cache.entries()


def _worker(kind: str, where: str, worker: int, n: int, queue: Any) -> None:
    cache = KINDS[kind](Path(where), 512 * 1024 * 1024)
    wrong = 0
    for i in range(n):
        cache.put(_request(i, f"w{worker}-"), f"{worker}-{i}")
        wrong += cache.get(_request(i, f"w{worker}-")) != f"{worker}-{i}"
    queue.put(wrong)


def _three_processes(kind: str, n: int = 200) -> tuple[float, bool]:
    where = tempfile.mkdtemp(prefix="bench-cache-")
    KINDS[kind](Path(where), 512 * 1024 * 1024).entries()  # created before the race
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, where, w, n, queue)) for w in range(3)]
    started = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    seconds = time.perf_counter() - started
    wrong = sum(queue.get(timeout=10) for _ in procs)
    return seconds, wrong == 0 and all(p.exitcode == 0 for p in procs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="writes and reads per speed run")
    parser.add_argument("--repeats", type=int, default=3, help="speed runs per cache (the median is kept)")
    args = parser.parse_args()
    import diskcache

    rows: dict[str, Any] = {}
    for kind in KINDS:
        runs = [_speed(kind, args.n) for _ in range(args.repeats)]
        seconds, correct = _three_processes(kind)
        rows[kind] = {
            "put_us": round(statistics.median(r[0] for r in runs), 1),
            "get_us": round(statistics.median(r[1] for r in runs), 1),
            "entries_kept_at_64kib": _kept_under(kind, 64 * 1024),
            "three_processes_s": round(seconds, 2),
            "three_processes_correct": correct,
            "evictions_counted": kind == "agentmem",
        }
    report = {
        "benchmark": "llm_cache",
        **provenance("bench_llm_cache.py", None),
        "diskcache_version": diskcache.__version__,
        "n": args.n,
        "repeats": args.repeats,
        "results": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"{'cache':<10} {'put us':>8} {'get us':>8} {'kept@64KiB':>11} {'3 procs s':>10} correct")
    for kind, row in rows.items():
        print(
            f"{kind:<10} {row['put_us']:>8} {row['get_us']:>8} {row['entries_kept_at_64kib']:>11} "
            f"{row['three_processes_s']:>10} {row['three_processes_correct']}"
        )
    print(f"wrote {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
