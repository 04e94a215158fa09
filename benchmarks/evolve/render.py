"""How the 0.5B's toolprefs score moves with the way the same recalled memories are shown (issue 15).

The episodic seed's recall for the first 100 validation requests (152 users,
the split of benchmarks/evolve/toolprefs.toml's select step) is taken from one
``agentmem eval`` run; each variant then shows the model the *same* recalled
statements, only rendered differently (or fewer of them: the k most similar to
the request by the default embedder, kept in time order), and the agent acts
as in the environment. Paired differences say which rendering helps; the
``style`` and ``top-k`` structural operators (evolve/agentmem_evolve/operators.py)
are the changes a program can make to get there.

    python benchmarks/evolve/render.py                      # writes benchmarks/results/evolve/render.json
    python benchmarks/evolve/render.py --confirm            # writes benchmarks/results/evolve/render-test.json

``--confirm`` asks whether the measured program's gain holds on users that no
measurement looked at: the seed and the program under the notes line, on the
whole test split of the same 152 users (190 requests of 38 users; evolution
runs test on users of a secret seed instead, so these were seen by no run).

Every prompt goes through the LLM cache, so a rerun costs minutes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentmem.embeddings import default_embedder
from agentmem.sdk.agent import Agent
from agentmem.stats import Interval, mean_interval, paired_difference
from agentmem_environments.toolprefs import ToolPrefsEnvironment
from agentmem_evolve import program as prog
from agentmem_evolve.operators import DATED_PHRASE, lift, read_design, set_design, usage_line

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # benchmarks/provenance.py
from provenance import provenance  # the shared result header

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks/results/evolve"
DATED = re.compile(r"^\[[^\]]*\] ")
SEED_HEADER = "Excerpts from earlier conversations, oldest first; each line starts with its date.\n"
UNDATED_HEADER = "Excerpts from earlier conversations, oldest first.\n"
NOTES_HEADER = "What the user told you, oldest first:\n"


def user_lines(recalled: str) -> list[str]:
    """The user's statements among the recalled lines, without date or name (the agent's replies dropped)."""
    lines = (DATED.sub("", line) for line in recalled.split("\n"))
    return [line[len("user: ") :] for line in lines if line.startswith("user: ")]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--users", type=int, default=152)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None, help="default: render.json, render-test.json (--confirm)")
    parser.add_argument("--confirm", action="store_true", help="the seed and the notes-line program on the test split")
    args = parser.parse_args(argv)
    if args.confirm:
        confirm(args, argv)
        return
    args.out = args.out or RESULTS / "render.json"
    embedder = default_embedder()

    def most_similar(request: str, lines: list[str], k: int) -> list[str]:
        if len(lines) <= k:
            return lines
        vectors = embedder.embed_array([request, *lines])
        keep = set(np.argsort(-(vectors[1:] @ vectors[0]))[:k].tolist())
        return [line for i, line in enumerate(lines) if i in keep]

    def notes(header: str, k: int | None) -> Callable[[str, str], str]:
        def render(request: str, recalled: str) -> str:
            lines = user_lines(recalled)
            lines = most_similar(request, lines, k) if k else lines
            return header + "\n".join(f"- {line}" for line in lines)

        return render

    variants: dict[str, tuple[str, Callable[[str, str], str]]] = {
        "seed": ("the seed's block: its usage line, 8 dated lines of both speakers", lambda q, r: SEED_HEADER + r),
        "transcript-4": (
            "the 4 user statements most like the request, as 'user: ...', undated, the seed's usage line",
            lambda q, r: UNDATED_HEADER + "\n".join(f"user: {line}" for line in most_similar(q, user_lines(r), 4)),
        ),
        "notes-8": ("every recalled user statement as a note ('- ...'), undated", notes(NOTES_HEADER, None)),
        "notes-4-seed-line": ("the 4 most like the request as notes, the seed's usage line", notes(UNDATED_HEADER, 4)),
        "notes-4": ("the 4 most like the request as notes", notes(NOTES_HEADER, 4)),
        "notes-3": ("the 3 most like the request as notes", notes(NOTES_HEADER, 3)),
    }

    def evaluate(memory: str) -> dict[str, Any]:
        return evaluate_cell(memory, args.users, "validation", args.limit, args.model)

    cell = evaluate("episodic")
    recalled = {q["question_id"]: q.get("recalled") or "" for t in cell["tasks"] for q in t["questions"]}

    env = ToolPrefsEnvironment(users=args.users)
    tasks = env.tasks("validation", limit=args.limit)
    with tempfile.TemporaryDirectory() as store:
        agent = Agent(model=args.model, memory=None, store_dir=store)
        shown: dict[str, str] = {}
        agent._recall = lambda query, budget: ([], shown["block"])  # type: ignore[method-assign]
        scores: dict[str, dict[str, float]] = {}
        for name, (_, render) in variants.items():
            scores[name] = {}
            for task in tasks:
                for question in task.questions:
                    if question.id not in recalled:
                        continue
                    shown["block"] = render(question.text, recalled[question.id])
                    context = {"category": question.category, "now": task.metadata.get("now")}
                    action = agent.act(question.text, env.tools_for(question), context=context)
                    metrics = env.score_action(question, action.tool, action.arguments)
                    scores[name][question.id] = metrics["param_accuracy"]
            print(f"{name}: {np.mean(list(scores[name].values())):.3f}", flush=True)
        agent.close()

    # The programs a structural child would be: the seed lifted into modules, then the operators' choices. What
    # they recall is their own (top_k 4 of the user's statements by the retriever, not 4 of the seed's 8).
    # The third is the second with the description line the ``style`` operator now writes for notes.
    undated, notes_line = UNDATED_HEADER.strip(), usage_line("description", "oldest first", False, "notes")
    designs = {
        "design: notes, 4 items, no own replies, no dates": ({"retriever": "hybrid"}, undated),
        "design: the same with dense retrieval": ({"retriever": "dense"}, undated),
        "design: the same, under the notes line": ({"retriever": "dense"}, notes_line),
    }  # fmt: skip
    with tempfile.TemporaryDirectory() as programs:
        for i, (name, (choice, line)) in enumerate(designs.items()):
            child = designed_program(choice, line)
            path = Path(programs, f"design{i}.py")
            path.write_text(child)
            designed = evaluate(str(path))
            scores[name] = param_accuracy(designed)
            variants[name] = (f"a real program: {read_design(child)}, top_k 4", variants["seed"][1])
            print(f"{name}: {np.mean(list(scores[name].values())):.3f}", flush=True)

    result = {
        **provenance("evolve/render.py", argv, model=args.model),
        "data": f"toolprefs users={args.users}, validation split, first {args.limit} requests",
        "recall": "agentmem eval --memory episodic (the seed); every variant shows the same recalled statements",
        "variants": {
            name: {"what": what, "param_accuracy": _interval(mean_interval(list(scores[name].values())))}
            for name, (what, _) in variants.items()
        },
        "paired": {
            f"{b} - {a}": paired(scores[b], scores[a])
            for a, b in [
                ("seed", "notes-8"),
                ("seed", "transcript-4"),
                ("seed", "notes-4"),
                ("transcript-4", "notes-4"),
                ("notes-4-seed-line", "notes-4"),
                ("notes-8", "notes-4"),
                ("notes-4", "notes-3"),
                *(("seed", name) for name in designs),
                ("design: the same with dense retrieval", "design: the same, under the notes line"),
            ]
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


def evaluate_cell(memory: str, users: int, split: str, limit: int | None, model: str) -> dict[str, Any]:
    """One ``agentmem eval`` cell of ``memory`` (a plugin name or a program file) on toolprefs."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [
            str(Path(sys.executable).with_name("agentmem")), "eval", "--env", "toolprefs", "--memory", memory,
            "--data", f"users={users}", "--split", split, *(["--limit", str(limit)] if limit else []),
            "--model", model, "--out-dir", scratch,
        ]  # fmt: skip
        subprocess.run(command, check=True, cwd=ROOT)
        cell: dict[str, Any] = json.loads(next(Path(scratch, "cells").glob("toolprefs__*.json")).read_text())
    return cell


