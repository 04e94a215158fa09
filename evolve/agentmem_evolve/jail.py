"""The jail: a private root that a candidate program cannot climb out of.

A sandboxed worker (:mod:`agentmem_evolve.worker`) is started inside new
user, PID, network, IPC, UTS and mount namespaces whose root is a fresh
tmpfs holding only what a memory program may use, read-only:

* the interpreter and its standard library;
* the site-packages of the distributions a memory program may import: the
  ``agentmem`` core, every installed memory plugin (entry-point group
  ``agentmem.memory``) and everything they require; every other installed
  distribution (environment packages and their data, test tools, ...) is
  hidden behind an empty directory or an empty file;
* of the project checkout, only those packages' own directories (an
  editable install adds the whole checkout to ``sys.path``);
* the system libraries (``/usr``), a synthetic ``/etc/passwd``, a private
  ``/proc`` (the jail's own processes only) and a minimal ``/dev``;

plus two writable size-limited tmpfs mounts: ``/scratch`` (the program's
working directory and stores) and ``/tmp``. No network interface, no
capability, no new user namespace, no view of the controller's processes,
files, caches, datasets or run directory.

Two backends build the same :class:`JailView`:

* ``bwrap``: bubblewrap (Debian/Ubuntu package ``bubblewrap``), the
  maintained tool for exactly this (pivot_root into a tmpfs, capabilities
  dropped, ``--disable-userns``);
* ``unshare``: util-linux's ``unshare`` plus a short shell script that
  mounts the same tree and ``pivot_root``s into it, then drops every
  capability with ``setpriv`` before starting Python. For machines that
  have user namespaces but not bubblewrap.

Where neither works, :func:`choose_backend` refuses with a one-line
:class:`JailUnavailable` saying how to get one, unless the caller accepts
the weaker audit-hook-only mode (``jail="none"`` with ``allow_unjailed``).
The audit-hook policy inside the worker stays as a second wall and reads
the same view (:attr:`JailView.readable` and :attr:`JailView.blocked_imports`).
"""

from __future__ import annotations

import functools
import os
import shlex
import shutil
import site
import subprocess
import sys
import threading
from importlib import metadata
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from agentmem.errors import AgentmemError
from agentmem.scratch import make_scratch

__all__ = [
    "JAIL_SCRATCH",
    "JailBackend",
    "JailUnavailable",
    "JailView",
    "available_backends",
    "choose_backend",
    "jail_command",
    "jail_view",
]

JailBackend = Literal["bwrap", "unshare", "none"]
#: where the program's writable directory is, inside the jail
JAIL_SCRATCH = "/scratch"
_SYSTEM_DIRS = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin")
_ETC_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime")
_OPTIONAL_RO = ("/sys/devices/system/cpu",)
_PASSWD = (
    "sandbox:x:0:0:sandbox:/scratch:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
)
_GROUP = "sandbox:x:0:\nnogroup:x:65534:\n"
_HOW_TO_GET_ONE = (
    "install bubblewrap (apt-get install bubblewrap, dnf install bubblewrap) or enable unprivileged user "
    "namespaces (sysctl -w kernel.unprivileged_userns_clone=1 and user.max_user_namespaces > 0); "
    "or accept the weaker audit-hook-only sandbox with --allow-unjailed"
)


class JailUnavailable(AgentmemError):
    """No jail can be built on this machine (and the weaker mode was not accepted)."""


