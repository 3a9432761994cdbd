"""LocalEmbedder's int8 graph: close to fp32, cached under its own key, built once; batches side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from memoryos_core import ConfigError
from memoryos_core.bench.embed import locomo_turns
from memoryos_core.embeddings import local
from memoryos_core.embeddings.local import LocalEmbedder
from tests.backends.minilm_texts import TEXTS

pytestmark = pytest.mark.usefixtures("private_onnx_cache")  # built graphs stay out of the home folder
PREBUILT_GRAPHS = ("fp32", "int8")  # built once per run into that cache (tests/conftest.py)

SAMPLE = Path(__file__).parents[2] / "notebooks" / "data" / "locomo_sample.json"


def _cosines(texts: list[str]) -> np.ndarray:
    int8 = np.asarray(LocalEmbedder(precision="int8").embed(texts))
    fp32 = np.asarray(LocalEmbedder(precision="fp32").embed(texts))
    cosines: np.ndarray = np.sum(int8 * fp32, axis=1)
    return cosines


def test_int8_is_the_default_fp32_is_chosen_by_name_and_a_bad_precision_is_refused() -> None:
    default = LocalEmbedder()
    assert default.precision == "int8" == local.DEFAULT_PRECISION and not default.is_precision_fixed
    assert default.vector_space == "all-MiniLM-L6-v2@int8" and default.name == "all-MiniLM-L6-v2"
    fp32 = LocalEmbedder(precision="fp32")
    assert fp32.precision == "fp32" and fp32.is_precision_fixed
    assert fp32.vector_space == "all-MiniLM-L6-v2"  # what every store recorded before int8 was the default
    assert local.prepare() == local.prepare(precision="int8")  # `memoryos setup` builds the default's graph
    with pytest.raises(ConfigError, match="precision"):
        LocalEmbedder(precision="fp16")
    with pytest.raises(ConfigError, match="precision"):
        local.prepare(precision="int4")


def test_int8_vectors_stay_close_to_fp32_on_chat_turns() -> None:
    cosines = _cosines(locomo_turns(SAMPLE))

    assert len(cosines) > 50
    assert cosines.mean() >= 0.99
    assert cosines.min() >= 0.98


def test_int8_vectors_stay_close_to_fp32_on_odd_texts() -> None:
    cosines = _cosines(TEXTS)  # empty, one word, accents, code, a text past the 256-token limit

    assert cosines.mean() >= 0.985
    assert cosines.min() >= 0.97


def test_int8_vectors_are_unit_length_and_rank_like_fp32() -> None:
    anchor, paraphrase, unrelated = np.asarray(
        LocalEmbedder(precision="int8").embed(
            [
                "How do I reset my password?",
                "I forgot my password and need to change it.",
                "The tomatoes in my garden are finally ripe.",
            ]
        )
    )

    assert np.allclose(np.linalg.norm([anchor, paraphrase, unrelated], axis=1), 1.0, atol=1e-5)
    assert anchor @ paraphrase > anchor @ unrelated + 0.3


def test_the_int8_graph_has_its_own_cache_key_and_is_built_once(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path))
    spec = local._read_spec(local._resolve_folder(None))
    int8_path, fp32_path = local._cache_path(spec, "int8"), local._cache_path(spec, "fp32")
    assert int8_path != fp32_path and int8_path.parent == fp32_path.parent == tmp_path

    LocalEmbedder(precision="int8").embed(["build the int8 graph"])
    assert sorted(tmp_path.iterdir()) == [int8_path, int8_path.with_name(int8_path.name + ".data")]
    LocalEmbedder(precision="fp32").embed(["and the fp32 one"])
    monkeypatch.setattr(local, "_RUNTIMES", {})  # as in a new process
    LocalEmbedder(precision="int8").embed(["loaded, not built"])

    assert counted_builds == [1, 1]  # the int8 graph is quantised from a fresh fp32 build, once
    assert len(list(tmp_path.glob("*.onnx"))) == 2
    ops = {node.op_type for node in onnx.load(str(int8_path), load_external_data=False).graph.node}
    assert {"MatMulIntegerToFloat", "QuantizeLinear"} <= ops
    int8_weights = int8_path.with_name(int8_path.name + ".data").stat().st_size
    assert int8_weights < 0.7 * fp32_path.with_name(fp32_path.name + ".data").stat().st_size


def test_prepare_builds_the_precision_asked_for(counted_builds: list[int], tmp_path: Path) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path))
        built = local.prepare(precision="int8")
        spec = local._read_spec(local._resolve_folder(None))

        assert built == local._cache_path(spec, "int8")
        assert local.prepare(precision="fp32") == local._cache_path(spec, "fp32")
        assert local.prepare() == built  # the default precision's graph: built already
    assert counted_builds == [1, 1]


def test_batches_run_side_by_side_give_the_vectors_of_one_thread() -> None:
    texts = [f"turn {index}: " + "words " * (index % 17) for index in range(40)]

    pooled = LocalEmbedder(batch_size=3, threads=2, precision="fp32").embed(texts)
    serial = LocalEmbedder(batch_size=3, threads=1, precision="fp32").embed(texts)
    int8_pooled = LocalEmbedder(batch_size=3, threads=2, precision="int8").embed(texts)
    int8_serial = LocalEmbedder(batch_size=3, threads=1, precision="int8").embed(texts)

    assert np.allclose(pooled, serial, atol=1e-5)
    assert np.allclose(int8_pooled, int8_serial, atol=1e-5)


def test_an_int8_vector_does_not_depend_on_the_texts_batched_with_it() -> None:
    quiet = "I fed the cat this morning."
    # louder activations and longer rows than `quiet`: with one quantisation scale per batch they would
    # coarsen its codes, and its padding keys would be attended
    loud = ["!!!! ???? 1234567890 " * 12, "ZZZZZZZZZZ QQQQQQQQQQ XXXXXXXXXX " * 6, "ok"]
    embedder = LocalEmbedder(batch_size=8, threads=1, precision="int8")

    alone = embedder.embed([quiet])[0]
    batched = embedder.embed([*loud, quiet])[-1]

    assert np.allclose(alone, batched, atol=1e-5)


def test_batches_keep_to_the_text_count_and_the_padded_token_budget() -> None:
    lengths = np.array([3, 5, 5, 8, 40, 9, 200])
    order = np.argsort(lengths, kind="stable")  # 3 5 5 8 9 40 200

    by_count = local._batches(order, lengths, 3, None)
    by_tokens = local._batches(order, lengths, 32, 20)

    assert [list(lengths[batch]) for batch in by_count] == [[3, 5, 5], [8, 9, 40], [200]]
    # each run padded to its longest (last) text holds <= 20 tokens; a longer text runs alone
    assert [list(lengths[batch]) for batch in by_tokens] == [[3, 5, 5], [8, 9], [40], [200]]
    assert sorted(np.concatenate(by_tokens)) == list(range(len(lengths)))


def test_int8_batches_hold_a_bounded_number_of_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes: list[int] = []
    runtime = local._load_runtime(local._read_spec(local._resolve_folder(None)), 1, "int8")
    original = runtime.session

    class Counting:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            sizes.append(feeds["input_ids"].size)
            result: list[np.ndarray] = original.run(names, feeds)
            return result

    monkeypatch.setattr(runtime, "session", Counting())
    texts = [f"turn {index}: " + "words " * (index % 23) for index in range(60)]

    LocalEmbedder(batch_size=32, threads=1, precision="int8").embed(texts)

    assert len(sizes) > 2 and sum(sizes) >= 60
    assert max(sizes) <= local.INT8_BATCH_TOKENS
