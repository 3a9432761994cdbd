"""What a sentence-transformers model folder says about itself: its ONNX file, pooling, Dense layers, prompts.

Only the files sentence-transformers itself writes are read (``modules.json``, ``1_Pooling/config.json``,
``N_Dense/``, ``sentence_bert_config.json``, ``config_sentence_transformers.json``, ``config.json``);
nothing is guessed from the folder's name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError

ONNX_FILES = ("onnx/model.onnx", "model.onnx")
"""Where a folder's ONNX export is looked for, in order (the layout of Hugging Face Optimum exports)."""

POOLING_MODES = ("mean", "cls", "max", "lasttoken")
_IDENTITY = ("torch.nn.modules.linear.Identity", "torch.nn.Identity")
_TANH = ("torch.nn.modules.activation.Tanh", "torch.nn.Tanh")
_DOCUMENT_PROMPT_NAMES = ("document", "passage", "corpus")  # sentence-transformers' encode_document order


@dataclass(frozen=True)
class Dense:
    """A sentence-transformers Dense module: ``activation(x @ weight.T + bias)``."""

    weight: Any  # float32 (out_features, in_features)
    bias: Any  # float32 (out_features,) or None
    tanh: bool

    def __call__(self, x: Any) -> Any:
        y = x @ self.weight.T
        if self.bias is not None:
            y = y + self.bias
        return np.tanh(y) if self.tanh else y


@dataclass(frozen=True)
class FolderConfig:
    """How to turn a folder's token vectors into sentence vectors, and which prompt each side gets."""

    folder: Path
    pooling: str  # one of POOLING_MODES
    dense: tuple[Dense, ...]
    max_seq_length: int
    query_prompt: str
    document_prompt: str
    model_type: str  # config.json's model_type ("bert", "xlm-roberta", "gemma3_text", ...)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; ConfigError if it cannot be read or is not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} does not hold a JSON object")
    return data


def _optional_json(path: Path) -> dict[str, Any]:
    return read_json(path) if path.is_file() else {}


def find_onnx(path: Path) -> Path | None:
    """The ONNX file of a model folder (``onnx/model.onnx``, else ``model.onnx``), or ``path`` itself if it
    is an ``.onnx`` file; None when the folder has no export."""
    if path.is_file():
        return path if path.suffix == ".onnx" else None
    return next((path / name for name in ONNX_FILES if (path / name).is_file()), None)


def model_folder(path: Path) -> Path:
    """The model folder of ``path``: the folder itself, or the folder an ``.onnx`` file belongs to (a file
    in ``FOLDER/onnx/`` belongs to ``FOLDER``)."""
    if path.is_dir():
        return path
    parent = path.parent
    return parent.parent if parent.name == "onnx" and (parent.parent / "tokenizer.json").is_file() else parent


def _modules(folder: Path) -> list[dict[str, Any]]:
    path = folder / "modules.json"
    if not path.is_file():
        return []
    try:
        modules = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise ConfigError(f"{path} does not hold a list of modules")
    return sorted(modules, key=lambda module: int(module.get("idx", 0)))


def _pooling(folder: Path, modules: list[dict[str, Any]]) -> str:
    paths = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Pooling")]
    config = _optional_json(folder / (paths[0] if paths else "1_Pooling") / "config.json")
    if not config:
        return "mean"  # what sentence-transformers adds to a plain transformers folder
    modes = sorted(
        key.removeprefix("pooling_mode_").removesuffix("_token").removesuffix("_tokens")
        for key, value in config.items()
        if key.startswith("pooling_mode_") and value is True
    )
    if len(modes) != 1 or modes[0] not in POOLING_MODES:
        raise ConfigError(
            f"{folder}: pooling {modes or 'none'} is not supported (one of {', '.join(POOLING_MODES)})"
        )
    if config.get("include_prompt", True) is False:
        raise ConfigError(
            f"{folder}: pooling that leaves the prompt out (include_prompt false) is not supported"
        )
    return modes[0]


