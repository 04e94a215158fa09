"""Proposers: how children are made from parents.

* :class:`ReflectiveProposer` - an LLM reads the parent's failures and
  successes, its lineage (regressions marked) and a reference version from
  the archive, and rewrites **one** target: a hook method or the usage
  template (after M* and ALMA; with a strong model, ``mode="file"`` rewrites
  the whole program). Asking small models for one short method - spliced in
  by :func:`~agentmem_evolve.program.replace_function`, which fixes
  indentation - instead of a patch is what makes 0.5B-1.5B coders succeed.
  Repairs continue the same conversation with the error appended, with a
  new sampling seed, so a retry never replays a cached failure.
* :class:`MutationProposer` - structured mutation of the declared parameters
  (``DEFAULTS``) within the bounds the base plugin's ``Params`` declares, and
  swaps of one component (hook or template) from another program; no LLM.
* :class:`MergeProposer` - a three-way merge of two parents against their
  common seed: every component one parent changed and the other did not is
  combined into one child; no LLM.
"""

from __future__ import annotations

import ast
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from agentmem_evolve import program as prog
from agentmem_evolve.prompts import render

HOOK_PURPOSE = {
    "before_store": "is called with every event before memory stores it; return the event (changed or not), or "
    "None to drop it",
    "rewrite_query": "turns the agent's request into the text memory is searched with",
    "after_recall": "is called with what memory found for a request, before the agent sees it; return the Recall",
}
HOOK_HINT = {
    # "never asked about later" sent the 1.5B to look the future up in self.memory, which a hook has not
    # (three reflective children of the committed runs failed on it): name what the event itself shows
    "before_store": "Ideas: drop small talk (greetings, thanks, one-word replies), judged from the event's own "
    "text; keep statements of preferences, facts and corrections.",
    "rewrite_query": "Ideas: add words that the remembered statements would contain (e.g. 'prefer', 'always', "
    "'usually'); remove filler words.",
    "after_recall": "Ideas: drop items with a low score; put the most relevant first; when two items say "
    "different things about the same topic, keep the newest (later items are newer) and mark "
    "it as the latest.",
}


FIELDS = {
    "Event": ".kind, .content (the text), .speaker, .timestamp, .session_id, .tool_name, .arguments, .reward, "
    ".metadata",
    "Query": ".text, .budget_tokens, .timestamp, .metadata",
    "Recall": ".items (list of RecallItem), .omitted, .plugin, .instructions",
    "RecallItem": ".content (the text), .score, .source, .tokens, .event_ids, .metadata",
}


def attribute_hint(error: str) -> str:
    """For "'Event' object has no attribute 'text'", the attributes it does have (small models guess names)."""
    import re as _re

    match = _re.search(r"'(\w+)' object has no attribute '(\w+)'", error)
    if not match:
        return ""
    kind, wrong = match.groups()
    if kind == "Program":  # the candidate itself: small models invent self.memory, self.store, ...
        return (
            f"The program has no self.{wrong}; a hook may use only its own arguments, "
            "self.params (its settings, read as attributes) and plain Python."
        )
    if kind == "NoneType":  # a hook fell off its end on some path (the 1.5B's rewrite_query in the sixth run)
        return (
            "A value is None where the program needs one: every path of the method must return, "
            "rewrite_query a str, after_recall the Recall, before_store the Event or None to drop it."
        )
    if kind not in FIELDS:
        return ""
    return f"{kind} has no .{wrong}; its attributes are {FIELDS[kind]}."


class Proposal(BaseModel):
    """A child program, how it was made, and (for LLM proposals) the conversation that made it."""

    source: str
    operator: str  # reflective, mutate, swap, merge, or structural:<operator name>
    parents: list[str]
    meta: dict[str, Any] = Field(default_factory=dict)
    conversation: list[dict[str, str]] = Field(default_factory=list, exclude=True)
    target: str = ""


