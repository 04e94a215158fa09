"""The controller: the evolution loop, and the only place that decides what happens next.

Each iteration: select parents (a pluggable strategy), propose children
(reflective LLM rewrite, structured mutation or swap, merge), validate each
child in the sandbox (with bounded repairs for LLM proposals), keep only the
best fraction by the environment's LLM-free proxy where it has one (stage 0,
:mod:`agentmem_evolve.proxy`), screen those on a minibatch, promote it to the full select split when it does at least as
well as its parent there (the cascade), and record everything in the
archive as it happens. At the end the best program and the seeds are scored
once on the held-out test split, which selection never saw.

Resuming picks up where the run stopped: the iteration counter and the
proposals each iteration already made are kept in the archive's state, a
program whose validation or cascade was cut short is finished first, and
every evaluation is looked up before it is run. Nothing completed is lost
and nothing is evaluated twice.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentmem.errors import ConfigError, LLMError, LLMUnavailable
from agentmem.llm.outage import OutageWatch
from agentmem.scratch import sweep_dead
from agentmem_evolve import program as prog
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import RunConfig
from agentmem_evolve.diagnosis import counts_from_metrics
from agentmem_evolve.evaluator import EvalJob, EvalOutcome, slice_key
from agentmem_evolve.evidence import incumbent, judge_new, replaced
from agentmem_evolve.executor import Executor, make_executor
from agentmem_evolve.proposers import (
    MergeProposer,
    MutationProposer,
    ParentView,
    Proposal,
    ProposalFailed,
    ReflectiveProposer,
    TaskInfo,
)
from agentmem_evolve.selection import make_strategy

CONFIG_FILE = "config.toml"


def _accepts(environment: str, option: str) -> bool:
    """Whether an installed environment's constructor takes ``option`` (False when it cannot be loaded)."""
    import inspect

    from agentmem.registry import load_environment

    try:
        return option in inspect.signature(load_environment(environment)).parameters
    except Exception:
        return False


MUTATION_TIMEOUT = 900.0  # seconds one code-writing call may take
REPEAT_REDRAWS = 3  # a proposal that repeats a program already in the archive is drawn again this many times
EventSink = Callable[[str, dict[str, Any]], None]


class BudgetExhausted(Exception):
    """The run hit its token or wall-clock budget; it stops cleanly and can be extended and resumed."""


