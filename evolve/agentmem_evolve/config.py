"""The settings of one evolution run, read from a TOML file.

A run is described by one file so that it can be repeated, resumed and
reported: the controller copies it to ``run_dir/config.toml`` at the start
and a resumed run reads that copy, never the user's (possibly edited)
original. A minimal file is::

    seeds = ["episodic"]

    [environment]
    name = "toolprefs"

Every other value has a default chosen to be cheap on a laptop CPU with the
embedded local model. A wrong key or value is a one-line
:class:`~agentmem.errors.ConfigError` naming the file, the key and the fix.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from agentmem.config import recall_budget
from agentmem.errors import ConfigError

__all__ = [
    "BudgetConfig",
    "CascadeConfig",
    "EnvironmentConfig",
    "ExecutionConfig",
    "ModelsConfig",
    "ProposersConfig",
    "RunConfig",
    "SPLIT_DEFAULTS",
    "SandboxConfig",
    "SelectionConfig",
    "dump_toml",
]

SplitName = Literal["train", "validation", "test", "all"]

#: questions of the select and test splits of an environment without an entry in SPLIT_DEFAULTS
DEFAULT_SPLIT_QUESTIONS = 200

#: split sizes per environment, chosen so that the paired 95% interval of a difference is about 0.05
#: wide on either side (docs/evolution.md, "How large a gain a run can tell from noise"; the numbers
#: come from benchmarks/split_sizes.py): the defaults of an environment's [environment] table, each
#: used only when the run config leaves that key out
SPLIT_DEFAULTS: dict[str, dict[str, Any]] = {
    # 5 requests per user; users split 50/25/25: 152 users give 38 users = 190 requests per split
    "toolprefs": {"validation_limit": None, "test_limit": None, "options": {"users": 152}},
    # whole conversations: with locomo6.json one conversation each (a 10-conversation file: two each)
    "locomo": {"validation_limit": None, "test_limit": None},
}

StrategyName = Literal["softmax", "islands", "map-elites", "pareto"]
PROPOSERS = ("reflective", "mutate", "merge", "structural")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class EnvironmentConfig(_Section):
    """Which environment scores the programs, on which splits, and how much of each."""

    name: str = Field(..., min_length=1, description="an installed environment (`agentmem environments list`)")
    data: str | None = Field(
        None, description="dataset path for environments that read one (relative to the config file)"
    )
    options: dict[str, Any] = Field(default_factory=dict, description="extra constructor knobs of the environment")
    screen_split: SplitName = "train"
    select_split: SplitName = "validation"
    test_split: SplitName = "test"
    minibatch: int = Field(6, ge=1, description="questions per screening evaluation")
    validation_limit: int | None = Field(
        DEFAULT_SPLIT_QUESTIONS,
        ge=1,
        description="questions of the select split (None = all); see SPLIT_DEFAULTS for the environments that size it",
    )
    test_limit: int | None = Field(
        DEFAULT_SPLIT_QUESTIONS, ge=1, description="questions of the test split (None = all)"
    )
    budget_tokens: int = Field(
        default_factory=lambda: recall_budget(),
        ge=16,
        description="token budget of each recall (default: the recall_budget setting)",
    )
    heldout_seed: int | Literal["secret"] | None = Field(
        "secret",
        description="seed of the test split of generated environments (toolprefs, textworld): 'secret' draws one when "
        "the run starts and keeps it in the run directory, so no candidate can regenerate the test tasks; "
        "None uses the environment's usual test split",
    )

    @model_validator(mode="before")
    @classmethod
    def _sized_splits(cls, data: Any) -> Any:
        """Fill in the split sizes of :data:`SPLIT_DEFAULTS` where the config leaves them out.

        A config that gives both sizes is read as written: every run directory's
        saved copy from before these defaults gives both, so resuming such a run
        never changes its questions. Otherwise the missing sizes are filled in,
        and so are the environment's knobs that the config does not set (the
        users of toolprefs), unless the knobs come as a ``data`` string.
        """
        if not isinstance(data, dict) or data.get("name") not in SPLIT_DEFAULTS:
            return data
        missing = [key for key in ("validation_limit", "test_limit") if key not in data]
        if not missing:
            return data
        defaults = SPLIT_DEFAULTS[data["name"]]
        data = dict(data)
        for key in missing:
            if key in defaults:
                data[key] = defaults[key]
        options = defaults.get("options", {})
        if options and not data.get("data") and isinstance(data.get("options", {}), dict):
            data["options"] = {**options, **data.get("options", {})}  # knobs the config gives win
        return data

    @model_validator(mode="after")
    def _never_select_on_test(self) -> EnvironmentConfig:
        # evolution must never see the held-out split, or its test score means nothing
        for key in ("screen_split", "select_split"):
            if getattr(self, key) in (self.test_split, "all"):
                raise ValueError(
                    f"{key} = {getattr(self, key)!r} overlaps test_split = {self.test_split!r}; "
                    "choose different splits so that evolution never selects on test"
                )
        return self


class ModelsConfig(_Section):
    """The model the task agent answers with, and the one that writes new programs.

    Each model resolves as :mod:`agentmem.config` resolves ``--model``: left out, it
    is the configured one (``AGENTMEM_MODEL`` / ``agentmem.toml``, else the embedded
    local model), with that model's api base; ``"local"`` is the configured local
    model; ``mutation_api_base`` defaults to ``api_base``. The resolved values are
    what the run directory's copy records, so a resumed run uses the models it
    started with.
    """

    task: str | None = Field(None, min_length=1)
    mutation: str | None = Field(None, min_length=1)
    api_base: str | None = None
    mutation_api_base: str | None = None

    @field_validator("task", "mutation")
    @classmethod
    def _check_model(cls, value: str | None) -> str | None:
        from agentmem.config import check_model_name

        return None if value is None else check_model_name(value)

    @model_validator(mode="after")
    def _resolve_models(self) -> ModelsConfig:
        from agentmem.config import load_settings

        task = load_settings(model=self.task, api_base=self.api_base)
        mutation = load_settings(model=self.mutation, api_base=self.mutation_api_base or self.api_base)
        self.task, self.api_base = task.model, task.api_base
        self.mutation, self.mutation_api_base = mutation.model, mutation.api_base  # None: the mutation model has none
        return self


class BudgetConfig(_Section):
    """When the run stops: whichever limit is reached first."""

    iterations: int = Field(6, ge=0)
    max_llm_tokens: int | None = Field(None, ge=1, description="all LLM tokens of the run (None = unlimited)")
    max_wall_seconds: float | None = Field(None, gt=0, description="wall-clock seconds of the run (None = unlimited)")
    seconds_per_question: float | None = Field(
        None,
        gt=0,
        description="the task model's measured seconds per question on the machine this config is sized for: the "
        "speed `--check-config` estimates the worst case at (None: agentmem_evolve.estimate.SECONDS_PER_QUESTION); "
        "it limits nothing",
    )


class SelectionConfig(_Section):
    """How parents are picked, and when a child replaces its parent or the run's best (see
    :mod:`agentmem_evolve.selection`).
    """

    strategy: StrategyName = "pareto"
    temperature: float = Field(0.05, gt=0, description="softmax temperature over scores")
    population: int = Field(8, ge=1, description="programs kept in the pool parents are drawn from")
    islands: int = Field(2, ge=1)
    migration_interval: int = Field(3, ge=1, description="iterations between migrations (islands strategy)")
    descriptors: list[str] = Field(default_factory=lambda: ["tokens", "recall_items"], min_length=1)
    bins: int = Field(4, ge=1, le=64, description="bins per behaviour descriptor (MAP-Elites grid)")
    exploitation: float = Field(
        0.5, ge=0, le=1, description="chance an island parent is its best rather than a random elite"
    )
    confidence: float = Field(
        0.95,
        ge=0.5,
        lt=1,
        description="level at which a child must beat its parent or the run's best on the questions both were "
        "scored on",
    )
    paired_test: Literal["bootstrap", "sign", "both"] = Field(
        "both",
        description="what 'beats with confidence' means: the paired bootstrap interval above zero, "
        "the sign test, or both",
    )
    tie_cost_margin: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="when neither program is better with confidence, the challenger wins only with at least this "
        "fraction fewer tokens per question",
    )
    tie_margin: float | None = Field(
        0.05,
        ge=0,
        lt=1,
        description="... and only when the paired interval rules out a loss larger than this (its low end at least "
        "-tie_margin: non-inferiority); null turns the check off",
    )


class ProposersConfig(_Section):
    """How children are made."""

    weights: dict[str, float] = Field(default_factory=lambda: {"reflective": 0.5, "mutate": 0.3, "merge": 0.2})
    children_per_iteration: int = Field(2, ge=1)
    repair_attempts: int = Field(2, ge=0, le=10)
    reflective_mode: Literal["function", "file"] = Field(
        "function",
        description="what a reflective child rewrites: one method or the usage template (small models), or the "
        "whole program file (strong models)",
    )
    structural: list[str] = Field(
        default_factory=list, description="structural operators the `structural` proposer may use (empty: all of them)"
    )
    structural_steps: int = Field(
        1,
        ge=1,
        le=12,  # there are 12 operators (agentmem_evolve.operators.OPERATORS), each applied at most once a child
        description="a structural child applies between `structural_min_steps` and this many different operators "
        "(the count drawn uniformly): above 1, a combination of module changes is reached in one select evaluation",
    )
    structural_min_steps: int = Field(
        1,
        ge=1,  # the upper bound is structural_steps (checked below)
        description="the fewest operators a structural child applies (at most `structural_steps`): raised when "
        "the program worth reaching differs from its parent in several modules, so fewer children are spent on "
        "single changes",
    )

    @model_validator(mode="after")
    def _check_steps(self) -> ProposersConfig:
        if self.structural_min_steps > self.structural_steps:
            raise ValueError(
                f"structural_min_steps ({self.structural_min_steps}) is above structural_steps "
                f"({self.structural_steps}); lower it or raise structural_steps"
            )
        return self

    @field_validator("weights")
    @classmethod
    def _check_weights(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(PROPOSERS))
        if unknown:
            raise ValueError(f"unknown proposer(s) {', '.join(unknown)}; known: {', '.join(PROPOSERS)}")
        if any(w < 0 or not math.isfinite(w) for w in value.values()):
            raise ValueError("weights must be finite and >= 0")
        if not any(w > 0 for w in value.values()):
            raise ValueError("at least one proposer needs a weight > 0")
        return value

    @field_validator("structural")
    @classmethod
    def _check_structural(cls, value: list[str]) -> list[str]:
        from agentmem_evolve.operators import operator_names

        unknown = sorted(set(value) - set(operator_names()))
        if unknown:
            raise ValueError(
                f"unknown structural operator(s) {', '.join(unknown)}; known: {', '.join(operator_names())}"
            )
        return value


class CascadeConfig(_Section):
    """Which children are paid an LLM for: the LLM-free proxy stage, then the minibatch, then the select split."""

    promote_margin: float = Field(
        0.0, ge=0, description="promote when minibatch score >= parent's minibatch score - margin"
    )
    proxy: bool = Field(
        True,
        description="score every valid child on the environment's LLM-free proxy first (ingest and recall only) "
        "and send only the best on; ignored for environments without a proxy",
    )
    proxy_questions: int | None = Field(
        200, ge=1, description="questions of the screen split the proxy stage scores (None = all)"
    )
    proxy_keep: float = Field(
        0.5,
        gt=0,
        le=1,
        description="fraction of the proxy-scored children of an iteration that go on (at least one; and one more "
        "that the proxy cannot tell from its parent)",
    )
    proxy_floor: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="a child whose proxy is at or below this never goes on (0: it recalled no grounding)",
    )


class ExecutionConfig(_Section):
    """Where evaluations run."""

    executor: Literal["local", "ray"] = "local"
    concurrency: int = Field(1, ge=1, le=256)
    ray_address: str | None = Field(None, description="a Ray cluster address (None = start a local instance)")


class SandboxConfig(_Section):
    """Limits of the process a candidate program runs in (it is untrusted code)."""

    cpu_seconds: int = Field(300, ge=1)
    wall_seconds_per_op: float = Field(60, gt=0)
    memory_mb: int = Field(3072, ge=64)
    max_output_bytes: int = Field(1_000_000, ge=1024)
    disk_mb: int = Field(1024, ge=8, description="the candidate's writable scratch space (a tmpfs in the jail)")
    jail: Literal["auto", "bwrap", "unshare", "none"] = Field(
        "auto", description="the private root candidates run in: bubblewrap, unshare + pivot_root, or none"
    )
    allow_unjailed: bool = Field(
        False, description="where no jail can be built, run candidates with the audit hook alone (weaker; reported)"
    )


class RunConfig(_Section):
    """Everything one `agentmem evolve` run needs to know."""

    environment: EnvironmentConfig
    seeds: list[str] = Field(..., min_length=1, description="installed plugin names or paths to program .py files")
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    proposers: ProposersConfig = Field(default_factory=ProposersConfig)
    cascade: CascadeConfig = Field(default_factory=CascadeConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    seed: int = 0

    @field_validator("seeds")
    @classmethod
    def _check_seeds(cls, value: list[str]) -> list[str]:
        cleaned = [s.strip() for s in value]
        if any(not s for s in cleaned):
            raise ValueError("a seed is empty; give installed plugin names or paths to .py files")
        if len(set(cleaned)) != len(cleaned):
            raise ValueError("a seed is listed twice; list each seed once")
        return cleaned

    # -- reading and writing ---------------------------------------------------------
    @classmethod
    def load(cls, path: Path | str) -> RunConfig:
        """Read and validate a run config; relative paths in it are relative to the file."""
        from agentmem.config import read_toml

        path = Path(path).expanduser()
        data = read_toml(path, "run config", "give the path of a .toml file")
        return cls.from_dict(data, source=str(path), base=path.parent)

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        *,
        source: str = "the run config",
        base: Path | None = None,
        flags: dict[str, str] | None = None,
    ) -> RunConfig:
        """Validate ``data`` (already parsed); errors name ``source`` and the offending key.

        ``flags`` maps dotted keys (``"selection.strategy"``) to the command-line
        flag that set them (``"--strategy"``): an error in such a value names the
        flag rather than the file.
        """
        data = _resolve_paths(data, base) if base is not None else data
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(_one_line(exc, source, data, flags or {})) from None

    def to_toml(self) -> str:
        """The config as TOML text that :meth:`load` reads back to an equal config."""
        return dump_toml(self.model_dump(mode="json", exclude_none=True))

    def model_dump_toml(self) -> str:
        """:meth:`to_toml` under pydantic's ``model_dump_*`` naming."""
        return self.to_toml()

    def write(self, path: Path | str) -> Path:
        """Write the config (e.g. to ``run_dir/config.toml``) and return its path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(self.to_toml(), encoding="utf-8")
        tmp.replace(path)  # atomic: a crash never leaves half a config behind
        return path


def _resolve_paths(data: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the environment's data path and seed file paths absolute (relative to the config file)."""
    data = dict(data)
    env = data.get("environment")
    if isinstance(env, dict) and isinstance(env.get("data"), str) and env["data"]:
        p = Path(env["data"]).expanduser()
        env = dict(env, data=str(p if p.is_absolute() else (base / p).resolve()))
        data["environment"] = env
    seeds = data.get("seeds")
    if isinstance(seeds, list):
        out = []
        for s in seeds:
            if isinstance(s, str) and (s.endswith(".py") or "/" in s or "\\" in s):
                p = Path(s.strip()).expanduser()
                s = str(p if p.is_absolute() else (base / p).resolve())
            out.append(s)
        data["seeds"] = out
    return data