@dataclass
class ParentView:
    """What a proposer may know of a parent: its program, scores, failures, lineage."""

    id: str
    source: str
    score: float
    meta: dict[str, Any] = field(default_factory=dict)
    traces: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[str] = field(default_factory=list)
    seed_source: str = ""
    seed_score: float | None = None
    diagnosis: dict[str, int] = field(default_factory=dict)  # failures per class (agentmem_evolve.diagnosis)


@dataclass
class TaskInfo:
    """What the task is, for prompts."""

    env: str
    description: str
    metric: str


class ProposalFailed(Exception):
    """No usable child came out (one line, recorded as the attempt's reason).

    ``source`` is the last program that was spliced but failed validation,
    kept so the archive can record it as invalid, with the reason.
    """

    def __init__(self, message: str, source: str | None = None, proposal: Proposal | None = None) -> None:
        super().__init__(message)
        self.source = source
        self.proposal = proposal  # the conversation so far, so a repair can continue it


def _components(source: str) -> dict[str, str]:
    """A program's components as text: each method, the usage template, each default."""
    out = {f"def:{k}": v for k, v in prog.functions(source).items()}
    template = prog.read_template(source)
    if template is not None:
        out["template:usage"] = template
    for key, value in prog.read_defaults(source).items():
        out[f"param:{key}"] = repr(value)
    from agentmem_evolve.operators import read_design  # (operators build on this module)

    for key, value in (read_design(source) or {}).items():  # an assembled program's module choices, one by one
        out[f"design:{key}"] = repr(value)
    return out


def _apply(source: str, name: str, value_source: str) -> str:
    """Put component ``name`` from ``value_source`` into ``source``."""
    kind, _, key = name.partition(":")
    if kind == "def":
        return prog.replace_function(source, prog.functions(value_source)[key], key).source
    if kind == "template":
        text = prog.read_template(value_source, key)
        assert text is not None
        return prog.set_template(source, text, key)
    if kind == "design":
        from agentmem_evolve.operators import read_design, set_design

        design, theirs = read_design(source), read_design(value_source)
        assert design is not None and theirs is not None
        return set_design(source, {**design, key: theirs[key]})
    defaults = prog.read_defaults(source)
    defaults[key] = prog.read_defaults(value_source)[key]
    return prog.set_defaults(source, defaults)


# -- reflective --------------------------------------------------------------------------------


def diagnosed(parent: ParentView) -> dict[str, Any] | None:
    """The parent's failures by class, for the prompt (:func:`agentmem_evolve.diagnosis.prompt_view`); None if
    undiagnosed.
    """
    from agentmem_evolve.diagnosis import prompt_view

    return prompt_view(parent.diagnosis, parent.traces) if parent.diagnosis else None


def _aim(diagnosis: dict[str, Any] | None) -> dict[str, Any]:
    """What the child's record keeps of the diagnosis it was asked to fix."""
    return {"aimed_at": diagnosis["largest"]} if diagnosis else {}


def rewritten_file(parent_source: str, code: str) -> str:
    """A whole-file rewrite made whole: what small models leave out of a file they were asked to rewrite.

    A reply with no class but with methods (the model rewrote only what it
    changed) is spliced into the parent's class; a file that uses a name the
    parent bound at module level (an import, ``DEFAULTS``, ``TEMPLATES``) but dropped gets the parent's
    statement back.
    Raises ``ValueError`` with one line for the repair prompt.
    """
    try:
        tree = prog.parse(code)
    except ValueError as exc:
        raise ValueError(f"your file does not parse: {exc}") from None
    if prog.program_class(tree) is None:
        if not any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body):
            raise ValueError("your answer defines no class: write the complete file, with its class")
        return prog.replace_function(parent_source, code).source
    return prog.restore_dropped_names(parent_source, code.strip("\n") + "\n")


