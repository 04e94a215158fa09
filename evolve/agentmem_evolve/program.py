"""Memory programs as source text: seeding, reading and editing them without running them.

Evolution never imports a candidate in the controller (candidates are
untrusted; they run in the sandbox), so everything here works on the source
with :mod:`ast`:

* :func:`seed_source` turns an installed plugin into an *evolvable program*: a
  small module that subclasses the plugin and exposes what evolution edits -
  ``DEFAULTS`` (the declared parameters), the ``usage`` template (how the
  agent is told to read memory) and three hook methods (``before_store``,
  ``rewrite_query``, ``after_recall``), each a few lines a small model can
  rewrite whole;
* :func:`replace_function` splices one rewritten function into a program,
  re-indenting it for its class, so a model never has to produce a patch or
  get indentation right;
* :func:`read_defaults` / :func:`set_defaults` and :func:`read_template` /
  :func:`set_template` edit the literals structured mutation changes.
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import importlib.metadata
import inspect
import json
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2

from agentmem.errors import ConfigError

if TYPE_CHECKING:
    from agentmem.memory import MemoryProgram

HOOKS = ("before_store", "rewrite_query", "after_recall")
"""The hook methods a seeded program declares; each is a target of the reflective proposer."""

_TEMPLATE_ENV = jinja2.Environment(autoescape=False, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)


def program_id(source: str) -> str:
    """A program's identity: the short hash of its exact source."""
    return hashlib.sha256(source.encode()).hexdigest()[:12]


# -- seeding ----------------------------------------------------------------------------------


def _plugin_class(name: str) -> type[MemoryProgram]:
    from agentmem.registry import load_memory

    return load_memory(name)


def seed_source(seed: str) -> tuple[str, dict[str, Any]]:
    """The evolvable source for ``seed`` (an installed plugin name or a ``.py`` program file), and its meta.

    A file is taken as it is (it must define a ``MemoryProgram`` subclass); a
    plugin becomes a thin subclass whose defaults, usage template and hooks
    are spelled out so that every later edit is a small, local change.
    """
    path = Path(seed)
    if seed.endswith(".py"):
        if not path.is_file():
            raise ConfigError(
                f"seed program {seed} does not exist; give an installed plugin name (agentmem plugins list) or "
                "a .py file"
            )
        return path.read_text(), {"seed": seed, "base_plugin": None}
    cls = _plugin_class(seed)
    top = cls.__module__.split(".")[0]
    module = top if _top_exports(top, cls.__name__) else cls.__module__
    source = _render_seed(
        seed=seed,
        module=module,
        cls=cls.__name__,
        name=cls.name or seed,
        defaults=cls.Params().model_dump(mode="json"),
        usage=cls.templates.get("usage", "{{ context }}"),
        version=_version_of(cls),
    )
    return source, {"seed": seed, "base_plugin": seed, "base_class": f"{module}:{cls.__name__}"}


def _version_of(cls: type) -> str:
    try:
        return importlib.metadata.version(cls.__module__.split(".")[0].replace("_", "-"))
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _render_seed(**values: Any) -> str:
    from agentmem_evolve.prompts import load

    defaults = format_defaults(values.pop("defaults"))[len("DEFAULTS = ") :]
    return load("seed_program.py.j2").render(defaults=defaults, usage=json.dumps(values.pop("usage")), **values)


def _top_exports(module: str, cls: str) -> bool:
    top = module.split(".")[0]
    try:
        mod = __import__(top)
    except ImportError:
        return False
    return hasattr(mod, cls)


# -- reading ----------------------------------------------------------------------------------


def parse(source: str) -> ast.Module:
    """Parse ``source``; a syntax error becomes a one-line ``ValueError`` naming the line."""
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise ValueError(f"syntax error at line {exc.lineno}: {exc.msg}") from None
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"the code is too deeply nested to parse ({type(exc).__name__})") from None