def _dense(folder: Path, module_path: str) -> Dense:
    path = folder / module_path
    config = read_json(path / "config.json")
    activation = str(config.get("activation_function", _IDENTITY[0]))
    if activation not in _IDENTITY + _TANH:
        raise ConfigError(f"{path}: Dense activation {activation} is not supported (Identity or Tanh)")
    weights_path = path / "model.safetensors"
    if not weights_path.is_file():
        raise ConfigError(
            f"{path}: Dense weights must be in model.safetensors (pytorch_model.bin needs torch)"
        )
    from safetensors.numpy import load_file

    tensors = load_file(str(weights_path))
    if "linear.weight" not in tensors:
        raise ConfigError(f"{weights_path} has no linear.weight")
    bias = tensors.get("linear.bias")
    return Dense(
        weight=np.ascontiguousarray(tensors["linear.weight"], dtype=np.float32),
        bias=None if bias is None else np.asarray(bias, dtype=np.float32),
        tanh=activation in _TANH,
    )


def _prompts(folder: Path, query: str | None, document: str | None) -> tuple[str, str]:
    """The query and document prompts, as sentence-transformers' ``encode_query``/``encode_document``
    choose them: the named prompt, else the default prompt, else none; explicit arguments win."""
    config = _optional_json(folder / "config_sentence_transformers.json")
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict):
        raise ConfigError(f"{folder / 'config_sentence_transformers.json'}: prompts must be an object")
    default_name = config.get("default_prompt_name")
    default = str(prompts.get(default_name, "")) if default_name else ""
    if query is None:
        query = str(prompts["query"]) if "query" in prompts else default
    if document is None:
        named = next((name for name in _DOCUMENT_PROMPT_NAMES if name in prompts), None)
        document = str(prompts[named]) if named else default
    return query, document


def read_folder(
    folder: Path, *, query_prompt: str | None = None, document_prompt: str | None = None
) -> FolderConfig:
    """Read the sentence-transformers configuration of ``folder``.

    Raises:
        ConfigError: a file cannot be read, or the folder uses a module this loader does not run.
    """
    if not (folder / "tokenizer.json").is_file():
        raise ConfigError(f"{folder} is not a model folder: no tokenizer.json (a fast tokenizer is needed)")
    modules = _modules(folder)
    dense: list[Dense] = []
    for module in modules:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind == "Dense":
            dense.append(_dense(folder, str(module.get("path", ""))))
        elif kind not in ("Transformer", "Pooling", "Normalize"):
            raise ConfigError(
                f"{folder}: the sentence-transformers module {module.get('type')} is not supported"
            )
    config = _optional_json(folder / "config.json")
    max_positions = int(config.get("max_position_embeddings") or 512)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert", "mpnet"):
        max_positions -= 2  # these count the padding index and an offset among their positions
    st_config = _optional_json(folder / "sentence_bert_config.json")
    query, document = _prompts(folder, query_prompt, document_prompt)
    return FolderConfig(
        folder=folder,
        pooling=_pooling(folder, modules),
        dense=tuple(dense),
        max_seq_length=min(int(st_config.get("max_seq_length") or max_positions), max_positions),
        query_prompt=query,
        document_prompt=document,
        model_type=str(config.get("model_type", "")),
    )


def pool(hidden: Any, mask: Any, lengths: Any, mode: str) -> Any:
    """Sentence vectors from token vectors ``hidden`` (batch, tokens, dim), right-padded per ``mask``."""
    if mode == "cls":
        return hidden[:, 0]
    if mode == "lasttoken":
        return hidden[np.arange(len(lengths)), np.asarray(lengths) - 1]
    weights = mask[:, :, None].astype(hidden.dtype)
    if mode == "max":
        return np.where(weights > 0, hidden, np.finfo(hidden.dtype).min).max(axis=1)
    return (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)


def normalise(vectors: Any) -> Any:
    """Rows scaled to unit L2 length (the Embedder protocol's promise, whatever modules.json says)."""
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