class ReflectiveProposer:
    """An LLM rewrites one target of the parent, shown why the parent fails."""

    name = "reflective"

    def __init__(
        self, llm: Any, task: TaskInfo, *, mode: Literal["function", "file"] = "function", max_tokens: int = 600
    ) -> None:
        self.llm = llm
        self.task = task
        self.mode = mode
        self.max_tokens = max_tokens

    def targets(self, source: str) -> list[str]:
        methods = prog.functions(source)
        hooks = [h for h in prog.HOOKS if h in methods]
        if not hooks:  # a hand-written program: any method but the constructor
            hooks = [m for m in methods if not m.startswith("__")]
        if prog.read_template(source) is not None:
            hooks.append("usage")
        return hooks

    def propose(
        self,
        parent: ParentView,
        rng: random.Random,
        references: list[ParentView] | None = None,
        *,
        target: str | None = None,
    ) -> Proposal:
        targets = self.targets(parent.source)
        if self.mode == "file" or not targets:
            return self._propose_file(parent, rng)
        target = target or rng.choice(targets)
        failures = [t for t in parent.traces if t.get("score", 0) < 1.0][:3]
        successes = [t for t in parent.traces if t.get("score", 0) >= 0.999][:1]
        base = parent.meta.get("base_plugin") or parent.meta.get("seed") or "custom"
        diagnosis = diagnosed(parent)
        if target == "usage":
            user = render(
                "reflect_template.j2",
                env=self.task.env,
                env_description=self.task.description,
                base=base,
                score=parent.score,
                metric=self.task.metric,
                failures=failures or parent.traces[:2],
                template=prog.read_template(parent.source) or "",
                diagnosis=diagnosis,
            )
        else:
            code = prog.functions(parent.source)[target]
            reference = None
            for ref in references or []:
                other = prog.functions(ref.source).get(target)
                if other and other != code:
                    reference = {"code": other, "score": ref.score}
                    break
            user = render(
                "reflect_hook.j2",
                env=self.task.env,
                env_description=self.task.description,
                base=base,
                score=parent.score,
                metric=self.task.metric,
                seed_score=parent.seed_score,
                lineage=parent.lineage[-5:],
                failures=failures or parent.traces[:2],
                successes=successes,
                target=target,
                purpose=HOOK_PURPOSE.get(target, "is part of the memory program"),
                code=code,
                reference=reference,
                hint=HOOK_HINT.get(target, ""),
                diagnosis=diagnosis,
            )
        conversation = [{"role": "system", "content": render("reflect_system.j2")}, {"role": "user", "content": user}]
        proposal = Proposal(
            source=parent.source,
            operator="reflective",
            parents=[parent.id],
            conversation=conversation,
            target=target,
            meta={
                "target": target,
                "base_plugin": parent.meta.get("base_plugin"),
                "seed": parent.meta.get("seed"),
                **_aim(diagnosis),
            },
        )
        return self._complete(proposal, parent.source, rng)

    def _propose_file(self, parent: ParentView, rng: random.Random) -> Proposal:
        failures = [t for t in parent.traces if t.get("score", 0) < 1.0][:3] or parent.traces[:2]
        diagnosis = diagnosed(parent)
        user = render(
            "reflect_file.j2",
            env=self.task.env,
            env_description=self.task.description,
            score=parent.score,
            metric=self.task.metric,
            failures=failures,
            code=parent.source,
            diagnosis=diagnosis,
            class_name=prog.class_name(parent.source),
        )
        conversation = [
            {"role": "system", "content": render("reflect_file_system.j2", class_name=prog.class_name(parent.source))},
            {"role": "user", "content": user},
        ]
        proposal = Proposal(
            source=parent.source,
            operator="reflective",
            parents=[parent.id],
            conversation=conversation,
            target="file",
            meta={
                "target": "file",
                "base_plugin": parent.meta.get("base_plugin"),
                "seed": parent.meta.get("seed"),
                **_aim(diagnosis),
            },
        )
        return self._complete(proposal, parent.source, rng)

    def _complete(self, proposal: Proposal, parent_source: str, rng: random.Random) -> Proposal:
        reply = self.llm.complete(
            proposal.conversation,
            max_tokens=self.max_tokens if proposal.target != "file" else 2000,
            temperature=0.7,
            seed=rng.randrange(1 << 30),
            caller="evolve.reflect",
        )
        proposal.conversation.append({"role": "assistant", "content": reply})
        proposal.meta["attempts"] = proposal.meta.get("attempts", 0) + 1
        try:
            proposal.source = self._splice(parent_source, proposal.target, reply)
        except ValueError as exc:
            raise ProposalFailed(str(exc), proposal=proposal) from None
        if proposal.source == parent_source:
            raise ProposalFailed("the rewrite changed nothing; change the code", proposal=proposal)
        proposal.meta["rationale"] = f"rewrote {proposal.target}"
        return proposal

    def _splice(self, parent_source: str, target: str, reply: str) -> str:
        code = prog.extract_code(reply)
        if target == "usage":
            text = code.strip()
            prog.check_template(text)
            return prog.set_template(parent_source, text)
        if target == "file":
            return rewritten_file(parent_source, code)
        return prog.replace_function(parent_source, code, target).source

    def repair(
        self, proposal: Proposal, parent_source: str, error: str, detail: str = "", rng: random.Random | None = None
    ) -> Proposal:
        """Continue the conversation with the error; the reply is spliced into the parent again."""
        rng = rng or random.Random()
        proposal.conversation.append(
            {
                "role": "user",
                "content": render(
                    "repair.j2",
                    error=error,
                    detail=detail,
                    target=proposal.target,
                    hint=attribute_hint(error),
                ),
            }
        )
        return self._complete(proposal, parent_source, rng)

    def attempt(
        self,
        parent: ParentView,
        rng: random.Random,
        references: list[ParentView] | None,
        attempts: int,
        check: Any = None,
        *,
        target: str | None = None,
    ) -> Proposal:
        """Propose, then repair up to ``attempts`` times until the splice works and ``check`` (validation) passes.

        ``check(source) -> (ok, error, detail)``; the last error becomes
        :class:`ProposalFailed` with the number of tries.
        """
        error = ""
        proposal: Proposal | None = None  # the conversation to continue
        spliced: str | None = None  # the last child that parsed (for the archive, if all fails)
        try:
            proposal = self.propose(parent, rng, references, target=target)
            spliced = proposal.source
        except ProposalFailed as exc:
            error, proposal = str(exc), exc.proposal
        tries = 1
        detail = ""
        repeated = ""  # the error a repair was asked to fix
        while True:
            if not error and proposal is not None:
                if check is None:
                    return proposal
                ok, error, detail = check(proposal.source)
                if ok:
                    proposal.meta["repairs"] = tries - 1
                    return proposal
            if tries > attempts:
                raise ProposalFailed(
                    f"{error} (after {tries} tries)", source=spliced if spliced != parent.source else None
                )
            # A small model shown its own mistake tends to repeat it (the 1.5B kept self.memory through three
            # repairs): when a repair brought the same error back, the next try starts a fresh conversation.
            if proposal is not None and error == repeated:
                proposal = None
            repeated = error
            try:
                if proposal is None:  # nothing to continue: start a fresh conversation
                    proposal = self.propose(parent, rng, references, target=target)
                else:
                    proposal = self.repair(proposal, parent.source, error, detail, rng)
                spliced, error, detail = proposal.source, "", ""
            except ProposalFailed as exc:
                error, proposal = str(exc), exc.proposal or proposal
            tries += 1


