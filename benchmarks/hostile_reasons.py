"""Every hostile program of the sandbox suite, run once per jail: what stopped it and what it got.

The tests in ``evolve/tests/test_sandbox.py`` assert containment case by case;
this script runs every program in ``evolve/tests/hostile/`` through the same
path evolution uses (:class:`agentmem_evolve.sandbox.SandboxedProgram`: load,
observe, recall, reflect, close) and records, for each program and jail:

* ``failed``: the failure that marked the candidate (its kind, the stage and
  the one-line reason the report shows), or ``null`` when the program ran to
  the end (a program that only probes and returns what it found);
* ``got``: the first characters of what its recall returned (what an attack
  that catches its denials reached: nothing of the host's);
* ``host_untouched``: the host files it went after (a secret, a victim file,
  an archive, a target outside the scratch) are as they were, and no scratch
  directory is left behind.

The programs' params point them at a temporary "host" made for each run, as
the tests do. The toolkit's model is a stand-in that answers every call with
one fixed line: no hostile program needs a real answer, and containment does
not depend on one. Usage (from the repository root)::

    python benchmarks/hostile_reasons.py            # every jail this machine can build, and none
    python benchmarks/hostile_reasons.py --jails bwrap

Writes ``benchmarks/results/hostile.json``.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from provenance import git_commit, git_dirty, provenance  # benchmarks/provenance.py: the shared result header

ROOT = Path(__file__).resolve().parent.parent
HOSTILE = ROOT / "evolve" / "tests" / "hostile"
RESULTS = ROOT / "benchmarks" / "results" / "hostile.json"
ENV_SECRET = "sk-hostile-reasons-do-not-leak"


class FixedReplyLLM:
    """The toolkit's model for this script: one fixed line for every call, counted in a real meter."""

    model = "fixed-reply"

    def __init__(self) -> None:
        from agentmem.llm.meter import Meter

        self.meter = Meter()

    def complete(self, messages: list[dict[str, Any]], *, caller: str | None = None, **kw: Any) -> str:
        self.meter.record(caller, 10, 3, 0.0)
        return "nothing to say"

    def structured(self, messages: list[dict[str, Any]], schema: Any, *, caller: str | None = None, **kw: Any) -> Any:
        self.meter.record(caller, 10, 3, 0.0)
        return schema.model_construct()

    def call_tool(
        self, messages: list[dict[str, Any]], tools: list[Any], *, caller: str | None = None, **kw: Any
    ) -> Any:
        from agentmem.llm.tools import ToolCall

        self.meter.record(caller, 10, 3, 0.0)
        return ToolCall(name=tools[0].name if tools else "none", arguments={})

    def note(self, event: str, caller: str | None = None) -> None:
        self.meter.note(event, caller)


sys.path.insert(0, str(ROOT / "evolve" / "tests"))
from test_sandbox import SECRET_FILE_TEXT as SECRET_TEXT  # noqa: E402  (the suite's host and its secret)
from test_sandbox import Host as SuiteHost  # noqa: E402


class Host(SuiteHost):
    """The test suite's host (a secret, a victim file, an archive, a target outside the scratch), plus
    a directory a program may try to open a store in and a local port it may try to reach."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.outside = root / "outside-store"
        self.outside.mkdir()
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)

    def params(self, filename: str) -> dict[str, Any] | None:
        return super().params(filename) or {
            "log_symlink.py": {"secret": str(self.secret)},
            "numpy_poke.py": {"target": str(self.target), "secret": str(self.secret)},
            "chroma_outside.py": {"directory": str(self.outside)},
            "network.py": {"host": "127.0.0.1", "port": self.listener.getsockname()[1]},
        }.get(filename)

    def touched(self) -> list[str]:
        """The host files the program changed or created (empty: contained)."""
        found = []
        try:
            self.assert_untouched()
        except AssertionError as exc:
            found.append(str(exc).splitlines()[0] or "the suite's host files changed")
        if any(self.outside.iterdir()):
            found.append(f"wrote into {self.outside}")
        self.listener.settimeout(0.05)
        try:
            conn, _ = self.listener.accept()
            conn.close()
            found.append("connected to a local port")
        except OSError:
            pass
        return found

    def close(self) -> None:
        self.listener.close()
        self.target.unlink(missing_ok=True)


def attack_of(path: Path) -> str:
    """The first sentence of a hostile program's docstring: the mechanism it tries."""
    doc = ast.get_docstring(ast.parse(path.read_text())) or ""
    first = " ".join(doc.split("\n\n")[0].split())
    return first.removeprefix("Hostile: ").removeprefix("Hostile ")


