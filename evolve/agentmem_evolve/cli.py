"""`agentmem evolve run|resume|status|report|export`: added to the agentmem CLI through the ``agentmem.cli`` entry
point.

Each command checks everything it was given (the run config and flags, the
seeds, the environment and its knobs, the models, the paths) before it
creates or changes anything: bad input is one line and exit status 2, and
no run directory, config or archive is made or touched.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from agentmem.cli.guard import OneLineErrors, check_directory_target, check_parents
from agentmem.errors import ConfigError

evolve_app = typer.Typer(
    help="Evolve memory programs on an environment (run, resume, status, report, export).",
    no_args_is_help=True,
    cls=OneLineErrors,
)

#: the flag of `evolve run` that sets each config key (errors in a flag's value name the flag)
RUN_FLAGS = {
    "environment.name": "--env",
    "environment.data": "--data",
    "environment.minibatch": "--minibatch",
    "environment.validation_limit": "--validation-limit",
    "environment.test_limit": "--test-limit",
    "seeds": "--seed",
    "budget.iterations": "--iterations",
    "budget.max_llm_tokens": "--max-tokens",
    "budget.max_wall_seconds": "--max-seconds",
    "proposers.children_per_iteration": "--children",
    "selection.strategy": "--strategy",
    "models.task": "--model",
    "models.mutation": "--mutation-model",
    "models.api_base": "--api-base",
    "execution.executor": "--executor",
    "execution.concurrency": "--concurrency",
    "seed": "--random-seed",
    "sandbox.allow_unjailed": "--allow-unjailed",
}


def register(app: typer.Typer) -> None:
    """Add the `evolve` command group to the agentmem CLI."""
    app.add_typer(evolve_app, name="evolve")


def _config_from_flags(config: Path | None, overrides: dict[str, Any]) -> Any:
    from agentmem.config import read_toml
    from agentmem_evolve.config import RunConfig

    data: dict[str, Any] = {}
    base: Path | None = None
    if config is not None:
        data = read_toml(config, "--config", "write a run config (see docs/evolution.md) or use --env/--seed")
        base = config.expanduser().parent
    given = {k: v for k, v in overrides.items() if v is not None}
    for dotted, value in given.items():
        section, _, key = dotted.partition(".")
        if key:
            table = data.setdefault(section, {})
            if not isinstance(table, dict):
                raise ConfigError(
                    f"--config {config}: '{section}' must be a table ([{section}]), not a value; fix that file"
                )
            table[key] = value
        else:
            data[section] = value
    if "environment" not in data:
        raise ConfigError("say which environment to evolve on: --env toolprefs (or a [environment] table in --config)")
    data.setdefault("seeds", ["episodic"])
    return RunConfig.from_dict(
        data,
        source=str(config) if config else "the command line",
        base=base,
        flags={k: RUN_FLAGS[k] for k in given if k in RUN_FLAGS},
    )


def check_run_inputs(cfg: Any) -> None:
    """Everything a run needs that the config's own validation cannot see: seeds, environment, models.

    Reads only (a seed file is compiled, never run): nothing is created.
    """
    from agentmem.config import load_settings
    from agentmem.registry import load_environment
    from agentmem_evolve import program as prog
    from agentmem_evolve.evaluator import make_env

    for seed in cfg.seeds:
        path = Path(seed).expanduser()
        if seed.endswith(".py") or "/" in seed or "\\" in seed:
            if not path.is_file():
                raise ConfigError(
                    f"seed program {seed} does not exist; give an installed plugin name (agentmem plugins "
                    "list) or a .py file"
                )
            try:
                compile(path.read_text(encoding="utf-8"), str(path), "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as exc:
                line = getattr(exc, "lineno", None)
                raise ConfigError(
                    f"seed program {seed} does not compile{f' (line {line})' if line else ''}: "
                    f"{getattr(exc, 'msg', exc)}; fix it or choose another seed"
                ) from None
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"seed program {seed} cannot be read ({exc}); check the file") from None
        else:
            prog.seed_source(seed)  # an installed plugin: unknown names fail here
    env = cfg.environment
    load_environment(env.name)
    try:
        environment = make_env(env.name, env.data, env.options, cfg.seed)
    except TypeError as exc:
        raise ConfigError(
            f"environment '{env.name}' does not take these options ({exc}); fix [environment.options]"
        ) from None
    getattr(environment, "source", None)  # reads (and so checks) the dataset
    models = cfg.models
    load_settings(model=models.task, api_base=models.api_base)
    load_settings(model=models.mutation, api_base=models.mutation_api_base)


def _run(controller: Any, quiet: bool) -> dict[str, Any]:
    from agentmem.cli.main import console
    from agentmem_evolve.display import LiveDisplay

    display = LiveDisplay(controller, console)
    controller.on_event = display.handle
    try:
        if quiet:
            controller.on_event = None
            return controller.run()
        with display:
            return controller.run()
    except KeyboardInterrupt:
        console.print(
            f"[yellow]interrupted[/]: everything finished is in {controller.run_dir}; continue with `agentmem "
            f"evolve resume {controller.run_dir}`"
        )
        raise typer.Exit(130) from None
    finally:
        controller.close()


def _print_summary(run_dir: Path) -> None:
    from agentmem.cli.main import console
    from agentmem_evolve.archive import Archive
    from agentmem_evolve.report import summary

    with Archive(run_dir) as archive:
        info = summary(archive)
    console.print_json(json.dumps(info, default=str))
    _print_test_flag(info)


def _print_test_flag(info: dict[str, Any]) -> None:
    """One line on stderr (stdout stays JSON) when the best does not beat its seed on test."""
    from rich.console import Console

    test = info.get("test") or {}
    if not test.get("flagged"):
        return
    err = Console(stderr=True)
    if test.get("verdict") in ("worse", "not better"):
        err.print(f"[red]warning[/]: {escape(test['message'])}; `agentmem evolve export` refuses it without --force")
    else:
        err.print(f"note: {escape(test['message'])}")


@evolve_app.command("run")
def run_command(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="a run config (TOML); flags override it")
    ] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="environment to evolve on")] = None,
    seed_programs: Annotated[
        list[str] | None, typer.Option("--seed", "-s", help="seed program: installed plugin or .py file (repeatable)")
    ] = None,
    data: Annotated[str | None, typer.Option("--data", help="dataset path / knobs for the environment")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", "-i", min=0)] = None,
    children: Annotated[int | None, typer.Option("--children", min=1, help="children per iteration")] = None,
    minibatch: Annotated[
        int | None, typer.Option("--minibatch", min=1, help="questions per screening evaluation")
    ] = None,
    validation_limit: Annotated[
        int | None, typer.Option("--validation-limit", min=1, help="questions of the select split")
    ] = None,
    test_limit: Annotated[int | None, typer.Option("--test-limit", min=1, help="questions of the test split")] = None,
    strategy: Annotated[str | None, typer.Option("--strategy", help="softmax | islands | map-elites | pareto")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="task model (litellm string or 'local')")] = None,
    mutation_model: Annotated[
        str | None, typer.Option("--mutation-model", help="model that writes code, e.g. local/qwen2.5-coder-1.5b")
    ] = None,
    api_base: Annotated[str | None, typer.Option("--api-base")] = None,
    executor: Annotated[str | None, typer.Option("--executor", help="local (process pool) | ray")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", min=1)] = None,
    max_tokens: Annotated[int | None, typer.Option("--max-tokens", help="stop after this many LLM tokens")] = None,
    max_seconds: Annotated[float | None, typer.Option("--max-seconds", help="stop after this many seconds")] = None,
    seed: Annotated[int | None, typer.Option("--random-seed")] = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="where the run lives (default runs/evolve-<time>)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no live display")] = False,
    check_config: Annotated[
        bool,
        typer.Option(
            "--check-config",
            help="check everything, print the resolved config and its worst-case wall time, and exit without "
            "running or writing anything",
        ),
    ] = False,
    seconds_per_question: Annotated[
        float | None,
        typer.Option(
            "--seconds-per-question",
            min=0.001,
            help="with --check-config: the seconds one question takes the task model (default: the config's "
            "budget.seconds_per_question, else measured on a 2-core CPU with the local 0.5B)",
        ),
    ] = None,
    allow_unjailed: Annotated[
        bool,
        typer.Option(
            "--allow-unjailed",
            help="where no jail (bubblewrap or user namespaces) exists, run candidates with the audit hook "
            "alone: weaker, and the report says so",
        ),
    ] = False,
) -> None:
    """Start a run: seeds are scored, children proposed, validated, screened and promoted; the best is
    scored on test.
    """
    from agentmem.cli.main import console
    from agentmem_evolve.controller import CONFIG_FILE, Controller

    cfg = _config_from_flags(
        config,
        {
            "environment.name": env,
            "environment.data": data,
            "environment.minibatch": minibatch,
            "environment.validation_limit": validation_limit,
            "environment.test_limit": test_limit,
            "seeds": seed_programs or None,
            "budget.iterations": iterations,
            "budget.max_llm_tokens": max_tokens,
            "budget.max_wall_seconds": max_seconds,
            "proposers.children_per_iteration": children,
            "selection.strategy": strategy,
            "models.task": model,
            "models.mutation": mutation_model,
            "models.api_base": api_base,
            "execution.executor": executor,
            "execution.concurrency": concurrency,
            "seed": seed,
            "sandbox.allow_unjailed": True if allow_unjailed else None,
        },
    )
    if seconds_per_question is not None and not check_config:
        raise ConfigError("--seconds-per-question only sizes the estimate of --check-config; add --check-config")
    run_dir = run_dir or Path("runs") / f"evolve-{datetime.now():%Y%m%d-%H%M%S}"
    check_directory_target(run_dir, "--run-dir")
    if (run_dir / CONFIG_FILE).exists():
        raise ConfigError(
            f"{run_dir} already holds a run; continue it with `agentmem evolve resume {run_dir}` or pick "
            "another --run-dir"
        )
    check_run_inputs(cfg)
    _check_jail(cfg)  # before anything is written: a run that cannot sandbox its candidates does not start
    if check_config:
        _print_check(cfg, seconds_per_question)
        return
    controller = Controller.create(run_dir, cfg)
    console.print(f"run directory: [bold]{run_dir}[/] (resume with `agentmem evolve resume {run_dir}`)")
    result = _run(controller, quiet)
    _print_result(run_dir, result)


def _print_check(cfg: Any, seconds_per_question: float | None) -> None:
    """`run --check-config`: the config as the run would record it, and what it will cost at worst."""
    from agentmem.cli.main import console
    from agentmem_evolve.estimate import estimate_cost

    console.print(cfg.to_toml(), markup=False, highlight=False)
    estimate = estimate_cost(cfg, seconds_per_question=seconds_per_question)
    table = Table(title="worst-case cost (every child past the proxy promoted, no LLM cache hit)")
    table.add_column("what")
    table.add_column("estimate", justify="right")
    for what, value in estimate.lines():
        table.add_row(what, value)
    console.print(table)
    console.print("config OK: nothing was run or written")


@evolve_app.command("resume")
def resume_command(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    iterations: Annotated[
        int | None, typer.Option("--iterations", "-i", min=0, help="raise the iteration budget")
    ] = None,
    executor: Annotated[str | None, typer.Option("--executor", help="local | ray")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Continue a run after a crash, Ctrl-C or a spent budget: nothing finished is redone."""
    from agentmem_evolve.config import RunConfig
    from agentmem_evolve.controller import CONFIG_FILE, Controller

    _require_run(run_dir, archive=False)  # a run stopped right after it started has no archive yet
    cfg = RunConfig.load(run_dir / CONFIG_FILE)
    if iterations is not None or executor is not None:
        data = cfg.model_dump(mode="json", exclude_none=True)
        flags = {}
        if iterations is not None:
            data["budget"]["iterations"] = iterations
            flags["budget.iterations"] = "--iterations"
        if executor is not None:
            data["execution"]["executor"] = executor
            flags["execution.executor"] = "--executor"
        cfg = RunConfig.from_dict(data, source=str(run_dir / CONFIG_FILE), flags=flags)  # checked before it is written
    _check_jail(cfg)
    if iterations is not None or executor is not None:
        cfg.write(run_dir / CONFIG_FILE)
    controller = Controller.resume(run_dir)
    result = _run(controller, quiet)
    _print_result(run_dir, result)


