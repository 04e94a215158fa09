"""The archive: content-addressed programs, durable evaluations, lineage, and the views selection reads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading

import pytest

from agentmem.errors import DataError
from agentmem_evolve.archive import Archive, EvaluationRecord, ProgramRecord, evaluation_key, program_id

SEED = "class A:\n    name = 'a'\n"


def prog(source: str, parents=(), operator="seed", generation=0, status="valid", **kw) -> ProgramRecord:
    return ProgramRecord(
        source=source, parents=list(parents), operator=operator, generation=generation, status=status, **kw
    )


def ev(pid: str, score: float, stage="select", key="validation:k", per=None, tokens=100, **kw) -> EvaluationRecord:
    per = per if per is not None else {"q1": score, "q2": score}
    return EvaluationRecord(
        program_id=pid,
        stage=stage,
        split="validation",
        key=key,
        metrics={"f1": score, "recall_items": 3.0},
        score=score,
        per_instance=per,
        cost={"llm_calls": 4, "prompt_tokens": tokens, "completion_tokens": 0, "seconds": 2.0},
        **kw,
    )


def test_the_same_source_is_stored_once(tmp_path):
    with Archive(tmp_path) as archive:
        first = prog(SEED)
        assert first.id == program_id(SEED) and len(first.id) == 12
        assert archive.add_program(first) is True
        assert archive.add_program(prog(SEED, operator="mutate", meta={"x": 1})) is False
        assert [p.operator for p in archive.programs()] == ["seed"]
        # same source with different parameter values is a different program (a structured mutation)
        assert archive.add_program(prog(SEED, params={"top_k": 3})) is True
        assert len(archive.programs()) == 2


def test_everything_committed_survives_a_crash(tmp_path):
    script = textwrap.dedent(
        f"""
        import os
        from agentmem_evolve.archive import Archive, ProgramRecord, EvaluationRecord
        a = Archive({str(tmp_path)!r})
        p = ProgramRecord(source="x = 1\\n", status="valid")
        a.add_program(p)
        a.record_evaluation(EvaluationRecord(program_id=p.id, stage="select", split="validation", key="k", score=0.5,
                                             per_instance={{"q": 0.5}}, traces=[{{"q": "why", "answer": "because"}}]))
        a.log_event("iteration", n=1)
        a.set_state("rng", [3, [1, 2, 3], None])
        os._exit(0)  # no close, no cleanup: as if the process was killed
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    with Archive(tmp_path) as archive:
        (p,) = archive.programs()
        got = archive.evaluation(p.id, "select", "k")
        assert got is not None and got.score == 0.5 and got.traces == [{"q": "why", "answer": "because"}]
        assert [(e.kind, e.payload) for e in archive.events()] == [("iteration", {"n": 1})]
        assert archive.get_state("rng") == [3, [1, 2, 3], None]


def test_already_evaluated_is_a_lookup_and_a_rerun_replaces(tmp_path):
    with Archive(tmp_path) as archive:
        p = prog(SEED)
        archive.add_program(p)
        key = evaluation_key("validation", ["t2", "t1"])
        assert key == evaluation_key("validation", ["t1", "t2"]) != evaluation_key("train", ["t1", "t2"])
        assert archive.evaluation(p.id, "select", key) is None
        failed = archive.record_evaluation(ev(p.id, 0.0, key=key, status="failed", reason="timeout after 60 s"))
        assert failed.id is not None
        assert archive.evaluation(p.id, "select", key).status == "failed"
        archive.record_evaluation(ev(p.id, 0.7, key=key))
        again = archive.evaluation(p.id, "select", key)
        assert again.status == "ok" and again.score == 0.7 and again.id == failed.id
        assert archive.evaluation(p.id, "screen", key) is None
        assert len(archive.evaluations(p.id)) == 1


def test_an_evaluation_needs_its_program(tmp_path):
    with Archive(tmp_path) as archive, pytest.raises(KeyError):
        archive.record_evaluation(ev("nothere", 1.0))


def test_lineage_follows_every_parent_oldest_first(tmp_path):
    with Archive(tmp_path) as archive:
        a, b = prog(SEED), prog("b = 1\n")
        c = prog("c = 1\n", parents=[a.id], operator="reflective", generation=1)
        d = prog("d = 1\n", parents=[c.id, b.id], operator="merge", generation=2)
        other = prog("e = 1\n", parents=[b.id], operator="mutate", generation=1)
        for r in (a, b, c, other, d):
            archive.add_program(r)
        assert [r.id for r in archive.lineage(d.id)] == [a.id, b.id, c.id, d.id]
        assert [r.id for r in archive.lineage(a.id)] == [a.id]
        assert [r.id for r in archive.children(b.id)] == [other.id, d.id]
        with pytest.raises(KeyError):
            archive.lineage("missing")


