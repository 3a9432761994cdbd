"""OnnxFolderEmbedder: any sentence-transformers model folder on onnxruntime, with its query/document prompts.

The folder is what the model hub ships (``tokenizer.json``, ``modules.json``, ``1_Pooling/``, ...) plus an
ONNX export of the encoder, ``onnx/model.onnx`` or ``model.onnx`` (Hugging Face Optimum's layout; many hub
models carry one). A graph with a ``sentence_embedding`` output (a full sentence-transformers export, such
as EmbeddingGemma's) is used as it is; otherwise its token vectors (``last_hidden_state``) are pooled as
``1_Pooling/config.json`` says (mean, cls, max, lasttoken) and passed through the folder's Dense layers here.
A BERT folder without an export is run from its ``model.safetensors`` through LocalEmbedder's graph builder.
Vectors are always L2-normalised (the Embedder protocol's promise).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError, EmbeddingError, MissingDependencyError
from memoryos_core.embeddings import _bert_graph, _st_folder
from memoryos_core.embeddings._onnx_cache import cache_dir, write_graph

logger = logging.getLogger(__name__)

EXPORT_HINT = (
    "export it to ONNX once: pip install 'optimum[onnx]' && optimum-cli export onnx --model FOLDER_OR_HUB_ID "
    "--task feature-extraction FOLDER/onnx (or download the hub's onnx/model.onnx into FOLDER/onnx/); "
    "or pip install sentence-transformers to run the folder on torch"
)
_HIDDEN_BUILDER = "memoryos-bert-hidden-2"  # bumped when _bert_hidden_graph changes what it writes
_HIDDEN_OUTPUTS = ("last_hidden_state", "token_embeddings")
_SESSIONS: dict[tuple[str, int], _Session] = {}
_SESSIONS_LOCK = threading.Lock()


@dataclass(frozen=True)
class _Session:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer: truncates to max_seq_length, does not pad
    pad_id: int
    inputs: dict[str, Any]  # input name -> numpy dtype
    output: str
    pooled: bool  # the output is already a sentence vector


def _default_threads() -> int:
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else os.cpu_count() or 1


def _pad_id(tokenizer: Any, padding: dict[str, Any] | None, folder: Path) -> int:
    """The padding token's id: from ``tokenizer.json``'s padding, else ``tokenizer_config.json``, else 0."""
    if padding and padding.get("pad_id") is not None:
        return int(padding["pad_id"])
    config_path = folder / "tokenizer_config.json"
    token = _st_folder.read_json(config_path).get("pad_token") if config_path.is_file() else None
    if isinstance(token, dict):
        token = token.get("content")
    found = tokenizer.token_to_id(token) if isinstance(token, str) else None
    return int(found) if found is not None else 0


def _bert_hidden_graph(folder: Path) -> bytes:
    """A BERT encoder's graph built from ``model.safetensors`` by LocalEmbedder's builder, without its
    pooling, so it outputs ``last_hidden_state`` (pooling then happens as the folder says)."""
    config = _st_folder.read_json(folder / "config.json")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"{folder}: the built-in BERT graph supports GELU only; {EXPORT_HINT}")
    spec = _bert_graph.ModelSpec(
        folder=folder,
        hidden_size=int(config["hidden_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        max_seq_length=int(config.get("max_position_embeddings", 512)),
    )
    return _bert_graph.build_onnx(spec, pooled=False)


def bert_hidden_graph_path(folder: Path) -> Path:
    """The cached ``last_hidden_state`` graph of a BERT folder without an ONNX export, built once.

    Raises:
        ConfigError: not a BERT folder with ``model.safetensors``, or the cache cannot be written.
    """
    from memoryos_core.embeddings import local

    _check_bert_folder(folder)
    key = hashlib.sha256(f"{_HIDDEN_BUILDER}|{local._weights_digest(folder)}".encode()).hexdigest()
    path = cache_dir() / f"bert-hidden-{key[:32]}.onnx"
    if not path.is_file():
        logger.info("building the ONNX graph of %s into %s (once)", folder, path)
        try:
            write_graph(path, _bert_hidden_graph(folder))
        except OSError as exc:
            raise ConfigError(f"cannot write the ONNX graph into {path.parent}: {exc}") from exc
    return path


def _load(onnx_path: Path, config: _st_folder.FolderConfig, threads: int) -> _Session:
    key = (str(onnx_path), threads)
    with _SESSIONS_LOCK:
        if key in _SESSIONS:
            return _SESSIONS[key]
        from memoryos_core.embeddings import local

        try:
            import onnxruntime
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "onnxruntime") from exc
        tokenizer, padding = local._tokenizer(config.folder, config.max_seq_length)
        pad_id = _pad_id(tokenizer, padding, config.folder)
        try:
            session = local._session(onnxruntime, str(onnx_path), threads)
        except Exception as exc:
            raise EmbeddingError(f"onnxruntime cannot load {onnx_path}: {exc}", backend="onnx") from exc
        inputs: dict[str, Any] = {}
        for item in session.get_inputs():
            if item.name not in ("input_ids", "attention_mask", "token_type_ids", "position_ids"):
                raise ConfigError(
                    f"{onnx_path}: the graph wants input {item.name!r}, which an encoder does not"
                )
            inputs[item.name] = np.int32 if item.type == "tensor(int32)" else np.int64
        outputs = [item.name for item in session.get_outputs()]
        if "sentence_embedding" in outputs:
            output, pooled = "sentence_embedding", True
        else:
            output = next((name for name in _HIDDEN_OUTPUTS if name in outputs), outputs[0])
            pooled = False
        loaded = _SESSIONS[key] = _Session(session, tokenizer, pad_id, inputs, output, pooled)
        return loaded


class OnnxFolderEmbedder:
    """A sentence-transformers model folder on onnxruntime (BERT, MiniLM, bge, XLM-R/E5, MPNet, Gemma, ...).

    ``embed`` is the stored side (the folder's ``document``/``passage`` prompt), ``embed_queries`` the query
    side (its ``query`` prompt), as ``config_sentence_transformers.json`` names them; without prompts the two
    are the same. The model loads at the first call and is shared by every instance in the process.

    Args:
        path: The model folder, or one ``.onnx`` file in it (say ``FOLDER/onnx/model_qint8_avx512.onnx``, to
            pick a quantised export). A BERT folder without an export is built from ``model.safetensors``.
        query_prompt, document_prompt: Override the folder's prompts (``""``: none), e.g. E5's
            ``"query: "`` and ``"passage: "`` when its folder does not name them.
        batch_size: Texts per onnxruntime call; texts are sorted by length first so padding stays small.
        threads: onnxruntime intra-op threads; defaults to the CPUs this process may use.
        name: The name the store records beside the vectors (default: the folder's name).

    Raises:
        ConfigError: not a model folder, no ONNX export and not a BERT folder, or a module this loader does
            not run (the message says how to export one).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        query_prompt: str | None = None,
        document_prompt: str | None = None,
        batch_size: int = 8,
        threads: int | None = None,
        name: str | None = None,
    ) -> None:
        if batch_size < 1 or (threads is not None and threads < 1):
            raise ConfigError(f"batch_size and threads must be at least 1, got {batch_size} and {threads}")
        given = Path(path).expanduser().absolute()  # not resolved: a hub cache's files are links to blobs
        if not given.exists():
            raise ConfigError(f"{given} does not exist")
        self.folder = _st_folder.model_folder(given)
        self.config = _st_folder.read_folder(
            self.folder, query_prompt=query_prompt, document_prompt=document_prompt
        )
        self._onnx = _st_folder.find_onnx(given)
        if self._onnx is None:  # the graph is built at the first embed; whether it can be is known now
            _check_bert_folder(self.folder)
        self.name: str = name or self.folder.name
        self.batch_size = batch_size
        self.threads = threads or _default_threads()
        self._dim: int | None = None

    def __repr__(self) -> str:
        return f"OnnxFolderEmbedder({str(self.folder)!r}, pooling={self.config.pooling!r})"

    @property
    def dim(self) -> int:
        """Vector length (embeds one short text the first time: the graph's output decides it)."""
        if self._dim is None:
            self._dim = len(self.embed(["dimension probe"])[0])
        return self._dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per stored text (the document prompt prepended), in order.

        Raises:
            TypeError: ``texts`` is a single string or holds a non-string.
            EmbeddingError: onnxruntime failed.
        """
        return self._run(texts, self.config.document_prompt)

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per search query (the query prompt prepended), in order."""
        return self._run(texts, self.config.query_prompt)

    def _session(self) -> _Session:
        if self._onnx is None:  # a BERT folder without an export: its graph, built once into the cache
            self._onnx = bert_hidden_graph_path(self.folder)
        return _load(self._onnx, self.config, self.threads)

    def _run(self, texts: Sequence[str], prompt: str) -> list[list[float]]:
        from memoryos_core.embeddings.local import _check_texts, _padded

        items = _check_texts(texts)
        if not items:
            return []
        loaded = self._session()
        encodings = loaded.tokenizer.encode_batch([prompt + text for text in items])
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(items))
        order = np.argsort(lengths, kind="stable")
        rows: list[Any] = [None] * len(items)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            input_ids, mask = _padded(encodings, lengths, batch, loaded.pad_id)
            width = input_ids.shape[1]
            values = {
                "input_ids": input_ids,
                "attention_mask": mask,
                "token_type_ids": np.zeros_like(input_ids),
                "position_ids": np.broadcast_to(np.arange(width), input_ids.shape),
            }
            feed = {
                name: np.ascontiguousarray(values[name], dtype=dtype) for name, dtype in loaded.inputs.items()
            }
            try:
                (output,) = loaded.session.run([loaded.output], feed)
            except Exception as exc:
                raise EmbeddingError(f"onnxruntime failed to embed a batch: {exc}", backend="onnx") from exc
            vectors = np.asarray(output, dtype=np.float32)
            if not loaded.pooled:
                vectors = _st_folder.pool(vectors, mask, lengths[batch], self.config.pooling)
                for dense in self.config.dense:
                    vectors = dense(vectors)
            for row, index in enumerate(batch):
                rows[index] = vectors[row]
        matrix: list[list[float]] = _st_folder.normalise(np.stack(rows)).astype(np.float32).tolist()
        return matrix