# -- structured mutation and swaps ---------------------------------------------------------------


class MutationProposer:
    """Changes declared parameters within their bounds, or swaps in one component of another program."""

    name = "mutate"

    def __init__(self, swap_probability: float = 0.3) -> None:
        self.swap_probability = swap_probability

    @staticmethod
    def space_for(parent: ParentView) -> Any:
        from agentmem.registry import load_memory
        from agentmem_evolve.space import ParamSpace

        base = parent.meta.get("base_plugin")
        if not base:
            return None
        if base == "assembled":  # made by a structural operator: the knobs of every core module
            from agentmem.assembled import AssembledParams

            return ParamSpace(AssembledParams)
        return ParamSpace(load_memory(base).Params)

    def propose(self, parent: ParentView, rng: random.Random, others: list[ParentView] | None = None) -> Proposal:
        donors = [o for o in others or [] if o.id != parent.id]
        if donors and rng.random() < self.swap_probability:
            swapped = self._swap(parent, rng, donors)
            if swapped is not None:
                return swapped
        space = self.space_for(parent)
        defaults = prog.read_defaults(parent.source)
        if space is None or not space or not defaults:
            swapped = self._swap(parent, rng, donors)
            if swapped is not None:
                return swapped
            raise ProposalFailed(
                "nothing to mutate: the program declares no bounded parameters in DEFAULTS and no other program differs"
            )
        for _ in range(10):
            child = space.mutate({**space.default(), **defaults}, rng, changes=rng.choice([1, 1, 2]))
            child = {k: child[k] for k in defaults if k in child} | {
                k: v for k, v in defaults.items() if k not in child
            }
            if child != defaults:
                changed = {k: [defaults[k], child[k]] for k in child if child[k] != defaults.get(k)}
                return Proposal(
                    source=prog.set_defaults(parent.source, child),
                    operator="mutate",
                    parents=[parent.id],
                    meta={
                        "changed": changed,
                        "base_plugin": parent.meta.get("base_plugin"),
                        "seed": parent.meta.get("seed"),
                        "rationale": "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in changed.items()),
                    },
                )
        raise ProposalFailed("mutation produced no new parameters")

    def _swap(self, parent: ParentView, rng: random.Random, donors: list[ParentView]) -> Proposal | None:
        mine = _components(parent.source)
        options: list[tuple[str, ParentView]] = []
        for donor in donors:
            if donor.meta.get("base_plugin") != parent.meta.get("base_plugin"):
                continue
            theirs = _components(donor.source)
            options += [
                (name, donor)
                for name, text in theirs.items()
                if name in mine and mine[name] != text and not name.startswith("param:")
            ]
        if not options:
            return None
        name, donor = rng.choice(options)
        source = _apply(parent.source, name, donor.source)
        return Proposal(
            source=source,
            operator="swap",
            parents=[parent.id, donor.id],
            meta={
                "component": name,
                "donor": donor.id,
                "base_plugin": parent.meta.get("base_plugin"),
                "seed": parent.meta.get("seed"),
                "rationale": f"took {name} from {donor.id}",
            },
        )


