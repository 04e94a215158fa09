"""Evaluation grids: every environment x every memory configuration, resumable, with a report.

``agentmem eval --env locomo,toolprefs --memory none,episodic,episodic+semantic``
runs six cells. A configuration is one memory or several composed with ``+``.
Each finished cell is written at once to ``<out_dir>/cells/<env>__<config>.json``
(atomically), so an interrupted grid re-run with the same ``--out-dir`` skips
the cells already done and redoes none of them; a cell whose file was made
with another split, limit, model or parameters is run again. When the grid is
complete, ``grid.json``, ``grid.csv``, ``report.md`` and a self-contained
``report.html`` (plots of score and cost per configuration) are written beside
the cells.

``grid.json`` and every cell's file carry their provenance
(:mod:`agentmem.provenance`: the command as run, agentmem's version and git
commit, the model, the date, the machine); a resumed cell keeps the
provenance of the run that made it.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentmem.environment import Environment
from agentmem.errors import ConfigError
from agentmem.evaluation import EvalResult, make_environment, metric_intervals, question_scores, run_eval
from agentmem.provenance import Provenance, collect
from agentmem.stats import paired_difference
from agentmem.toolkit import ChatModel, Embedder

__all__ = [
    "GridCell",
    "GridResult",
    "check_grid_params",
    "pairwise",
    "parse_configs",
    "params_for",
    "rows",
    "run_grid",
    "write_outputs",
]

CellProgress = Callable[["GridCell", int, int, dict[str, float]], None]


class GridCell(BaseModel):
    """One environment and one memory configuration (members composed in order)."""

    env: str
    memory: list[str]

    @property
    def label(self) -> str:
        return "+".join(Path(m).stem if m.endswith(".py") else m for m in self.memory) or "none"

    @property
    def key(self) -> str:
        """The cell's file name: readable, and different for different cells.

        Plain names keep the readable form (``locomo__episodic+semantic``); a
        cell whose label loses something in the slug (a program path, whose
        label is only its file's stem, or characters a file name cannot hold)
        gets a digest of its environment and members too, so ``a/notes.py``
        and ``b/notes.py`` never share a file.
        """
        readable = f"{_slug(self.env)}__{_slug(self.label)}"
        plain = _slug(self.env) == self.env and _slug(self.label) == self.label and self.label == "+".join(self.memory)
        if plain or not self.memory and _slug(self.env) == self.env:
            return readable
        digest = hashlib.sha256(json.dumps([self.env, self.memory]).encode("utf-8", "surrogatepass")).hexdigest()[:12]
        return f"{readable}~{digest}"


class GridResult(BaseModel):
    """Every cell's result, in grid order, which were resumed rather than run, and where this run came from."""

    split: str
    limit: int | None
    model: str
    cells: list[EvalResult] = Field(default_factory=list)
    resumed: list[str] = Field(default_factory=list)
    provenance: Provenance | None = None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-") or "x"


def parse_configs(spec: str) -> list[list[str]]:
    """``"none,episodic,episodic+semantic"`` -> ``[["none"], ["episodic"], ["episodic", "semantic"]]``."""
    configs = []
    for part in spec.split(","):
        members = [m.strip() for m in part.split("+") if m.strip()]
        if part.strip() and not members:
            raise ConfigError(f"--memory: '{part}' names no plugin; write e.g. episodic or episodic+semantic")
        if members:
            configs.append(members)
    if not configs:
        raise ConfigError("--memory names no plugin; give e.g. --memory episodic or --memory none,episodic")
    return configs


def params_for(members: list[str], params: dict[str, Any], *, strict: bool = True) -> dict[str, dict[str, Any]] | None:
    """``--param key=value`` pairs given to each member whose ``Params`` declares ``key``.

    A key that no member declares is an error (a typo would otherwise be
    silently ignored and the run would measure the defaults); a grid checks
    that over all its configurations at once and passes ``strict=False`` per
    cell, so ``--memory episodic,amem -p note_turns=8`` gives the key to amem only.
    """
    if not params:
        return None
    from agentmem.registry import load_memory

    out: dict[str, dict[str, Any]] = {}
    used: set[str] = set()
    for name in members:
        fields = load_memory(name).Params.model_fields
        mine = {k: v for k, v in params.items() if k in fields}
        if mine:
            out[name] = mine
            used.update(mine)
    unknown = sorted(set(params) - used)
    if unknown and strict:
        raise ConfigError(
            f"--param {', '.join(unknown)}: no parameter of that name in {', '.join(members)}; "
            "see the plugin's Params (docs/memory-plugins.md) for the names"
        )
    return out


def check_grid_params(configs: list[list[str]], params: dict[str, Any]) -> None:
    """Refuse, in one line, a ``--param`` key that no configuration of the grid declares (a typo)."""
    if params:
        params_for(list(dict.fromkeys(m for c in configs for m in c)), params)


def _cell_matches(
    result: EvalResult, *, split: str, limit: int | None, model: str, params: Any, memory: list[str] | None = None
) -> bool:
    return (
        result.split == split
        and result.limit == limit
        and result.model == model
        and (result.params or {}) == (params or {})
        and (memory is None or list(result.memory) == list(memory))
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_grid(
    envs: list[str],
    configs: list[list[str]],
    *,
    llm: ChatModel,
    out_dir: Path,
    split: str = "all",
    limit: int | None = None,
    params: dict[str, Any] | None = None,
    budget_tokens: int | None = None,
    data: str | None = None,
    seed: int = 0,
    embedder: Embedder | None = None,
    chroma_host: str | None = None,
    on_cell_start: Callable[[GridCell, int], None] | None = None,
    progress: CellProgress | None = None,
    on_cell_done: Callable[[GridCell, EvalResult, bool], None] | None = None,
    environments: dict[str, Environment] | None = None,
    command: str | list[str] | None = None,
) -> GridResult:
    """Run (or resume) the grid ``envs`` x ``configs`` and write every output into ``out_dir``.

    ``on_cell_start(cell, questions)`` is told how many questions a cell will
    ask before it runs; ``progress(cell, done, total, metrics)`` after each
    answer; ``on_cell_done(cell, result, resumed)`` when a cell is finished.
    ``environments`` passes instances already built (loading a dataset once).
    ``command`` is the command line recorded as the grid's provenance (the
    CLI gives its own; default: ``sys.argv``).
    """
    from agentmem.config import recall_budget
    from agentmem.embedding_cache import shared_embedder

    budget_tokens = recall_budget(budget_tokens)  # None: the recall_budget setting
    model = str(getattr(llm, "model", type(llm).__name__))
    shared = embedder or shared_embedder()
    cells = [GridCell(env=e, memory=c) for e in envs for c in configs]
    environments = dict(environments or {})
    for e in envs:
        if e not in environments:
            environments[e] = make_environment(e, data=data if len(envs) == 1 else None, seed=seed)
    grid = GridResult(split=split, limit=limit, model=model, provenance=collect(command, model=model))
    check_grid_params(configs, params or {})  # before any cell runs
    for cell in cells:
        cell_params = params_for(cell.memory, params or {}, strict=False)
        path = out_dir / "cells" / f"{cell.key}.json"
        if path.is_file():
            try:
                done = EvalResult.model_validate_json(path.read_text())
            except ValueError:
                done = None  # a torn or foreign file: run the cell again
            if done is not None and _cell_matches(
                done, split=split, limit=limit, model=model, params=cell_params, memory=cell.memory
            ):
                if not done.intervals:  # a cell written before results carried their intervals
                    done.intervals = metric_intervals(done.tasks, done.metrics)
                grid.cells.append(done)
                grid.resumed.append(cell.key)
                if on_cell_done:
                    on_cell_done(cell, done, True)
                continue
        environment = environments[cell.env]
        if on_cell_start:
            total = sum(len(t.questions) for t in environment.tasks(split=split, limit=limit))  # type: ignore[arg-type,misc]
            on_cell_start(cell, total)
        result = run_eval(
            environment,
            cell.memory,
            llm=llm,
            embedder=shared,
            params=cell_params,
            split=split,  # type: ignore[arg-type]
            limit=limit,
            budget_tokens=budget_tokens,
            chroma_host=chroma_host,
            progress=functools.partial(progress, cell) if progress else None,
        )
        result.provenance = grid.provenance
        _write_atomic(path, result.model_dump_json(indent=2))
        grid.cells.append(result)
        if on_cell_done:
            on_cell_done(cell, result, False)
    write_outputs(grid, out_dir)
    return grid


# -- outputs ------------------------------------------------------------------------------------
def _label(result: EvalResult) -> str:
    return "+".join(Path(m).stem if m.endswith(".py") else m for m in result.memory)


def rows(grid: GridResult) -> list[dict[str, Any]]:
    """One flat row per cell: quality metrics (without per-category detail) and cost.

    ``score`` is the environment's primary metric; ``score_low`` and
    ``score_high`` bound its 95% bootstrap interval over the ``score_n``
    questions that carry it (:mod:`agentmem.stats`).
    """
    out = []
    for r in grid.cells:
        env_metric = _primary(r.env)
        interval = r.interval(env_metric)
        row: dict[str, Any] = {
            "env": r.env,
            "memory": _label(r),
            "primary_metric": env_metric,
            "score": round(r.metrics.get(env_metric, 0.0), 4),
            "score_low": interval.low if interval is not None else None,
            "score_high": interval.high if interval is not None else None,
            "score_n": interval.n if interval is not None else 0,
            "questions": r.questions,
        }
        for key, value in r.metrics.items():
            if "/" not in key and key != "questions":
                row[key] = round(value, 4)
        cost = r.cost
        row.update(
            llm_calls=cost.llm_calls,
            cache_hits=cost.cache_hits,
            prompt_tokens=cost.prompt_tokens,
            completion_tokens=cost.completion_tokens,
            tokens_per_question=round(cost.tokens / r.questions, 1) if r.questions else 0.0,
            seconds=cost.seconds,
            failed_extractions=r.extraction.failed,
            fallbacks=r.extraction.fallbacks,
        )
        out.append(row)
    return out


def pairwise(grid: GridResult) -> list[dict[str, Any]]:
    """Every two configurations of an environment compared on the questions both were scored on.

    For each pair ``a``, ``b`` (in grid order): ``a - b`` of the primary
    metric averaged over the ``n`` shared questions (keyed task id / question
    id), its 95% paired bootstrap interval, the questions where ``a`` scored
    higher (``wins``), lower (``losses``) or the same (``ties``), the sign
    test's p-value, and whether the interval lies above (``better``) or below
    (``worse``) zero (:func:`agentmem.stats.paired_difference`). Pairing on
    shared questions only keeps a cell that answered different questions
    (another limit or split) from being compared on them.
    """
    out: list[dict[str, Any]] = []
    by_env: dict[str, list[EvalResult]] = {}
    for r in grid.cells:
        by_env.setdefault(r.env, []).append(r)
    for env, cells in by_env.items():
        metric = _primary(env)
        scores = [question_scores(c.tasks, metric) for c in cells]
        for i in range(len(cells)):
            for j in range(i + 1, len(cells)):
                d = paired_difference(scores[i], scores[j])
                out.append(
                    {
                        "env": env,
                        "metric": metric,
                        "a": _label(cells[i]),
                        "b": _label(cells[j]),
                        **d.rounded(),
                        "wins": d.wins,
                        "losses": d.losses,
                        "ties": d.ties,
                        "sign_p": float(f"{d.sign_p:.3g}"),
                        "better": d.n > 0 and d.low > 0,
                        "worse": d.n > 0 and d.high < 0,
                    }
                )
    return out


def _primary(env: str) -> str:
    try:
        from agentmem.registry import load_environment

        return str(load_environment(env).primary_metric)
    except Exception:
        return "score"


def to_csv(table: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in table:
        for key in row:
            if key not in columns:
                columns.append(key)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(table)
    return buf.getvalue()


def write_outputs(grid: GridResult, out_dir: Path) -> dict[str, Path]:
    """``grid.json`` (``provenance``, ``rows``, ``cells``, ``pairwise``, ``resumed`` and each cell's provenance),
    ``grid.csv``, ``report.md`` and ``report.html``.
    """
    from agentmem.report import grid_html, grid_markdown

    table = rows(grid)
    pairs = pairwise(grid)
    paths = {
        "json": out_dir / "grid.json",
        "csv": out_dir / "grid.csv",
        "markdown": out_dir / "report.md",
        "html": out_dir / "report.html",
    }
    keys = [GridCell(env=r.env, memory=r.memory).key for r in grid.cells]
    summary = {
        "provenance": grid.provenance.model_dump() if grid.provenance is not None else None,
        "split": grid.split,
        "limit": grid.limit,
        "model": grid.model,
        "rows": table,
        "cells": [f"cells/{key}.json" for key in keys],
        "pairwise": pairs,
        "resumed": grid.resumed,
        "cell_provenance": {  # a resumed cell was made by an earlier run, perhaps of other code
            key: r.provenance.model_dump(include={"when", "git_commit", "git_dirty", "agentmem_version", "command"})
            if r.provenance is not None
            else None
            for key, r in zip(keys, grid.cells, strict=True)
        },
    }
    _write_atomic(paths["json"], json.dumps(summary, indent=2))
    _write_atomic(paths["csv"], to_csv(table))
    _write_atomic(paths["markdown"], grid_markdown(grid, table, pairs))
    _write_atomic(paths["html"], grid_html(grid, table, pairs))
    return paths
