"""`agentmem evolve`: added to the agentmem CLI through the ``agentmem.cli`` entry point."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table


def register(app: typer.Typer) -> None:
    """Add the `evolve` command to the agentmem CLI."""

    @app.command("evolve")
    def evolve_command(
        env: Annotated[str, typer.Option("--env", "-e", help="environment to score on")] = "locomo",
        memory: Annotated[str, typer.Option("--memory", help="seed memory plugin whose declared parameters evolve")] = "episodic",
        data: Annotated[Optional[str], typer.Option("--data", help="dataset path for the environment")] = None,
        generations: Annotated[int, typer.Option("--generations", "-g", min=0)] = 3,
        children: Annotated[int, typer.Option("--children", "-c", min=1, help="children per generation")] = 3,
        population: Annotated[int, typer.Option("--population", min=1, help="parents kept between generations")] = 4,
        limit: Annotated[Optional[int], typer.Option("--limit", "-n", help="questions per evaluation")] = 20,
        split: Annotated[str, typer.Option("--split", help="split that selection scores on")] = "train",
        final_split: Annotated[Optional[str], typer.Option("--final-split", help="score seed and best on this held-out split at the end")] = None,
        seed: Annotated[int, typer.Option("--seed")] = 0,
        run_dir: Annotated[Optional[Path], typer.Option("--run-dir", help="where the archive goes (default runs/<time>)")] = None,
        model: Annotated[Optional[str], typer.Option("--model", "-m", help="litellm model string or 'local'")] = None,
        api_base: Annotated[Optional[str], typer.Option("--api-base")] = None,
    ) -> None:
        """Evolve a memory plugin's declared parameters on an environment; print the best and its score."""
        from agentmem.cli.main import console, make_llm
        from agentmem.registry import load_memory
        from agentmem_evolve.loop import Candidate, evolve
        from agentmem_evolve.space import ParamSpace

        space = ParamSpace(load_memory(memory).Params)
        console.print(f"evolving [bold]{memory}[/] on [bold]{env}[/] ({split} split, {limit} questions per evaluation)")
        console.print("search space: " + ("; ".join(map(repr, space.dimensions)) or "none (the program declares no bounded parameters)"))
        llm = make_llm(model, api_base)
        run_dir = run_dir or Path("runs") / f"evolve-{datetime.now():%Y%m%d-%H%M%S}"

        def report(cand: Candidate, best: Candidate) -> None:
            console.print(
                f"gen {cand.generation} #{cand.id} (parent {cand.parent}) score {cand.score:.4f}"
                f" tokens {cand.tokens} {cand.params}  | best #{best.id} {best.score:.4f}"
            )

        result = evolve(
            env, memory, llm=llm, generations=generations, children=children, population=population,
            split=split, limit=limit, final_split=final_split, data=data, seed=seed, run_dir=run_dir,
            on_candidate=report,
        )
        table = Table(title=f"evolution of {memory} on {result.env} ({result.metric}, {split} split)")
        for col in ("#", "gen", "parent", result.metric, "tokens", "params"):
            table.add_column(col)
        for c in sorted(result.candidates, key=lambda c: -c.score):
            mark = " [green]best[/]" if c.id == result.best.id else (" [dim]seed[/]" if c.id == result.seed.id else "")
            table.add_row(f"{c.id}{mark}", str(c.generation), str(c.parent if c.parent is not None else "-"), f"{c.score:.4f}", str(c.tokens), str(c.params))
        console.print(table)
        console.print(
            f"best: #{result.best.id} {result.metric} {result.best.score:.4f} (seed {result.seed.score:.4f}) params {result.best.params}"
        )
        for label, metrics in result.final.items():
            console.print(f"{final_split} split, {label}: {result.metric} {metrics.get(result.metric, 0):.4f}")
        console.print(f"spent: {result.llm_calls} LLM calls, {result.tokens} tokens, {result.seconds:.0f} s; archive in {run_dir}")