def test_status_meta_and_best(tmp_path):
    with Archive(tmp_path) as archive:
        a, b, c = prog(SEED), prog("b = 2\n", status="pending"), prog("c = 3\n")
        for r in (a, b, c):
            archive.add_program(r)
        archive.set_status(b.id, "invalid", "ImportError: no module named foo")
        archive.update_meta(c.id, repairs=1)
        assert archive.program(b.id).error.startswith("ImportError")
        assert archive.program(c.id).meta == {"repairs": 1}
        assert [p.id for p in archive.programs(status="invalid")] == [b.id]
        assert archive.best() is None
        archive.record_evaluation(ev(a.id, 0.5))
        archive.record_evaluation(ev(c.id, 0.5, tokens=50))  # same score, cheaper: wins the tie
        archive.record_evaluation(ev(b.id, 0.9))  # invalid programs never win
        archive.record_evaluation(ev(a.id, 0.99, stage="screen", key="train:x"))
        best, best_eval = archive.best()
        assert best.id == c.id and best_eval.score == 0.5
        assert archive.best("screen")[0].id == a.id


def test_scored_view_is_per_question(tmp_path):
    with Archive(tmp_path) as archive:
        a = prog(SEED, island=1, generation=0)
        archive.add_program(a)
        archive.record_evaluation(ev(a.id, 1.0, stage="screen", key="k1", per={"q1": 1.0, "q2": 1.0}, tokens=200))
        archive.record_evaluation(
            ev(a.id, 0.0, stage="screen", key="k2", per={"q3": 0.0, "q4": 0.0, "q5": 0.0, "q6": 0.0}, tokens=400)
        )
        (s,) = archive.scored("screen")
        assert (
            s.score == pytest.approx(2 / 6) and s.tokens == pytest.approx(100.0) and s.seconds == pytest.approx(4 / 6)
        )
        assert set(s.per_instance) == {"q1", "q2", "q3", "q4", "q5", "q6"}
        assert s.island == 1 and s.descriptors["recall_items"] == 3.0 and s.descriptors["code_lines"] == 2
        (only_k1,) = archive.scored("screen", key="k1")
        assert only_k1.score == 1.0
        assert archive.scored("select") == []


def test_traces_are_capped(tmp_path):
    rec = ev("x", 0.1, traces=[{"transcript": "y" * 50_000}] * 20)
    assert len(rec.traces) == 8
    assert len(rec.traces[0]["transcript"]) < 4_000 and "characters cut" in rec.traces[0]["transcript"]


def test_events_since_and_state(tmp_path):
    with Archive(tmp_path) as archive:
        first = archive.log_event("start", config="x")
        archive.log_event("child", id="abc", operator="mutate")
        archive.log_event("child", id="def", operator="merge")
        assert [e.payload["id"] for e in archive.events(since=first)] == ["abc", "def"]
        assert len(archive.events(kind="start")) == 1
        assert archive.get_state("iteration", 0) == 0
        archive.set_state("iteration", 4)
        archive.set_state("iteration", 5)
        assert archive.get_state("iteration") == 5 and archive.state() == {"iteration": 5}


def test_writes_from_many_threads_and_two_handles(tmp_path):
    archive, reader = Archive(tmp_path), Archive(tmp_path)

    def work(n: int) -> None:
        for i in range(10):
            archive.add_program(prog(f"x = {n * 100 + i}\n"))
            archive.log_event("tick", n=n, i=i)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(reader.programs()) == 40 and len(reader.events()) == 40
    archive.close()
    reader.close()
    with pytest.raises(DataError, match="closed"):
        archive.programs()


def test_a_foreign_file_is_a_one_line_error(tmp_path):
    (tmp_path / "archive.sqlite").write_text("not a database at all" * 100)
    with pytest.raises(DataError) as info:
        Archive(tmp_path)
    assert "\n" not in str(info.value) and "archive.sqlite" in str(info.value)


def test_a_child_answered_from_the_llm_cache_is_not_cheaper_than_its_parent(tmp_path):
    """The toolprefs run of 2026-12-05 made a child 'best' as the cheaper of a tie: the cache had answered half
    its prompts (the same as its parent's), so it spent half the tokens. Programs are priced by their counted
    tokens, which a cache hit has too, so the tie stays the parent's."""
    from agentmem_evolve.selection import judge

    with Archive(tmp_path) as archive:
        parent, child = prog(SEED), prog(SEED + "\n# a change that alters no prompt\n")
        archive.add_program(parent)
        archive.add_program(child)
        per = {"q1": 1.0, "q2": 0.0}
        paid = {"llm_calls": 2, "prompt_tokens": 1000, "completion_tokens": 40, "counted_tokens": 1030}
        cached = {"llm_calls": 0, "cache_hits": 2, "prompt_tokens": 0, "completion_tokens": 0, "counted_tokens": 1030}
        for pid, cost in ((parent.id, paid), (child.id, cached)):
            record = ev(pid, 0.5, per=per)
            archive.record_evaluation(record.model_copy(update={"cost": cost}))
        by_id = {s.program_id: s for s in archive.scored()}
        assert by_id[child.id].tokens == by_id[parent.id].tokens == pytest.approx(515.0)
        verdict = judge(by_id[child.id], by_id[parent.id])
        assert not verdict.replaces and verdict.reason == "not cheaper"
        assert archive.best()[0].id == parent.id  # the older program keeps a tie
        # an evaluation recorded before calls were counted is priced by what it spent
        assert ev(parent.id, 0.5).program_tokens == 100.0
