"""`agentmem plugin new NAME [--dir PATH]`: scaffold an installable memory-plugin package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

NameArg = Annotated[
    str, typer.Argument(help="short plugin name, e.g. 'keyword-notes' (the package becomes agentmem-<name>)")
]
DirOpt = Annotated[Path, typer.Option("--dir", "-d", help="directory to create the package in")]


def plugin_new(name: NameArg, directory: DirOpt = Path(".")) -> None:
    """Create agentmem-NAME/: pyproject with the entry point, a working memory program, a README and tests."""
    from agentmem.cli.guard import check_directory_target
    from agentmem.scaffold import plugin_names, scaffold_plugin

    plugin_names(name)  # the name first: its error is the one to fix
    check_directory_target(directory, "--dir")
    root = scaffold_plugin(name, directory)
    names = plugin_names(name)
    shown = root
    # plain lines, never wrapped: they are commands to copy
    lines = [
        typer.style("created ", fg="green") + f"{shown}/",
        f"  {names.module}/__init__.py    the memory program ({names.cls}, with {names.params_cls})",
        f"  tests/test_{names.module_suffix}.py    its tests",
        "  pyproject.toml, README.md",
        "next steps:",
        f"  uv pip install -e {shown}    (or: pip install -e {shown})",
        f"  agentmem plugins list    # shows '{names.name}'",
        f"  pytest {shown}/tests",
        f"  agentmem eval --env locomo --memory {names.name} --limit 5",
    ]
    for line in lines:
        typer.echo(line)


def register(app: typer.Typer) -> None:
    """Add `agentmem plugin new` (and the alias `agentmem plugins new`) to the CLI ``app``."""
    from agentmem.cli.guard import OneLineErrors

    plugin_app = typer.Typer(help="Create memory plugins.", no_args_is_help=True, cls=OneLineErrors)
    plugin_app.command("new")(plugin_new)
    app.add_typer(plugin_app, name="plugin")
    for group in app.registered_groups:
        if group.name == "plugins" and group.typer_instance is not None:
            group.typer_instance.command("new")(plugin_new)
