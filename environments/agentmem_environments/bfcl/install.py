"""Finding BFCL's package (its data and checker), and installing it where it harms nothing.

``bfcl-eval`` cannot live in agentmem's environment: it pins ``numpy==1.26.4``
and ``filelock`` and pulls torch, sentence-transformers, faiss and half a
dozen provider SDKs. The memory category needs none of that: its data are
JSON-lines files inside the package, and its checker
(``bfcl_eval.eval_checker.agentic_eval.agentic_checker``) imports only ``re``.
So the package is installed **without its dependencies** into a directory of
its own, ``<agentmem cache>/bfcl/<version>/site``, once, behind a file lock,
and only that directory is read (the data) and briefly put on ``sys.path``
(to import the checker).

Where the package is looked for, in order:

1. ``bfcl_dir`` (the environment's knob, ``--data "bfcl_dir=..."``);
2. the ``bfcl_dir`` setting (``AGENTMEM_BFCL_DIR`` or ``agentmem.toml``);
3. a ``bfcl_eval`` package importable from this Python (a user who installed
   ``bfcl-eval`` with its dependencies);
4. the cached install, made on first use with ``uv pip install --no-deps
   --target`` (``python -m pip`` when uv is missing) unless ``install=false``.

``bfcl_dir`` may name a ``--target`` install, the ``bfcl_eval`` package
folder itself, or a checkout of the gorilla repository (or its
``berkeley-function-call-leaderboard`` folder).
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agentmem.errors import DataError

__all__ = [
    "BFCL_VERSION",
    "ENV_DIR",
    "BFCLInstallError",
    "default_site",
    "ensure_bfcl",
    "find_bfcl",
    "install_command",
    "is_bfcl_root",
    "resolve_bfcl_dir",
]

log = logging.getLogger(__name__)

BFCL_VERSION = "2026.3.23"
"""The ``bfcl-eval`` release the loader and the tests were checked against."""

ENV_DIR = "AGENTMEM_BFCL_DIR"
PACKAGE = "bfcl-eval"
_MEMORY_FILE = ("bfcl_eval", "data", "BFCL_v4_memory.json")
_CHECKER_FILE = ("bfcl_eval", "eval_checker", "agentic_eval", "agentic_checker.py")
_INSTALL_TIMEOUT_S = 600


class BFCLInstallError(DataError):
    """Installing ``bfcl-eval`` failed; ``output`` keeps the installer's last lines (to tell offline from broken)."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def is_bfcl_root(path: Path) -> bool:
    """True when ``path`` holds a ``bfcl_eval`` package with the memory data and the agentic checker."""
    return path.joinpath(*_MEMORY_FILE).is_file() and path.joinpath(*_CHECKER_FILE).is_file()


def default_site(cache_dir: Path | None = None) -> Path:
    """``<cache_dir>/bfcl/<version>/site``; ``cache_dir`` defaults to agentmem's (``AGENTMEM_CACHE_DIR``, config,
    user cache).
    """
    if cache_dir is None:
        from agentmem.config import load_settings

        cache_dir = load_settings().cache_dir
    return Path(cache_dir).expanduser() / "bfcl" / BFCL_VERSION / "site"


def install_command(target: Path) -> list[str]:
    """The command that installs the pinned ``bfcl-eval`` without dependencies into ``target``.

    uv when it is on PATH or next to this Python (fast, and what the project
    uses), else this Python's pip.
    """
    spec = f"{PACKAGE}=={BFCL_VERSION}"
    uv = shutil.which("uv") or _beside_python("uv")
    if uv:
        return [uv, "pip", "install", "--no-deps", "--quiet", "--python", sys.executable, "--target", str(target), spec]
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(target),
        spec,
    ]


def _beside_python(name: str) -> str | None:
    path = Path(sys.executable).parent / (f"{name}.exe" if os.name == "nt" else name)
    return str(path) if path.is_file() else None


def _how_to_fix(site: Path) -> str:
    return (
        f"install it yourself with 'uv pip install --no-deps --target {site} {PACKAGE}=={BFCL_VERSION}' "
        f'(or python -m pip with the same arguments), or set {ENV_DIR} / --data "bfcl_dir=..." '
        "to an existing bfcl-eval install or gorilla checkout"
    )