def _check_bert_folder(folder: Path) -> None:
    config_path = folder / "config.json"
    config = _st_folder.read_json(config_path) if config_path.is_file() else {}
    if config.get("model_type") != "bert" or not (folder / "model.safetensors").is_file():
        raise ConfigError(f"{folder} has no ONNX export (onnx/model.onnx or model.onnx): {EXPORT_HINT}")


def _is_plain_local_folder(config: _st_folder.FolderConfig) -> bool:
    """Whether LocalEmbedder gives this folder's vectors by itself (BERT, mean pooling, no Dense, no
    prompts): then it runs there, with the graph cache ``memoryos setup`` fills."""
    plain = config.pooling == "mean" and not config.dense and not config.query_prompt
    return plain and not config.document_prompt and config.model_type == "bert"


def folder_embedder(path: str | Path, *, name: str | None = None) -> Any:
    """The embedder for a model folder (or an ``.onnx`` file in one), as ``embedding_model_name`` takes it.

    An ONNX export: :class:`OnnxFolderEmbedder`. No export, a BERT with ``model.safetensors``: LocalEmbedder
    when it covers the folder (mean pooling, no prompts, no Dense), else OnnxFolderEmbedder on the built
    graph. Anything else: SentenceTransformerEmbedder when sentence-transformers is installed.

    Raises:
        ConfigError: none of these applies; the message says how to export the model to ONNX.
    """
    given = Path(path).expanduser().absolute()
    folder = _st_folder.model_folder(given)
    if _st_folder.find_onnx(given) is not None:
        return OnnxFolderEmbedder(given, name=name)
    try:
        _check_bert_folder(folder)
        config = _st_folder.read_folder(folder)
    except ConfigError:
        import importlib.util

        if importlib.util.find_spec("sentence_transformers") is None:
            raise
        from memoryos_core.embeddings.sentence_transformers import SentenceTransformerEmbedder

        st_embedder = SentenceTransformerEmbedder(folder)
        st_embedder.name = name or st_embedder.name
        return st_embedder
    if _is_plain_local_folder(config):
        from memoryos_core.embeddings.local import LocalEmbedder

        local_embedder = LocalEmbedder(model_path=folder)
        local_embedder.name = name or local_embedder.name
        return local_embedder
    return OnnxFolderEmbedder(folder, name=name)