def _print_result(run_dir: Path, result: dict[str, Any]) -> None:
    from agentmem.cli.main import console
    from agentmem_evolve.archive import Archive

    with Archive(run_dir) as archive:
        table = Table(title=f"programs of {run_dir}")
        for col in ("id", "operator", "gen", "screen", "select", "test", "status"):
            table.add_column(col)
        best = (result.get("best") or {}).get("id")
        from agentmem_evolve.evidence import intervals

        spans = {stage: intervals(archive, stage) for stage in ("select", "test")}
        for p in archive.programs():
            scores: dict[str, str] = {}
            for e in archive.evaluations(p.id):
                scores[e.stage] = f"{e.score:.4f}" if e.status == "ok" else "failed"
            for stage, by_program in spans.items():
                iv = by_program.get(p.id)
                if iv is not None and iv.n and scores.get(stage) != "failed":
                    scores[stage] = f"{iv.mean:.4f} [{iv.low:.3f}, {iv.high:.3f}] n={iv.n}"
            mark = " [green]best[/]" if p.id == best else ""
            table.add_row(
                p.id + mark,
                p.operator,
                str(p.generation),
                scores.get("screen", "-"),
                scores.get("select", "-"),
                scores.get("test", "-"),
                p.status if p.status != "invalid" else escape(f"invalid: {(p.error or '')[:60]}"),
            )
        console.print(table)
    spend = result.get("spend", {})
    from agentmem_evolve.report import summary

    with Archive(run_dir) as archive:
        _print_test_flag(summary(archive))
    console.print(
        f"stopped: {result.get('stopped')}; spent {int(spend.get('llm_calls', 0))} LLM calls, "
        f"{int(spend.get('tokens', 0))} tokens, {spend.get('seconds', 0):.0f} s"
    )
    console.print(
        f"report: `agentmem evolve report {run_dir}`; export: `agentmem evolve export {run_dir} --name my-memory`"
    )


