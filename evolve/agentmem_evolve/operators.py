"""Structural operators: children that differ from their parent in what the program is made of, with no LLM.

A program assembled from the core modules (:mod:`agentmem.assembled`)
declares its module choices as a literal, ``DESIGN = {...}``, beside its
``DEFAULTS``. Each operator here reads that literal, offers the changes it
can make to it (and to the knobs a newly added module needs), and writes one
back; the source stays a valid program by construction (the design is
checked against :class:`~agentmem.assembled.Design` before it is written,
then validated in the sandbox like every child).

* ``swap-retriever`` - dense / lexical / hybrid / recency-blended hybrid;
* ``add-manager`` / ``remove-manager`` - supersede by subject, consolidate, prune, correct
  (a statement announcing a change hides the one it changes);
* ``neighbours`` - widen each hit with the items stored beside it (or stop);
* ``compose`` - recall another installed plugin beside this one under a
  weight (``+semantic``, ``+procedural``), reweight it, or drop it;
* ``encode`` - verbatim turn, turn with its session summary, extracted fact;
* ``own-turns`` - stop storing the agent's own replies (only what the others
  said is kept), or start again;
* ``dates`` - show memories without their dates (the usage template's "each
  line starts with its date" goes with them), or with them again;
* ``order`` - show recalled memories oldest first, best match first or best
  match last (the usage template's "oldest first" says which);
* ``style`` - show each recalled memory as it was said (``[date] user: ...``)
  or as a note (``- ...``: a bullet, the user's words without their name);
  what is recalled stays the same;
* ``top-k`` - recall half as many items, or twice as many (``top_k``
  between 2 and 32): fewer lines leave a small model less to confuse;
* ``usage`` - the first line of the usage template, which tells the agent
  what the recalled lines are: "excerpts from earlier conversations" (a
  description) or "what the user told you before ... use the value stated
  here, word for word, not a default" (a directive). Recall is unchanged;
  only what the agent is told to do with it.

A parent seeded from the ``episodic`` plugin is first *lifted*: rewritten as
the assembled program with the same modules (hybrid retrieval, recency,
de-duplication, neighbours, consolidation of repeats), its usage template,
hooks and parameter values kept, so the operator's change is the only
difference in behaviour.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass, field
from typing import Any

from agentmem.assembled import ENCODINGS, MANAGERS, ORDERS, RETRIEVERS, STYLES, AssembledParams, Design
from agentmem_evolve import program as prog
from agentmem_evolve.proposers import ParentView, Proposal, ProposalFailed

__all__ = [
    "OPERATORS",
    "Change",
    "StructuralProposer",
    "composed_modules",
    "lift",
    "read_design",
    "set_design",
    "operator_names",
]

ASSEMBLED_BASE = "from agentmem.assembled import AssembledMemory as Base"
COMPOSABLE = ("semantic", "procedural")
"""Plugins the ``compose`` operator may add (each must be installed to be offered)."""
COMPOSE_WEIGHTS = (0.5, 1.0)
LIFTABLE = ("episodic",)
"""Plugins whose seeded programs can be rewritten as assembled programs with the same behaviour."""


@dataclass
class Change:
    """One structural edit: the new design, knob values it needs, and what it did in words."""

    design: dict[str, Any]
    what: str
    defaults: dict[str, Any] = field(default_factory=dict)
    template: tuple[str, str] | None = None
    """(old, new): a phrase of the usage template replaced with the change, where the template has it."""


# -- the DESIGN literal ------------------------------------------------------------------------


def _design_node(tree: ast.Module) -> ast.Assign | None:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DESIGN" for t in node.targets):
            return node
    return None


def read_design(source: str) -> dict[str, Any] | None:
    """The program's ``DESIGN`` literal, validated (``None`` when it declares none, or one that is not a
    valid design).
    """
    node = _design_node(prog.parse(source))
    if node is None:
        return None
    try:
        value = ast.literal_eval(node.value)
        return Design.model_validate(value).model_dump() if isinstance(value, dict) else None
    except (ValueError, TypeError, SyntaxError):  # pydantic's ValidationError is a ValueError
        return None


def format_design(design: dict[str, Any]) -> str:
    """``DESIGN = {...}`` with one choice per line (readable diffs)."""
    rows = "".join(f"    {k!r}: {v!r},\n" for k, v in design.items())
    return "DESIGN = {\n" + rows + "}"


def set_design(source: str, design: dict[str, Any]) -> str:
    """``source`` with its ``DESIGN`` literal replaced by ``design`` (checked against :class:`Design` first)."""
    design = Design.model_validate(design).model_dump()
    node = _design_node(prog.parse(source))
    if node is None:
        raise ValueError("the program has no DESIGN dict to rewrite")
    lines = source.splitlines()
    return (
        "\n".join(
            lines[: node.lineno - 1] + format_design(design).splitlines() + lines[node.end_lineno or node.lineno :]
        )
        + "\n"
    )


def composed_modules(source: str) -> set[str]:
    """The top-level modules of the plugins an assembled program composes (loaded by name at run time, so an
    exported package must depend on them although the source never imports them)."""
    from importlib.metadata import entry_points

    wanted = set((read_design(source) or {}).get("compose", {}))
    return {ep.value.split(":")[0].split(".")[0] for ep in entry_points(group="agentmem.memory") if ep.name in wanted}


# -- lifting a seeded plugin into modules ---------------------------------------------------------


def lift(source: str, meta: dict[str, Any]) -> tuple[str, str | None]:
    """``source`` as an assembled program, and the plugin it was lifted from (``None`` if it already was one).

    Raises :class:`ProposalFailed` for a program that is neither assembled nor
    seeded from a liftable plugin.
    """
    if read_design(source) is not None:
        return source, None
    base = meta.get("base_plugin")
    if base not in LIFTABLE:
        raise ProposalFailed(
            f"structural operators need a program assembled from modules (a DESIGN) or one seeded from "
            f"{', '.join(LIFTABLE)}; this one is based on {base or 'a custom file'}"
        )
    tree = prog.parse(source)
    cls = prog.program_class(tree)
    base_import = next(
        (n for n in tree.body if isinstance(n, ast.ImportFrom) and any(a.asname == "Base" for a in n.names)), None
    )
    defaults_node = next(
        (
            n
            for n in tree.body
            if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in n.targets)
        ),
        None,
    )
    if cls is None or base_import is None or defaults_node is None or not cls.body:
        raise ProposalFailed("the seeded program lost its Base import, DEFAULTS or class; it cannot be lifted")
    old = prog.read_defaults(source)
    defaults = {**AssembledParams().model_dump(), **{k: v for k, v in old.items() if k in AssembledParams.model_fields}}
    design = Design(
        encode="turn",
        retriever="recency" if float(defaults.get("recency_weight", 0) or 0) > 0 else "hybrid",
        neighbours=int(defaults.get("neighbors", 0) or 0) > 0,
        dedup=True,
        managers=["consolidate"],
    ).model_dump()
    lines = source.splitlines()
    first = cls.body[0]
    indent = " " * first.col_offset
    # edits bottom-up so that earlier line numbers stay valid
    edits = [
        (
            first.end_lineno or first.lineno,
            first.end_lineno or first.lineno,
            [lines[(first.end_lineno or first.lineno) - 1], f"{indent}design = DESIGN"],
        ),
        (
            defaults_node.lineno,
            defaults_node.end_lineno or defaults_node.lineno,
            [
                "# which core modules the program is made of (agentmem.assembled.Design); structural operators "
                "rewrite it",
                *format_design(design).splitlines(),
                "",
                *prog.format_defaults(defaults).splitlines(),
            ],
        ),
        (base_import.lineno, base_import.end_lineno or base_import.lineno, [ASSEMBLED_BASE]),
    ]
    doc = tree.body[0]
    if isinstance(doc, ast.Expr) and isinstance(doc.value, ast.Constant) and isinstance(doc.value.value, str):
        edits.append(
            (
                doc.lineno,
                doc.end_lineno or doc.lineno,
                [
                    '"""Memory program assembled from agentmem\'s core modules (lifted from the seeded '
                    f"'{base}' program).",
                    "",
                    "Evolution edits DESIGN (which modules: agentmem.assembled.Design), DEFAULTS (their",
                    "knobs), TEMPLATES and the three hook methods of Program; structural operators",
                    "rewrite DESIGN with no code-writing model.",
                    '"""',
                ],
            )
        )
    for start, end, new in sorted(edits, reverse=True):
        lines = lines[: start - 1] + new + lines[end:]
    lifted = "\n".join(lines) + "\n"
    if read_design(lifted) != design:
        raise ProposalFailed("lifting the program did not leave a readable DESIGN")
    return lifted, str(base)


