"""What a memory recalls for an environment's questions, LLM-free: dump it, or compare two dumps.

A refactor that keeps a plugin's behaviour keeps its recall: the same text
for the same question means the same answering prompt, hence (the LLM being
deterministic and cached) the same answer. This feeds an environment's tasks
to a plugin exactly as the environment does (every event observed, each
session reflected), asks each question without calling any LLM, and writes
the recalled text, the instructions and the evidence turn ids per question;
``compare`` counts identical recalls and evidence recall of two dumps (from
two checkouts, say: run ``dump`` with each on ``PYTHONPATH``).

Usage::

    python benchmarks/recall_dump.py dump locomo episodic out.json [--data PATH] [--limit 40]
    python benchmarks/recall_dump.py dump toolprefs episodic out.json --split validation
    python benchmarks/recall_dump.py compare before.json after.json [--verbose]

Plugins whose write path calls an LLM (semantic) need a model and are not
LLM-free here; the others are.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any


def dump(env_name: str, plugin: str, out: Path, *, data: str | None, split: str, limit: int | None) -> int:
    from agentmem.embeddings import default_embedder
    from agentmem.evaluation import make_environment
    from agentmem.registry import load_memory
    from agentmem.toolkit import Stores, Toolkit
    from agentmem.types import Episode, Query, Scope

    env = make_environment(env_name, data=data, seed=0)
    embedder = default_embedder()
    rows: list[dict[str, Any]] = []
    for task in env.tasks(split, limit):
        cls = load_memory(plugin)
        toolkit = Toolkit(
            scope=Scope(user_id="eval", agent_id=plugin, run_id=task.id),
            stores=Stores(Path(tempfile.mkdtemp(prefix="recall-dump-"))),
            embedder=embedder,
            namespace=cls.name,
        )
        memory = cls(toolkit, None)
        turns = {e.id: str(e.metadata.get("dia_id")) for s in task.sessions for e in s.events}
        for session in task.sessions:
            for event in session.events:
                memory.observe(event)
            when = getattr(session, "when", None) or getattr(session, "date_time", None)
            memory.reflect(Episode(id=session.id, task=task.id, events=session.events, metadata={"date_time": when}))
        for question in task.questions:
            text = env.prompt_for(question) if hasattr(env, "prompt_for") else question.text
            recall = memory.recall(Query(text=text, budget_tokens=1024))
            evidence: list[str] = []
            for item in recall.items:
                evidence += [turns[e] for e in item.event_ids if e in turns]
                value = item.metadata.get("dia_id")  # what programs written before event-id evidence carried
                evidence += [str(v) for v in (value if isinstance(value, list) else [value]) if v]
            rows.append(
                {
                    "question": question.id,
                    "text": recall.text(),
                    "instructions": recall.instructions,
                    "omitted": recall.omitted,
                    "evidence": sorted(set(evidence)),
                    "wanted": list(question.evidence),
                }
            )
        memory.close()
    out.write_text(json.dumps(rows, indent=1))
    print(f"{plugin} on {env_name}: {len(rows)} questions -> {out}")
    return 0


def _evidence_recall(rows: list[dict[str, Any]]) -> float:
    values = [len(set(r["wanted"]) & set(r["evidence"])) / len(set(r["wanted"])) for r in rows if r["wanted"]]
    return sum(values) / len(values) if values else float("nan")


def compare(before: Path, after: Path, *, verbose: bool) -> int:
    a, b = json.loads(before.read_text()), json.loads(after.read_text())
    if [r["question"] for r in a] != [r["question"] for r in b]:
        print("the two dumps are not of the same questions", file=sys.stderr)
        return 2
    same = sum(x["text"] == y["text"] and x["instructions"] == y["instructions"] for x, y in zip(a, b))
    print(f"{same}/{len(a)} identical recalls; evidence recall {_evidence_recall(a):.3f} -> {_evidence_recall(b):.3f}")
    if verbose:
        for x, y in zip(a, b):
            if x["text"] != y["text"]:
                old, new = x["text"].split("\n"), y["text"].split("\n")
                print(
                    f"{x['question']}: only before {[ln[:90] for ln in old if ln not in new]}; "
                    f"only after {[ln[:90] for ln in new if ln not in old]}"
                )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("env")
    d.add_argument("plugin")
    d.add_argument("out", type=Path)
    d.add_argument("--data")
    d.add_argument("--split", default="all")
    d.add_argument("--limit", type=int)
    c = sub.add_parser("compare")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "dump":
        return dump(args.env, args.plugin, args.out, data=args.data, split=args.split, limit=args.limit)
    return compare(args.before, args.after, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