# -- merge ---------------------------------------------------------------------------------------


class MergeProposer:
    """Three-way merge of two parents against their common seed (the better parent wins conflicts)."""

    name = "merge"

    def propose(self, first: ParentView, second: ParentView, rng: random.Random) -> Proposal:
        if first.meta.get("base_plugin") != second.meta.get("base_plugin") or not first.seed_source:
            raise ProposalFailed("the parents do not share a seed; nothing to merge")
        a, b = (first, second) if first.score >= second.score else (second, first)
        seed = _components(_as_assembled(a.seed_source) if "design:encode" in _components(a.source) else a.seed_source)
        comp_a, comp_b = _components(a.source), _components(b.source)
        source = a.source
        taken: list[str] = []
        for name, text in comp_b.items():
            if name in comp_a and text != seed.get(name) and comp_a[name] == seed.get(name):
                source = _apply(source, name, b.source)
                taken.append(name)
        if not taken:
            raise ProposalFailed("the second parent changed nothing the first did not")
        return Proposal(
            source=source,
            operator="merge",
            parents=[a.id, b.id],
            meta={
                "taken": taken,
                "base_plugin": a.meta.get("base_plugin"),
                "seed": a.meta.get("seed"),
                "rationale": f"{a.id} + {', '.join(taken)} from {b.id}",
            },
        )


def _as_assembled(seed_source: str) -> str:
    """A plugin seed lifted into modules, so that structural children merge against the design they started from."""
    from agentmem_evolve.operators import LIFTABLE, lift, read_design

    if read_design(seed_source) is not None:
        return seed_source
    for base in LIFTABLE:
        try:
            return lift(seed_source, {"base_plugin": base})[0]
        except ProposalFailed:
            continue
    return seed_source
