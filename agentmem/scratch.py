"""Scratch directories that name their owner, and a sweep that removes those of dead owners.

Evaluations, sandboxed workers and validations each work in a temporary
directory of their own and remove it when they finish. A process killed with
``kill -9`` (or by the out-of-memory killer, or a power cut) never gets to:
its directories stay in the temp dir, one per task or candidate, run after
run. So every such directory is made here, with its owner in its name::

    agentmem-eval-o4242.8812345.1a2b3c4d.4026531836-k3j2h1g0
                   pid  start tick boot id  pid ns     random

``start tick`` is the owner's start time from ``/proc/<pid>/stat`` (clock
ticks since boot) and ``boot id`` the first eight hex digits of the kernel's
boot id: together they tell the owner from a later, unrelated process that
reuses its pid. ``pid ns`` is the owner's pid namespace: a directory made in
another one (a container sharing this temp dir) names a pid this process
cannot look up, so it is left alone unless it is abandoned (below). The owner is in the name rather than in a marker
file inside
the directory because the directory may be handed to untrusted code (a
sandboxed candidate's scratch), which could delete or forge a marker; a name
is set atomically by ``mkdtemp`` and only the directory's parent can change
it.

:func:`sweep_dead` removes the directories whose owner is gone; the
commands that make scratch (``agentmem eval``, ``agentmem evolve
run/resume``) call it when they start. A directory whose owner cannot be
judged (the old form with no owner in its name, or another pid namespace) is
removed once it has not changed for :data:`UNOWNED_GRACE_SECONDS`.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

__all__ = ["SCRATCH_KINDS", "make_scratch", "owner_alive", "owner_tag", "remove_tree", "sweep_dead"]

# every kind of scratch agentmem makes; each is "agentmem-<kind>-..." in its parent directory
SCRATCH_KINDS: tuple[str, ...] = ("eval", "sandbox", "validate", "jail-probe")
UNOWNED_GRACE_SECONDS = 24 * 3600.0

_OWNED = re.compile(r"^agentmem-(?P<kind>[a-z-]+?)-o(?P<pid>\d+)\.(?P<start>\d+)\.(?P<boot>[0-9a-f]{8})\.(?P<ns>\d+)-")


@functools.cache
def _boot_id() -> str:
    """The first eight hex digits of this boot's id ("00000000" where the kernel does not say)."""
    try:
        raw = Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")
    except OSError:
        return "0" * 8
    return raw[:8] if re.fullmatch(r"[0-9a-f]{8,}", raw) else "0" * 8


@functools.cache
def _pid_namespace() -> int:
    """The inode of this process's pid namespace (0 where the kernel does not say)."""
    try:
        found = re.search(r"\[(\d+)\]", os.readlink("/proc/self/ns/pid"))
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


def _start_tick(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if there is no such process.

    Where ``/proc`` is not there (not Linux), 0 for any process that exists:
    the pid alone then identifies the owner.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        if Path("/proc/self/stat").exists():
            return None  # a Linux /proc without this pid: it is gone
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return 0
        return 0
    except OSError:
        return None
    # the command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None


def owner_tag(pid: int | None = None) -> str:
    """``o<pid>.<start tick>.<boot id>.<pid namespace>`` for ``pid`` (default: this process; ours is its namespace)."""
    pid = os.getpid() if pid is None else pid
    start = _start_tick(pid)
    return f"o{pid}.{start if start is not None else 0}.{_boot_id()}.{_pid_namespace()}"


def make_scratch(kind: str, parent: str | Path | None = None) -> Path:
    """A new private directory ``agentmem-<kind>-<owner>-<random>`` under ``parent`` (default: the temp dir).

    The caller removes it when done; if the caller dies first, the next
    :func:`sweep_dead` does.
    """
    if kind not in SCRATCH_KINDS:
        raise ValueError(f"unknown scratch kind {kind!r}; one of {', '.join(SCRATCH_KINDS)}")
    return Path(tempfile.mkdtemp(prefix=f"agentmem-{kind}-{owner_tag()}-", dir=parent))


def owner_alive(name: str) -> bool | None:
    """Whether the process that made the scratch directory called ``name`` still runs.

    None when that cannot be told: the name carries no owner (not made by
    :func:`make_scratch`), or the owner ran in another pid namespace.
    """
    match = _OWNED.match(name)
    if match is None:
        return None
    if match["boot"] != _boot_id():
        return False  # made before the last reboot: its owner is gone whatever the pid is now
    if int(match["ns"]) != _pid_namespace():
        return None  # its pid means another process here: no way to look the owner up
    start = _start_tick(int(match["pid"]))
    return start is not None and start == int(match["start"])


def remove_tree(path: str | Path) -> bool:
    """Remove ``path`` and everything in it, even entries made read-only; True when it is gone.

    A sandboxed program without a jail writes into its scratch and may take
    away the write permission of what it made there: a plain ``rmtree``
    would then leave it behind.
    """

    shutil.rmtree(path, ignore_errors=True)
    if os.path.lexists(path) and not os.path.islink(path):
        with contextlib.suppress(OSError):
            os.chmod(path, 0o700)
        for root, dirs, _files in os.walk(path, onerror=lambda _e: None):
            for name in dirs:  # before os.walk lists them
                child = os.path.join(root, name)
                if not os.path.islink(child):
                    with contextlib.suppress(OSError):
                        os.chmod(child, 0o700)
        shutil.rmtree(path, ignore_errors=True)
    return not os.path.lexists(path)


def sweep_dead(parents: list[str | Path] | None = None, *, unowned_grace: float = UNOWNED_GRACE_SECONDS) -> list[Path]:
    """Remove the scratch directories of dead owners under ``parents`` (default: the temp dir); return them.

    Only directories of this user and of the kinds in :data:`SCRATCH_KINDS`
    are touched; a directory whose owner runs is left alone, whoever that is.
    Never raises: a directory that cannot be removed stays for the next sweep.
    """
    removed: list[Path] = []
    now = time.time()
    uid = os.getuid() if hasattr(os, "getuid") else None
    for parent in parents or [tempfile.gettempdir()]:
        try:
            entries = list(os.scandir(parent))
        except OSError:
            continue
        for entry in entries:
            if not entry.name.startswith("agentmem-") or not any(
                entry.name.startswith(f"agentmem-{k}-") for k in SCRATCH_KINDS
            ):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
                if not entry.is_dir(follow_symlinks=False) or (uid is not None and info.st_uid != uid):
                    continue
            except OSError:
                continue
            alive = owner_alive(entry.name)
            if alive is None:  # no owner we can look up (the old form, another pid namespace): abandoned once old
                if now - info.st_mtime < unowned_grace:
                    continue
            elif alive:
                continue
            if remove_tree(entry.path):
                removed.append(Path(entry.path))
    return removed
