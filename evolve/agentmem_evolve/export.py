"""Turn an evolved program into an installable plugin package.

The package has exactly the layout `agentmem plugin new` makes (the same
scaffold code writes it), with the scaffold's starter module replaced by the
evolved source: its memory class renamed to the plugin's name, the entry
point pointed at it, the parameter values evolution chose baked in as
defaults, a README saying where it came from (run, program, scores,
lineage), machine-readable provenance next to the module, and tests of the
memory-program contract. Nothing is executed while exporting: the source
is analysed with :mod:`ast` only, since evolved code is untrusted.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import sys
from datetime import UTC, datetime
from importlib.metadata import packages_distributions, requires
from pathlib import Path
from typing import Any

from agentmem.errors import ConfigError
from agentmem.scaffold import PluginNames, file_templates, plugin_names, scaffold_plugin
from agentmem_evolve.archive import Archive, ProgramRecord

__all__ = ["export_program", "find_program_class", "resolve_program_id"]

PROVENANCE_FILE = "evolution.json"


def resolve_program_id(archive: Archive, program_id: str) -> ProgramRecord:
    """The program with this id, or the only one whose id starts with it (ids are long to type)."""
    rec = archive.program(program_id)
    if rec is not None:
        return rec
    matches = [p for p in archive.programs() if p.id.startswith(program_id)] if program_id else []
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(
            f"no program '{program_id}' in {archive.path}: run `agentmem evolve status` to see the program ids"
        )
    raise ConfigError(
        f"'{program_id}' matches {len(matches)} programs in {archive.path} ({', '.join(p.id for p in matches[:5])}):"
        " give more characters of the id"
    )


def find_program_class(source: str, where: str = "the program") -> str:
    """The name of the MemoryProgram subclass a program module defines (found without running it).

    Mirrors :func:`agentmem.registry.load_program_file`: ``PROGRAM = Cls``
    wins; otherwise the one class deriving (directly or through local
    classes) from ``MemoryProgram`` that no other local class derives from.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(
            f"{where} is not valid Python (line {exc.lineno}: {exc.msg}); export a valid program"
        ) from None
    except (RecursionError, MemoryError):
        raise ConfigError(f"{where} is too deeply nested to parse; export a valid program") from None
    classes = {node.name: node for node in tree.body if isinstance(node, ast.ClassDef)}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "PROGRAM" for t in node.targets)
            and isinstance(node.value, ast.Name)
            and node.value.id in classes
        ):
            return node.value.id

    def base_names(cls: ast.ClassDef) -> list[str]:
        out = []
        for b in cls.bases:
            if isinstance(b, ast.Subscript):  # a generic base: MemoryProgram[MyParams]
                b = b.value
            if isinstance(b, ast.Name):
                out.append(b.id)
            elif isinstance(b, ast.Attribute):
                out.append(b.attr)
        return out

    imported = {  # names the module imports from elsewhere: alias -> (module, attribute)
        (a.asname or a.name): (node.module, a.name)
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and not node.level
        for a in node.names
    }

    def is_program_base(base: str) -> bool:
        if base == "MemoryProgram":
            return True
        if base in imported and base not in classes:
            return _installed_program_class(*imported[base])
        return False

    programs: set[str] = set()
    changed = True
    while changed:  # a class is a program if a base is MemoryProgram, an installed program class, or a local program
        changed = False
        for name, cls in classes.items():
            if name not in programs and any(is_program_base(b) or b in programs for b in base_names(cls)):
                programs.add(name)
                changed = True
    leaves = [n for n in classes if n in programs and not any(n in base_names(c) for c in classes.values())]
    if len(leaves) != 1:
        found = ", ".join(leaves) or "none"
        raise ConfigError(
            f"{where} must define exactly one MemoryProgram subclass to export (found {found}); "
            "set PROGRAM = YourClass in its source"
        )
    return leaves[0]


def _installed_program_class(module: str, attr: str) -> bool:
    """Whether ``module.attr`` is a MemoryProgram subclass (imports installed code, never the evolved source)."""
    if not module.startswith("agentmem"):
        return False  # memory programs come from agentmem distributions; do not import arbitrary modules
    try:
        import importlib

        from agentmem.memory import MemoryProgram

        obj = getattr(importlib.import_module(module), attr, None)
    except Exception:
        return False
    return isinstance(obj, type) and issubclass(obj, MemoryProgram)