def _one_line(exc: ValidationError, source: str, data: dict[str, Any], flags: dict[str, str] | None = None) -> str:
    """The first validation error as: where, what was given, what is wrong, how to fix it."""
    err = exc.errors()[0]
    loc = [str(p) for p in err.get("loc", ())]
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    first_word = msg.split(" ", 1)[0]
    if kind == "value_error" and len(loc) == 1 and first_word in _section_fields(loc[0]):
        loc = [*loc, first_word]  # a check across a section's fields: name the field it is about
    where = ".".join(loc) or "?"
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        table = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
        return f"{source}: unknown key '{loc[-1]}' in {table}: valid keys are {', '.join(known)}; remove or rename it"
    if kind == "missing":
        if loc == ["environment"]:
            return (
                f'{source}: missing [environment] table: add `[environment]` with `name = "toolprefs"` (or '
                "another environment)"
            )
        if loc == ["seeds"]:
            return (
                f"{source}: missing key 'seeds': add e.g. `seeds = [\"episodic\"]` at the top (installed "
                "plugins or .py paths)"
            )
        return f"{source}: missing key '{where}': add it"
    given = _lookup(data, loc)
    shown = f" (given {json.dumps(given, default=str)[:80]})" if given is not _MISSING else ""
    flag = (flags or {}).get(where) or (flags or {}).get(".".join(loc[:-1])) if loc else None
    if flag:
        return f"{flag}: bad value{shown} for '{where}': {msg}; fix the flag's value"
    if source == "the command line":
        return f"{source}: bad value for '{where}'{shown}: {msg}; fix the flag that sets it"
    return f"{source}: bad value for '{where}'{shown}: {msg}; fix '{where}' in that file"