# -- the operators ----------------------------------------------------------------------------------


def _installed() -> set[str]:
    from agentmem.registry import discover

    return {p.name for p in discover("memory") if p.status == "ok"}


class Operator:
    """A kind of structural edit: every change of that kind the design allows."""

    name = ""

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        raise NotImplementedError

    def changes_for(self, design: dict[str, Any], defaults: dict[str, Any], usage: str) -> list[Change]:
        """The changes for a program whose usage template is ``usage`` (most operators need only the design)."""
        return self.changes(design, defaults)


class SwapRetriever(Operator):
    name = "swap-retriever"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        out = []
        for kind in RETRIEVERS:
            if kind == design["retriever"]:
                continue
            knobs = {"recency_weight": 0.3} if kind == "recency" and not defaults.get("recency_weight") else {}
            out.append(Change({**design, "retriever": kind}, f"retriever {design['retriever']} -> {kind}", knobs))
        return out


class AddManager(Operator):
    name = "add-manager"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        return [
            Change({**design, "managers": [*design["managers"], m]}, f"added manager {m}")
            for m in MANAGERS
            if m not in design["managers"]
        ]


class RemoveManager(Operator):
    name = "remove-manager"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        return [
            Change({**design, "managers": [x for x in design["managers"] if x != m]}, f"removed manager {m}")
            for m in design["managers"]
        ]


