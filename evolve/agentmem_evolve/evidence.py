"""Selection on evidence: who replaces whom during a run, and whether the result beats its seed on test.

Every comparison here is paired - two programs are compared only on the
questions both were scored on - and goes through :mod:`agentmem.stats`:

* :func:`judge_new` runs after every select-split evaluation. Each newly
  scored program (in creation order) is judged against each of its parents
  and against the run's incumbent best (:func:`agentmem_evolve.selection.judge`):
  it replaces one only when it is better with confidence, or - when the
  evidence ties them - when it is cheaper. A replaced parent leaves the pool
  parents are drawn from; the incumbent is what the run reports, tests and
  exports. Verdicts are kept in the archive's state (``judged``,
  ``champion``, ``replaced``), so a resumed run decides exactly as an
  uninterrupted one, and in ``judged`` events.
* :func:`compare_with_seeds` and :func:`seed_verdict` compare the best with
  every seed on the held-out test split (a 95% paired interval): status,
  the report and export flag a best that does not beat its own seed there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel

from agentmem.stats import Interval, PairedDifference, mean_interval, paired_difference
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.selection import Scored, Verdict, judge

__all__ = [
    "CHAMPION_STATE",
    "JUDGED_STATE",
    "REPLACED_STATE",
    "TEST_LEVEL",
    "SeedComparison",
    "SeedVerdict",
    "incumbent",
    "intervals",
    "judge_new",
    "replaced",
    "seed_of",
    "compare_with_seeds",
    "seed_verdict",
]

CHAMPION_STATE = "champion"  # {"id": the incumbent best, "key": the select question set it was judged on}
JUDGED_STATE = "judged"  # program id -> {"parents": [verdict, ...], "best": verdict | None}
REPLACED_STATE = "replaced"  # ids of programs a child replaced: they are no longer drawn as parents
TEST_LEVEL = 0.95  # the level of every comparison on the test split (fixed: what the report promises)
INTERVAL_RESAMPLES = (
    2000  # per-program intervals in status and the report: enough for two decimals, fast for many programs
)

EventSink = Callable[..., None]


def _settings(selection: Any) -> dict[str, Any]:
    get = (lambda k, d: selection.get(k, d)) if isinstance(selection, dict) else (lambda k, d: getattr(selection, k, d))
    return {
        "level": float(get("confidence", 0.95)),
        "method": get("paired_test", "both"),
        "cost_margin": float(get("tie_cost_margin", 0.05)),
        "tie_margin": _margin(get("tie_margin", 0.05)),
    }


def _margin(value: Any) -> float | None:
    return None if value is None else float(value)


def judge_new(archive: Archive, key: str, selection: Any, emit: EventSink | None = None) -> list[Verdict]:
    """Judge every program scored on the select question set ``key`` that was not judged yet; returns the verdicts.

    The first program scored (a seed) becomes the incumbent; each later one
    challenges its parents and then the incumbent. Deterministic (seeded
    bootstrap), so judging again after a crash gives the same outcome.
    """
    settings = _settings(selection)
    pool = {s.program_id: s for s in archive.scored("select", key)}
    judged: dict[str, Any] = dict(archive.get_state(JUDGED_STATE, {}) or {})
    champion_state = archive.get_state(CHAMPION_STATE, None) or {}
    champion: str | None = champion_state.get("id") if champion_state.get("key") == key else None
    gone: list[str] = list(archive.get_state(REPLACED_STATE, []) or [])
    verdicts: list[Verdict] = []
    for prog in archive.programs(status="valid"):
        if prog.id in judged or prog.id not in pool:
            continue
        me = pool[prog.id]
        record: dict[str, Any] = {"parents": [], "best": None}
        by_incumbent: dict[str, Verdict] = {}
        for pid in dict.fromkeys(prog.parents):
            if pid not in pool or pid == prog.id:
                continue
            verdict = judge(me, pool[pid], **settings)
            by_incumbent[pid] = verdict
            record["parents"].append(verdict.model_dump(mode="json"))
            verdicts.append(verdict)
            if verdict.replaces and pid not in gone:
                gone.append(pid)
            if emit is not None:
                emit("judged", against="parent", **_event(verdict))
        if champion is None:
            champion = prog.id  # the first program scored: nothing to challenge yet
        elif champion != prog.id and champion in pool:
            verdict = by_incumbent.get(champion) or judge(me, pool[champion], **settings)
            record["best"] = verdict.model_dump(mode="json")
            if champion not in by_incumbent:
                verdicts.append(verdict)
            if emit is not None:
                emit("judged", against="best", **_event(verdict))
            if verdict.replaces:
                champion = prog.id
        elif champion not in pool:
            champion = prog.id  # the incumbent's evaluation is gone (failed on a rerun): the newcomer takes its place
        judged[prog.id] = record
        # written in this order so that a crash between them at worst judges this program again
        archive.set_state(REPLACED_STATE, gone)
        archive.set_state(CHAMPION_STATE, {"id": champion, "key": key})
        archive.set_state(JUDGED_STATE, judged)
    return verdicts


def _event(verdict: Verdict) -> dict[str, Any]:
    d = verdict.difference
    return {
        "id": verdict.challenger,
        "incumbent": verdict.incumbent,
        "replaces": verdict.replaces,
        "reason": verdict.reason,
        "difference": d.rounded(),
        "wins": d.wins,
        "losses": d.losses,
        "sign_p": float(f"{d.sign_p:.3g}"),
        "tokens": round(verdict.challenger_tokens, 1),
        "incumbent_tokens": round(verdict.incumbent_tokens, 1),
    }


def replaced(archive: Archive) -> set[str]:
    """Programs a child replaced (better with confidence, or as good and cheaper): no longer drawn as parents."""
    return set(archive.get_state(REPLACED_STATE, []) or [])


def incumbent(archive: Archive, key: str | None = None) -> tuple[ProgramRecord, EvaluationRecord] | None:
    """The run's best: the program that won every paired comparison so far, with its select evaluation.

    Archives written before paired selection (no ``champion`` state) fall
    back to the highest mean select score (:meth:`Archive.best`).
    """
    state = archive.get_state(CHAMPION_STATE, None) or {}
    pid, state_key = state.get("id"), state.get("key")
    if pid and (key is None or key == state_key):
        prog = archive.program(pid)
        evaluation = archive.evaluation(pid, "select", state_key) if state_key else None
        if prog is not None and prog.status == "valid" and evaluation is not None and evaluation.status == "ok":
            return prog, evaluation
    return archive.best("select", key)


def intervals(archive: Archive, stage: str) -> dict[str, Interval]:
    """Each program's mean score at ``stage`` with its 95% bootstrap interval over its questions."""
    return {s.program_id: _interval(s) for s in archive.scored(stage)}


