"""LLM serving and cache benchmark, against the embedded llama.cpp server (issue 3).

(a) throughput of a batch of independent short prompts sent at concurrency 1
    and at higher concurrency to one llama-cpp-python server (tokens/s and the
    ratio), plus, for comparison, the same batch spread over several servers
    that split the cores between them (the only way to answer requests in
    parallel with llama-cpp-python, whose server holds one model context
    behind a lock and answers one request at a time);
(b) the same `agentmem eval --env locomo --memory episodic --limit 10` run
    twice, with an empty disk cache and then with the cache it filled: wall
    time and LLM calls made.

Usage::

    python benchmarks/bench_llm.py [--prompts 32] [--max-tokens 32] [--concurrency 1,2,4,8]
                                   [--servers 2] [--eval-limit 10] [--skip-throughput] [--skip-eval]

Prints a table and writes ``benchmarks/results/llm.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from provenance import git_commit, git_dirty, load_average, provenance  # benchmarks/provenance.py: shared header

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "llm.json"
LOCOMO6 = ROOT.parent / "shared" / "data" / "locomo" / "locomo6.json"

TOPICS = [
    "the sea", "a forest", "coffee", "rain", "a library", "mountains", "a train", "bread", "the moon", "winter",
    "a bicycle", "music", "a garden", "the desert", "a city at night", "snow", "a river", "tea", "a lighthouse",
    "autumn", "a market", "the wind", "a candle", "an island", "a bridge", "clouds", "a violin", "a map",
    "a kite", "sunrise", "a clock", "a harbour", "a meadow", "thunder", "a castle", "a cat",
]  # fmt: skip


def _prompts(n: int) -> list[list[dict[str, str]]]:
    return [
        [
            {
                "role": "user",
                "content": f"Write one short sentence about {TOPICS[i % len(TOPICS)]}."
                + (f" ({i})" if i >= len(TOPICS) else ""),
            }
        ]
        for i in range(n)
    ]


def _client(api_base: str, concurrency: int, max_tokens: int) -> Any:
    from agentmem.config import Settings
    from agentmem.llm import LLM

    settings = Settings(cache=False, max_concurrency=max(concurrency, 1), max_retries=2, llm_timeout=600)
    return LLM("openai/local", api_base=api_base, settings=settings, max_tokens=max_tokens, cache=False)


def _batch(clients: list[Any], prompts: list[list[dict[str, str]]], concurrency: int) -> dict[str, Any]:
    """Send ``prompts`` round-robin over ``clients`` with ``concurrency`` in flight; time it."""

    def one(i: int) -> None:
        clients[i % len(clients)].complete(prompts[i], caller="bench.throughput")

    before = [c.meter.total() for c in clients]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(len(prompts))))
    wall = time.perf_counter() - started
    after = [c.meter.total() for c in clients]
    completion = sum(a.completion_tokens - b.completion_tokens for a, b in zip(after, before))
    prompt = sum(a.prompt_tokens - b.prompt_tokens for a, b in zip(after, before))
    errors = sum(a.errors - b.errors for a, b in zip(after, before))
    return {
        "concurrency": concurrency,
        "requests": len(prompts),
        "wall_s": round(wall, 2),
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "completion_tokens_per_s": round(completion / wall, 2),
        "total_tokens_per_s": round((prompt + completion) / wall, 2),
        "requests_per_s": round(len(prompts) / wall, 3),
        "errors": errors,
    }


def bench_throughput(n_prompts: int, max_tokens: int, levels: list[int], servers: int) -> dict[str, Any]:
    from agentmem.llm.models import ensure_model
    from agentmem.llm.server import LocalServer, default_threads

    model_path = ensure_model()
    prompts = _prompts(n_prompts)
    cores = default_threads()
    runs: list[dict[str, Any]] = []
    with LocalServer(model_path, n_ctx=2048) as server:
        warm = _client(server.api_base, 1, max_tokens)
        warm.complete([{"role": "user", "content": "Say hi."}])  # load pages, build the chat template
        for level in levels:
            result = _batch([_client(server.api_base, level, max_tokens)], prompts, level)
            result.update(setup=f"1 server x {server.n_threads} threads")
            runs.append(result)
            print(
                f"  1 server, concurrency {level:>2}: {result['completion_tokens_per_s']:7.2f} completion "
                f"tok/s, {result['wall_s']:6.1f} s",
                flush=True,
            )
    multi: dict[str, Any] | None = None
    if servers > 1:
        threads = max(cores // servers, 1)
        group = [LocalServer(model_path, n_ctx=2048, n_threads=threads) for _ in range(servers)]
        try:
            for s in group:
                s.start()
            clients = [_client(s.api_base, 1, max_tokens) for s in group]
            for c in clients:
                c.complete([{"role": "user", "content": "Say hi."}])
            multi = _batch(clients, prompts, servers)
            multi.update(setup=f"{servers} servers x {threads} thread{'s' if threads > 1 else ''}")
            print(
                f"  {multi['setup']}, concurrency {servers}: {multi['completion_tokens_per_s']:7.2f} "
                f"completion tok/s, {multi['wall_s']:6.1f} s",
                flush=True,
            )
        finally:
            for s in group:
                s.stop()
    base = runs[0]
    best = max(runs[1:] or runs, key=lambda r: r["completion_tokens_per_s"])
    out = {
        "prompts": n_prompts,
        "max_tokens": max_tokens,
        "runs": runs,
        "concurrency_1_tokens_per_s": base["completion_tokens_per_s"],
        "best_concurrency": best["concurrency"],
        "best_tokens_per_s": best["completion_tokens_per_s"],
        "ratio_best_vs_1": round(best["completion_tokens_per_s"] / base["completion_tokens_per_s"], 3),
        "server_serialises_requests": True,
        "note": (
            "llama-cpp-python's server holds one llama context behind a lock (llama_outer_lock/llama_inner_lock "
            "in llama_cpp/server/app.py) and has no parallel-slot option: concurrent requests queue and are "
            "answered one at a time, so higher concurrency only overlaps HTTP and tokenisation overhead."
        ),
    }
    if multi is not None:
        out["multi_server"] = multi
        out["ratio_multi_server_vs_1"] = round(multi["completion_tokens_per_s"] / base["completion_tokens_per_s"], 3)
    return out


def bench_eval_cache(limit: int, data: Path) -> dict[str, Any]:
    from agentmem.embeddings import default_embedder
    from agentmem.evaluation import run_eval
    from agentmem.llm import LLM
    from agentmem.llm.cache import DiskCache

    workdir = Path(tempfile.mkdtemp(prefix="agentmem-bench-cache-"))
    cache = DiskCache(workdir / "llm-cache.sqlite")
    llm = LLM("local", cache=cache)
    embedder = default_embedder()
    embedder.embed(["warm up"])
    llm.complete([{"role": "user", "content": "Say hi."}], temperature=0.0, caller="bench.warmup")  # start the server
    cache.clear()
    runs: dict[str, dict[str, Any]] = {}
    answers: dict[str, list[Any]] = {}
    for label in ("cold", "warm"):
        with llm.meter.scope(env="locomo", run=label) as spent:
            started = time.perf_counter()
            result = run_eval("locomo", ["episodic"], llm=llm, embedder=embedder, data=data, limit=limit, split="all")
            wall = time.perf_counter() - started
        total = spent.total()
        runs[label] = {
            "wall_s": round(wall, 2),
            "llm_calls": total.calls,
            "model_calls": total.model_calls,
            "cache_hits": total.cache_hits,
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "questions": result.questions,
            "metrics": {k: round(v, 4) for k, v in result.metrics.items() if isinstance(v, float)},
        }
        answers[label] = [q.prediction for t in result.tasks for q in t.questions]
        print(f"  {label}: {wall:6.1f} s, {total.model_calls} model calls, {total.cache_hits} cache hits", flush=True)
    cold, warm = runs["cold"], runs["warm"]
    out = {
        "command": f"agentmem eval --env locomo --memory episodic --limit {limit} --data {data.name}",
        "cold": cold,
        "warm": warm,
        "wall_ratio_cold_vs_warm": round(cold["wall_s"] / max(warm["wall_s"], 1e-9), 2),
        "model_calls_cold": cold["model_calls"],
        "model_calls_warm": warm["model_calls"],
        "same_metrics": cold["metrics"] == warm["metrics"],
        "same_answers": answers["cold"] == answers["warm"],
        "cache": {k: v for k, v in cache.stats().items() if k != "path"},
    }
    cache.close()
    shutil.rmtree(workdir, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--concurrency", default="1,2,4,8", help="comma-separated levels; the first is the baseline")
    parser.add_argument(
        "--servers", type=int, default=2, help="also try this many servers splitting the cores (0: skip)"
    )
    parser.add_argument("--eval-limit", type=int, default=10)
    parser.add_argument("--data", type=Path, default=LOCOMO6)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    import llama_cpp

    from agentmem.llm.models import DEFAULT_MODEL
    from agentmem.llm.server import default_threads

    commit, dirty, load_start = git_commit(), git_dirty(), load_average()  # read at the start: a run takes a while
    report: dict[str, Any] = {}
    if not args.skip_throughput:
        levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
        print(f"(a) throughput: {args.prompts} prompts, max_tokens {args.max_tokens}", flush=True)
        report["throughput"] = bench_throughput(args.prompts, args.max_tokens, levels, args.servers)
    if not args.skip_eval:
        print(f"(b) eval with the cache cold, then warm: limit {args.eval_limit}", flush=True)
        report["eval_cache"] = bench_eval_cache(args.eval_limit, args.data)
    report = {
        **provenance(
            "bench_llm.py",
            None,
            model=DEFAULT_MODEL,
            commit=commit,
            dirty=dirty,
            machine={
                "llama_threads": default_threads(),
                "llama_cpp_python": llama_cpp.__version__,
                "load_average_at_start": load_start,
            },
        ),
        **report,
    }

    print()
    if "throughput" in report:
        tp = report["throughput"]
        print(f"{'setup':<28}{'conc.':>6}{'wall s':>9}{'compl. tok/s':>14}{'req/s':>8}")
        for r in tp["runs"] + ([tp["multi_server"]] if "multi_server" in tp else []):
            print(
                f"{r['setup']:<28}{r['concurrency']:>6}{r['wall_s']:>9.1f}{r['completion_tokens_per_s']:>14.2f}{r['requests_per_s']:>8.2f}"
            )
        line = f"best concurrency {tp['best_concurrency']} vs 1: x{tp['ratio_best_vs_1']:.2f}"
        if "ratio_multi_server_vs_1" in tp:
            line += f"; {tp['multi_server']['setup']} vs 1 server: x{tp['ratio_multi_server_vs_1']:.2f}"
        print(line)
    if "eval_cache" in report:
        ev = report["eval_cache"]
        print(f"\n{'eval run':<10}{'wall s':>9}{'model calls':>13}{'cache hits':>12}{'tokens':>9}")
        for label in ("cold", "warm"):
            r = ev[label]
            print(
                f"{label:<10}{r['wall_s']:>9.1f}{r['model_calls']:>13}{r['cache_hits']:>12}"
                f"{r['prompt_tokens'] + r['completion_tokens']:>9}"
            )
        print(
            f"cold/warm wall time: x{ev['wall_ratio_cold_vs_warm']:.1f}; same metrics: {ev['same_metrics']}; "
            f"same answers: {ev['same_answers']}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten to {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    sys.exit(main())
