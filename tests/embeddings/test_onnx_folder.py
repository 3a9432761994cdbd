"""A sentence-transformers folder on onnxruntime (OnnxFolderEmbedder) and the one-line embedder names.

The folders are laid out here from the pinned all-MiniLM-L6-v2 package, the one real model on this
machine: its encoder exported to ONNX by LocalEmbedder's graph builder, saved the way Hugging Face Optimum
saves an export (``onnx/model.onnx`` + ``model.onnx_data``, with a ``token_type_ids`` input), beside the
package's tokenizer and sentence-transformers files. Vectors are checked against sentence-transformers' own
(tests/backends/data/minilm_reference.npz) and against pooling computed here from the graph's token vectors.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from memoryos_core import ConfigError, HashingEmbedder, MemoryOS
from memoryos_core.embeddings import _st_folder, local, onnx_folder
from memoryos_core.embeddings.base import Embedder, embed_queries
from memoryos_core.embeddings.local import LocalEmbedder
from memoryos_core.embeddings.onnx_folder import OnnxFolderEmbedder
from memoryos_core.embeddings.openai import OpenAIEmbedder
from memoryos_core.engine.registry import check_embedding_name, make_embedder
from memoryos_core.testing.fake_openai import FakeOpenAIServer, hash_embedding
from tests.backends.minilm_texts import TEXTS

pytestmark = pytest.mark.usefixtures("private_onnx_cache")  # built graphs stay out of the home folder
PREBUILT_GRAPHS = ("hidden",)  # the token-vector graph `export` loads, built once per run into that cache

REFERENCE = Path(__file__).parents[1] / "backends" / "data" / "minilm_reference.npz"
GEMMA_QUERY, GEMMA_DOCUMENT = "task: search result | query: ", "title: none | text: "


def _package() -> Path:
    folder = local._package_folder()
    assert folder is not None, "the model package is a dependency of memoryos-py"
    return folder


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> onnx.ModelProto:
    """MiniLM's encoder as an Optimum-style export: outputs last_hidden_state, takes token_type_ids too."""
    model = onnx.load(str(onnx_folder.bert_hidden_graph_path(_package())))  # external weights loaded
    model.graph.input.append(
        helper.make_tensor_value_info("token_type_ids", TensorProto.INT64, ["batch", "sequence"])
    )
    return model


def _lay_out(
    target: Path, export: onnx.ModelProto, *, onnx_name: str = "onnx/model.onnx", weights: bool = False
) -> Path:
    """An ST folder: the package's files (without model.safetensors unless ``weights``) and the export."""
    skip = ("model.safetensors", ".cache") if not weights else (".cache",)
    shutil.copytree(_package(), target, ignore=shutil.ignore_patterns(*skip))
    if onnx_name:
        path = target / onnx_name
        path.parent.mkdir(exist_ok=True)
        model = onnx.ModelProto()
        model.CopyFrom(export)  # saving moves the weights out of the proto it is given
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + "_data")
    return target


def _set_pooling(folder: Path, mode: str) -> None:
    keys = {"cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens"}
    keys |= {"max": "pooling_mode_max_tokens", "lasttoken": "pooling_mode_lasttoken"}
    config = {"word_embedding_dimension": 384} | {key: name == mode for name, key in keys.items()}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(config))


def _set_prompts(folder: Path, prompts: dict[str, str], default: str | None = None) -> None:
    config = {"prompts": prompts, "default_prompt_name": default}
    (folder / "config_sentence_transformers.json").write_text(json.dumps(config))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory, export: onnx.ModelProto) -> Path:
    return _lay_out(tmp_path_factory.mktemp("st") / "all-MiniLM-L6-v2-onnx", export)


