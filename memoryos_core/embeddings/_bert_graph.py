"""The ONNX graph of a BERT sentence encoder (encoder, mean pooling, L2 norm), built from a
sentence-transformers folder's ``config.json`` and ``model.safetensors`` with onnx's helpers, no torch.

Used by :mod:`memoryos_core.embeddings.local`, which checks the weights and caches the result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    """What the graph builder needs from a model folder's config files."""

    folder: Path
    hidden_size: int
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    max_seq_length: int


def read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def read_spec(folder: Path) -> ModelSpec:
    """Read the encoder's shape from config.json and the sentence-transformers files beside it."""
    config = read_json(folder / "config.json")
    if config.get("model_type", "bert") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"{folder}: only BERT models with GELU are supported by LocalEmbedder")
    pooling_path = folder / "1_Pooling" / "config.json"
    if pooling_path.is_file():
        pooling = read_json(pooling_path)
        modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value}
        if modes != {"pooling_mode_mean_tokens"}:
            raise ConfigError(f"{folder}: LocalEmbedder supports mean pooling only, the model uses {modes}")
    max_positions = int(config.get("max_position_embeddings", 512))
    st_config_path = folder / "sentence_bert_config.json"
    st_config = read_json(st_config_path) if st_config_path.is_file() else {}
    return ModelSpec(
        folder=folder,
        hidden_size=int(config["hidden_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        max_seq_length=min(int(st_config.get("max_seq_length") or max_positions), max_positions),
    )


def build_onnx(spec: ModelSpec) -> bytes:
    """Build the serialised ONNX model: BERT encoder, mean pooling over the mask, L2 normalisation."""
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    tensors = load_file(str(spec.folder / "model.safetensors"))
    weights = {name.removeprefix("bert."): tensor for name, tensor in tensors.items()}
    nodes: list[Any] = []
    initializers: dict[str, Any] = {}

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        if name not in initializers:
            initializers[name] = numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name)
        return name

    def ints(name: str, value: list[int]) -> str:
        return const(name, value, np.int64)

    def node(op: str, inputs: list[str], output: str | None = None, **attrs: Any) -> str:
        output = output or f"{op}_{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def dense(x: str, prefix: str, scale: float = 1.0) -> str:
        weight = const(f"{prefix}.weight", weights[f"{prefix}.weight"].T * scale)
        bias = const(f"{prefix}.bias", weights[f"{prefix}.bias"] * scale)
        return node("Add", [node("MatMul", [x, weight]), bias])

    def add_norm(x: str, residual: str, prefix: str) -> str:
        scale, bias = (const(f"{prefix}.{part}", weights[f"{prefix}.{part}"]) for part in ("weight", "bias"))
        summed = node("Add", [x, residual])
        return node("LayerNormalization", [summed, scale, bias], axis=-1, epsilon=spec.layer_norm_eps)

    def split_heads(x: str, perm: list[int]) -> str:
        shape = ints("heads_shape", [0, 0, spec.num_heads, head_dim])
        return node("Transpose", [node("Reshape", [x, shape])], perm=perm)

    hidden, head_dim = spec.hidden_size, spec.hidden_size // spec.num_heads
    embeddings = "embeddings."
    # token_type_ids are always 0 for single texts: fold that row into the position table.
    token_type = weights[embeddings + "token_type_embeddings.weight"][0]
    positions = const("positions", weights[embeddings + "position_embeddings.weight"] + token_type)
    seq_len = node("Shape", ["input_ids"], start=1, end=2)
    position_rows = node("Slice", [positions, ints("zero", [0]), seq_len, ints("axis0", [0])])
    words = node("Gather", [const("words", weights[embeddings + "word_embeddings.weight"]), "input_ids"])
    x = add_norm(words, position_rows, embeddings + "LayerNorm")
    mask = node("Cast", ["attention_mask"], to=TensorProto.FLOAT)
    ignored = node("Mul", [node("Sub", [const("one", 1.0), mask]), const("lowest", np.finfo(np.float32).min)])
    mask_bias = node("Unsqueeze", [ignored, ints("axes12", [1, 2])])
    for i in range(spec.num_layers):
        p = f"encoder.layer.{i}."
        # 1/sqrt(head_dim) is folded into the query projection instead of scaling every score matrix.
        query = split_heads(dense(x, p + "attention.self.query", 1 / math.sqrt(head_dim)), [0, 2, 1, 3])
        key = split_heads(dense(x, p + "attention.self.key"), [0, 2, 3, 1])
        value = split_heads(dense(x, p + "attention.self.value"), [0, 2, 1, 3])
        probs = node("Softmax", [node("Add", [node("MatMul", [query, key]), mask_bias])], axis=-1)
        context = node("Transpose", [node("MatMul", [probs, value])], perm=[0, 2, 1, 3])
        context = node("Reshape", [context, ints("hidden_shape", [0, 0, hidden])])
        x = add_norm(dense(context, p + "attention.output.dense"), x, p + "attention.output.LayerNorm")
        inner = dense(x, p + "intermediate.dense")
        erf = node("Erf", [node("Div", [inner, const("sqrt2", math.sqrt(2.0))])])
        gelu = node("Mul", [node("Mul", [inner, node("Add", [erf, const("one", 1.0)])]), const("half", 0.5)])
        x = add_norm(dense(gelu, p + "output.dense"), x, p + "output.LayerNorm")
    token_mask = node("Unsqueeze", [mask, ints("axis2", [2])])
    summed = node("ReduceSum", [node("Mul", [x, token_mask]), ints("axis1", [1])], keepdims=0)
    token_counts = node("ReduceSum", [token_mask, ints("axis1", [1])], keepdims=0)
    counts = node("Max", [token_counts, const("tiny", 1e-9)])
    mean = node("Div", [summed, counts])
    norm = node("Max", [node("ReduceL2", [mean], axes=[1], keepdims=1), const("min_norm", 1e-12)])
    node("Div", [mean, norm], output="sentence_embedding")
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask")
    ]
    output = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", hidden])
    graph = helper.make_graph(nodes, "sentence_encoder", inputs, [output], list(initializers.values()))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="memoryos")
    model.ir_version = 8  # the IR of opset 17, so older onnxruntime releases load it too
    serialized: bytes = model.SerializeToString()
    return serialized
