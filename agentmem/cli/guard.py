"""How the `agentmem` command line answers bad input: one line, exit status 2, nothing written.

Every command checks its input before it creates a file, a directory, a
cache or a model client, and reports what is wrong as one line that says
what, where and how to fix it. :class:`OneLineErrors` is the command group
class of the `agentmem` app (and of every group an extension adds under it):
it turns click's usage errors (an unknown option, a value out of range, a
missing argument) and :class:`~agentmem.errors.AgentmemError` into that line,
so a test that drives the app with typer's ``CliRunner`` sees exactly what a
user sees. The helpers below are the checks several commands share.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from typer.core import TyperGroup

from agentmem.errors import AgentmemError, ConfigError, LLMUnavailable

__all__ = [
    "OneLineErrors",
    "run_guarded",
    "EXIT_MODEL_UNAVAILABLE",
    "check_file_target",
    "check_directory_target",
    "check_existing_directory",
    "check_parents",
    "describe_field",
    "print_error",
]

#: exit status of every error the user can fix
USAGE_EXIT = 2
#: exit status of a run stopped because the model could not be reached (EX_TEMPFAIL): try again later
EXIT_MODEL_UNAVAILABLE = 75


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """``name`` from click and from the copy of click that newer typer releases carry (either may be the one in use)."""
    import importlib

    found: list[type[BaseException]] = []
    for module in ("typer._click.exceptions", "click.exceptions", "typer.exceptions"):
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ImportError:
            continue
        if isinstance(cls, type) and cls not in found:
            found.append(cls)
    return tuple(found)


_CLICK_ERROR = _click_classes("ClickException")
_USAGE_ERROR = _click_classes("UsageError")
_ABORT = _click_classes("Abort")
#: a person stopped the command (Ctrl-C, or click's Abort at a prompt)
_INTERRUPTED: tuple[type[BaseException], ...] = (KeyboardInterrupt, *_ABORT)
#: raised when a group that needs a command got none (its help is shown)
_NO_COMMAND = _click_classes("NoArgsIsHelpError")


def print_error(message: str) -> None:
    """``error: <message>`` on stderr, as one line (never wrapped, never read as rich markup)."""
    from rich.markup import escape

    from agentmem.cli.main import err_console

    line = " ".join(str(message).split())
    err_console.print(f"[red]error[/]: {escape(line)}", highlight=False, soft_wrap=True)


def _usage_line(exc: Any) -> str:
    ctx: Any = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "agentmem"
    message = " ".join(exc.format_message().split())
    return f"{where}: {message}; see `{where} --help`"


def run_guarded(call: Callable[[], Any]) -> int:
    """Run ``call`` (a click ``main`` in non-standalone mode) and return its exit status, errors as one line."""
    try:
        result = call()
    except _NO_COMMAND:
        return USAGE_EXIT  # no command given: the group's help has been printed
    except _CLICK_ERROR as exc:
        print_error(_usage_line(exc))
        return USAGE_EXIT if isinstance(exc, _USAGE_ERROR) else int(getattr(exc, "exit_code", 1))
    except LLMUnavailable as exc:  # not the user's input: the same command works once the model answers
        print_error(str(exc))
        return EXIT_MODEL_UNAVAILABLE
    except AgentmemError as exc:
        print_error(str(exc))
        return USAGE_EXIT
    except OSError as exc:
        if not exc.filename:  # not about a path the user gave: a bug or the machine, show it whole
            raise
        print_error(
            f"{exc.strerror or exc}: {exc.filename}; check that path (does it exist, is it a directory, may "
            "you write there?)"
        )
        return USAGE_EXIT
    except _INTERRUPTED:
        from agentmem.cli.main import err_console

        err_console.print("[yellow]interrupted[/]")
        return 130
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


class OneLineErrors(TyperGroup):
    """A typer group whose errors are one line on stderr with exit status 2 (see the module's notes)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = run_guarded(
            lambda: TyperGroup.main(
                self, args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
        )
        if not standalone_mode:
            return code
        sys.exit(code)


# -- checks shared by commands (they read, never write) ----------------------------------------------
def check_file_target(path: Path, flag: str) -> Path:
    """``path`` can become a file: it is not a directory and no file stands where a parent directory must go."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{flag} {path} is a directory; give a file path (e.g. {path / 'result.json'})")
    check_parents(path, flag)
    return path


def check_directory_target(path: Path, flag: str) -> Path:
    """``path`` is a directory or can become one (no file stands in the way)."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a directory; give a directory path")
    if path.is_dir() and not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"{flag} {path} is not writable; choose a directory you can write to")
    check_parents(path, flag)
    return path


def check_existing_directory(path: Path, what: str, fix: str) -> Path:
    path = Path(path).expanduser()
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist; {fix}")
    if not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a directory; {fix}")
    return path


def check_parents(path: Path, flag: str) -> None:
    """The nearest existing folder above ``path`` is a writable directory (so ``path`` can be created)."""
    path = Path(path).expanduser()
    for folder in [path.parent, *path.parent.parents]:
        if folder.exists():
            if not folder.is_dir():
                raise ConfigError(
                    f"{flag} {path}: {folder} is a file, so nothing can be created under it; choose another path"
                )
            if not os.access(folder, os.W_OK | os.X_OK):
                raise ConfigError(f"{flag} {path}: {folder} is not writable; choose a path you can write to")
            return


def describe_field(info: Any) -> str:
    """What a pydantic field accepts, in words: its type and bounds (``an integer from 1 to 50``)."""
    import typing

    annotation = info.annotation
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    if args and typing.get_origin(annotation) is not typing.Literal and len(args) == 1:
        annotation = args[0]
    names: Mapping[Any, str] = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
    kind = names.get(annotation, getattr(annotation, "__name__", str(annotation)))
    low = high = None
    low_strict = high_strict = False
    for meta in getattr(info, "metadata", []):
        for attr, strict, is_low in (
            ("ge", False, True),
            ("gt", True, True),
            ("le", False, False),
            ("lt", True, False),
        ):
            value = getattr(meta, attr, None)
            if value is not None:
                if is_low:
                    low, low_strict = value, strict
                else:
                    high, high_strict = value, strict
    if low is not None and high is not None and not low_strict and not high_strict:
        return f"{kind} from {low} to {high}"
    bounds = []
    if low is not None:
        bounds.append(f"{'>' if low_strict else '>='} {low}")
    if high is not None:
        bounds.append(f"{'<' if high_strict else '<='} {high}")
    return kind + (" " + " and ".join(bounds) if bounds else "")