class Controller:
    """Runs (or resumes) one evolution run in ``run_dir``."""

    def __init__(
        self,
        run_dir: Path,
        config: RunConfig,
        *,
        executor: Executor | None = None,
        task_llm: Any = None,
        mutation_llm: Any = None,
        embedder: Any = None,
        on_event: EventSink | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.config = config
        self.archive = Archive(self.run_dir)
        self.executor = executor or make_executor(
            config.execution.executor, concurrency=config.execution.concurrency, address=config.execution.ray_address
        )
        self._task_llm = task_llm
        self._mutation_llm = mutation_llm
        self._embedder = embedder
        self.on_event = on_event
        env = config.environment
        # stage -> (split, question limit): the cascade's three slices, and the key that names each
        self._slices = {
            "proxy": (env.screen_split, config.cascade.proxy_questions),
            "screen": (env.screen_split, env.minibatch),
            "select": (env.select_split, env.validation_limit),
            "test": (env.test_split, env.test_limit),
        }
        self._heldout_seed = self._resolve_heldout_seed()
        self._keys = {
            stage: slice_key(env.name, split, limit, env.data, self._stage_options(stage), config.seed)
            for stage, (split, limit) in self._slices.items()
        }
        self._task_info: TaskInfo | None = None
        self.strategy = make_strategy(config.selection)
        saved = self.archive.get_state("strategy", None)
        if saved and hasattr(self.strategy, "load_state"):
            self.strategy.load_state(saved)  # islands remember their migrations across a resume

    def _resolve_heldout_seed(self) -> int | None:
        """The seed of the generated test split: the config's, or one drawn in secret and kept in the archive."""
        wanted = self.config.environment.heldout_seed
        if wanted is None or not _accepts(self.config.environment.name, "heldout_seed"):
            return None
        if wanted != "secret":
            return int(wanted)
        saved = self.archive.get_state("heldout_seed", None)
        if saved is None:
            import secrets

            saved = secrets.randbelow(2**62)
            self.archive.set_state("heldout_seed", saved)
        return int(saved)

    @functools.cached_property
    def proxy_on(self) -> bool:
        """Whether this run screens children on the environment's LLM-free proxy first."""
        if not self.config.cascade.proxy:
            return False
        from agentmem.environment import supports_proxy
        from agentmem.registry import load_environment

        try:
            return supports_proxy(load_environment(self.config.environment.name))
        except Exception:
            return False

    def _proxy_screen(self, children: list[ProgramRecord]) -> list[ProgramRecord]:
        """Stage 0: children scored on the proxy; the best fraction returned, and one the proxy cannot tell from its
        parent (seeds always pass).

        The cut is recorded (state ``proxy_rejected``), so a resumed run never
        screens a rejected child on the minibatch.
        """
        fresh = [c for c in children if c.operator != "seed"]
        if not self.proxy_on or not fresh:
            return children
        from agentmem_evolve.proxy import KEPT_STATE, REJECTED_STATE, UNSEEN_PLACES, cut, same_as_parent, same_prompts

        rejected = list(self.archive.get_state(REJECTED_STATE, []) or [])
        passed = list(self.archive.get_state(KEPT_STATE, []) or [])
        undecided = [c for c in fresh if c.id not in rejected and c.id not in passed]  # a replay keeps earlier cuts
        if undecided:
            self._evaluate([(c, "proxy") for c in undecided])
            records = {c.id: self._proxy_record(c.id) for c in undecided}
            scores = {pid: (r.score if r is not None else None) for pid, r in records.items()}
            unseen, inert = set(), set()
            for c in undecided:
                mine, parents = records[c.id], [p for p in map(self._proxy_record, c.parents) if p]
                if mine is None:
                    continue
                if same_prompts(mine.metrics, [p.metrics for p in parents]):
                    inert.add(c.id)  # the model would read what it reads for the parent: nothing new to score
                elif same_as_parent(mine.per_instance, [p.per_instance for p in parents]):
                    unseen.add(c.id)
            cascade = self.config.cascade
            ranked = {pid: (None if pid in inert else s) for pid, s in scores.items()}
            best, extra = cut(ranked, cascade.proxy_keep, cascade.proxy_floor, unseen, UNSEEN_PLACES)
            kept = best + extra
            self.archive.set_state(REJECTED_STATE, rejected + [c.id for c in undecided if c.id not in kept])
            self.archive.set_state(KEPT_STATE, passed + kept)
            passed += kept
            for c in undecided:
                flag = {"unseen": True} if c.id in extra else {"inert": True} if c.id in inert else {}
                self.emit("proxy_screened", id=c.id, score=scores[c.id], kept=c.id in kept, **flag)
        return [c for c in children if c.operator == "seed" or c.id in passed]

    def _proxy_record(self, program_id: str) -> EvaluationRecord | None:
        """A program's successful proxy evaluation (``None`` when it has none)."""
        rec = self.archive.evaluation(program_id, "proxy", self._keys["proxy"])
        return rec if rec is not None and rec.status == "ok" else None

    def _stage_options(self, stage: str) -> dict[str, Any]:
        """The environment's options for one stage: the test stage also gets the held-out seed."""
        options = dict(self.config.environment.options)
        if stage == "test" and self._heldout_seed is not None:
            options["heldout_seed"] = self._heldout_seed
        return options

    # -- construction ---------------------------------------------------------------------
    @classmethod
    def create(cls, run_dir: Path, config: RunConfig, **kw: Any) -> Controller:
        """A new run: writes ``config.toml`` (refuses to overwrite a run that has started)."""
        run_dir = Path(run_dir)
        if (run_dir / CONFIG_FILE).exists():
            raise ConfigError(
                f"{run_dir} already holds a run; continue it with `agentmem evolve resume {run_dir}` or pick "
                "another --run-dir"
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        config.write(run_dir / CONFIG_FILE)
        return cls(run_dir, config, **kw)

    @classmethod
    def resume(cls, run_dir: Path, **kw: Any) -> Controller:
        """An existing run, with the config it was started with."""
        path = Path(run_dir) / CONFIG_FILE
        if not path.exists():
            raise ConfigError(
                f"{run_dir} is not an evolution run (no {CONFIG_FILE}); start one with `agentmem evolve run`"
            )
        return cls(Path(run_dir), RunConfig.load(path), **kw)

    # -- services --------------------------------------------------------------------------
    @property
    def task_llm(self) -> Any:
        if self._task_llm is None:
            from agentmem.llm import LLM

            self._task_llm = LLM.from_settings(self.config.models.task, self.config.models.api_base)
        return self._task_llm

    @property
    def mutation_llm(self) -> Any:
        if self._mutation_llm is None:
            from agentmem.llm import LLM

            models = self.config.models
            self._mutation_llm = LLM.from_settings(
                models.mutation, models.mutation_api_base
            )  # resolved by ModelsConfig
            # writing code with a 1.5B model on a busy CPU takes minutes: a short timeout would resend
            # the request while the server is still busy with it, and every retry would wait longer
            self._mutation_llm.timeout = max(float(getattr(self._mutation_llm, "timeout", 0) or 0), MUTATION_TIMEOUT)
        return self._mutation_llm

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from agentmem.embedding_cache import shared_embedder

            self._embedder = shared_embedder()
        return self._embedder

    @property
    def task_info(self) -> TaskInfo:
        if self._task_info is None:
            from agentmem.registry import load_environment

            cls = load_environment(self.config.environment.name)
            doc = (cls.__doc__ or cls.__name__).strip().split("\n\n")[0].replace("\n", " ")
            self._task_info = TaskInfo(
                env=self.config.environment.name, description=doc, metric=getattr(cls, "primary_metric", "score")
            )
        return self._task_info

    def emit(self, kind: str, **payload: Any) -> None:
        self.archive.log_event(kind, **payload)
        if self.on_event is not None:
            self.on_event(kind, payload)

    # -- spend and budget ------------------------------------------------------------------------
    def spend(self) -> dict[str, float]:
        """LLM calls/tokens of every evaluation plus the controller's own (proposals, validation), and seconds."""
        calls = tokens = 0.0
        for e in self.archive.evaluations():
            calls += float(e.cost.get("llm_calls", 0))
            tokens += e.tokens
        own = self.archive.get_state("controller_spend", {"llm_calls": 0, "tokens": 0})
        seconds = float(self.archive.get_state("elapsed", 0.0)) + (
            time.perf_counter() - self._t0 if hasattr(self, "_t0") else 0.0
        )
        return {"llm_calls": calls + own["llm_calls"], "tokens": tokens + own["tokens"], "seconds": round(seconds, 1)}

    def _meter_snapshot(self) -> tuple[int, int]:
        calls = tokens = 0
        seen = set()
        for llm in (self._task_llm, self._mutation_llm):
            meter = getattr(llm, "meter", None)
            if meter is None or id(meter) in seen:
                continue
            seen.add(id(meter))
            total = meter.total()
            calls += total.model_calls
            tokens += total.prompt_tokens + total.completion_tokens
        return calls, tokens

    def _account(self, before: tuple[int, int]) -> None:
        after = self._meter_snapshot()
        own = self.archive.get_state("controller_spend", {"llm_calls": 0, "tokens": 0})
        own = {"llm_calls": own["llm_calls"] + after[0] - before[0], "tokens": own["tokens"] + after[1] - before[1]}
        self.archive.set_state("controller_spend", own)

    def _check_budget(self) -> None:
        budget = self.config.budget
        spent = self.spend()
        if budget.max_llm_tokens is not None and spent["tokens"] >= budget.max_llm_tokens:
            raise BudgetExhausted(f"token budget reached ({int(spent['tokens'])} of {budget.max_llm_tokens})")
        if budget.max_wall_seconds is not None and spent["seconds"] >= budget.max_wall_seconds:
            raise BudgetExhausted(
                f"wall-clock budget reached ({spent['seconds']:.0f} s of {budget.max_wall_seconds:.0f} s)"
            )

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        """Run until the iteration or spend budget is used up; score the best on test; return a summary."""
        self._t0 = time.perf_counter()
        stopped = "iterations"
        sandbox = self.check_sandbox()
        swept = sweep_dead()  # scratch of runs killed before they could remove it (this one's, before a resume)
        if swept:
            self.emit("scratch_swept", directories=len(swept))
        try:
            self.emit(
                "run_started",
                iteration=self.archive.get_state("iteration", 0),
                resumed=bool(self.archive.programs()),
                sandbox=sandbox["jail"],
            )
            self._seed_population()
            self._finish_pending()
            iteration = int(self.archive.get_state("iteration", 0))
            while iteration < self.config.budget.iterations:
                self._check_budget()
                self._iteration(iteration)
                iteration += 1
                if hasattr(self.strategy, "state"):
                    self.archive.set_state("strategy", self.strategy.state())
                self.archive.set_state("iteration", iteration)
                self._save_elapsed()
                self.emit("iteration_done", iteration=iteration, best=self._best_summary(), spend=self.spend())
        except BudgetExhausted as exc:
            stopped = str(exc)
            self.emit("budget_exhausted", reason=stopped)
        except KeyboardInterrupt:
            self._save_elapsed()
            self.emit("interrupted", iteration=self.archive.get_state("iteration", 0))
            self.executor.close()
            raise
        except LLMUnavailable as exc:  # the model is down: stop, keeping everything finished, rather than score nothing
            self._save_elapsed()
            self.emit("model_unavailable", iteration=self.archive.get_state("iteration", 0), reason=str(exc))
            self.executor.close()
            raise LLMUnavailable(
                f"{exc}; the run stopped with everything finished kept: continue it with "
                f"`agentmem evolve resume {self.run_dir}` once the model answers"
            ) from None
        self._final_test()
        self._save_elapsed()
        summary = {
            "stopped": stopped,
            "best": self._best_summary(),
            "spend": self.spend(),
            "iteration": self.archive.get_state("iteration", 0),
        }
        self.emit("run_finished", **summary)
        return summary

    def _save_elapsed(self) -> None:
        now = time.perf_counter()
        self.archive.set_state("elapsed", float(self.archive.get_state("elapsed", 0.0)) + now - self._t0)
        self._t0 = now

    def close(self) -> None:
        self.executor.close()
        self.archive.close()

    # -- seeds ----------------------------------------------------------------------------------
    def _seed_population(self) -> None:
        seeds: list[ProgramRecord] = []
        for index, seed in enumerate(self.config.seeds):
            source, meta = prog.seed_source(seed)
            record = ProgramRecord(
                source=source,
                operator="seed",
                generation=0,
                island=index % max(1, self.config.selection.islands),
                meta={**meta, "rationale": f"seed {seed}"},
            )
            if self.archive.add_program(record):
                self.emit("program_added", id=record.id, operator="seed", seed=seed)
            stored = self.archive.program(record.id)
            assert stored is not None
            if stored.status == "pending":
                self._validate_record(stored)
                stored = self.archive.program(record.id)  # with the status validation gave it
                assert stored is not None
            seeds.append(stored)
        valid = [s for s in seeds if s.status == "valid"]
        if not valid:
            raise ConfigError(
                "no seed program is valid: " + "; ".join(f"{s.meta.get('seed')}: {s.error}" for s in seeds)
            )
        proxy = (
            [(s, "proxy") for s in valid] if self.proxy_on else []
        )  # seeds are never cut; scored for the correlation
        self._evaluate(proxy + [(s, "screen") for s in valid] + [(s, "select") for s in valid])

    def _finish_pending(self) -> None:
        """After a crash: validate what was never validated, and finish each program's cascade."""
        for record in self.archive.programs(status="pending"):
            self._validate_record(record)
        from agentmem_evolve.proxy import REJECTED_STATE

        rejected = set(self.archive.get_state(REJECTED_STATE, []) or [])
        unscreened = [
            r
            for r in self.archive.programs(status="valid")
            if r.id not in rejected and self.archive.evaluation(r.id, "screen", self._keys["screen"]) is None
        ]
        self._evaluate([(r, "screen") for r in self._proxy_screen(unscreened)])
        promote = [
            (r, "select")
            for r in self.archive.programs(status="valid")
            if r.id not in rejected
            and self._promotable(r)
            and self.archive.evaluation(r.id, "select", self._keys["select"]) is None
        ]
        self._evaluate(promote)

    # -- one iteration ---------------------------------------------------------------------------
    def _iteration(self, iteration: int) -> None:
        rng = random.Random(f"{self.config.seed}:{iteration}")
        pool = self._parent_pool()
        if not pool:
            raise BudgetExhausted("no program has a score to select from (every seed failed its evaluation)")
        k = self.config.proposers.children_per_iteration
        parent_ids = self.strategy.select(pool, rng, k, iteration=iteration) or [
            max(pool, key=lambda s: s.score).program_id
        ]
        self.emit("iteration_started", iteration=iteration + 1, parents=parent_ids)
        views = {s.program_id: self._view(s.program_id) for s in pool}
        ranked = sorted(views.values(), key=lambda v: -v.score)
        children: list[ProgramRecord] = []
        made_key = f"iteration_{iteration}_proposals"
        made: list[str | None] = list(self.archive.get_state(made_key, []))  # proposals already made before a crash
        for index in range(k):
            if index < len(made):
                made_id = made[index]
                earlier = self.archive.program(made_id) if made_id else None
                if earlier is not None and earlier.status == "valid":
                    children.append(earlier)
                continue
            self._check_budget()
            parent = views[parent_ids[index % len(parent_ids)]]
            child_rng = random.Random(f"{self.config.seed}:{iteration}:{index}")  # a replayed child draws as before
            drawn = self._draw_child(parent, ranked, child_rng, iteration)
            if drawn is None:
                made.append(None)
                self.archive.set_state(made_key, made)
                continue
            record, proposal = drawn
            if self.archive.add_program(record):
                self.emit(
                    "program_added",
                    id=record.id,
                    operator=record.operator,
                    parents=record.parents,
                    rationale=proposal.meta.get("rationale", ""),
                )
                if proposal.operator == "reflective":
                    self.archive.set_status(record.id, "valid")
                else:
                    stored = self.archive.program(record.id)
                    assert stored is not None  # added above (or already there under the same id)
                    self._validate_record(stored)
            made.append(record.id)
            self.archive.set_state(made_key, made)
            stored = self.archive.program(record.id)
            if stored is not None and stored.status == "valid" and all(c.id != stored.id for c in children):
                children.append(stored)
        children = self._proxy_screen(children)
        self._evaluate([(c, "screen") for c in children] + self._parent_screens(children))
        promoted = [c for c in children if self._promotable(c)]
        for c in children:
            self.emit("screened", id=c.id, promoted=c in promoted, score=self._score(c.id, "screen"))
        self._evaluate([(c, "select") for c in promoted])

    def _draw_child(
        self, parent: ParentView, ranked: list[ParentView], rng: random.Random, iteration: int
    ) -> tuple[ProgramRecord, Proposal] | None:
        """One child of ``parent`` (not yet stored), or ``None`` when its proposal failed (recorded as such).

        A proposal that is a program the archive already has is drawn again, up
        to ``REPEAT_REDRAWS`` times: few structural changes apply to a given
        design, so the same one comes twice more often than it seems, and a
        repeat would only take a new child's place and be scored from the cache.
        """
        for draw in range(1 + REPEAT_REDRAWS):
            operator = self._pick_operator(rng, parent, ranked)
            before = self._meter_snapshot()
            try:
                proposal = self._propose(operator, parent, ranked, rng)
            except ProposalFailed as exc:
                self._account(before)
                self._record_failed_proposal(exc, operator, parent, iteration)
                return None
            self._account(before)
            record = ProgramRecord(
                source=proposal.source,
                parents=proposal.parents,
                operator=proposal.operator,
                generation=iteration + 1,
                island=self.strategy.assign_island(proposal.parents, rng),
                meta={**proposal.meta, "validated": proposal.operator == "reflective"},
            )
            if draw == REPEAT_REDRAWS or self.archive.program(record.id) is None:
                break
            self.emit("proposal_repeated", operator=proposal.operator, parent=parent.id, id=record.id)
        return record, proposal

    def _pick_operator(self, rng: random.Random, parent: ParentView, ranked: list[ParentView]) -> str:
        weights = dict(self.config.proposers.weights)
        same_base = [
            v for v in ranked if v.id != parent.id and v.meta.get("base_plugin") == parent.meta.get("base_plugin")
        ]
        if not same_base:
            weights.pop("merge", None)
        names = [n for n, w in weights.items() if w > 0]
        if not names:
            return "mutate"
        return rng.choices(names, weights=[weights[n] for n in names], k=1)[0]

    def _propose(self, operator: str, parent: ParentView, ranked: list[ParentView], rng: random.Random) -> Proposal:
        attempts = self.config.proposers.repair_attempts
        if operator == "reflective":
            proposer = ReflectiveProposer(self.mutation_llm, self.task_info, mode=self.config.proposers.reflective_mode)
            references = [v for v in ranked if v.id != parent.id][:2]
            try:
                return proposer.attempt(parent, rng, references, attempts, check=self._check_source)
            except LLMUnavailable:
                raise  # an outage stops the run (resumably): this child is proposed again on resume
            except LLMError as exc:  # the code-writing model is down or too slow: this child is lost, not the run
                raise ProposalFailed(f"the mutation model failed: {exc}") from None
        if operator == "structural":
            from agentmem_evolve.operators import StructuralProposer

            try:
                return StructuralProposer(
                    self.config.proposers.structural or None,
                    steps=self.config.proposers.structural_steps,
                    min_steps=self.config.proposers.structural_min_steps,
                ).propose(parent, rng)
            except ProposalFailed as exc:  # a program no operator applies to: a cheap mutation instead
                self.emit("structural_skipped", parent=parent.id, reason=str(exc))
        if operator == "merge":
            others = [
                v for v in ranked if v.id != parent.id and v.meta.get("base_plugin") == parent.meta.get("base_plugin")
            ]
            try:
                return MergeProposer().propose(parent, others[0], rng)
            except ProposalFailed:
                operator = "mutate"  # nothing to merge yet: fall back to a cheap mutation
        return MutationProposer().propose(parent, rng, ranked)

    def _record_failed_proposal(self, exc: ProposalFailed, operator: str, parent: ParentView, iteration: int) -> None:
        source = getattr(exc, "source", None)
        if source:
            record = ProgramRecord(
                source=source,
                parents=[parent.id],
                operator=operator,
                generation=iteration + 1,
                island=0,
                status="invalid",
                error=str(exc),
                meta={"base_plugin": parent.meta.get("base_plugin")},
            )
            self.archive.add_program(record)
        self.emit("proposal_failed", operator=operator, parent=parent.id, reason=str(exc))

    # -- validation ----------------------------------------------------------------------------
    def _limits(self) -> Any:
        from agentmem_evolve.sandbox import SandboxLimits

        return SandboxLimits(**self._sandbox_options())

    def _sandbox_options(self) -> dict[str, Any]:
        """The run config's sandbox section as :class:`~agentmem_evolve.sandbox.SandboxLimits` fields."""
        box = self.config.sandbox
        return {
            "cpu_seconds": box.cpu_seconds,
            "op_seconds": box.wall_seconds_per_op,
            "memory_mb": box.memory_mb,
            "output_bytes": box.max_output_bytes,
            "disk_mb": box.disk_mb,
            "jail": box.jail,
            "allow_unjailed": box.allow_unjailed,
        }

    def check_sandbox(self) -> dict[str, Any]:
        """The walls candidates of this run get (recorded for status and the report).

        Raises :class:`~agentmem_evolve.jail.JailUnavailable` (one line, how to fix) when no jail can be
        built here and the run did not accept the weaker audit-hook-only mode.
        """
        from agentmem_evolve.sandbox import sandbox_capabilities

        box = self.config.sandbox
        caps = sandbox_capabilities(box.jail, allow_unjailed=box.allow_unjailed)
        caps["weaker"] = caps["jail"] == "none"
        self.archive.set_state("sandbox", caps)
        return caps

    def _check_source(self, source: str) -> tuple[bool, str, str]:
        from agentmem_evolve.sandbox import validate_program

        watch = OutageWatch(self.task_llm)
        report = validate_program(source, llm=watch, embedder=self.embedder, limits=self._limits())
        watch.check()  # a smoke run that met a model outage says nothing about the program
        if report.ok:
            return True, "", ""
        return False, f"{report.stage}: {report.error}", getattr(report, "traceback", "") or ""

    def _validate_record(self, record: ProgramRecord) -> None:
        before = self._meter_snapshot()
        ok, error, _ = self._check_source(record.source)
        self._account(before)
        self.archive.set_status(record.id, "valid" if ok else "invalid", None if ok else error)
        self.emit("validated", id=record.id, ok=ok, error=error or None)

    # -- evaluation ----------------------------------------------------------------------------
    def _job(self, record: ProgramRecord, stage: str) -> EvalJob:
        env = self.config.environment
        split, limit = self._slices[stage]
        return EvalJob(
            program_id=record.id,
            source=record.source,
            stage=stage,
            env=env.name,
            split=split,
            limit=limit,
            data=env.data,
            options=self._stage_options(stage),
            seed=self.config.seed,
            model=self.config.models.task,
            api_base=self.config.models.api_base,
            budget_tokens=env.budget_tokens,
            sandbox=self._sandbox_options(),
        )

    def _evaluate(self, work: list[tuple[ProgramRecord, str]], *, check_budget: bool = True) -> None:
        jobs: list[EvalJob] = []
        seen: set[tuple[str, str]] = set()
        for record, stage in work:
            if (record.id, stage) in seen or self.archive.evaluation(record.id, stage, self._keys[stage]) is not None:
                continue  # done before (this run, or before a crash): never evaluated twice
            seen.add((record.id, stage))
            jobs.append(self._job(record, stage))
        if not jobs:
            return
        if check_budget:
            self._check_budget()
        for outcome in self.executor.map_unordered(jobs):
            if outcome.status == "unavailable":  # no result: nothing is recorded, the job runs again on resume
                raise LLMUnavailable(outcome.reason or "the task model did not answer")
            self._record(outcome)
        if any(job.stage == "select" for job in jobs):
            self._judge()

    def _record(self, outcome: EvalOutcome) -> None:
        rec = EvaluationRecord(
            program_id=outcome.program_id,
            stage=outcome.stage,
            split=outcome.split,
            key=outcome.key,
            metrics={**outcome.metrics, **{k: v for k, v in outcome.descriptors.items() if k not in outcome.metrics}},
            score=outcome.score,
            per_instance=outcome.per_instance,
            cost=outcome.cost,
            traces=outcome.traces,
            status=outcome.status,
            reason=outcome.reason,
        )
        self.archive.record_evaluation(rec)
        self.emit(
            "evaluated",
            id=outcome.program_id,
            stage=outcome.stage,
            score=outcome.score,
            status=outcome.status,
            reason=outcome.reason,
            tokens=outcome.cost.get("prompt_tokens", 0) + outcome.cost.get("completion_tokens", 0),
        )

    def _parent_screens(self, children: list[ProgramRecord]) -> list[tuple[ProgramRecord, str]]:
        out = []
        for child in children:
            for pid in child.parents:
                parent = self.archive.program(pid)
                if parent is not None and parent.status == "valid":
                    out.append((parent, "screen"))
        return out

    def _score(self, program_id: str, stage: str) -> float | None:
        rec = self.archive.evaluation(program_id, stage, self._keys[stage])
        if rec is None or rec.status != "ok":
            return None
        return rec.score

    def _promotable(self, record: ProgramRecord) -> bool:
        """Seeds always reach the select split; a child does when its minibatch score holds up against its parents'."""
        if record.operator == "seed":
            return True
        mine = self._score(record.id, "screen")
        if mine is None:
            return False
        parents = [s for s in (self._score(p, "screen") for p in record.parents) if s is not None]
        if not parents:
            return True
        return mine >= max(parents) - self.config.cascade.promote_margin

    # -- views for proposers ---------------------------------------------------------------------
    def _view(self, program_id: str) -> ParentView:
        record = self.archive.program(program_id)
        assert record is not None
        select = self.archive.evaluation(program_id, "select", self._keys["select"])
        screen = self.archive.evaluation(program_id, "screen", self._keys["screen"])
        traces = (screen.traces if screen else []) + (select.traces if select else [])
        lineage = self.archive.lineage(program_id)
        seed = lineage[0] if lineage else record
        rows = []
        previous: float | None = None
        for ancestor in lineage + [record]:
            score = self._score(ancestor.id, "select")
            mark = ""
            if score is not None and previous is not None and score < previous:
                mark = " [REGRESSION]"
            what = ancestor.meta.get("rationale") or ancestor.operator
            rows.append(
                f"{ancestor.operator} {ancestor.id}: {what} -> "
                f"{f'{score:.3f}' if score is not None else 'not scored'}{mark}"
            )
            if score is not None:
                previous = score
        return ParentView(
            id=program_id,
            source=record.source,
            score=select.score if select else 0.0,
            meta=record.meta,
            traces=traces,
            lineage=rows[:-1] if len(rows) > 1 else [],
            seed_source=seed.source,
            seed_score=self._score(seed.id, "select"),
            diagnosis=counts_from_metrics(e.metrics for e in (screen, select) if e is not None),
        )

    # -- selection on evidence (agentmem_evolve.evidence) ------------------------------------------
    def _judge(self) -> None:
        """Judge the programs newly scored on the select split against their parents and the run's best (paired)."""
        judge_new(self.archive, self._keys["select"], self.config.selection, emit=self.emit)

    def _parent_pool(self) -> list[Any]:
        """Programs scored on the select split that no child has replaced (the incumbent best always stays)."""
        self._judge()  # a run resumed after a crash may hold evaluations not judged yet
        pool = self.archive.scored("select", self._keys["select"])
        gone = replaced(self.archive)
        best = incumbent(self.archive, self._keys["select"])
        keep = [s for s in pool if s.program_id not in gone or (best is not None and s.program_id == best[0].id)]
        return keep or pool

    def _best_summary(self) -> dict[str, Any] | None:
        best = incumbent(self.archive, self._keys["select"])
        if best is None:
            return None
        record, evaluation = best
        return {
            "id": record.id,
            "score": evaluation.score,
            "operator": record.operator,
            "generation": record.generation,
        }

    # -- the end -----------------------------------------------------------------------------------
    def _final_test(self) -> None:
        self._judge()
        best = incumbent(self.archive, self._keys["select"])
        work: list[tuple[ProgramRecord, str]] = []
        if best is not None:
            work.append((best[0], "test"))
        work += [(r, "test") for r in self.archive.programs(status="valid") if r.operator == "seed"]
        # the held-out score is what the run is for: it is taken even when the budget ran out
        self._evaluate(work, check_budget=False)