def _set_class_name_attr(source: str, cls_name: str, name: str) -> str:
    """``source`` with ``cls_name.name`` set to ``name`` (replacing the value, or adding the line)."""
    tree = ast.parse(source)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls_name)
    lines = source.splitlines(keepends=True)
    for stmt in cls.body:
        target: ast.expr | None = None
        value: ast.expr | None = None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target, value = stmt.targets[0], stmt.value
        elif isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
            target, value = stmt.target, stmt.value
        if isinstance(target, ast.Name) and target.id == "name":
            assert value is not None and value.end_lineno is not None and value.end_col_offset is not None
            # ast offsets are in UTF-8 bytes: splice on the encoded lines
            start = sum(len(x.encode()) for x in lines[: value.lineno - 1]) + value.col_offset
            end = sum(len(x.encode()) for x in lines[: value.end_lineno - 1]) + value.end_col_offset
            raw = source.encode()
            return (raw[:start] + json.dumps(name).encode() + raw[end:]).decode()
    # no name attribute yet: add one after the class docstring (or before the first statement)
    first = cls.body[0]
    has_doc = (
        isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str)
    )
    first_line = lines[first.lineno - 1]
    indent = first_line[: len(first_line) - len(first_line.lstrip(" \t"))]
    if has_doc:
        insert_at = first.end_lineno or first.lineno
    else:
        insert_at = min([first.lineno, *(d.lineno for d in getattr(first, "decorator_list", []))]) - 1
    if insert_at > 0 and not lines[insert_at - 1].endswith("\n"):
        lines[insert_at - 1] += "\n"
    lines.insert(insert_at, f"{indent}name = {json.dumps(name)}\n")
    return "".join(lines)


def _imports(source: str, where: str) -> set[str]:
    """Top-level modules the source imports; relative imports cannot travel in a single module."""
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise ConfigError(
                    f"{where} uses a relative import (from {'.' * node.level}{node.module or ''} import ...), "
                    "which a one-module plugin cannot resolve: make the import absolute"
                )
            if node.module:
                out.add(node.module.split(".")[0])
    return out


def _extra_dependencies(modules: set[str], own_module: str) -> list[str]:
    """Distributions (other than agentmem itself) that provide the imported modules."""
    owners = packages_distributions()
    core = {
        re.split(r"[\s\[<>=!~;(]", r, maxsplit=1)[0].lower().replace("_", "-") for r in (requires("agentmem") or [])
    }
    deps: set[str] = set()
    for mod in modules:
        if mod in sys.stdlib_module_names or mod in ("__future__", own_module):
            continue
        found = owners.get(mod) or _dist_named_like(mod)  # editable installs are missing from the first
        for dist in found:
            if dist.lower() != "agentmem" and dist.lower().replace("_", "-") not in core:  # agentmem brings those
                deps.add(dist)
    return sorted(deps, key=str.lower)


def _dist_named_like(module: str) -> list[str]:
    """The installed distribution named after a module (agentmem_episodic -> agentmem-episodic), if any."""
    from importlib.metadata import PackageNotFoundError, distribution

    for candidate in (module.replace("_", "-"), module):
        try:
            return [distribution(candidate).metadata["Name"]]
        except PackageNotFoundError:
            continue
    return []


