"""Stage 0 of the cascade: children scored on the LLM-free proxy, only the best paid an LLM for.

Plumbing with the real sandbox and archive and a model that must not be
called; the proxy itself is tested per environment in
environments/tests/test_proxy.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agentmem_evolve import program as prog
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord
from agentmem_evolve.config import RunConfig
from agentmem_evolve.controller import Controller
from agentmem_evolve.executor import InlineExecutor
from agentmem_evolve.proxy import REJECTED_STATE, keep_best, proxy_summary, same_as_parent, same_prompts, spearman
from agentmem_evolve.report import summary
from tests.helpers import BagEmbedder

pytestmark = pytest.mark.timeout(600)


class NeverCalled:
    """A task model that counts every call and answers none."""

    model = "never"

    def __init__(self) -> None:
        self.calls = 0

    def _called(self, *a: Any, **kw: Any) -> Any:
        self.calls += 1
        raise AssertionError("the proxy stage called the LLM")

    complete = structured = call_tool = _called


def _config(**cascade: Any) -> RunConfig:
    return RunConfig.from_dict(
        {
            "seeds": ["episodic"],
            "environment": {
                "name": "toolprefs",
                "minibatch": 3,
                "validation_limit": 4,
                "test_limit": 3,
                "heldout_seed": 4242,
            },
            "cascade": {"proxy_questions": 6, **cascade},
            "sandbox": {"wall_seconds_per_op": 300},  # generous: the tests share a loaded machine
        }
    )


def _controller(tmp_path: Path, llm: NeverCalled, **cascade: Any) -> Controller:
    """A run whose every model is ``llm`` (the proxy stage must never call it) and whose embedder is a bag of words."""
    embedder = BagEmbedder()
    return Controller.create(
        tmp_path / "run",
        _config(**cascade),
        executor=InlineExecutor(llm=llm, embedder=embedder),
        task_llm=llm,
        mutation_llm=llm,
        embedder=embedder,
    )


def _child(ctl: Controller, source: str, meta: dict[str, Any]) -> ProgramRecord:
    record = ProgramRecord(source=source, operator="mutate", generation=1, meta=meta)
    ctl.archive.add_program(record)
    ctl.archive.set_status(record.id, "valid")
    stored = ctl.archive.program(record.id)
    assert stored is not None
    return stored


def test_a_child_that_recalls_nothing_is_screened_out_by_the_proxy_with_no_llm_call(tmp_path):
    llm = NeverCalled()
    ctl = _controller(tmp_path, llm, proxy_keep=1.0)
    try:
        source, meta = prog.seed_source("episodic")
        blind = _child(
            ctl,
            prog.replace_function(
                source, "def after_recall(self, query, recall):\n    return Recall()\n", "after_recall"
            ).source,
            meta,
        )
        keen = _child(ctl, source.replace("return recall\n", "return recall  # unchanged\n"), meta)
        assert ctl.proxy_on
        kept = ctl._proxy_screen([blind, keen])
        assert [c.id for c in kept] == [keen.id], [
            (e.program_id, e.status, e.reason) for e in ctl.archive.evaluations()
        ]
        assert llm.calls == 0  # ingest and recall only: the task model was never asked
        assert [c.id for c in ctl._proxy_screen([keen, blind])] == [keen.id]  # a replay keeps the cut, runs nothing
        assert len(ctl.archive.evaluations(stage="proxy")) == 2
        blind_eval = ctl.archive.evaluation(blind.id, "proxy", ctl._keys["proxy"])
        keen_eval = ctl.archive.evaluation(keen.id, "proxy", ctl._keys["proxy"])
        assert blind_eval is not None and blind_eval.status == "ok", blind_eval.reason
        assert blind_eval.score == 0.0
        assert keen_eval is not None and keen_eval.score > 0.0 and keen_eval.metrics["proxy_questions"] >= 1
        assert keen_eval.cost.get("llm_calls", 0) == 0
        assert ctl.archive.get_state(REJECTED_STATE) == [blind.id]
        assert {(e.payload["id"], e.payload["kept"]) for e in ctl.archive.events() if e.kind == "proxy_screened"} == {
            (blind.id, False),
            (keen.id, True),
        }
        assert ctl.archive.evaluation(blind.id, "screen", ctl._keys["screen"]) is None
        for stage in ("screen", "select"):  # as if the kept child went on through the LLM stages
            ctl.archive.record_evaluation(
                EvaluationRecord(program_id=keen.id, stage=stage, split="train", key=ctl._keys[stage], score=0.5)
            )
        ctl._finish_pending()  # a resumed run never screens (or promotes) a rejected child
        assert llm.calls == 0
        assert ctl.archive.evaluation(blind.id, "select", ctl._keys["select"]) is None
        assert ctl.archive.evaluation(blind.id, "screen", ctl._keys["screen"]) is None
    finally:
        ctl.close()


def test_a_child_the_proxy_cannot_tell_from_its_parent_gets_a_place_of_its_own(tmp_path):
    """A change the proxy cannot see (the usage text the agent reads) scores exactly as its parent: ranked against
    its siblings it would go on only by the id order of a tie. One such child a round goes on beside the best
    fraction; a child that would show the model exactly its parent's prompts (inert) goes on nowhere; a child that
    recalls nothing never does."""
    from agentmem_evolve.operators import lift

    llm = NeverCalled()
    ctl = _controller(tmp_path, llm, proxy_keep=0.1)  # the best fraction is one child
    try:
        source, meta = prog.seed_source("episodic")
        seed = ProgramRecord(source=source, operator="seed", meta=meta)
        ctl.archive.add_program(seed)
        ctl.archive.set_status(seed.id, "valid")
        ctl._evaluate([(seed, "proxy")])

        def child_of_seed(new_source: str) -> ProgramRecord:
            record = ProgramRecord(source=new_source, parents=[seed.id], operator="structural:usage", meta=meta)
            ctl.archive.add_program(record)
            ctl.archive.set_status(record.id, "valid")
            return record

        lifted, _ = lift(source, meta)
        opening = "Excerpts from earlier conversations"
        assert opening in lifted
        worded = [
            child_of_seed(lifted.replace(opening, f"{word} from earlier conversations")) for word in ("Lines", "Notes")
        ]
        inert = child_of_seed(source.replace("return recall\n", "return recall  # the same prompts\n"))
        blind = child_of_seed(
            prog.replace_function(
                source, "def after_recall(self, query, recall):\n    return Recall()\n", "after_recall"
            ).source
        )
        kept = ctl._proxy_screen([*worded, inert, blind])
        assert {c.id for c in kept} == {w.id for w in worded}  # the best fraction (1) and the unseen place (1)
        assert llm.calls == 0
        scores = {c.id: ctl._score(c.id, "proxy") for c in (seed, *worded, inert)}
        assert len(set(scores.values())) == 1  # all four recall the same: the proxy cannot tell them apart
        screened = {e.payload["id"]: e.payload for e in ctl.archive.events() if e.kind == "proxy_screened"}
        assert [screened[w.id].get("unseen", False) for w in sorted(worded, key=lambda w: w.id)] == [False, True]
        assert screened[inert.id]["kept"] is False and screened[inert.id].get("inert") is True
        assert screened[blind.id]["kept"] is False and not screened[blind.id].get("inert")
        digests = {c.id: ctl._proxy_record(c.id).metrics["prompt_digest"] for c in (seed, *worded, inert)}
        assert digests[inert.id] == digests[seed.id] and len(set(digests.values())) == 3
    finally:
        ctl.close()


def test_the_proxy_stage_is_off_when_the_run_turns_it_off(tmp_path):
    llm = NeverCalled()
    ctl = _controller(tmp_path, llm, proxy=False)
    try:
        source, meta = prog.seed_source("episodic")
        child = _child(ctl, source.replace("return recall\n", "return recall  # x\n"), meta)
        assert not ctl.proxy_on and ctl._proxy_screen([child]) == [child]
        assert not ctl.archive.evaluations(stage="proxy")
    finally:
        ctl.close()


def test_keep_best_cuts_to_the_best_fraction_and_never_keeps_a_blind_or_failed_child():
    scores = {"a": 0.9, "b": 0.5, "c": 0.7, "d": 0.0, "e": None, "f": 0.6}
    kept, dropped = keep_best(scores, 0.5)
    assert kept == ["a", "c"] and set(dropped) == {"b", "d", "e", "f"}
    assert keep_best({"a": 0.0, "b": None}, 1.0) == ([], ["a", "b"])
    assert keep_best({"a": 0.2}, 0.1) == (["a"], [])  # at least one goes on
    assert keep_best({"a": 0.2, "b": 0.4}, 1.0, floor=0.3) == (["b"], ["a"])
    # children the proxy cannot tell from their parent: one more place, above the floor, by id
    scores = {"a": 0.9, "b": 0.8, "u": 0.7, "v": 0.7, "z": 0.0}
    assert keep_best(scores, 0.2) == (["a"], ["b", "u", "v", "z"])
    assert keep_best(scores, 0.2, unseen={"v", "u", "z"}) == (["a", "u"], ["b", "v", "z"])
    assert keep_best(scores, 0.2, unseen={"z"}) == (["a"], ["b", "u", "v", "z"])  # recalls nothing: never
    assert keep_best(scores, 0.2, unseen={"a", "v"}) == (["a", "v"], ["b", "u", "z"])  # kept anyway: no place used
    assert keep_best(scores, 0.2, unseen={"u", "v"}, unseen_places=2)[0] == ["a", "u", "v"]


def test_same_as_parent_means_the_same_proxy_score_on_every_question():
    parent = {"q1": 1.0, "q2": 0.5}
    assert same_as_parent({"q1": 1.0, "q2": 0.5}, [{"q1": 0.0}, parent])
    assert not same_as_parent({"q1": 1.0, "q2": 0.0}, [parent])
    assert not same_as_parent({}, [{}])  # nothing scored proves nothing
    assert not same_as_parent(parent, [])


def test_same_prompts_compares_the_proxy_runs_prompt_digests_and_an_evaluation_without_one_proves_nothing():
    assert same_prompts({"prompt_digest": 7.0, "proxy": 0.5}, [{"prompt_digest": 3.0}, {"prompt_digest": 7.0}])
    assert not same_prompts({"prompt_digest": 7.0}, [{"prompt_digest": 3.0}])
    assert not same_prompts({"proxy": 0.5}, [{"proxy": 0.5}])  # made before digests were kept
    assert not same_prompts({"prompt_digest": 7.0}, [])


def test_spearman_rank_correlation():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    assert spearman([1, 2, 3, 4, 5], [2, 1, 4, 3, 5]) == pytest.approx(0.8)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(0.9487, abs=1e-4)  # ties share their mean rank
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_status_reports_the_proxy_llm_rank_correlation_over_programs_that_reached_both(tmp_path):
    with Archive(tmp_path / "run") as archive:
        proxy = {"p1": 0.1, "p2": 0.4, "p3": 0.3, "p4": 0.8, "p5": 0.2}
        screen = {"p1": 0.2, "p2": 0.5, "p3": 0.6, "p4": 0.9}  # p5 was screened out: no LLM score
        ids = {}
        for name in proxy:
            record = ProgramRecord(source=f"# {name}\n", operator="mutate", status="valid")
            archive.add_program(record)
            ids[name] = record.id
        for name, score in proxy.items():
            archive.record_evaluation(
                EvaluationRecord(program_id=ids[name], stage="proxy", split="train", key="k0", score=score)
            )
        for name, score in screen.items():
            archive.record_evaluation(
                EvaluationRecord(program_id=ids[name], stage="screen", split="train", key="k1", score=score)
            )
        archive.set_state(REJECTED_STATE, [ids["p5"]])
        info = proxy_summary(archive)
        assert info is not None and info["scored"] == 5 and info["screened_out"] == 1
        assert info["rank_correlation"]["screen"] == {"n": 4, "spearman": 0.8}
        assert info["rank_correlation"]["select"] == {"n": 0, "spearman": None}
        assert summary(archive)["proxy"] == info
    with Archive(tmp_path / "other") as empty:
        assert proxy_summary(empty) is None
