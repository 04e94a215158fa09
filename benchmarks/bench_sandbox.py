"""What the sandbox costs a candidate: worker start-up and one round trip per operation, per jail.

For each jail this machine can build (``bwrap``, ``unshare``) and the
audit-hook-only mode (``none``), starts ``--starts`` sandboxed workers running
a small benign program (tests' ``notes.py``) and times, for each: the start-up
(process, jail, trusted imports, Chroma client, policy, loading the program)
until the first operation could run, then ``--ops`` observe and recall round
trips (no LLM: the program's LLM calls happen only in ``reflect``). The same
machine, the same interpreter, one after the other.

Usage::

    python benchmarks/bench_sandbox.py [--starts 5] [--ops 50] [--jails bwrap,unshare,none]

Prints a table and writes ``benchmarks/results/sandbox.json`` with the git
commit, date, machine and command. To measure the sandbox of an earlier
commit (before the jail), run this file with ``PYTHONPATH`` pointing at that
commit's ``evolve`` and root directories and ``--jails legacy``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import measured_commit, provenance  # benchmarks/provenance.py: the shared result header

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "sandbox.json"
PROGRAM = ROOT / "evolve" / "tests" / "benign" / "notes.py"


class _HashEmbedder:
    name = "hash"
    dim = 16

    def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vec = [0.0] * self.dim
            for word in text.lower().split():
                vec[hash(word) % self.dim] += 1.0
            norm = sum(v * v for v in vec) ** 0.5 or 1.0
            out.append([v / norm for v in vec])
        return out


def _measure(jail: str, starts: int, ops: int) -> dict[str, Any]:
    from agentmem.toolkit import Stores, Toolkit
    from agentmem.types import Event, Query, Scope
    from agentmem_evolve.sandbox import SandboxedProgram, SandboxLimits

    fields = SandboxLimits.model_fields
    if jail == "legacy":  # an earlier commit's sandbox: namespaces on, no jail setting
        limits = SandboxLimits()
    else:
        limits = SandboxLimits(jail=jail, allow_unjailed=(jail == "none"))
    startup, observe_ms, recall_ms, rss = [], [], [], []
    root = Path(tempfile.mkdtemp(prefix="agentmem-bench-sandbox-"))
    try:
        for i in range(starts):
            toolkit = Toolkit(
                scope=Scope(user_id=f"bench-{i}"),
                stores=Stores(root / str(i)),
                llm=None,
                embedder=_HashEmbedder(),
                namespace="notes",
            )
            t0 = time.perf_counter()
            program = SandboxedProgram(PROGRAM.read_text(), toolkit, None, limits)
            startup.append(time.perf_counter() - t0)
            try:
                for k in range(ops):
                    t0 = time.perf_counter()
                    program.observe(Event.message(f"message {k} about the cello lesson on day {k}"))
                    observe_ms.append((time.perf_counter() - t0) * 1000)
                for k in range(ops):
                    t0 = time.perf_counter()
                    program.recall(Query(text=f"cello day {k}", budget_tokens=128))
                    recall_ms.append((time.perf_counter() - t0) * 1000)
                from agentmem_evolve import sandbox as sandbox_module

                tree = getattr(sandbox_module, "_tree_rss_kb", None) or sandbox_module._rss_kb
                rss.append((tree(program._proc.pid) or 0) / 1024)
                caps = dict(program.capabilities)
            finally:
                program.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "jail": jail,
        "capabilities": {k: v for k, v in caps.items() if k != "rlimits"},
        "starts": starts,
        "startup_s": {
            "p50": round(statistics.median(startup), 3),
            "min": round(min(startup), 3),
            "max": round(max(startup), 3),
        },
        "observe_ms_p50": round(statistics.median(observe_ms), 3),
        "recall_ms_p50": round(statistics.median(recall_ms), 3),
        "resident_mb": round(statistics.median(rss), 1),
        "limits_fields": sorted(fields),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--ops", type=int, default=50)
    parser.add_argument("--jails", default="bwrap,unshare,none")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    commit, dirty = measured_commit("agentmem_evolve")  # the sandbox measured: an earlier checkout's with PYTHONPATH
    rows = []
    for jail in [j.strip() for j in args.jails.split(",") if j.strip()]:
        try:
            rows.append(_measure(jail, args.starts, args.ops))
        except Exception as exc:
            rows.append({"jail": jail, "error": f"{type(exc).__name__}: {exc}"})
        row = rows[-1]
        if "error" in row:
            print(f"{jail:8s}  unavailable: {row['error']}")
        else:
            print(
                f"{jail:8s}  start-up p50 {row['startup_s']['p50']:.2f} s (min {row['startup_s']['min']:.2f}, "
                f"max {row['startup_s']['max']:.2f})  observe {row['observe_ms_p50']:.2f} ms  "
                f"recall {row['recall_ms_p50']:.2f} ms  resident {row['resident_mb']:.0f} MB"
            )
    result = {
        "benchmark": "sandbox",
        # the commit is that of the agentmem_evolve measured (an earlier checkout's, with PYTHONPATH), not this script's
        **provenance(
            "bench_sandbox.py",
            argv,
            commit=commit,
            dirty=dirty,
        ),
        "program": str(PROGRAM.relative_to(ROOT)),
        "rows": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
