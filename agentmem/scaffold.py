"""`agentmem plugin new NAME`: write an installable memory-plugin package to start from.

The package is complete and working from the first minute: a pyproject with
the ``agentmem.memory`` entry point (hatchling build, depends on
``agentmem``), a module implementing the memory-program protocol (a small
memory composed of the core store, hybrid retriever and packer, with bounded
``Params``), a README and a test file.
Installed with ``pip install -e`` it shows up in `agentmem plugins list`
and runs in `agentmem eval` with no further wiring.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import jinja2

from agentmem.errors import ConfigError

__all__ = ["PluginNames", "plugin_names", "scaffold_plugin"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
_MAX_NAME = 40


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from the plugin's short name."""

    name: str  # entry-point name: what `--memory` takes
    dist: str  # distribution and directory: agentmem-<name>
    module: str  # import package: agentmem_<name>
    cls: str  # the MemoryProgram subclass
    params_cls: str  # its pydantic Params model
    title: str  # human title for docs

    @property
    def module_suffix(self) -> str:
        return self.module.removeprefix("agentmem_")


def plugin_names(name: str) -> PluginNames:
    """Validate ``name`` and derive the distribution, module and class names from it."""
    raw = name
    name = name.strip()
    if name.lower().startswith(("agentmem-", "agentmem_")):
        raise ConfigError(
            f"plugin name '{raw}' should not start with 'agentmem-': give the short name "
            f"(e.g. '{name[9:] or 'notes'}'), the package will be called agentmem-<name>"
        )
    if not _NAME.match(name) or len(name) > _MAX_NAME:
        raise ConfigError(
            f"'{raw}' is not a valid plugin name: use lower-case letters, digits and single '-' or '_' "
            f"between them, starting with a letter, at most {_MAX_NAME} characters (e.g. 'keyword-notes')"
        )
    parts = re.split(r"[-_]", name)
    module = "agentmem_" + "_".join(parts)
    camel = "".join(p[:1].upper() + p[1:] for p in parts)
    cls = camel + "Memory"
    if keyword.iskeyword(module) or not module.isidentifier():  # pragma: no cover - the regex forbids it
        raise ConfigError(f"'{raw}' does not give a valid Python module name; choose another plugin name")
    return PluginNames(
        name=name,
        dist="agentmem-" + "-".join(parts),
        module=module,
        cls=cls,
        params_cls=camel + "Params",
        title=" ".join(parts).capitalize() + " memory",
    )


def _installed_memory(name: str) -> str | None:
    """The distribution already providing a memory plugin called ``name``, if any."""
    for ep in entry_points(group="agentmem.memory"):
        if ep.name == name:
            return ep.dist.name if ep.dist else ep.value
    return None


def _in_agentmem_workspace(path: Path) -> bool:
    """Whether ``path`` lies inside the agentmem uv workspace (its members need a workspace source)."""
    for parent in [path, *path.parents]:
        pyproject = parent / "pyproject.toml"
        if pyproject.is_file():
            text = pyproject.read_text(encoding="utf-8", errors="replace")
            if "[tool.uv.workspace]" in text and re.search(r'^name\s*=\s*"agentmem"', text, re.MULTILINE):
                return True
    return False


def file_templates(package: str = "agentmem", folder: str = "templates/plugin") -> jinja2.Environment:
    """Jinja templates that render files of a package (kept verbatim: trailing newlines, no stray indents).

    The scaffold and ``agentmem evolve export`` both write plugin packages
    with these settings, so their files come out alike.
    """
    return jinja2.Environment(
        loader=jinja2.PackageLoader(package, folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def scaffold_plugin(name: str, dest: Path | str = Path("."), *, check_installed: bool = True) -> Path:
    """Write the package ``agentmem-<name>/`` under ``dest`` and return its path.

    Raises :class:`~agentmem.errors.ConfigError` (one line) for an invalid
    name, a name an installed plugin already uses (``check_installed``), or
    an existing target directory - nothing is overwritten.
    """
    names = plugin_names(name)
    if check_installed:
        owner = _installed_memory(names.name)
        if owner is not None:
            raise ConfigError(
                f"a memory plugin named '{names.name}' is already installed (from {owner}); choose another name"
            )
    dest = Path(dest).expanduser()
    if dest.exists() and not dest.is_dir():
        raise ConfigError(f"--dir {dest} is a file, not a directory; give a directory to create the plugin in")
    root = dest / names.dist
    if root.exists():
        raise ConfigError(f"{root} already exists; remove it or choose another --dir or name (nothing was overwritten)")
    env = file_templates()
    context = {
        "name": names.name,
        "dist": names.dist,
        "module": names.module,
        "module_suffix": names.module_suffix,
        "cls": names.cls,
        "params_cls": names.params_cls,
        "title": names.title,
        "workspace": _in_agentmem_workspace(dest.resolve()),
    }
    files = {
        Path("pyproject.toml"): "pyproject.toml.j2",
        Path("README.md"): "README.md.j2",
        Path(names.module) / "__init__.py": "__init__.py.j2",
        Path("tests") / f"test_{names.module_suffix}.py": "test_plugin.py.j2",
    }
    rendered = {path: env.get_template(template).render(**context) for path, template in files.items()}
    root.mkdir(parents=True)
    for path, text in rendered.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text, encoding="utf-8")
    return root