def _token_vectors(folder: Path, texts: Sequence[str]) -> list[np.ndarray]:
    """Each text's token vectors, one text per run of the exported graph (no padding at all)."""
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    session = onnxruntime.InferenceSession(str(_st_folder.find_onnx(folder)))
    rows = []
    for text in texts:
        ids = np.asarray([tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        rows.append(session.run(["last_hidden_state"], feed)[0][0])
    return rows


def _unit(matrix: np.ndarray) -> np.ndarray:
    unit: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return unit


_PICK: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "cls": lambda tokens: tokens[0],
    "max": lambda tokens: tokens.max(axis=0),
    "lasttoken": lambda tokens: tokens[-1],
}


def test_a_folder_with_an_onnx_export_gives_sentence_transformers_vectors(folder: Path) -> None:
    embedder = make_embedder(str(folder))
    assert isinstance(embedder, OnnxFolderEmbedder) and isinstance(embedder, Embedder)
    assert embedder.name == "all-MiniLM-L6-v2-onnx" and embedder.config.pooling == "mean"
    with np.load(REFERENCE, allow_pickle=False) as stored:
        assert stored["texts"].tolist() == TEXTS
        reference = np.asarray(stored["vectors"], dtype=np.float32)
    vectors = np.asarray(embedder.embed(TEXTS), dtype=np.float32)
    assert vectors.shape == reference.shape and embedder.dim == 384
    assert np.abs(vectors - reference).max() < 1e-5
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]) == [] and embedder.embed_queries(TEXTS[:3]) == embedder.embed(TEXTS[:3])
    one_by_one = np.asarray([embedder.embed([text])[0] for text in TEXTS[:6]])
    assert np.abs(one_by_one - vectors[:6]).max() < 1e-5  # padding in a batch changes nothing
    with pytest.raises(TypeError):
        embedder.embed("not a list")


@pytest.mark.parametrize("mode", ["cls", "max", "lasttoken"])
def test_the_pooling_the_folder_names_is_applied(tmp_path: Path, export: onnx.ModelProto, mode: str) -> None:
    folder = _lay_out(tmp_path / "m", export)
    _set_pooling(folder, mode)
    texts = ["hello", "How do I reset my password?", "the quick brown fox jumps over the lazy dog"]
    tokens = _token_vectors(folder, texts)
    expected = _unit(np.stack([_PICK[mode](t) for t in tokens]))
    embedder = OnnxFolderEmbedder(folder, batch_size=3)  # one padded batch
    assert embedder.config.pooling == mode
    assert np.abs(np.asarray(embedder.embed(texts)) - expected).max() < 1e-5
    mean = _unit(np.stack([t.mean(axis=0) for t in tokens]))
    assert np.abs(np.asarray(embedder.embed(texts)) - mean).max() > 1e-2  # not the mean by accident


def test_prompts_make_the_query_side_differ_from_the_stored_side(
    tmp_path: Path, export: onnx.ModelProto
) -> None:
    folder = _lay_out(tmp_path / "gemma-like", export)
    _set_prompts(
        folder, {"query": GEMMA_QUERY, "document": GEMMA_DOCUMENT, "Clustering": "task: clustering | "}
    )
    embedder = OnnxFolderEmbedder(folder)
    base = OnnxFolderEmbedder(_lay_out(tmp_path / "base", export))
    texts = ["When is the birthday party?", "hello"]
    queries, documents = np.asarray(embedder.embed_queries(texts)), np.asarray(embedder.embed(texts))
    assert np.abs(queries - np.asarray(base.embed([GEMMA_QUERY + t for t in texts]))).max() < 1e-5
    assert np.abs(documents - np.asarray(base.embed([GEMMA_DOCUMENT + t for t in texts]))).max() < 1e-5
    assert np.abs(queries - documents).max() > 1e-2
    assert np.asarray(embed_queries(embedder, texts)).tolist() == queries.tolist()


def test_e5_style_prompts_and_overrides(tmp_path: Path, export: onnx.ModelProto) -> None:
    folder = _lay_out(tmp_path / "e5-like", export)
    _set_prompts(folder, {"query": "query: ", "passage": "passage: "})
    embedder = OnnxFolderEmbedder(folder)
    assert (embedder.config.query_prompt, embedder.config.document_prompt) == ("query: ", "passage: ")
    _set_prompts(folder, {"query": "query: ", "other": "x: "}, default="other")
    assert OnnxFolderEmbedder(folder).config.document_prompt == "x: "  # the default prompt, as ST does
    overridden = OnnxFolderEmbedder(folder, query_prompt="", document_prompt="")
    assert overridden.embed_queries(["hi"]) == overridden.embed(["hi"])