def ensure_bfcl(cache_dir: Path | None = None) -> Path:
    """The cached ``bfcl-eval`` install (a folder holding ``bfcl_eval/``), installed on first use.

    Idempotent and safe to call from several processes: the install runs under
    a file lock into a private temporary folder that is renamed into place only
    once it holds the memory data and the checker, so a half-finished install
    is never taken for a finished one.
    """
    site = default_site(cache_dir)
    if is_bfcl_root(site):
        return site
    from filelock import FileLock, Timeout

    site.parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(site.parent / "install.lock"), timeout=_INSTALL_TIMEOUT_S * 2):
            if is_bfcl_root(site):
                return site
            _install_into(site)
    except Timeout:
        raise BFCLInstallError(
            f"bfcl-memory: another process has held {site.parent / 'install.lock'} for over "
            f"{_INSTALL_TIMEOUT_S * 2}s; wait for it, or delete the lock if no install is running"
        ) from None
    return site


def _install_into(site: Path) -> None:
    with tempfile.TemporaryDirectory(dir=site.parent, prefix=".install-") as tmp:
        target = Path(tmp) / "site"
        cmd = install_command(target)
        started = time.perf_counter()
        log.info("installing %s==%s (no dependencies) into %s", PACKAGE, BFCL_VERSION, site)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise BFCLInstallError(
                f"bfcl-memory: installing {PACKAGE}=={BFCL_VERSION} took over {_INSTALL_TIMEOUT_S}s; "
                f"{_how_to_fix(site)}",
                "timed out",
            ) from None
        except OSError as exc:
            raise BFCLInstallError(f"bfcl-memory: cannot run {cmd[0]} ({exc}); {_how_to_fix(site)}", str(exc)) from None
        output = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-15:])
        if proc.returncode != 0 or not is_bfcl_root(target):
            raise BFCLInstallError(
                f"bfcl-memory: could not install {PACKAGE}=={BFCL_VERSION} into {site} "
                f"({_summary(output, proc.returncode)}); {_how_to_fix(site)}",
                output,
            )
        if site.exists():  # a broken leftover (is_bfcl_root was false under the lock)
            shutil.rmtree(site)
        target.rename(site)
        log.info("installed %s==%s in %.1fs", PACKAGE, BFCL_VERSION, time.perf_counter() - started)


def _summary(output: str, returncode: int) -> str:
    """The installer's first error line and its last line (the root cause), on one line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    if not lines:
        return f"exit status {returncode}"
    first = next((ln for ln in lines if ln.lower().startswith("error")), lines[0])
    parts = [first] if first == lines[-1] else [first, lines[-1]]
    text = ": ".join(
        p.split(":", 1)[1].strip() if p.split(":", 1)[0].lower() in ("error", "cause", "hint") else p for p in parts
    )
    return text[:240]


def resolve_bfcl_dir(path: str | Path) -> Path:
    """The folder holding ``bfcl_eval/`` for a user-given path: a ``--target`` install, the package, or a checkout."""
    p = Path(path).expanduser().resolve()
    candidates = (
        [p, p.parent, p / "berkeley-function-call-leaderboard"]
        if p.name == "bfcl_eval"
        else [p, p / "berkeley-function-call-leaderboard"]
    )
    for candidate in candidates:
        if is_bfcl_root(candidate):
            return candidate
    what = "does not exist" if not p.exists() else "holds no bfcl_eval package with data/BFCL_v4_memory.json"
    raise DataError(
        f"bfcl-memory: {p} {what}; point bfcl_dir / {ENV_DIR} at a 'pip install --no-deps --target DIR "
        f"{PACKAGE}' folder or a gorilla checkout's berkeley-function-call-leaderboard folder, or unset it to "
        "install automatically"
    )


def find_bfcl(
    bfcl_dir: str | Path | None = None, *, install: bool = True, cache_dir: Path | None = None
) -> tuple[Path, str]:
    """The folder holding ``bfcl_eval/`` and how it was found (knob, env var, importable, cache, installed).

    ``install=False`` turns a missing cached install into a one-line error
    instead of a download.
    """
    if bfcl_dir not in (None, ""):
        return resolve_bfcl_dir(bfcl_dir), "bfcl_dir"
    from agentmem.config import load_settings

    configured = load_settings().bfcl_dir
    if configured is not None:
        return resolve_bfcl_dir(configured), ENV_DIR
    spec = (
        importlib.util.find_spec("bfcl_eval") if "bfcl_eval" not in sys.modules else sys.modules["bfcl_eval"].__spec__
    )
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        root = Path(location).parent
        if is_bfcl_root(root):
            return root, "importable"
    site = default_site(cache_dir)
    if is_bfcl_root(site):
        return site, "cache"
    if not install:
        raise DataError(f"bfcl-memory: {PACKAGE} is not installed in {site} and install=false; {_how_to_fix(site)}")
    return ensure_bfcl(cache_dir), "installed"