class JailView(BaseModel):
    """What a candidate sees of the machine; the same view feeds both backends and the audit hook.

    Every path is absolute and appears at the same place inside the jail as
    outside (so tracebacks and module paths read the same), except the
    writable scratch, which is :data:`JAIL_SCRATCH` inside.
    """

    readonly: list[str] = Field(default_factory=list, description="directories and files bound read-only")
    symlinks: list[tuple[str, str]] = Field(default_factory=list, description="(target, link) such as (usr/bin, /bin)")
    hidden_dirs: list[str] = Field(default_factory=list, description="directories replaced by an empty one")
    hidden_files: list[str] = Field(default_factory=list, description="files replaced by an empty one")
    blocked_imports: list[str] = Field(default_factory=list, description="top-level modules a program may not import")
    python: str = Field(sys.executable, description="the interpreter, as the jail sees it")

    @property
    def readable(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(roots a program may read under, paths it may not) for the audit hook, symlinks resolved."""
        roots = {os.path.realpath(p) for p in self.readonly}
        roots.update(os.path.realpath(os.path.join(os.path.dirname(link), target)) for target, link in self.symlinks)
        hidden = {os.path.realpath(p) for p in self.hidden_dirs + self.hidden_files}
        return tuple(sorted(roots)), tuple(sorted(hidden))


# --------------------------------------------------------------------------- the view


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _distribution_name(dist: metadata.Distribution) -> str:
    """A distribution's declared name, "" for a broken install whose metadata has none."""
    meta = dist.metadata
    return meta["Name"] if "Name" in meta else ""


def _allowed_distributions() -> dict[str, metadata.Distribution]:
    """The distributions a memory program may use: agentmem, the memory plugins and what they require."""
    from packaging.requirements import InvalidRequirement, Requirement

    installed: dict[str, metadata.Distribution] = {}
    for dist in metadata.distributions():
        name = _distribution_name(dist)
        if name:
            installed.setdefault(_canonical(name), dist)
    roots: list[tuple[str, frozenset[str]]] = [("agentmem", frozenset())]
    for ep in metadata.entry_points(group="agentmem.memory"):
        plugin_name = _distribution_name(ep.dist) if ep.dist is not None else ""
        if plugin_name:
            roots.append((_canonical(plugin_name), frozenset()))
    allowed: dict[str, metadata.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    stack = list(roots)
    while stack:
        name, extras = stack.pop()
        if (name, extras) in seen or name not in installed:
            continue
        seen.add((name, extras))
        dist = installed[name]
        allowed[name] = dist
        for raw in dist.requires or []:
            try:
                req = Requirement(raw)
            except InvalidRequirement:
                continue
            wanted = [""] + sorted(extras)
            if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in wanted):
                continue
            stack.append((_canonical(req.name), frozenset(req.extras)))
    return allowed


def _top_level_entries(dist: metadata.Distribution) -> set[str]:
    """The first path component of each file a distribution installed (relative to its site dir)."""
    out: set[str] = set()
    for file in dist.files or []:
        parts = Path(str(file)).parts
        if parts and parts[0] != "..":
            out.add(parts[0])
    return out


def _module_name(entry: str) -> str | None:
    """The importable top-level name a site-packages entry provides (None for metadata and .pth files)."""
    if entry.endswith((".dist-info", ".egg-info", ".pth", ".data")) or entry.startswith(("__pycache__", ".")):
        return None
    if entry.endswith(".py"):
        return entry[:-3]
    if entry.endswith((".so", ".pyd")):
        return entry.split(".", 1)[0]
    if "." in entry or "-" in entry:
        return None
    return entry


def _editable_dirs(dist: metadata.Distribution) -> list[str]:
    """Directories an editable install's .pth files add to sys.path."""
    out: list[str] = []
    base = Path(str(dist.locate_file("")))
    for file in dist.files or []:
        if str(file).endswith(".pth"):
            try:
                lines = (base / str(file)).read_text(encoding="utf-8").splitlines()
            except OSError:
                continue
            for line in lines:
                line = line.strip()
                if line and not line.startswith(("#", "import ")) and os.path.isdir(line):
                    out.append(os.path.realpath(line))
    return out


@functools.lru_cache(maxsize=1)
def jail_view() -> JailView:
    """The view of this interpreter's installation that a candidate gets (computed once per process)."""
    allowed = _allowed_distributions()
    all_dists = list(metadata.distributions())
    owners: dict[tuple[str, str], set[str]] = {}  # (site dir, entry) -> owning distributions
    for dist in all_dists:
        name = _canonical(_distribution_name(dist))
        try:
            site_dir = os.path.realpath(str(dist.locate_file("")))
        except Exception:
            continue
        for entry in _top_level_entries(dist):
            owners.setdefault((site_dir, entry), set()).add(name)

    readonly: list[str] = []
    symlinks: list[tuple[str, str]] = []
    hidden_dirs: list[str] = []
    hidden_files: list[str] = []
    blocked: set[str] = set()

    for path in _SYSTEM_DIRS:
        if os.path.islink(path):
            symlinks.append((os.readlink(path), path))
        elif os.path.isdir(path):
            readonly.append(path)
    readonly.extend(p for p in _ETC_FILES + _OPTIONAL_RO if os.path.exists(p))

    prefixes = sorted(
        {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix, sys.base_exec_prefix)}
    )
    # a prefix under another (a venv inside the interpreter's tree, unlikely) is covered by it
    prefixes = [p for p in prefixes if not any(p != q and p.startswith(q + "/") for q in prefixes)]
    readonly.extend(p for p in prefixes if p not in ("/usr", "/"))

    active_sites = {os.path.realpath(p) for p in site.getsitepackages() if os.path.isdir(p)}
    for path in sys.path:
        if path and path.endswith("site-packages") and os.path.isdir(path):
            active_sites.add(os.path.realpath(path))
    # site-packages inside a bound prefix that this interpreter does not use (the base install's, beside a venv)
    for prefix in prefixes:
        for site_packages in Path(prefix).glob("lib/python3*/site-packages"):
            real = os.path.realpath(site_packages)
            if real not in active_sites:
                hidden_dirs.append(real)
                blocked.update(filter(None, (_module_name(e) for e in _listdir(real))))
    allowed_names = set(allowed)
    importable: set[str] = set()  # top-level names the program can import: never blocked
    for site_dir in sorted(active_sites):
        if not any(site_dir == p or site_dir.startswith(p + "/") for p in prefixes):
            readonly.append(site_dir)  # a site dir outside the interpreter's prefix (rare): bound, then filtered
        for entry in _listdir(site_dir):
            full = os.path.join(site_dir, entry)
            if owners.get((site_dir, entry), set()) & allowed_names:
                importable.add(_module_name(entry) or "")
                continue
            (hidden_dirs if os.path.isdir(full) and not os.path.islink(full) else hidden_files).append(full)
            module = _module_name(entry)
            if module:
                blocked.add(module)

    # editable installs: of each directory they add, only the allowed distribution's own packages
    editable_roots: set[str] = set()
    for name, dist in allowed.items():
        dirs = _editable_dirs(dist)
        if not dirs:
            continue
        wanted = {name.replace("-", "_")}
        for ep in dist.entry_points:
            wanted.add(ep.value.split(":", 1)[0].split(".", 1)[0].strip())
        for directory in dirs:
            editable_roots.add(directory)
            for module in sorted(wanted):
                for candidate in (os.path.join(directory, module), os.path.join(directory, module + ".py")):
                    if os.path.exists(candidate):
                        readonly.append(candidate)
    # what the other editable installs would have exposed is blocked by name too
    for dist in all_dists:
        name = _canonical(_distribution_name(dist))
        if name in allowed:
            continue
        blocked.add(name.replace("-", "_"))
        for ep in dist.entry_points:
            blocked.add(ep.value.split(":", 1)[0].split(".", 1)[0].strip())
    for group in ("agentmem.environments",):
        for ep in metadata.entry_points(group=group):
            blocked.add(ep.value.split(":", 1)[0].split(".", 1)[0].strip())
    blocked.add("agentmem_evolve")  # the engine (its archive, its scorer); the worker loads its protocol by path

    # the worker itself (bound file by file: the rest of the engine stays out of sight)
    here = Path(__file__).resolve().parent
    readonly.extend(str(here / name) for name in ("worker.py", "protocol.py"))
    allowed_modules = {
        m for m in (_module_name(Path(p).name) for p in readonly if os.path.dirname(p) in editable_roots) if m
    }
    blocked -= allowed_modules | importable
    blocked -= {"agentmem"}
    blocked.discard("")
    return JailView(
        readonly=_dedupe(readonly),
        symlinks=symlinks,
        hidden_dirs=_dedupe(hidden_dirs),
        hidden_files=_dedupe(hidden_files),
        blocked_imports=sorted(b for b in blocked if b.isidentifier()),
        python=sys.executable,
    )


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _dedupe(paths: list[str]) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for p in paths:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


