"""The int8 graph: the fp32 BERT graph of :mod:`._bert_graph` with every product against a weight in int8,
each token's activations quantised on their own (per row), so a text's vector does not depend on the texts
batched with it.

onnxruntime's ``quantize_dynamic`` quantises a whole batch's activations with one scale: a text's vector
then changed with its batch mates, and int8 had to run each text alone. Here each row (token) gets the
scale of its own largest magnitude, symmetric, as uint8 around 128 (``QuantizeLinear`` per axis on the
tokens' rows); the weights are int8 per output column. The int32 product is turned to float by
``MatMulIntegerToFloat`` (the column scales) and multiplied by the row scales. An activation is quantised
once for all the products that read it: attention's Q, K and V are three products of one set of codes (no
packed product to split). Per-row scales are also finer than one per batch: cosine to fp32 ~0.997 on LoCoMo
turns, against ~0.993 per tensor. Attention becomes those three products plus onnxruntime's
``MultiHeadAttention`` (fp32, padding keys masked by the token counts); GELU is onnxruntime's ``FastGelu``
(tanh form, within 1e-3 of erf's: far below int8's error, and cheaper). Word embeddings, LayerNorm and
pooling stay fp32. Pure numpy and onnx: no onnxruntime.quantization.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MS = "com.microsoft"
SCHEME = "row-int8|u8-activations-per-row|s8-weights-per-column|MultiHeadAttention|FastGelu|3"
"""What :func:`quantize_rows` does, part of the int8 graph's cache key: change it with the rewrite."""


def quantize_rows(model_bytes: bytes) -> bytes:
    """Return the int8 graph of a serialised fp32 graph from ``_bert_graph.build_onnx``. Bytes that are not
    an ONNX model are returned whole, so onnxruntime reports them when loading."""
    from google.protobuf.message import DecodeError
    from onnx import ModelProto, helper, numpy_helper

    model = ModelProto()
    try:
        model.ParseFromString(model_bytes)
    except DecodeError:
        return model_bytes
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    nodes: list[Any] = []

    def const(name: str, value: Any, dtype: Any = np.float32) -> str:
        if name not in weights:
            tensor = numpy_helper.from_array(np.asarray(value, dtype=dtype), name)
            graph.initializer.append(tensor)
            weights[name] = tensor
        return name

    def add(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        domain = _MS if op in ("MatMulIntegerToFloat", "MultiHeadAttention", "FastGelu") else ""
        nodes.append(helper.make_node(op, inputs, [output], domain=domain, **attrs))
        return output

    const("rows.1/127", 1 / 127.0)
    const("rows.one", 1.0)
    const("rows.tiny", 1e-30)  # an all-zero row: scale 1e-30/127, values 0, product 0
    const("rows.zero_point", 128, np.uint8)
    const("rows.weight_zero_point", 0, np.int8)

    quantised_inputs: dict[str, tuple[str, str]] = {}  # activation -> (its codes, its row scales)
    # The hidden states' [batch, tokens, -1] and the rows' zero points, made at the first product (a graph
    # with no product to rewrite is left as it was: no node of ours reads inputs it may not have)
    rows_shape: list[str] = []

    def quantise(x: str, width: int) -> tuple[str, str]:
        """x's rows (tokens) as uint8 codes around 128, each scaled by its own largest magnitude, and the
        scales as a column; once per activation, shared by the products that read it (Q, K and V)."""
        if x not in quantised_inputs:
            p = x + ".rows."
            flat = add("Reshape", [x, const(f"rows.flat{width}", [-1, width], np.int64)], p + "flat")
            high = add("ReduceMax", [flat], p + "high", axes=[-1], keepdims=0)
            minus_low = add(
                "Neg", [add("ReduceMin", [flat], p + "low", axes=[-1], keepdims=0)], p + "minus_low"
            )
            scale = add(
                "Mul", [add("Max", [high, minus_low, "rows.tiny"], p + "peak"), "rows.1/127"], p + "scale"
            )
            if not rows_shape:  # every activation has the same rows: their shapes are computed once
                starts, stops = const("rows.0", [0], np.int64), const("rows.2", [2], np.int64)
                batch_tokens = add(
                    "Slice", [add("Shape", [x], "rows.shape"), starts, stops], "rows.batch_tokens"
                )
                minus_one = const("rows.minus_one", [-1], np.int64)
                rows_shape.append(add("Concat", [batch_tokens, minus_one], "rows.unflat", axis=0))
                rows_shape.append(
                    add("Expand", ["rows.zero_point", add("Shape", [scale], "rows.n")], "rows.zeros")
                )
            codes = add("QuantizeLinear", [flat, scale, rows_shape[1]], p + "codes", axis=0)
            column = add("Unsqueeze", [scale, const("rows.axis1", [1], np.int64)], p + "column")
            quantised_inputs[x] = (codes, column)
        return quantised_inputs[x]

    def int8_product(x: str, weight: Any, output: str) -> str:
        """x @ weight with x quantised per row and the weight per column; ``output`` names the result."""
        column_scale = np.abs(weight).max(axis=0) / 127.0
        column_scale[column_scale == 0] = 1.0
        quantised = np.clip(np.rint(weight / column_scale), -127, 127)
        p = output + ".rows."
        w, ws = const(p + "weight", quantised, np.int8), const(p + "weight_scale", column_scale)
        codes, row_scale = quantise(x, weight.shape[0])
        inputs = [codes, w, "rows.one", ws, "rows.zero_point", "rows.weight_zero_point"]
        product = add("MatMulIntegerToFloat", inputs, p + "product")
        return add("Reshape", [add("Mul", [product, row_scale], p + "scaled"), rows_shape[0]], output)

    for node in graph.node:
        if node.op_type == "MatMul" and node.input[1] in weights:
            weight = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)
            int8_product(node.input[0], weight, node.output[0])
        elif node.op_type == "Attention":
            x, packed, bias, mask_index = node.input[:4]
            out = node.output[0]
            heads = next(a.i for a in node.attribute if a.name == "num_heads")
            weight = numpy_helper.to_array(weights[packed]).astype(np.float32)
            hidden = weight.shape[1] // 3
            parts = [
                int8_product(x, weight[:, i * hidden : (i + 1) * hidden], f"{out}.{part}")
                for i, part in enumerate("qkv")
            ]
            # mask_index (each text's token count) as key_padding_mask: keys past it are padding
            add("MultiHeadAttention", [*parts, bias, mask_index], out, num_heads=heads)
        elif node.op_type == "BiasGelu":
            add("FastGelu", list(node.input), node.output[0])
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [tensor for tensor in graph.initializer if tensor.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    declared = {info.name for info in graph.value_info}
    for name in (n.output[0] for n in nodes if n.domain == _MS and n.output[0] not in declared):
        graph.value_info.append(helper.make_tensor_value_info(name, 1, None))  # 1: FLOAT
    serialized: bytes = model.SerializeToString()
    return serialized