_MISSING = object()


def _lookup(data: Any, loc: list[str]) -> Any:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def _section_fields(section: str) -> list[str]:
    field = RunConfig.model_fields.get(section)
    ann = getattr(field, "annotation", None)
    return list(ann.model_fields) if isinstance(ann, type) and issubclass(ann, BaseModel) else []


def _known_keys(loc: list[str]) -> list[str]:
    model: type[BaseModel] = RunConfig
    for part in loc:
        field = model.model_fields.get(part)
        ann = getattr(field, "annotation", None) if field else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
        else:
            break
    return list(model.model_fields)


# -- a small TOML writer (the standard library only reads TOML) -------------------------
def dump_toml(data: dict[str, Any]) -> str:
    """TOML text for nested dicts of scalars, lists and dicts: top-level scalars first, then tables."""
    lines: list[str] = []
    _emit_table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _emit_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    if path and (scalars or not tables):
        lines.append("")
        lines.append("[" + ".".join(_key(p) for p in path) + "]")
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    for k, v in tables.items():
        _emit_table(v, [*path, k], lines)


def _key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum() and key.isascii()
    return key if bare else json.dumps(key)


def _value(value: Any) -> str:
    if value is None:
        raise ValueError("TOML has no null; leave the key out instead")
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items() if v is not None) + "}"
    return json.dumps(str(value))