def program_class(tree: ast.Module) -> ast.ClassDef | None:
    """The class evolution edits: ``Program`` if defined, else the last class defined in the module."""
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef)]
    for node in classes:
        if node.name == "Program":
            return node
    return classes[-1] if classes else None


def functions(source: str) -> dict[str, str]:
    """The methods of the program class (name -> source, dedented), in file order."""
    tree = parse(source)
    cls = program_class(tree)
    if cls is None:
        return {}
    lines = source.splitlines()
    out: dict[str, str] = {}
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
            out[node.name] = textwrap.dedent("\n".join(lines[start : node.end_lineno]))
    return out


def read_defaults(source: str) -> dict[str, Any]:
    """The module-level ``DEFAULTS`` dict literal (empty if the program has none)."""
    node = _assignment(parse(source), "DEFAULTS")
    if node is None:
        return {}
    try:
        value = ast.literal_eval(node.value)
    except ValueError:
        return {}
    return dict(value) if isinstance(value, dict) else {}


def set_defaults(source: str, defaults: dict[str, Any]) -> str:
    """``source`` with its ``DEFAULTS`` literal replaced by ``defaults``."""
    node = _assignment(parse(source), "DEFAULTS")
    text = format_defaults(defaults)
    if node is None:
        raise ValueError("the program has no DEFAULTS dict to mutate")
    return _replace_lines(source, node.lineno, node.end_lineno or node.lineno, text)


def read_template(source: str, name: str = "usage") -> str | None:
    """The program's ``TEMPLATES[name]`` string literal, if it declares one."""
    node = _assignment(parse(source), "TEMPLATES")
    if node is None:
        return None
    try:
        value = ast.literal_eval(node.value)
    except ValueError:
        return None
    return value.get(name) if isinstance(value, dict) else None


def set_template(source: str, text: str, name: str = "usage") -> str:
    """``source`` with ``TEMPLATES[name]`` replaced (the template must compile and keep ``{{ context }}``)."""
    check_template(text)
    node = _assignment(parse(source), "TEMPLATES")
    if node is None:
        raise ValueError("the program has no TEMPLATES dict to edit")
    value = ast.literal_eval(node.value)
    value[name] = text
    body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
    return _replace_lines(source, node.lineno, node.end_lineno or node.lineno, "TEMPLATES = {\n" + body + ",\n}")


def check_template(text: str) -> None:
    """A usage template must compile and place the recalled ``{{ context }}`` somewhere."""
    try:
        _TEMPLATE_ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise ValueError(f"the template does not compile: {exc.message} (line {exc.lineno})") from None
    if "context" not in text or "{{" not in text:
        raise ValueError("the template must include {{ context }}, where the recalled memories go")


def _assignment(tree: ast.Module, name: str) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
    return None


def _replace_lines(source: str, first: int, last: int, text: str) -> str:
    lines = source.splitlines()
    return "\n".join(lines[: first - 1] + text.splitlines() + lines[last:]) + "\n"


# -- splicing ----------------------------------------------------------------------------------


@dataclass
class Splice:
    """The result of putting model-written code into a program."""

    source: str
    replaced: list[str]
    added: list[str]


def extract_code(reply: str) -> str:
    """The Python in a model's reply: the longest fenced block, or the reply itself if unfenced."""
    blocks: list[str] = []
    inside = False
    current: list[str] = []
    for line in reply.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            if inside:
                blocks.append("\n".join(current))
                current = []
                inside = False
            else:
                inside = True
            continue
        if inside:
            current.append(line)
    if inside and current:  # an unterminated fence (the reply ran out of tokens): keep what came
        blocks.append("\n".join(current))
    if blocks:
        return max(blocks, key=len)
    return reply