class Neighbours(Operator):
    name = "neighbours"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        if design["neighbours"] and defaults.get("neighbors", 0):
            return [Change({**design, "neighbours": False}, "stopped widening hits with their neighbours")]
        width = max(1, int(defaults.get("neighbors", 0) or 0))
        return [
            Change(
                {**design, "neighbours": True},
                f"widened each hit with {width} neighbour(s) on each side",
                {"neighbors": width},
            )
        ]


class Compose(Operator):
    name = "compose"

    def __init__(self, plugins: tuple[str, ...] = COMPOSABLE, installed: set[str] | None = None) -> None:
        self.plugins = plugins
        self._installed = installed

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        installed = self._installed if self._installed is not None else _installed()
        composed = dict(design["compose"])
        out = []
        for plugin in self.plugins:
            if plugin in composed:
                rest = {k: v for k, v in composed.items() if k != plugin}
                out.append(Change({**design, "compose": rest}, f"dropped +{plugin}"))
                for weight in COMPOSE_WEIGHTS:
                    if weight != composed[plugin]:
                        out.append(
                            Change(
                                {**design, "compose": {**composed, plugin: weight}},
                                f"+{plugin} reweighted {composed[plugin]:g} -> {weight:g}",
                            )
                        )
            elif plugin in installed:
                for weight in COMPOSE_WEIGHTS:
                    out.append(
                        Change(
                            {**design, "compose": {**composed, plugin: weight}},
                            f"composed +{plugin} at weight {weight:g}",
                        )
                    )
        return out


class Encode(Operator):
    name = "encode"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        return [
            Change({**design, "encode": e}, f"encode {design['encode']} -> {e}")
            for e in ENCODINGS
            if e != design["encode"]
        ]


class OwnTurns(Operator):
    name = "own-turns"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        keep = not design.get("own_turns", True)
        what = "stored the agent's own replies again" if keep else "stopped storing the agent's own replies"
        return [Change({**design, "own_turns": keep}, what)]


DATED_PHRASE = "; each line starts with its date"
"""How the usage templates of episodic and the assembled program say that lines are dated."""


class Dates(Operator):
    name = "dates"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        if design.get("dates", True):
            return [Change({**design, "dates": False}, "stopped showing dates", template=(DATED_PHRASE, ""))]
        return [Change({**design, "dates": True}, "showed dates again")]


ORDER_PHRASES = {"time": "oldest first", "best-first": "best match first", "best-last": "best match last"}
"""How a usage template says in which order its lines come (episodic's and the assembled program's: "oldest first")."""


class Order(Operator):
    name = "order"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        now = design.get("order", "time")
        return [
            Change(
                {**design, "order": o},
                f"showed memories {ORDER_PHRASES[o]} (was {ORDER_PHRASES[now]})",
                template=(ORDER_PHRASES[now], ORDER_PHRASES[o]),
            )
            for o in ORDERS
            if o != now
        ]


