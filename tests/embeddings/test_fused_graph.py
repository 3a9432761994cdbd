"""The built graph uses onnxruntime's fused operators, int8 quantises them, and our sessions keep the
residual sums unfused (onnxruntime's SkipLayerNormalization kernel is the slow one on CPU)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import onnx
import onnxruntime
import pytest

from memoryos_core.embeddings import local

pytestmark = pytest.mark.usefixtures("private_onnx_cache")  # built graphs stay out of the home folder
PREBUILT_GRAPHS = ("fp32", "int8")  # built once per run into that cache (tests/conftest.py)

MS = "com.microsoft"


def _graph(precision: str) -> Path:
    return local.prepare(precision=precision)  # the prebuilt file: nothing is built here


def _ops(model: onnx.ModelProto) -> Counter[tuple[str, str]]:
    return Counter((node.domain or "", node.op_type) for node in model.graph.node)


def test_each_layer_is_onnxruntimes_fused_attention_and_gelu() -> None:
    spec = local._read_spec(local._resolve_folder(None))
    ops = _ops(onnx.load(str(_graph("fp32")), load_external_data=False))

    assert ops[(MS, "EmbedLayerNormalization")] == 1
    assert ops[(MS, "Attention")] == ops[(MS, "BiasGelu")] == spec.num_layers
    assert ops[("", "LayerNormalization")] == 2 * spec.num_layers
    assert ops[("", "MatMul")] == 3 * spec.num_layers + 1  # output, two feed-forward; the pooling
    assert not {op for _, op in ops} & {"Softmax", "Transpose", "Erf", "SkipLayerNormalization"}


def test_the_int8_graph_quantises_attention_and_every_weight_product() -> None:
    spec = local._read_spec(local._resolve_folder(None))
    ops = _ops(onnx.load(str(_graph("int8")), load_external_data=False))

    # Q, K, V, attention output, two feed-forward: each an int8 product of per-row quantised tokens; the
    # tokens are quantised once per activation, so Q, K and V share theirs and nothing splits a packed product
    assert ops[(MS, "MatMulIntegerToFloat")] == 6 * spec.num_layers
    assert ops[("", "QuantizeLinear")] == 4 * spec.num_layers
    assert ops[("", "Split")] == 0
    assert ops[(MS, "MultiHeadAttention")] == ops[(MS, "FastGelu")] == spec.num_layers
    assert ops[(MS, "Attention")] == ops[(MS, "BiasGelu")] == 0
    assert ops[("", "MatMul")] == 1  # the pooling's masked sum, which has no weight
    # nothing quantises a whole batch with one scale (a text's vector would depend on its batch mates)
    assert not {op for _, op in ops} & {"DynamicQuantizeLinear", "MatMulInteger", "QAttention"}


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_the_graph_also_outputs_the_encoders_last_hidden_state(precision: str) -> None:
    """For LocalEmbedder.embed_wordpieces: the wordpieces' vectors from the pass that pools them (the int8
    rewrite keeps the output)."""
    model = onnx.load(str(_graph(precision)), load_external_data=False)

    outputs = [
        (output.name, [dim.dim_param or dim.dim_value for dim in output.type.tensor_type.shape.dim])
        for output in model.graph.output
    ]
    assert outputs == [
        ("sentence_embedding", ["batch", 384]),
        ("last_hidden_state", ["batch", "sequence", 384]),
    ]


def _optimised_ops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: Path, *, ours: bool
) -> Counter[tuple[str, str]]:
    """The operators onnxruntime runs for ``source``, opened by local._session (``ours``) or with its
    defaults otherwise."""
    saved = tmp_path / f"optimised-{ours}.onnx"

    class Saving(onnxruntime.SessionOptions):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.optimized_model_filepath = str(saved)

    monkeypatch.setattr(onnxruntime, "SessionOptions", Saving)
    if ours:
        local._session(onnxruntime, str(source), 1)
    else:
        onnxruntime.InferenceSession(str(source), Saving(), providers=["CPUExecutionProvider"])
    return _ops(onnx.load(str(saved), load_external_data=False))


def test_our_sessions_keep_the_residual_sums_out_of_skip_layer_normalization(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = local._read_spec(local._resolve_folder(None))
    source = _graph("fp32")  # the int8 graph's residual sums follow a reshape: the rewrite misses them

    ours = _optimised_ops(monkeypatch, tmp_path, source, ours=True)
    default = _optimised_ops(monkeypatch, tmp_path, source, ours=False)

    assert ours[(MS, "SkipLayerNormalization")] == 0
    assert ours[("", "LayerNormalization")] == 2 * spec.num_layers
    assert default[(MS, "SkipLayerNormalization")] == 2 * spec.num_layers  # what the setting prevents
