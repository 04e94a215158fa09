"""Scratch directories name their owner; the sweep removes exactly those whose owner is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentmem.scratch import make_scratch, owner_alive, owner_tag, remove_tree, sweep_dead


def _dead_process_tag() -> str:
    """The owner tag of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tag = owner_tag(proc.pid)
    finally:
        proc.kill()
        proc.wait()
    return tag


def test_a_scratch_directory_names_its_living_owner(tmp_path: Path) -> None:
    made = make_scratch("eval", tmp_path)
    assert made.is_dir() and made.parent == tmp_path
    assert made.name.startswith(f"agentmem-eval-{owner_tag()}-")
    assert oct(made.stat().st_mode & 0o777) == "0o700"
    assert owner_alive(made.name) is True
    assert sweep_dead([tmp_path]) == [] and made.is_dir()
    with pytest.raises(ValueError, match="unknown scratch kind"):
        make_scratch("chat", tmp_path)


def test_the_sweep_removes_dead_owners_scratch_and_nothing_else(tmp_path: Path) -> None:
    mine = make_scratch("sandbox", tmp_path)
    dead = tmp_path / f"agentmem-sandbox-{_dead_process_tag()}-abc123"
    dead.mkdir()
    (dead / "worker.log").write_text("left behind by kill -9")
    # the same pid as a living process but another start time: a reused pid, not the owner
    pid, start, boot, ns = owner_tag().removeprefix("o").split(".")
    reused = tmp_path / f"agentmem-eval-o{pid}.{int(start) + 1}.{boot}.{ns}-xyz"
    reused.mkdir()
    other_boot = tmp_path / f"agentmem-validate-o{pid}.{start}.{'f' if boot[0] != 'f' else 'e'}{boot[1:]}.{ns}-q"
    other_boot.mkdir()
    # made in another pid namespace (a container sharing the temp dir): its owner cannot be looked up from here
    other_namespace = tmp_path / f"agentmem-sandbox-o{pid}.{int(start) + 1}.{boot}.{int(ns) + 1}-c"
    other_namespace.mkdir()
    other_namespace_stale = tmp_path / f"agentmem-eval-o{pid}.{start}.{boot}.{int(ns) + 1}-d"
    other_namespace_stale.mkdir()
    old_form_young = tmp_path / "agentmem-eval-oldstyle1"
    old_form_young.mkdir()
    old_form_stale = tmp_path / "agentmem-sandbox-oldstyle2"
    old_form_stale.mkdir()
    week_ago = time.time() - 7 * 24 * 3600
    for stale in (old_form_stale, other_namespace_stale):
        os.utime(stale, (week_ago, week_ago))
    unrelated = [tmp_path / "agentmem-chat-notes", tmp_path / "agentmem-llama-server-1.log", tmp_path / "somebody-else"]
    unrelated[0].mkdir()
    unrelated[1].write_text("a log, not scratch")
    unrelated[2].mkdir()

    removed = sweep_dead([tmp_path])

    assert sorted(removed) == sorted([dead, reused, other_boot, old_form_stale, other_namespace_stale])
    assert mine.is_dir() and old_form_young.is_dir() and other_namespace.is_dir() and all(p.exists() for p in unrelated)
    assert not dead.exists() and not reused.exists() and not other_boot.exists() and not old_form_stale.exists()


def test_scratch_made_read_only_by_its_program_is_still_removed(tmp_path: Path) -> None:
    scratch = make_scratch("sandbox", tmp_path)
    nested = scratch / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "f").write_text("x")
    for path in (nested, nested.parent):
        path.chmod(0o500)
    scratch.chmod(0o500)
    assert remove_tree(scratch)
    assert not scratch.exists()
    assert remove_tree(scratch)  # gone already: nothing to do


def test_a_killed_process_leaves_scratch_that_the_next_sweep_removes(tmp_path: Path) -> None:
    code = (
        "import sys, time; from agentmem.scratch import make_scratch;"
        f"print(make_scratch('eval', {str(tmp_path)!r}), flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        made = Path(proc.stdout.readline().strip())  # type: ignore[union-attr]
        assert made.is_dir()
        assert sweep_dead([tmp_path]) == []  # its owner still runs
    finally:
        proc.kill()  # SIGKILL: no clean-up runs
        proc.wait()
    assert made.is_dir()
    assert sweep_dead([tmp_path]) == [made]
    assert not made.exists()