# --------------------------------------------------------------------------- the backends


def _support_dir(parent: Path) -> Path:
    """Synthetic files the jail shows (passwd, group) and an empty directory to hide others behind."""
    support = parent / "jail"
    (support / "empty").mkdir(parents=True, exist_ok=True)
    (support / "passwd").write_text(_PASSWD)
    (support / "group").write_text(_GROUP)
    return support


def jail_command(
    backend: JailBackend,
    command: list[str],
    *,
    host_dir: Path,
    disk_mb: int,
    tmp_mb: int = 64,
    view: JailView | None = None,
) -> list[str]:
    """``command`` wrapped to run in the jail (``host_dir``: a controller-owned directory for support files)."""
    if backend == "none":
        return list(command)
    view = view or jail_view()
    support = _support_dir(host_dir)
    if backend == "bwrap":
        return _bwrap_argv(view, command, support, disk_mb, tmp_mb)
    if backend == "unshare":
        return _unshare_argv(view, command, support, disk_mb, tmp_mb)
    raise ValueError(f"unknown jail backend {backend!r}")


def _bwrap_argv(view: JailView, command: list[str], support: Path, disk_mb: int, tmp_mb: int) -> list[str]:
    argv = [
        "bwrap",
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    # /proc, /dev and /tmp first: a checkout or virtual environment under /tmp (a fresh clone in CI) is
    # then bound on top of the jail's own /tmp instead of being hidden by it
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--size", str(tmp_mb << 20), "--tmpfs", "/tmp"]
    for path in view.readonly:
        argv += ["--ro-bind", path, path]
    for target, link in view.symlinks:
        argv += ["--symlink", target, link]
    for path in view.hidden_dirs:
        argv += ["--ro-bind", str(support / "empty"), path]
    for path in view.hidden_files:
        argv += ["--ro-bind", "/dev/null", path]
    argv += ["--ro-bind", str(support / "passwd"), "/etc/passwd", "--ro-bind", str(support / "group"), "/etc/group"]
    argv += ["--size", str(disk_mb << 20), "--tmpfs", JAIL_SCRATCH]
    argv += ["--remount-ro", "/dev"]  # bubblewrap's /dev is a tmpfs as large as half the RAM: nothing is written there
    argv += ["--remount-ro", "/", "--chdir", JAIL_SCRATCH, "--", *command]
    return argv


# The unshare backend: the same tree, mounted by a shell script inside fresh namespaces, then pivot_root.
# $1 is the directory the new root is mounted on; the rest is the command. Every mount is private to
# the namespace; capabilities are dropped (setpriv) before Python starts, so the program cannot undo them.
# The shell stays as the namespace's init (Python is not PID 1, whose default signals the kernel ignores)
# and exits with Python's status (128 + signal when a signal ended it), as bwrap does.
_UNSHARE_SCRIPT = r"""
set -eu
R="$1"; shift
mount --make-rprivate /
mount -t tmpfs -o mode=0755 jailroot "$R"
ro() {
  if [ -d "$1" ]; then mkdir -p "$R$2"; elif [ ! -e "$R$2" ]; then mkdir -p "$(dirname "$R$2")"; : > "$R$2"; fi
  mount --bind "$1" "$R$2"
  mount -o remount,bind,ro "$R$2"
}
link() { mkdir -p "$(dirname "$R$2")"; ln -s "$1" "$R$2"; }
mkdir -p "$R/proc" "$R/dev" "$R/tmp" "$R%(scratch)s"
# /tmp before the binds: a checkout or virtual environment under /tmp is bound on top of it, not hidden
mount -t tmpfs -o size=%(tmp_mb)dm,mode=1777 tmpfs "$R/tmp"
%(mounts)s
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
for d in null zero full random urandom; do : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
ln -s /proc/self/fd "$R/dev/fd"
mount -t tmpfs -o size=%(disk_mb)dm,mode=0700 tmpfs "$R%(scratch)s"
cd "$R"
mkdir .oldroot
pivot_root . .oldroot
cd /
umount -l /.oldroot
rmdir /.oldroot
mount -o remount,ro,bind / 2>/dev/null || mount -o remount,ro /
cd %(scratch)s
setpriv --no-new-privs --inh-caps=-all --bounding-set=-all -- "$@"
exit $?
"""


def _unshare_argv(view: JailView, command: list[str], support: Path, disk_mb: int, tmp_mb: int) -> list[str]:
    lines: list[str] = []
    for path in view.readonly:
        lines.append(f"ro {shlex.quote(path)} {shlex.quote(path)}")
    for target, link in view.symlinks:
        lines.append(f"link {shlex.quote(target)} {shlex.quote(link)}")
    for path in view.hidden_dirs:
        lines.append(f"ro {shlex.quote(str(support / 'empty'))} {shlex.quote(path)}")
    for path in view.hidden_files:
        lines.append(f"ro /dev/null {shlex.quote(path)}")
    lines.append(f"ro {shlex.quote(str(support / 'passwd'))} /etc/passwd")
    lines.append(f"ro {shlex.quote(str(support / 'group'))} /etc/group")
    script = _UNSHARE_SCRIPT % {
        "mounts": "\n".join(lines),
        "scratch": JAIL_SCRATCH,
        "tmp_mb": tmp_mb,
        "disk_mb": disk_mb,
    }
    mountpoint = support / "root"
    mountpoint.mkdir(exist_ok=True)
    return [
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "--net",
        "--pid",
        "--fork",
        "--ipc",
        "--uts",
        "--kill-child",
        "sh",
        "-c",
        script,
        "sh",
        str(mountpoint),
        *command,
    ]


# --------------------------------------------------------------------------- which backend


_probe_lock = threading.Lock()
_probed: dict[str, str | None] = {}


def _probe(backend: JailBackend) -> str | None:
    """None when ``backend`` builds a working jail here, else why not (probed once per process)."""
    with _probe_lock:
        if backend in _probed:
            return _probed[backend]
        reason: str | None = None
        tool = {"bwrap": "bwrap", "unshare": "unshare"}.get(backend)
        if tool and shutil.which(tool) is None:
            reason = f"{tool} is not installed"
        elif backend == "unshare" and (shutil.which("setpriv") is None or shutil.which("pivot_root") is None):
            reason = "setpriv or pivot_root (util-linux) is not installed"
        else:
            host = make_scratch("jail-probe")
            try:
                argv = jail_command(
                    backend,
                    [jail_view().python, "-I", "-c", "import os; os.stat('/scratch')"],
                    host_dir=host,
                    disk_mb=8,
                    tmp_mb=8,
                )
                done = subprocess.run(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=30
                )
                if done.returncode != 0:
                    tail = done.stderr.decode("utf-8", "replace").strip().splitlines()
                    reason = f"{backend} failed here ({tail[-1] if tail else f'exit {done.returncode}'})"
            except (OSError, subprocess.SubprocessError) as exc:
                reason = f"{backend} failed here ({type(exc).__name__}: {exc})"
            finally:
                shutil.rmtree(host, ignore_errors=True)
        _probed[backend] = reason
        return reason


def available_backends() -> dict[str, str | None]:
    """Each jail backend and None where it works on this machine, else the reason it does not."""
    return {"bwrap": _probe("bwrap"), "unshare": _probe("unshare")}


def choose_backend(wanted: str = "auto", *, allow_unjailed: bool = False) -> JailBackend:
    """The backend to run candidates with; raises :class:`JailUnavailable` (one line) when none is allowed.

    ``wanted``: "auto" (bubblewrap, else unshare), "bwrap", "unshare" or
    "none" (the audit hook alone: only with ``allow_unjailed``).
    """
    if wanted == "none":
        if not allow_unjailed:
            raise JailUnavailable(
                "sandbox jail 'none' runs candidates without a private root: pass --allow-unjailed "
                "(or set sandbox.allow_unjailed = true) to accept the audit-hook-only sandbox"
            )
        return "none"
    order: list[JailBackend]
    if wanted == "auto":
        order = ["bwrap", "unshare"]
    elif wanted == "bwrap":
        order = ["bwrap"]
    elif wanted == "unshare":
        order = ["unshare"]
    else:
        raise JailUnavailable(f"unknown sandbox jail {wanted!r}: use auto, bwrap, unshare or none")
    reasons = []
    for backend in order:
        reason = _probe(backend)
        if reason is None:
            return backend
        reasons.append(reason)
    if allow_unjailed:
        return "none"
    raise JailUnavailable(
        f"no sandbox jail for candidate programs on this machine ({'; '.join(reasons)}): {_HOW_TO_GET_ONE}"
    )