def run_one(path: Path, jail: str, limits_base: Any) -> dict[str, Any]:
    from agentmem.embeddings import default_embedder
    from agentmem.toolkit import Stores, Toolkit
    from agentmem.types import Episode, Event, Query, Scope
    from agentmem_evolve.sandbox import CandidateFailed, SandboxedProgram

    root = Path(tempfile.mkdtemp(prefix="hostile-host-"))
    host = Host(root)
    limits = limits_base.model_copy(update={"jail": jail, "allow_unjailed": jail == "none"})
    if path.name == "fill_disk.py":
        limits = limits.model_copy(update={"disk_mb": 64})
    (root / "sandboxes").mkdir()
    toolkit = Toolkit(
        scope=Scope(user_id="hostile"),
        stores=Stores(root / "stores"),
        llm=FixedReplyLLM(),
        embedder=default_embedder(),
        namespace="candidate",
    )
    program = None
    failed: dict[str, Any] | None = None
    got = ""
    started = time.monotonic()
    try:
        program = SandboxedProgram(
            path.read_text(), toolkit, host.params(path.name), limits, scratch_parent=root / "sandboxes"
        )
        program.observe(Event.message("hello", session_id="s1"))
        got = program.recall(Query(text="hello")).text()
        program.reflect(Episode())
        program.close()
    except CandidateFailed as exc:
        failed = {"kind": exc.kind, "stage": getattr(exc, "stage", ""), "reason": str(exc)}
        if program is not None:
            program.close()
    seconds = time.monotonic() - started
    left = [p.name for p in (root / "sandboxes").glob("agentmem-sandbox-*")]
    touched = host.touched()
    host.close()
    toolkit.stores.close()
    shutil.rmtree(root, ignore_errors=True)
    return {
        "program": path.name,
        "attack": attack_of(path),
        "jail": jail,
        "failed": failed,
        "got": " ".join(got.split())[:160],
        "leaked": SECRET_TEXT in got or ENV_SECRET in got,
        "host_untouched": not touched,
        "touched": touched,
        "scratch_left": left,
        "seconds": round(seconds, 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--jails", default="", help="comma-separated (bwrap, unshare, none); default: every one available"
    )
    parser.add_argument("--programs", default="", help="comma-separated file names (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    os.environ["OPENAI_API_KEY"] = ENV_SECRET  # a secret in the controller's environment: no worker may see it
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from agentmem_evolve.jail import available_backends
    from agentmem_evolve.sandbox import SandboxLimits

    backends = available_backends()
    jails = [j.strip() for j in args.jails.split(",") if j.strip()] or [
        b for b, why in backends.items() if why is None
    ] + ["none"]
    wanted = {p.strip() for p in args.programs.split(",") if p.strip()}
    programs = sorted(p for p in HOSTILE.glob("*.py") if not wanted or p.name in wanted)
    # the limits of the test suite: every op ends in seconds
    limits = SandboxLimits(
        op_seconds=3, startup_seconds=60, cpu_seconds=60, memory_mb=512, address_space_mb=2048, output_bytes=256 << 10
    )
    commit, dirty = git_commit(), git_dirty()  # of the code that ran (read at the start)
    rows = []
    for jail in jails:
        for path in programs:
            row = run_one(path, jail, limits)
            rows.append(row)
            verdict = (
                f"{row['failed']['kind']}: {row['failed']['reason']}"
                if row["failed"]
                else f"ran; got {row['got'][:60]!r}"
            )
            flag = (
                "" if row["host_untouched"] and not row["leaked"] and not row["scratch_left"] else "  <-- NOT CONTAINED"
            )
            print(f"{jail:8s} {path.name:26s} {verdict[:150]}{flag}", flush=True)
    result = {
        "script": "benchmarks/hostile_reasons.py",
        **provenance(
            "hostile_reasons.py",
            None,
            commit=commit,
            dirty=dirty,
            machine={"kernel": f"{platform.system()} {platform.release()}"},
        ),
        "backends": backends,
        "programs": len(programs),
        "runs": rows,
        "not_contained": [
            f"{r['program']} ({r['jail']})" for r in rows if not r["host_untouched"] or r["leaked"] or r["scratch_left"]
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{len(rows)} runs; not contained: {result['not_contained'] or 'none'}; written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