class Style(Operator):
    """Switches how a recalled memory is shown: as said, or as a note.

    Why: the 0.5B answering toolprefs' requests copied a remembered value
    more often from ``- My lights should always be cool white.`` than from
    ``user: My lights should always be cool white.``: +0.057 on the same
    four recalled statements a request (100 requests,
    benchmarks/results/evolve/render.json). Recall is unchanged, so the proxy
    cannot see this change; a child with it takes the place kept for such
    children (step 4 of docs/evolution.md, "One iteration").
    """

    name = "style"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        now = design.get("style", "transcript")
        return [Change({**design, "style": s}, f"showed memories as {s} (was {now})") for s in STYLES if s != now]

    def changes_for(self, design: dict[str, Any], defaults: dict[str, Any], usage: str) -> list[Change]:
        """The switch, with the usage template's description line saying whose lines they are.

        Notes drop the user's name, so the line that introduces them names
        the user instead ("What the user told you, oldest first:" for
        "Excerpts from earlier conversations, oldest first."). Measured: the
        same four recalled statements as notes under the first line scored
        0.573 against 0.533 under the second (100 toolprefs requests,
        benchmarks/results/evolve/render.json).
        A directive (the ``usage`` operator's) is left as it is.
        """
        found = USAGE_DESCRIPTION.search(usage)
        out = []
        for change in self.changes(design, defaults):
            if found:
                line = usage_line(
                    "description", found["order"], bool(design.get("dates", True)), change.design["style"]
                )
                change = Change(change.design, change.what, template=(found[0], line))
            out.append(change)
        return out


TOP_K_BOUNDS = (2, 32)
"""The ``top_k`` values the ``top-k`` operator moves between (AssembledParams allows 1 to 50)."""


class TopK(Operator):
    """Halves or doubles how many items a recall returns (``top_k``).

    Why: numeric mutation moves ``top_k`` by small steps among a dozen knobs;
    halving it is a change of kind: on toolprefs the 0.5B filled more
    parameters right from the four statements most like the request than
    from the eight the seed recalls (+0.041 with both shown as notes, 100
    requests, benchmarks/results/evolve/render.json).
    """

    name = "top-k"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        k = int(defaults.get("top_k", AssembledParams().top_k))
        low, high = TOP_K_BOUNDS
        return [
            Change(dict(design), f"recalled {n} items (was {k})", {"top_k": n})
            for n in (max(low, k // 2), min(high, k * 2))
            if n != k
        ]


DESCRIPTION_OPENING = "Excerpts from earlier conversations, "
NOTES_OPENING = "What the user told you, "
"""The description line's opening for memories shown as notes (the ``style`` operator's), ending in a colon."""
DIRECTIVE_OPENING = "What the user told you before ("
DIRECTIVE_LATER = "; when two lines disagree, the later one is right"
DIRECTIVE_TAIL = (
    "). For every parameter the request leaves open, use the value the user stated here, word for word, not a default."
)
_ORDERS = "|".join(re.escape(p) for p in ORDER_PHRASES.values())
USAGE_DESCRIPTION = re.compile(
    f"(?:{re.escape(DESCRIPTION_OPENING)}|{re.escape(NOTES_OPENING)})"
    + f"(?P<order>{_ORDERS})(?:{re.escape(DATED_PHRASE)})?[.:]"
)
USAGE_DIRECTIVE = re.compile(
    re.escape(DIRECTIVE_OPENING) + f"(?P<order>{_ORDERS})(?:{re.escape(DIRECTIVE_LATER)})?" + re.escape(DIRECTIVE_TAIL)
)
"""The two first lines the ``usage`` operator switches between, in any order and with or without dates."""


def usage_line(style: str, order: str, dated: bool, shown: str = "transcript") -> str:
    """The usage template's first line in one ``style`` ("description" or "directive") for memories ``shown`` so."""
    if style == "description" and shown == "notes":
        return f"{NOTES_OPENING}{order}{DATED_PHRASE if dated else ''}:"
    if style == "description":
        return f"{DESCRIPTION_OPENING}{order}{DATED_PHRASE if dated else ''}."
    later = DIRECTIVE_LATER if order == ORDER_PHRASES["time"] else ""
    return f"{DIRECTIVE_OPENING}{order}{later}{DIRECTIVE_TAIL}"


class Usage(Operator):
    """Switches the usage template's first line between describing the recalled lines and directing their use.

    Why: on toolprefs the episodic seed recalled the grounding of 87% of the
    requests, yet the 0.5B got only 42% of the memory-dependent parameters
    right (evidence_recall 0.867, memory_accuracy 0.424:
    benchmarks/results/toolprefs-readme): with the value in its prompt, it
    filled the open parameter with a default. Telling it to take the value
    from the lines, and that a later line overrides an earlier one, is a
    change to the prompt no recall-side operator can make. The directive
    names parameters, so it fits tool-calling environments; the description
    is the seed's line. The template's other lines are kept.
    """

    name = "usage"

    def changes(self, design: dict[str, Any], defaults: dict[str, Any]) -> list[Change]:
        return []  # the change depends on the template's wording: see changes_for

    def changes_for(self, design: dict[str, Any], defaults: dict[str, Any], usage: str) -> list[Change]:
        for style, pattern, other in (
            ("description", USAGE_DESCRIPTION, "directive"),
            ("directive", USAGE_DIRECTIVE, "description"),
        ):
            found = pattern.search(usage)
            if found:
                dated, shown = bool(design.get("dates", True)), str(design.get("style", "transcript"))
                new = usage_line(other, found["order"], dated, shown)
                return [Change(dict(design), f"usage text {style} -> {other}", template=(found[0], new))]
        return []  # a template in other words (a reflective rewrite): nothing this operator can switch


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        SwapRetriever(),
        AddManager(),
        RemoveManager(),
        Neighbours(),
        Compose(),
        Encode(),
        OwnTurns(),
        Dates(),
        Order(),
        Style(),
        TopK(),
        Usage(),
    )
}


