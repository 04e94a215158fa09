"""Discovery of memory plugins and environments through entry points.

First-party and third-party plugins are found the same way: a distribution
declares ``[project.entry-points."agentmem.memory"]`` (or
``"agentmem.environments"``) and, once installed, shows up here. A plugin
whose import fails is reported as broken with a one-line reason; it never
stops the others from loading.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from agentmem.errors import PluginError

if TYPE_CHECKING:
    from agentmem.environment import Environment
    from agentmem.memory import MemoryProgram

MEMORY_GROUP = "agentmem.memory"
ENVIRONMENT_GROUP = "agentmem.environments"
CLI_GROUP = "agentmem.cli"

Kind = Literal["memory", "environment"]
_GROUPS: dict[Kind, str] = {"memory": MEMORY_GROUP, "environment": ENVIRONMENT_GROUP}


class PluginInfo(BaseModel):
    """One discovered plugin, as `agentmem plugins list` shows it."""

    name: str
    kind: Kind
    distribution: str
    version: str
    target: str
    status: Literal["ok", "broken"]
    error: str | None = None
    description: str = ""


def _entry_points(group: str) -> list[EntryPoint]:
    eps = sorted(entry_points(group=group), key=lambda ep: ep.name)
    seen: dict[str, EntryPoint] = {}
    for ep in eps:  # the same distribution installed twice (editable + wheel) shows once
        seen.setdefault(ep.name, ep)
    return list(seen.values())


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _check(obj: Any, kind: Kind) -> None:
    from agentmem.environment import Environment
    from agentmem.memory import MemoryProgram

    base = MemoryProgram if kind == "memory" else Environment
    if not (inspect.isclass(obj) and issubclass(obj, base)):
        raise TypeError(f"{obj!r} is not a subclass of {base.__module__}.{base.__name__}")


def discover(kind: Kind | None = None) -> list[PluginInfo]:
    """Every installed plugin of ``kind`` (both kinds if ``None``), loaded to check it works."""
    kinds: list[Kind] = [kind] if kind else ["memory", "environment"]
    found: list[PluginInfo] = []
    for k in kinds:
        for ep in _entry_points(_GROUPS[k]):
            dist = ep.dist
            info: dict[str, Any] = dict(
                name=ep.name,
                kind=k,
                distribution=dist.name if dist else "?",
                version=dist.version if dist else "?",
                target=ep.value,
            )
            try:
                obj = ep.load()
                _check(obj, k)
            except Exception as exc:  # a broken plugin must not break discovery
                found.append(PluginInfo(**info, status="broken", error=_one_line(exc)))
                continue
            doc = (inspect.getdoc(obj) or "").strip().splitlines()
            found.append(PluginInfo(**info, status="ok", description=doc[0] if doc else ""))
    return found


def _load(name: str, kind: Kind) -> Any:
    for ep in _entry_points(_GROUPS[kind]):
        if ep.name == name:
            try:
                obj = ep.load()
                _check(obj, kind)
            except Exception as exc:
                raise PluginError(
                    f"{kind} plugin '{name}' ({ep.value}) is broken: {_one_line(exc)}; "
                    f"reinstall its package or run `agentmem plugins list` for details"
                ) from exc
            return obj
    names = ", ".join(ep.name for ep in _entry_points(_GROUPS[kind])) or "none installed"
    raise PluginError(
        f"no {kind} plugin named '{name}' (installed: {names}); `pip install` the package that provides it"
    )


def load_memory(name: str) -> type[MemoryProgram]:
    """The memory program class for an entry-point name, or a ``.py`` file path."""
    if name.endswith(".py") or "/" in name or "\\" in name:
        return load_program_file(Path(name))
    return _load(name, "memory")


def load_environment(name: str) -> type[Environment]:
    """The environment class registered under ``name``."""
    return _load(name, "environment")


def load_program_file(path: Path) -> type[MemoryProgram]:
    """Import a memory program from a Python file and return its MemoryProgram subclass.

    The file must define exactly one subclass of
    :class:`~agentmem.memory.MemoryProgram` (or name it ``PROGRAM``), or be a
    program in M*'s format (see :mod:`agentmem.compat.mstar`), which is wrapped.
    """
    from agentmem.memory import MemoryProgram

    path = Path(path)
    if not path.is_file():
        raise PluginError(f"memory program file {path} does not exist: give a path to a .py file")
    module_name = f"agentmem_program_{abs(hash(str(path.resolve()))):x}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PluginError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise PluginError(f"memory program {path} failed to import: {_one_line(exc)}") from exc
    chosen = getattr(module, "PROGRAM", None)
    if chosen is None:
        from agentmem.compat.mstar import is_mstar_module, mstar_program_class

        if is_mstar_module(module) and not any(
            inspect.isclass(o) and issubclass(o, MemoryProgram) and o.__module__ == module_name
            for o in vars(module).values()
        ):
            return mstar_program_class(module, name=path.stem)  # an M*-format program (KnowledgeBase.write/read)
        classes = [
            obj
            for obj in vars(module).values()
            if inspect.isclass(obj)
            and issubclass(obj, MemoryProgram)
            and obj is not MemoryProgram
            and obj.__module__ == module_name
        ]
        if len(classes) != 1:
            raise PluginError(
                f"memory program {path} must define exactly one MemoryProgram subclass "
                f"(found {len(classes)}); or set PROGRAM = YourClass"
            )
        chosen = classes[0]
    _check(chosen, "memory")
    return chosen


def cli_extensions() -> list[EntryPoint]:
    """Entry points that add commands to the `agentmem` CLI (e.g. `evolve`)."""
    return _entry_points(CLI_GROUP)
