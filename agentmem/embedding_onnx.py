"""all-MiniLM-L6-v2's forward pass as an ONNX graph, run by onnxruntime.

The numpy forward pass in :mod:`agentmem.embeddings` spends most of a short
query's time in Python and in numpy's per-call overhead (some 150 small
operations per sentence); onnxruntime runs the same arithmetic as one fused
graph. The graph is built in memory with ``onnx``'s helper API from the same
``model.safetensors`` the numpy path reads (verified by its sha256 before
either sees it), so there is no second file to download, trust or keep in
sync: the exported bytes never touch the disk.

The graph takes padded token ids and the attention mask of a batch and
returns the mean-pooled, L2-normalised sentence vectors, exactly what
sentence-transformers computes (tests compare both backends with Hugging
Face's reference values).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

_OPSET = 18  # LayerNormalization from 17, reductions taking their axes as an input from 18


def onnx_available() -> bool:
    """True when both ``onnx`` (to build the graph) and ``onnxruntime`` (to run it) import."""
    import importlib.util

    return importlib.util.find_spec("onnx") is not None and importlib.util.find_spec("onnxruntime") is not None


def build_minilm_graph(get: Callable[[str], np.ndarray], *, layers: int, heads: int, dim: int, eps: float) -> bytes:
    """The serialised ONNX model of a BERT sentence encoder whose tensors ``get`` returns by name.

    ``get`` takes Hugging Face's BertModel tensor names without the ``bert.``
    prefix (``encoder.layer.0.attention.self.query.weight``...) and returns
    float32 arrays in nn.Linear's (out, in) layout.
    """
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    head_dim = dim // heads
    nodes: list[onnx.NodeProto] = []
    initializers: list[onnx.TensorProto] = []
    counter = [0]

    def const(name: str, array: np.ndarray | np.generic) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(op: str, inputs: list[str], **attrs: object) -> str:
        counter[0] += 1
        out = f"{op.lower()}_{counter[0]}"
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x: str, prefix: str, *, scale: float = 1.0) -> str:
        weight = get(prefix + ".weight").T * np.float32(scale)  # (in, out): y = x @ W + b
        bias = get(prefix + ".bias") * np.float32(scale)
        product = node("MatMul", [x, const(prefix + ".w", weight.astype(np.float32))])
        return node("Add", [product, const(prefix + ".b", bias.astype(np.float32))])

    def layer_norm(x: str, prefix: str) -> str:
        return node(
            "LayerNormalization",
            [x, const(prefix + ".g", get(prefix + ".weight")), const(prefix + ".beta", get(prefix + ".bias"))],
            axis=-1,
            epsilon=eps,
        )

    i64 = lambda *values: np.asarray(values, dtype=np.int64)  # noqa: E731 - shape constants
    split_heads = const("shape.split_heads", i64(0, 0, heads, head_dim))  # (n, L, h, d); 0 keeps the input's size
    merge_heads = const("shape.merge_heads", i64(0, 0, dim))

    # Embeddings: word + position (0..L-1) + token type 0, then LayerNorm.
    words = node("Gather", [const("emb.word", get("embeddings.word_embeddings.weight")), "input_ids"])
    length = node("Gather", [node("Shape", ["input_ids"]), const("idx.one", i64(1))])  # (1,)
    positions = node(
        "Slice",
        [
            const("emb.pos", get("embeddings.position_embeddings.weight")),
            const("idx.zero", i64(0)),
            length,
            const("axis.zero", i64(0)),
        ],
    )
    x = node(
        "Add", [node("Add", [words, positions]), const("emb.type0", get("embeddings.token_type_embeddings.weight")[0])]
    )
    x = layer_norm(x, "embeddings.LayerNorm")

    # Padded keys get -1e30 before the softmax (exp of it is exactly 0), as in HF's extended mask.
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)  # (n, L)
    key_bias = node("Mul", [node("Sub", [mask, const("one", np.float32(1.0))]), const("big", np.float32(1e30))])
    key_bias = node("Unsqueeze", [key_bias, const("axes.heads_queries", i64(1, 2))])  # (n, 1, 1, L)

    scale = 1.0 / float(np.sqrt(head_dim))
    for i in range(layers):
        p = f"encoder.layer.{i}."
        q = node(
            "Transpose",
            [node("Reshape", [linear(x, p + "attention.self.query", scale=scale), split_heads])],
            perm=[0, 2, 1, 3],
        )  # (n, h, L, d), already scaled
        k_t = node(
            "Transpose", [node("Reshape", [linear(x, p + "attention.self.key"), split_heads])], perm=[0, 2, 3, 1]
        )  # (n, h, d, L)
        v = node(
            "Transpose", [node("Reshape", [linear(x, p + "attention.self.value"), split_heads])], perm=[0, 2, 1, 3]
        )
        scores = node("Add", [node("MatMul", [q, k_t]), key_bias])
        context = node("MatMul", [node("Softmax", [scores], axis=-1), v])
        context = node("Reshape", [node("Transpose", [context], perm=[0, 2, 1, 3]), merge_heads])
        x = layer_norm(
            node("Add", [linear(context, p + "attention.output.dense"), x]), p + "attention.output.LayerNorm"
        )
        hidden = linear(x, p + "intermediate.dense")
        # exact (erf) GELU: x * 0.5 * (1 + erf(x / sqrt 2)); onnxruntime fuses the pattern
        erf = node("Erf", [node("Mul", [hidden, const(f"gelu{i}.rsqrt2", np.float32(0.7071067811865476))])])
        gelu = node(
            "Mul",
            [
                node("Mul", [hidden, node("Add", [erf, const(f"gelu{i}.one", np.float32(1.0))])]),
                const(f"gelu{i}.half", np.float32(0.5)),
            ],
        )
        x = layer_norm(node("Add", [linear(gelu, p + "output.dense"), x]), p + "output.LayerNorm")

    # Mean pooling over real tokens, then L2 normalisation.
    weights = node("Unsqueeze", [mask, const("axes.last", i64(2))])  # (n, L, 1)
    summed = node("ReduceSum", [node("Mul", [x, weights]), const("axes.tokens", i64(1))], keepdims=0)
    count = node(
        "Max",
        [
            node("ReduceSum", [weights, const("axes.tokens2", i64(1))], keepdims=0),
            const("tiny.count", np.float32(1e-9)),
        ],
    )
    pooled = node("Div", [summed, count])
    norm = node(
        "Max",
        [node("ReduceL2", [pooled, const("axes.dim", i64(1))], keepdims=1), const("tiny.norm", np.float32(1e-12))],
    )
    nodes.append(helper.make_node("Div", [pooled, norm], ["sentence_embedding"]))

    graph = helper.make_graph(
        nodes,
        "all-MiniLM-L6-v2",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "length"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "length"]),
        ],
        [helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", dim])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)], producer_name="agentmem")
    model.ir_version = 8  # ONNX 1.13, the first to know opset 18
    return model.SerializeToString()


class OnnxEncoder:
    """An onnxruntime session over the built graph; ``encode`` maps a padded batch to unit vectors."""

    def __init__(self, model: bytes, *, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One thread unless told otherwise: a query is a handful of tokens, where
        # waking a pool costs more than it saves, and the evolution loop runs
        # several evaluations side by side on few cores.
        options.intra_op_num_threads = int(threads) if threads else 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        # spinning waits burn a core between calls for nothing on a shared machine
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

    def encode(self, token_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        import numpy as np

        (out,) = self._session.run(
            ["sentence_embedding"],
            {"input_ids": token_ids.astype(np.int64, copy=False), "attention_mask": mask.astype(np.int64, copy=False)},
        )
        return out