def operator_names() -> list[str]:
    return list(OPERATORS)


# -- the proposer ------------------------------------------------------------------------------------


class StructuralProposer:
    """Picks structural operators the parent's design allows, and one change of each (uniformly, by ``rng``).

    With ``steps`` above 1 a child applies between ``min_steps`` (1 unless
    raised) and ``steps`` different operators, one after the other (the
    count drawn uniformly). One change a child is the clean experiment, but
    it reaches a combination of changes only across several iterations, and
    each iteration costs a select evaluation: a program that differs from its
    seed in four module choices (say, facts encoded, the agent's own replies
    not stored, no dates, a `correct` manager) is four promoted children away
    at one operator each, about the whole search budget of a 2-hour run on
    a 2-core machine.

    The child's operator is ``structural:<name>`` (``structural:<a>+<b>``
    for several), so the archive and the report tell which structural edits
    pay off.
    """

    name = "structural"

    def __init__(self, operators: list[str] | None = None, steps: int = 1, min_steps: int = 1) -> None:
        unknown = sorted(set(operators or []) - set(OPERATORS))
        if unknown:
            raise ValueError(f"unknown structural operator(s) {', '.join(unknown)}; known: {', '.join(OPERATORS)}")
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        if not 1 <= min_steps <= steps:
            raise ValueError(f"min_steps must be between 1 and steps ({steps}), got {min_steps}")
        self.operators = [OPERATORS[n] for n in (operators or OPERATORS)]
        self.steps = steps
        self.min_steps = min_steps

    def propose(self, parent: ParentView, rng: random.Random, *, operator: str | None = None) -> Proposal:
        source, lifted_from = lift(parent.source, parent.meta)
        pool = [op for op in self.operators if operator is None or op.name == operator]
        wanted = rng.randint(self.min_steps, self.steps) if operator is None and self.steps > 1 else 1
        used: list[str] = []
        whats: list[str] = []
        while len(used) < wanted:
            design = read_design(source)
            assert design is not None
            defaults = prog.read_defaults(source)
            usage = prog.read_template(source) or ""
            options = [
                (op, changes)
                for op in pool
                if op.name not in used
                for changes in [op.changes_for(design, defaults, usage)]
                if changes
            ]
            if not options:
                if used:
                    break  # fewer operators apply than were drawn: the child keeps the changes made so far
                raise ProposalFailed(f"no structural change applies to this design ({design})")
            op, changes = rng.choice(options)
            change = rng.choice(changes)
            source = _apply(source, change, defaults)
            used.append(op.name)
            whats.append(change.what)
        what = "; ".join(whats)
        rationale = what if lifted_from is None else f"lifted {lifted_from} into modules; {what}"
        return Proposal(
            source=source,
            operator=f"structural:{'+'.join(used)}",
            parents=[parent.id],
            meta={
                "structure": "+".join(used),
                "change": what,
                "design": read_design(source),
                "lifted_from": lifted_from,
                "base_plugin": "assembled",
                "seed": parent.meta.get("seed"),
                "rationale": rationale,
            },
        )


def _apply(source: str, change: Change, defaults: dict[str, Any]) -> str:
    """``source`` with one change made: its design, the knobs it needs, and its phrase of the usage template."""
    child = set_design(source, change.design)
    if change.defaults:
        knobs = {**defaults, **change.defaults}
        AssembledParams.model_validate(knobs)  # a knob an operator sets stays within its bounds
        child = prog.set_defaults(child, knobs)
    usage = prog.read_template(child) if change.template else None
    if change.template and usage and change.template[0] in usage:
        child = prog.set_template(child, usage.replace(*change.template))
    return child