@evolve_app.command("status")
def status_command(run_dir: Annotated[Path, typer.Argument(help="the run directory")]) -> None:
    """Where a run stands: iteration, programs, evaluations, best, frontier, spend."""
    _require_run(run_dir)
    _print_summary(run_dir)


@evolve_app.command("report")
def report_command(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default RUN/report.html)")] = None,
) -> None:
    """A self-contained HTML page: score over iterations, Pareto frontier, lineage, diff of the best against
    its seed.
    """
    from agentmem.cli.main import console
    from agentmem_evolve.archive import Archive
    from agentmem_evolve.report import render_report

    _require_run(run_dir)
    if out is not None:
        check_parents(out, "--out")
        if out.exists() and not out.is_dir() and out.suffix.lower() not in (".html", ".htm"):
            raise ConfigError(f"--out {out} exists and is not an HTML file; give a new .html path or a directory")
    with Archive(run_dir) as archive:
        path = render_report(archive, out or run_dir / "report.html")
    console.print(f"report written to [bold]{path}[/]")


@evolve_app.command("export")
def export_command(
    run_dir: Annotated[Path, typer.Argument(help="the run directory")],
    name: Annotated[str, typer.Option("--name", "-n", help="plugin name (entry point under agentmem.memory)")],
    program: Annotated[
        str | None, typer.Option("--program", "-p", help="program id (default: the best on the select split)")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="where the package goes (default ./<name>)")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="export even a program that does not beat its seed on the test split")
    ] = False,
) -> None:
    """Write a program as an installable plugin package (`pip install ./<name>`, then `agentmem plugins list`).

    Refuses, without --force, a program that is not better than its own seed
    on the held-out test split (the paired 95% interval above zero).
    """
    from agentmem.cli.main import console
    from agentmem.scaffold import plugin_names
    from agentmem_evolve.archive import Archive
    from agentmem_evolve.export import export_program

    _require_run(run_dir)
    plugin_names(name)  # a bad name fails before the archive is opened
    if out is not None:
        check_directory_target(out, "--out")
    from agentmem_evolve.evidence import incumbent, seed_verdict
    from agentmem_evolve.export import resolve_program_id

    with Archive(run_dir) as archive:
        if program is None:
            best = incumbent(archive)
            if best is None:
                raise ConfigError(f"{run_dir} has no scored program yet; finish or resume the run first")
            program = best[0].id
        verdict = seed_verdict(archive, resolve_program_id(archive, program).id)
        if verdict.flagged and not force:
            raise ConfigError(f"{verdict.message}; export refuses it: pass --force to export it anyway")
        path = export_program(archive, program, out or Path(name), name)
    console.print(
        f"exported program {program} as plugin '{name}' to [bold]{path}[/]; install it with `pip install {path}`"
    )


def _check_jail(cfg: Any) -> None:
    from agentmem_evolve.jail import JailUnavailable
    from agentmem_evolve.sandbox import sandbox_capabilities

    try:
        sandbox_capabilities(cfg.sandbox.jail, allow_unjailed=cfg.sandbox.allow_unjailed)
    except JailUnavailable as exc:
        raise ConfigError(str(exc)) from None


def _require_run(run_dir: Path, *, archive: bool = True) -> None:
    """``run_dir`` holds a run (its config and, unless ``archive`` is false, its archive); checked before anything in it
    is opened.
    """
    from agentmem_evolve.archive import ARCHIVE_FILE
    from agentmem_evolve.controller import CONFIG_FILE

    if not run_dir.is_dir():
        what = "does not exist" if not run_dir.exists() else "is a file"
        raise ConfigError(
            f"run directory {run_dir} {what}; give the directory of a run started with `agentmem evolve run`"
        )
    for needed in (CONFIG_FILE, ARCHIVE_FILE) if archive else (CONFIG_FILE,):
        if not (run_dir / needed).is_file():
            raise ConfigError(f"{run_dir} is not an evolution run (no {needed}); start one with `agentmem evolve run`")