def test_dense_layers_run_after_pooling(tmp_path: Path, export: onnx.ModelProto) -> None:
    folder = _lay_out(tmp_path / "dense", export)
    rng = np.random.default_rng(7)
    weight = rng.normal(size=(16, 384)).astype(np.float32)
    bias = rng.normal(size=16).astype(np.float32)
    (folder / "2_Dense").mkdir()
    save_file({"linear.weight": weight, "linear.bias": bias}, str(folder / "2_Dense" / "model.safetensors"))
    tanh = "torch.nn.modules.activation.Tanh"
    dense = {"in_features": 384, "out_features": 16, "bias": True, "activation_function": tanh}
    (folder / "2_Dense" / "config.json").write_text(json.dumps(dense))
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(
        2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
    )
    for index, module in enumerate(modules):
        module["idx"] = index
    (folder / "modules.json").write_text(json.dumps(modules))
    texts = ["hello", "a dinosaur cake for Saturday"]
    mean = np.stack([t.mean(axis=0) for t in _token_vectors(folder, texts)])
    embedder = OnnxFolderEmbedder(folder)
    assert embedder.dim == 16
    assert np.abs(np.asarray(embedder.embed(texts)) - _unit(np.tanh(mean @ weight.T + bias))).max() < 1e-5


def test_a_sentence_embedding_output_is_used_as_it_is(tmp_path: Path, export: onnx.ModelProto) -> None:
    """A full sentence-transformers export (EmbeddingGemma's) outputs sentence_embedding: no pooling again."""
    model = onnx.ModelProto()
    model.CopyFrom(export)
    zero = helper.make_tensor("zero_index", TensorProto.INT64, [], [0])
    model.graph.initializer.append(zero)
    model.graph.node.append(
        helper.make_node("Gather", ["last_hidden_state", "zero_index"], ["first"], axis=1)
    )
    model.graph.node.append(helper.make_node("Mul", ["first", "first"], ["sentence_embedding"]))
    model.graph.output.append(
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["b", 384])
    )
    folder = _lay_out(tmp_path / "full", model, onnx_name="model.onnx")  # mean pooling configured
    texts = ["hello", "How do I reset my password?"]
    expected = _unit(np.stack([t[0] * t[0] for t in _token_vectors(folder, texts)]))
    assert np.abs(np.asarray(OnnxFolderEmbedder(folder).embed(texts)) - expected).max() < 1e-5


def test_names_route_folders_and_onnx_files(tmp_path: Path, folder: Path, export: onnx.ModelProto) -> None:
    onnx_file = folder / "onnx" / "model.onnx"
    assert check_embedding_name(str(onnx_file)) == str(onnx_file)
    picked = make_embedder(str(onnx_file))  # one export of several (say a quantised one)
    assert isinstance(picked, OnnxFolderEmbedder) and picked.folder == folder.resolve()
    assert type(make_embedder(str(_package()))) is LocalEmbedder  # the plain BERT folder: unchanged
    with pytest.raises(ConfigError, match="unknown embedding"):
        check_embedding_name(str(tmp_path / "missing.onnx"))