def _interval(s: Scored) -> Interval:
    values = [float(v) for v in s.per_instance.values()]
    if not values:  # an evaluation without per-question scores: its mean, and no interval to speak of
        return Interval(mean=s.score, low=s.score, high=s.score, n=0)
    return mean_interval(values, level=TEST_LEVEL, resamples=INTERVAL_RESAMPLES)


def seed_of(archive: Archive, program_id: str) -> ProgramRecord | None:
    """The seed a program descends from through its first parents (itself if it is a seed)."""
    rec = archive.program(program_id)
    seen = set()
    while rec is not None and rec.parents and rec.id not in seen:
        seen.add(rec.id)
        parent = archive.program(rec.parents[0])
        if parent is None:
            break
        rec = parent
    return rec


class SeedComparison(BaseModel):
    """The best program against one seed on the test split: best - seed over the questions both were tested on."""

    seed: str
    seed_name: str
    own_seed: bool  # the seed the best descends from
    difference: PairedDifference


def _seed_name(rec: ProgramRecord) -> str:
    return str(rec.meta.get("seed") or rec.meta.get("plugin") or rec.id)


def compare_with_seeds(archive: Archive, program_id: str) -> list[SeedComparison]:
    """``program_id`` against every seed scored on test (itself excepted), as paired differences with 95% intervals."""
    tested = {s.program_id: s for s in archive.scored("test")}
    mine = tested.get(program_id)
    if mine is None:
        return []
    own = seed_of(archive, program_id)
    out = []
    for prog in archive.programs(status="valid"):
        if prog.operator != "seed" or prog.id == program_id or prog.id not in tested:
            continue
        diff = paired_difference(mine.per_instance, tested[prog.id].per_instance, level=TEST_LEVEL)
        out.append(
            SeedComparison(
                seed=prog.id,
                seed_name=_seed_name(prog),
                own_seed=own is not None and own.id == prog.id,
                difference=diff,
            )
        )
    return out


class SeedVerdict(BaseModel):
    """Whether a program beats its own seed on the test split, and the one line that says so."""

    program: str
    seed: str | None
    status: Literal["better", "not better", "worse", "is seed", "untested"]
    difference: PairedDifference | None = None
    message: str

    @property
    def flagged(self) -> bool:
        """True unless the program beats its seed on test with 95% confidence."""
        return self.status != "better"


def seed_verdict(archive: Archive, program_id: str) -> SeedVerdict:
    """Does ``program_id`` beat the seed it descends from on the test split (the paired 95% interval above zero)?"""
    prog = archive.program(program_id)
    own = seed_of(archive, program_id)
    if prog is None or own is None:
        return SeedVerdict(
            program=program_id, seed=None, status="untested", message=f"program {program_id} is not in this run"
        )
    name = _seed_name(own)
    if own.id == prog.id:
        return SeedVerdict(
            program=program_id,
            seed=own.id,
            status="is seed",
            message=f"program {program_id} is the seed '{name}' itself: evolution found nothing that "
            "beat it on the select split",
        )
    comparison = next((c for c in compare_with_seeds(archive, program_id) if c.seed == own.id), None)
    if comparison is None or comparison.difference.n == 0:
        return SeedVerdict(
            program=program_id,
            seed=own.id,
            status="untested",
            message=f"program {program_id} and its seed '{name}' were not both scored on the test split, "
            "so nothing shows it is better",
        )
    d = comparison.difference
    if d.low > 0:
        status, what = "better", "beats"
    elif d.high < 0:
        status, what = "worse", "is worse than"
    else:
        status, what = "not better", "does not beat"
    return SeedVerdict(
        program=program_id,
        seed=own.id,
        status=status,
        difference=d,
        message=f"program {program_id} {what} its seed '{name}' on test: best - seed = {d.text()} "
        f"(95% paired interval)",
    )
