"""The ONNX graph of a BERT sentence encoder (encoder, mean pooling, L2 norm), built from a
sentence-transformers folder's ``config.json`` and ``model.safetensors`` with onnx's helpers, no torch.

Used by :mod:`memoryos_core.embeddings.local`, which checks the weights and caches the result.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError

_MS_DOMAIN = "com.microsoft"
_CONTRIB_OPS = frozenset({"EmbedLayerNormalization", "Attention", "BiasGelu"})
"""onnxruntime's own CPU operators the graph uses (domain com.microsoft), fused versions of BERT's parts."""


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


def build_onnx(spec: ModelSpec, *, pooled: bool = True) -> bytes:
    """Build the serialised ONNX model: BERT encoder, mean pooling over the mask, L2 normalisation (outputs
    ``sentence_embedding`` and the encoder's ``last_hidden_state``, the wordpieces' vectors it pooled, so
    one run can give both); with ``pooled=False`` the encoder alone (output ``last_hidden_state``).

    The encoder uses onnxruntime's fused CPU operators (domain ``com.microsoft``): EmbedLayerNormalization,
    Attention (Q, K and V as one packed weight), BiasGelu (GELU with erf, as BERT's), so a layer is about
    ten nodes instead of forty; ``_int8_graph`` rewrites Attention's packed product (as three) and the
    MatMuls into int8 ones. The residual sums stay Add + LayerNormalization: onnxruntime's
    SkipLayerNormalization kernel takes about four times as long on this shape (sessions are opened with
    its fusion off, see ``local``).
    """
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    tensors = load_file(str(spec.folder / "model.safetensors"))
    weights = {name.removeprefix("bert."): tensor for name, tensor in tensors.items()}
    nodes: list[Any] = []
    initializers: dict[str, Any] = {}
    declared: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        if name not in initializers:
            initializers[name] = numpy_helper.from_array(np.ascontiguousarray(value, dtype=dtype), name)
        return name

    def param(name: str) -> str:
        return const(name, weights[name])

    def node(op: str, inputs: list[str], output: str = "", **attrs: Any) -> str:
        outputs = [output or f"{op}_{len(nodes)}"]
        if op == "EmbedLayerNormalization":
            outputs.append("mask_index")
        domain = _MS_DOMAIN if op in _CONTRIB_OPS else ""
        nodes.append(helper.make_node(op, inputs, outputs, domain=domain, **attrs))
        if domain:  # onnx's shape inference does not know these operators: declare their outputs' types
            for name in outputs:
                kind = TensorProto.INT32 if name == "mask_index" else TensorProto.FLOAT
                declared.append(helper.make_tensor_value_info(name, kind, None))
        return outputs[0]

    def dense(x: str, prefix: str) -> str:
        return node("MatMul", [x, const(f"{prefix}.weight", weights[f"{prefix}.weight"].T)])

    def add_norm(x: str, residual: str, prefix: str) -> str:
        """LayerNorm(x + dense bias + residual)."""
        summed = node("Add", [node("Add", [x, param(prefix + "dense.bias")]), residual])
        norm = [param(prefix + "LayerNorm.weight"), param(prefix + "LayerNorm.bias")]
        return node("LayerNormalization", [summed, *norm], axis=-1, epsilon=spec.layer_norm_eps)

    emb = "embeddings."
    # token_type_ids are always 0 for single texts: fold that row into the position table.
    positions = weights[emb + "position_embeddings.weight"] + weights[emb + "token_type_embeddings.weight"][0]
    # Also outputs mask_index: each row's token count, which Attention reads as "keys past it are padding".
    x = node(
        "EmbedLayerNormalization",
        [
            node("Cast", ["input_ids"], to=TensorProto.INT32),
            "",  # segment_ids: folded into the positions
            param(emb + "word_embeddings.weight"),
            const("positions", positions),
            "",
            param(emb + "LayerNorm.weight"),
            param(emb + "LayerNorm.bias"),
            node("Cast", ["attention_mask"], to=TensorProto.INT32),
        ],
        epsilon=spec.layer_norm_eps,
    )
    for i in range(spec.num_layers):
        p = f"encoder.layer.{i}."
        qkv = [f"{p}attention.self.{part}" for part in ("query", "key", "value")]
        packed = const(
            p + "qkv.weight", np.concatenate([weights[f"{name}.weight"].T for name in qkv], axis=1)
        )
        bias = const(p + "qkv.bias", np.concatenate([weights[f"{name}.bias"] for name in qkv]))
        context = node("Attention", [x, packed, bias, "mask_index"], num_heads=spec.num_heads)
        x = add_norm(dense(context, p + "attention.output.dense"), x, p + "attention.output.")
        gelu = node("BiasGelu", [dense(x, p + "intermediate.dense"), param(p + "intermediate.dense.bias")])
        x = add_norm(dense(gelu, p + "output.dense"), x, p + "output.")
    hidden = spec.hidden_size
    node("Identity", [x], "last_hidden_state")
    outputs: list[tuple[str, list[str | int]]] = [("last_hidden_state", ["batch", "sequence", hidden])]
    if pooled:
        # The mean's division by the token count cancels in the L2 normalisation: the masked sum suffices.
        mask = node(
            "Unsqueeze",
            [node("Cast", ["attention_mask"], to=TensorProto.FLOAT), const("axis1", [1], np.int64)],
        )
        summed = node("Reshape", [node("MatMul", [mask, x]), const("rows", [0, hidden], np.int64)])
        norm = node("Max", [node("ReduceL2", [summed], axes=[1], keepdims=1), const("min_norm", 1e-12)])
        node("Div", [summed, norm], "sentence_embedding")
        outputs.insert(0, ("sentence_embedding", ["batch", hidden]))
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
        for name in ("input_ids", "attention_mask")
    ]
    graph = helper.make_graph(
        nodes,
        "sentence_encoder",
        inputs,
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, shape) for name, shape in outputs],
        list(initializers.values()),
        value_info=declared,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid(_MS_DOMAIN, 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="memoryos")
    model.ir_version = 8  # the IR of opset 17, so older onnxruntime releases load it too
    serialized: bytes = model.SerializeToString()
    return serialized