def test_a_model_in_the_hub_cache_runs_from_its_snapshot(
    tmp_path: Path, folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``huggingface-cli download acme/mini-onnx`` then ``embedding_model_name="acme/mini-onnx"``: offline."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--acme--mini-onnx"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    shutil.copytree(folder, repo / "snapshots" / "0123abcd", symlinks=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert check_embedding_name("acme/mini-onnx") == "acme/mini-onnx"
    embedder = make_embedder("acme/mini-onnx")
    assert isinstance(embedder, OnnxFolderEmbedder) and embedder.name == "mini-onnx"
    assert embedder.embed(["hello"]) == OnnxFolderEmbedder(folder).embed(["hello"])
    with pytest.raises(ConfigError, match="unknown embedding"):
        check_embedding_name("acme/not-downloaded")


def test_a_bert_folder_without_an_export_is_built_from_its_weights(
    tmp_path: Path, export: onnx.ModelProto
) -> None:
    """bge-style: BERT weights, CLS pooling, a query prompt; no ONNX file: LocalEmbedder's builder runs it."""
    folder = _lay_out(tmp_path / "bge-like", export, onnx_name="", weights=True)
    _set_pooling(folder, "cls")
    _set_prompts(folder, {"query": "Represent this sentence for searching relevant passages: "})
    embedder = make_embedder(str(folder))
    assert isinstance(embedder, OnnxFolderEmbedder)
    exported = _lay_out(tmp_path / "exported", export)
    texts = ["hello", "How do I reset my password?"]
    expected = _unit(np.stack([t[0] for t in _token_vectors(exported, texts)]))
    assert np.abs(np.asarray(embedder.embed(texts)) - expected).max() < 1e-5


@pytest.mark.skipif(importlib.util.find_spec("sentence_transformers") is not None, reason="it would load it")
def test_a_folder_without_an_export_or_bert_weights_says_how_to_export(tmp_path: Path) -> None:
    folder = tmp_path / "multilingual-e5-small"
    folder.mkdir()
    shutil.copy(_package() / "tokenizer.json", folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "xlm-roberta", "hidden_size": 384}))
    for make in (lambda: make_embedder(str(folder)), lambda: MemoryOS(embedding_model_name=str(folder))):
        with pytest.raises(ConfigError, match="optimum-cli export onnx"):
            make()


def test_memoryos_recalls_with_a_folder_and_embeds_queries_on_the_query_side(
    tmp_path: Path, folder: Path
) -> None:
    with MemoryOS(data_storage_path=tmp_path / "data", embedding_model_name=str(folder)) as memory:
        memory.add_memory("My dog Rex loves the beach.", "Nice!", user_id="u")
        memory.add_memory("I am allergic to peanuts.", "Noted.", user_id="u")
        assert isinstance(memory.embedder, OnnxFolderEmbedder)
        context = memory.retrieve_memory("what pet do I have", user_id="u")
        assert "Rex" in context.render()

    class QuerySided(HashingEmbedder):
        def __init__(self) -> None:
            super().__init__(32)
            self.queries: list[str] = []

        def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
            self.queries.extend(texts)
            return self.embed(texts)

    sided = QuerySided()
    with MemoryOS(data_storage_path=tmp_path / "d2", embedder=sided) as memory:
        memory.add_memory("hello there", "hi")
        memory.retrieve_memory("a question")
    assert sided.queries == ["a question"]  # pages went through embed, the query through embed_queries


def test_an_openai_compatible_endpoint_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MEMORYOS_EMBEDDING_API_KEY", raising=False)
    with FakeOpenAIServer(embedding_dim=24) as server, FakeOpenAIServer() as llm_server:
        name = f"openai:nomic-embed-text@{server.base_url}"
        assert check_embedding_name(name) == name
        embedder = make_embedder(name, api_key="llm-key", base_url=llm_server.base_url)
        assert isinstance(embedder, OpenAIEmbedder) and embedder.name == "nomic-embed-text"
        assert np.allclose(embedder.embed(["hi"])[0], hash_embedding("hi", 24), atol=1e-6)
        (request,) = server.requests_to("/embeddings")
        assert request.body["model"] == "nomic-embed-text"
        assert request.headers["authorization"] == "Bearer unused"  # the LLM's key stays with the LLM
        monkeypatch.setenv("MEMORYOS_EMBEDDING_API_KEY", "embed-key")
        make_embedder(name).embed(["x"])
        assert server.requests_to("/embeddings")[-1].headers["authorization"] == "Bearer embed-key"
        # the plain form uses the LLM's endpoint and key: the whole setup is one constructor call
        memory = MemoryOS(
            data_storage_path=tmp_path / "data",
            openai_api_key="llm-key",
            openai_base_url=server.base_url,
            embedding_model_name="openai:text-embedding-3-small",
            background=False,
        )
        with memory:
            memory.add_memory("I live in Lyon.", "Nice city.")
            assert "Lyon" in memory.retrieve_memory("where do I live").render()
        assert server.requests_to("/embeddings")[-1].headers["authorization"] == "Bearer llm-key"
        assert server.requests_to("/embeddings")[-1].body["model"] == "text-embedding-3-small"