def replace_function(source: str, code: str, expected: str | None = None) -> Splice:
    """Put the function(s) defined in ``code`` into the program class, replacing same-named methods.

    ``code`` may be indented any way (it is dedented, then indented for the
    class), may carry imports (added at the top of the module if missing) and
    may define helper functions (added as methods). ``expected`` names the
    function that must be among them. Raises ``ValueError`` with one line
    saying what is wrong, which the repair prompt shows the model.
    """
    code = reindent(code)
    try:
        new = ast.parse(code)
    except SyntaxError as exc:
        raise ValueError(f"your code has a syntax error at line {exc.lineno}: {exc.msg}") from None
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"your code is too deeply nested to parse ({type(exc).__name__})") from None
    defs = [n for n in new.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    imports = [n for n in new.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    classes = [n for n in new.body if isinstance(n, ast.ClassDef)]
    if classes and not defs:
        cls_node = classes[0]
        defs = [n for n in cls_node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
        code_lines = code.splitlines()
        pieces = []
        for node in defs:
            start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
            pieces.append(textwrap.dedent("\n".join(code_lines[start : node.end_lineno])))
        code = "\n\n".join(pieces)
        new = ast.parse(code)
        defs = [n for n in new.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if not defs:
        raise ValueError("no function definition found: answer with one complete `def ...` in a ```python block")
    if expected and expected not in {d.name for d in defs}:
        raise ValueError(
            f"the function must be named `{expected}` and keep its signature; you wrote "
            f"{', '.join(d.name for d in defs)}"
        )
    if expected:
        # a model asked for one method often repeats others (``__init__``, ``recall``) from the prompt:
        # only the asked-for method replaces code; other defs may only add new helpers
        present = set(functions(source))
        defs = [d for d in defs if d.name == expected or (d.name not in present and not d.name.startswith("__"))]
    for node in defs:
        if node.args.args[:1] and node.args.args[0].arg != "self":
            raise ValueError(f"`{node.name}` is a method: its first parameter must be `self`")
        if not node.args.args:
            raise ValueError(f"`{node.name}` is a method: its first parameter must be `self`")
    tree = parse(source)
    cls = program_class(tree)
    if cls is None:
        raise ValueError("the program defines no class to put the function into")
    lines = source.splitlines()
    code_lines = code.splitlines()
    existing = {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    indent = " " * (cls.body[0].col_offset if cls.body else cls.col_offset + 4)
    replaced: list[str] = []
    added: list[str] = []
    # replace from the bottom up so line numbers stay valid
    edits: list[tuple[int, int, str]] = []
    appended: list[str] = []
    for node in defs:
        start = min([d.lineno for d in node.decorator_list] + [node.lineno]) - 1
        text = textwrap.indent("\n".join(code_lines[start : node.end_lineno]), indent)
        old = existing.get(node.name)
        if old is not None:
            old_start = min([d.lineno for d in old.decorator_list] + [old.lineno])
            edits.append((old_start, old.end_lineno or old.lineno, text))
            replaced.append(node.name)
        else:
            appended.append(text)
            added.append(node.name)
    for first, last, text in sorted(edits, reverse=True):
        lines = lines[: first - 1] + text.splitlines() + lines[last:]
    if appended:
        # the class ends where its last statement ends; recompute after the edits above
        cls_after = program_class(ast.parse("\n".join(lines) + "\n"))
        assert cls_after is not None
        end = cls_after.end_lineno or len(lines)
        block: list[str] = []
        for text in appended:
            block += [""] + text.splitlines()
        lines = lines[:end] + block + lines[end:]
    result = "\n".join(lines) + "\n"
    if imports:
        result = _insert_after_imports(result, [ast.get_source_segment(code, n) or "" for n in imports])
    parse(result)  # the splice itself must leave valid Python
    return Splice(source=result, replaced=replaced, added=added)


def reindent(code: str) -> str:
    """Model-written functions with inconsistent indentation, made consistent.

    Small models often indent a method's body twice, or indent the ``def``
    more than a helper that follows it. Plain dedenting is tried first; if
    that does not parse, each top-level ``def`` starts at column 0 and its
    body keeps its relative indentation under 4 spaces.
    """
    code = code.expandtabs(4).strip("\n")
    plain = textwrap.dedent(code)
    try:
        ast.parse(plain)
        return plain
    except (SyntaxError, RecursionError, MemoryError):
        pass
    lines = code.splitlines()
    header = re.compile(r"^\s*(@|(async\s+)?def\s|(from|import)\s)")
    first_def = next((ln for ln in lines if re.match(r"^\s*(async\s+)?def\s", ln)), None)
    if first_def is None:
        return plain
    limit = len(first_def) - len(first_def.lstrip())
    out: list[str] = []
    body: list[str] = []
    in_signature = False

    def flush() -> None:
        real = [b for b in body if b.strip()]
        if real:
            low = min(len(b) - len(b.lstrip()) for b in real)
            out.extend(("    " + b[low:]) if b.strip() else "" for b in body)
        body.clear()

    for line in lines:
        indent = len(line) - len(line.lstrip())
        if line.strip() and header.match(line) and indent <= limit:
            flush()
            out.append(line.lstrip())
            in_signature = not line.rstrip().endswith(":") and not line.lstrip().startswith(("@", "from ", "import "))
            continue
        if in_signature:
            out.append("    " + line.strip())
            in_signature = not line.rstrip().endswith(":")
            continue
        body.append(line)
    flush()
    return "\n".join(out)


def format_defaults(defaults: dict[str, Any]) -> str:
    """``DEFAULTS = {...}`` with one parameter per line (readable diffs)."""
    rows = "".join(f"    {k!r}: {v!r},\n" for k, v in defaults.items())
    return "DEFAULTS = {\n" + rows + "}"


def _insert_after_imports(source: str, statements: list[str]) -> str:
    """``source`` with ``statements`` not already in it (imports, module-level tables) put after its imports."""
    lines = source.splitlines()
    present = {ln.strip() for ln in lines}
    new = [s for s in statements if s and s.strip() not in present]
    if not new:
        return source
    tree = parse(source)
    insert_at = 0
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)) or (
            isinstance(node, ast.Expr)
            and isinstance(getattr(node, "value", None), ast.Constant)
            and node is tree.body[0]
        ):
            insert_at = node.end_lineno or insert_at
    return "\n".join(lines[:insert_at] + new + lines[insert_at:]) + "\n"


def _unbound_names(source: str) -> set[str]:
    """Names ``source`` reads that nothing in it binds (nor the builtins)."""
    tree = parse(source)
    bound: set[str] = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - bound


def _module_bindings(node: ast.stmt) -> set[str]:
    """The names a module-level import or assignment binds (``DEFAULTS = ...``, ``from x import y``)."""
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, ast.Assign):
        return {t.id for t in node.targets if isinstance(t, ast.Name)}
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return {node.target.id}
    return set()


def restore_dropped_names(parent_source: str, source: str) -> str:
    """``source`` with the parent's module-level imports and assignments of names it uses but no longer binds.

    Models rewriting a whole file often drop an import line (``from agentmem.types import ...``) or a
    module-level table (``DEFAULTS``, ``TEMPLATES``: measured with the local 1.5B) while the code still
    uses the names; the parent's own statements are put back after the imports, in the parent's order,
    and nothing the parent did not have is added. A restored statement may itself use a dropped name
    (``DEFAULTS = {**Base.DEFAULTS, ...}``): that one is restored in the next round.
    """
    parent = parse(parent_source)
    for _ in range(4):
        missing = _unbound_names(source)
        restored = [
            ast.get_source_segment(parent_source, node) or ""
            for node in parent.body
            if _module_bindings(node) & missing
        ]
        grown = _insert_after_imports(source, restored) if restored else source
        if grown == source:
            break
        source = grown
    return source


def class_name(source: str) -> str:
    """The name of the class evolution edits (for messages and export)."""
    cls = program_class(parse(source))
    return cls.name if cls is not None else "?"


def describe_class(cls: type) -> str:
    """A short signature listing of ``cls`` for prompts (public methods, first docstring line)."""
    rows = []
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_"):
            continue
        doc = (inspect.getdoc(member) or "").splitlines()
        rows.append(f"{name}{inspect.signature(member)}" + (f"  # {doc[0]}" if doc else ""))
    return "\n".join(rows)