def designed_program(choice: dict[str, Any], line: str) -> str:
    """The seed lifted into modules as the structural operators would make it: notes, 4 items, no own replies,
    no dates, with ``choice`` (the retriever) and ``line`` (the description line) on top."""
    source, meta = prog.seed_source("episodic")
    lifted, _ = lift(source, meta)
    child = set_design(lifted, {**read_design(lifted), "own_turns": False, "dates": False, "style": "notes", **choice})
    child = prog.set_defaults(child, {**prog.read_defaults(child), "top_k": 4})
    usage = (prog.read_template(child) or "").replace(DATED_PHRASE, "")
    return prog.set_template(child, usage.replace(UNDATED_HEADER.strip(), line))


def compare(
    script: str, argv: list[str] | None, variants: dict[str, dict[str, Any]], default_out: Path, doc: str | None
) -> None:
    """Each variant of the program render.py measured (``designed_program`` under the notes line, with the
    variant's design choices on top), paired against the first, on render.py's 100 select requests."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    parser.add_argument("--users", type=int, default=152)
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)

    line = usage_line("description", "oldest first", False, "notes")
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as programs:
        for i, (name, choice) in enumerate(variants.items()):
            path = Path(programs, f"variant{i}.py")
            path.write_text(designed_program(choice, line))
            cell = evaluate_cell(str(path), args.users, "validation", args.limit, args.model)
            scores[name] = param_accuracy(cell)
            print(f"{name}: {np.mean(list(scores[name].values())):.3f}", flush=True)

    first, *others = variants
    result = {
        **provenance(script, argv, model=args.model),
        "data": f"toolprefs users={args.users}, validation split, first {args.limit} requests (render.py's)",
        "program": "the lifted episodic seed: notes under the notes line, top_k 4, no stored replies, no dates",
        "variants": {
            name: {"design": variants[name], "param_accuracy": _interval(mean_interval(list(values.values())))}
            for name, values in scores.items()
        },
        "paired": {f"{name} - {first}": paired(scores[name], scores[first]) for name in others},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {args.out}")


def confirm(args: argparse.Namespace, argv: list[str] | None) -> None:
    """The seed and the notes-line program on the whole test split: does render.json's gain hold on new users?"""
    name = "design: notes, 4 items, no own replies, no dates, dense, under the notes line"
    line = usage_line("description", "oldest first", False, "notes")
    scores: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as programs:
        path = Path(programs, "design.py")
        path.write_text(designed_program({"retriever": "dense"}, line))
        for label, memory in (("seed", "episodic"), (name, str(path))):
            cell = evaluate_cell(memory, args.users, "test", None, args.model)
            scores[label] = param_accuracy(cell)
            print(f"{label}: {np.mean(list(scores[label].values())):.3f}", flush=True)
    result = {
        **provenance("evolve/render.py", argv, model=args.model),
        "data": f"toolprefs users={args.users}, the whole test split (users no measurement or run selected on)",
        "variants": {
            label: {"param_accuracy": _interval(mean_interval(list(s.values())))} for label, s in scores.items()
        },
        "paired": {f"{name} - seed": paired(scores[name], scores["seed"])},
    }
    out = args.out or RESULTS / "render-test.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written: {out}")


def param_accuracy(cell: dict[str, Any]) -> dict[str, float]:
    """Each request's param_accuracy in an ``agentmem eval`` cell, by question id."""
    return {q["question_id"]: q["metrics"]["param_accuracy"] for t in cell["tasks"] for q in t["questions"]}


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float | int]:
    """a - b on the requests both were scored on, as the result files write it."""
    d = paired_difference(a, b)
    return {"mean": round(d.mean, 3), "low": round(d.low, 3), "high": round(d.high, 3), "n": d.n,
            "better": d.wins, "worse": d.losses, "tied": d.ties}  # fmt: skip


def _interval(value: Interval) -> dict[str, float]:
    return {"mean": round(value.mean, 3), "low": round(value.low, 3), "high": round(value.high, 3), "n": value.n}


if __name__ == "__main__":
    main()