def _provenance(archive: Archive, rec: ProgramRecord) -> dict[str, Any]:
    scores = []
    metrics: dict[str, float] = {}
    metrics_stage = ""
    for stage in ("screen", "select", "test"):
        evals = archive.evaluations(rec.id, stage, status="ok")
        if not evals:
            continue
        e = evals[-1]
        scores.append(
            {
                "stage": stage,
                "split": e.split,
                "score": e.score,
                "questions": e.questions,
                "tokens_per_question": e.program_tokens / e.questions,
                "key": e.key,
            }
        )
        metrics, metrics_stage = e.metrics, stage
    select_scores = {s.program_id: s.score for s in archive.scored("select")}
    lineage = [
        {
            "id": p.id,
            "operator": p.operator,
            "generation": p.generation,
            "parents": p.parents,
            "seed": str(p.meta.get("seed") or p.meta.get("plugin") or "") if p.operator == "seed" else "",
            "score": select_scores.get(p.id),
            "rationale": " ".join(str(p.meta.get("rationale") or "").split())[:200],
        }
        for p in archive.lineage(rec.id)
    ]
    environment = ""
    config_path = archive.run_dir / "config.toml"
    if config_path.is_file():
        try:
            from agentmem_evolve.config import RunConfig

            environment = RunConfig.load(config_path).environment.name
        except Exception:  # provenance is best effort; a broken config must not block an export
            environment = ""
    return {
        "run_dir": str(archive.run_dir.resolve()),
        "program": {"id": rec.id, "operator": rec.operator, "generation": rec.generation, "parents": rec.parents},
        "environment": environment,
        "scores": scores,
        "metrics": {k: float(v) for k, v in metrics.items()},
        "metrics_stage": metrics_stage,
        "lineage": lineage,
        "params": rec.params,
        "test_vs_seed": _test_vs_seed(archive, rec.id),
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _test_vs_seed(archive: Archive, program_id: str) -> dict[str, Any]:
    """Whether the program beats its own seed on the test split (the paired 95% interval), as provenance."""
    from agentmem_evolve.evidence import seed_verdict

    verdict = seed_verdict(archive, program_id)
    d = verdict.difference
    return {
        "status": verdict.status,
        "seed": verdict.seed,
        "message": verdict.message,
        "difference": d.rounded() if d is not None else None,
    }


def export_program(
    archive: Archive,
    program_id: str,
    out_dir: Path | str,
    name: str,
    *,
    check_installed: bool = True,
) -> Path:
    """Write ``agentmem-<name>/`` under ``out_dir`` holding the evolved program; return its path.

    ``program_id`` may be a unique prefix. Raises a one-line
    :class:`~agentmem.errors.ConfigError` for an unknown or invalid program, a
    bad or taken name (``check_installed``), or an existing target; on any
    failure nothing is left behind.
    """
    rec = resolve_program_id(archive, program_id)
    if rec.status == "invalid":
        raise ConfigError(
            f"program {rec.id} failed validation ({rec.error or 'no reason recorded'}): export a valid program, "
            "e.g. the best one shown by `agentmem evolve status`"
        )
    names: PluginNames = plugin_names(name)
    where = f"program {rec.id}"
    cls_name = find_program_class(rec.source, where)
    from agentmem_evolve.operators import composed_modules

    deps = _extra_dependencies(_imports(rec.source, where) | composed_modules(rec.source), names.module)
    source = _set_class_name_attr(rec.source, cls_name, names.name)
    if not source.endswith("\n"):
        source += "\n"
    env = file_templates("agentmem_evolve", "templates/export")
    if rec.params:
        source += env.get_template("params.py.j2").render(program_id=rec.id, cls=cls_name, params=repr(rec.params))
    info = _provenance(archive, rec)
    context = {
        **info,
        "name": names.name,
        "dist": names.dist,
        "module": names.module,
        "module_suffix": names.module_suffix,
        "cls": cls_name,
        "program": rec,
        "extra_deps": deps,
    }
    readme = env.get_template("README.md.j2").render(**context)
    tests = env.get_template("test_plugin.py.j2").render(**context)

    root = scaffold_plugin(names.name, out_dir, check_installed=check_installed)
    try:
        (root / names.module / "__init__.py").write_text(source, encoding="utf-8")
        (root / names.module / PROVENANCE_FILE).write_text(
            json.dumps({**info, "class": cls_name, "plugin": names.name}, indent=2, default=str) + "\n",
            encoding="utf-8",
        )
        (root / "README.md").write_text(readme, encoding="utf-8")
        (root / "tests" / f"test_{names.module_suffix}.py").write_text(tests, encoding="utf-8")
        _patch_pyproject(root / "pyproject.toml", names, cls_name, deps)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)  # never leave half a package behind
        raise
    archive.log_event("export", program=rec.id, name=names.name, path=str(root))
    return root


def _patch_pyproject(path: Path, names: PluginNames, cls_name: str, deps: list[str]) -> None:
    """Point the scaffold's entry point at the evolved class and add the distributions the source imports."""
    text = path.read_text(encoding="utf-8")
    entry = f'"{names.name}" = "{names.module}:{names.cls}"'
    if entry not in text:  # pragma: no cover - guards against the scaffold template changing under us
        raise ConfigError(f"the plugin scaffold's pyproject has no entry point line {entry}; update agentmem-evolve")
    text = text.replace(entry, f'"{names.name}" = "{names.module}:{cls_name}"')
    if deps:
        listed = ", ".join(json.dumps(d) for d in ["agentmem", *deps])
        text = text.replace('dependencies = ["agentmem"]', f"dependencies = [{listed}]", 1)
        if "[tool.uv.sources]" in text:  # inside the agentmem workspace: sibling plugins come from it too
            members = "".join(f"{d} = {{ workspace = true }}\n" for d in deps if d.lower().startswith("agentmem-"))
            text = text.replace("agentmem = { workspace = true }\n", "agentmem = { workspace = true }\n" + members, 1)
    path.write_text(text, encoding="utf-8")
