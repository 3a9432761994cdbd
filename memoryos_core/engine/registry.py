"""Backends from the reference's flat parameters and from strings (used by the shell, CLI and MCP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from memoryos_core._exceptions import ConfigError
from memoryos_core.embeddings.base import Embedder

if TYPE_CHECKING:
    from memoryos_core.storage.chroma import ChromaStore

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = frozenset(
    {DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}", "local"}
)
_ST_PREFIX = "sentence-transformers:"
_MAX_HASH_DIM = 65536
EMBEDDING_KEY_ENV = "MEMORYOS_EMBEDDING_API_KEY"
"""The API key sent to the server of an ``openai:MODEL@URL`` embedding (default: none, for servers that
ignore keys)."""
EMBEDDING_NAMES = (
    f"{DEFAULT_EMBEDDING_MODEL} (default, offline)",
    "hash or hash:DIM (HashingEmbedder, for tests)",
    "openai:MODEL or text-embedding-* (an OpenAI-compatible endpoint; openai:MODEL@URL for another server)",
    "a sentence-transformers model folder, or an .onnx file in one (run on onnxruntime)",
    f"{_ST_PREFIX}NAME (a sentence-transformers model, downloaded on first use)",
    "a sentence-transformers name already in the local Hugging Face cache",
)
"""The accepted forms of ``embedding_model_name`` / ``--embedding``, for error messages and docs."""


def _hf_snapshot(name: str) -> Path | None:
    """The folder of a Hugging Face model already in the local cache, or None (a file lookup, never a
    request)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    candidates = [name] if "/" in name else [name, f"sentence-transformers/{name}"]
    for repo_id in candidates:
        try:
            found = try_to_load_from_cache(repo_id, "config.json")
        except ValueError:  # not a valid repo id
            continue
        if isinstance(found, str):
            return Path(found).parent  # the snapshot folder: the repository's files, as links
    return None


def _is_model_path(name: str) -> bool:
    """A folder, or an ``.onnx`` file (one export of a model folder)."""
    path = Path(name).expanduser()
    return path.is_dir() or (path.suffix == ".onnx" and path.is_file())


def _split_url(model: str) -> tuple[str, str | None]:
    """``MODEL@URL`` as (MODEL, URL); a model name without an ``@http(s)://`` tail as (name, None)."""
    head, sep, tail = model.rpartition("@")
    if sep and tail.startswith(("http://", "https://")) and head.strip():
        return head, tail
    return model, None


def check_embedding_name(name: str | None) -> str | None:
    """Return ``name`` if it names an embedder :func:`make_embedder` can build without guessing.

    Nothing is loaded or downloaded: an unknown name is refused at once rather than sent to the
    Hugging Face hub (which would fail offline, or fetch a model nobody asked for).

    Raises:
        ConfigError: an unknown name; the message lists the accepted forms.
    """
    if name is None or name in _DEFAULT_ALIASES:
        return name
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"embedding_model_name must be a non-empty string, got {name!r}")
    if name == "hash" or name.startswith("hash:"):
        size = name.partition(":")[2] or "64"
        if not size.isdigit() or not 2 <= int(size) <= _MAX_HASH_DIM:
            raise ConfigError(f"{name!r}: hash:DIM takes a dimension from 2 to {_MAX_HASH_DIM}")
        return name
    if name.startswith(("openai:", "text-embedding-", _ST_PREFIX)):
        model = _split_url(name.partition(":")[2])[0]
        if not model.strip() and not name.startswith("text-embedding-"):
            raise ConfigError(f"{name!r} names no model after the colon")
        return name
    if _is_model_path(name) or _hf_snapshot(name) is not None:
        return name
    raise ConfigError(
        f"unknown embedding {name!r} (no such folder, and not a model in the local Hugging Face cache); "
        f"use one of: {'; '.join(EMBEDDING_NAMES)}"
    )


def make_embedder(name: str | None, *, api_key: str | None = None, base_url: str | None = None) -> Embedder:
    """The embedder named by ``name`` (see :data:`EMBEDDING_NAMES`); nothing is loaded yet.

    ``None`` or "all-MiniLM-L6-v2": the offline local model; "hash" or "hash:DIM": HashingEmbedder;
    "openai:MODEL" or "text-embedding-*": OpenAIEmbedder at ``base_url`` with ``api_key``;
    "openai:MODEL@URL": OpenAIEmbedder at URL, with the key in ``MEMORYOS_EMBEDDING_API_KEY`` (``api_key``
    only if URL is ``base_url``: the LLM's key is never sent to another server); a model folder or an
    ``.onnx`` file in one: see :func:`~memoryos_core.embeddings.onnx_folder.folder_embedder`;
    a name in the local Hugging Face cache: its snapshot folder, as a model folder;
    "sentence-transformers:NAME": SentenceTransformerEmbedder.

    Raises:
        ConfigError: an unknown name (checked before anything is imported or downloaded).
    """
    check_embedding_name(name)
    if name is None or name in _DEFAULT_ALIASES:
        from memoryos_core.embeddings.local import LocalEmbedder

        return LocalEmbedder()
    if name == "hash" or name.startswith("hash:"):
        from memoryos_core.embeddings.fake import HashingEmbedder

        return HashingEmbedder(int(name.split(":", 1)[1]) if ":" in name else 64)
    if name.startswith("openai:") or name.startswith("text-embedding-"):
        from memoryos_core.embeddings.openai import OpenAIEmbedder

        model, url = _split_url(name.removeprefix("openai:"))
        if url is not None:
            if url.rstrip("/") != (base_url or "").rstrip("/"):
                api_key = None
            api_key = os.environ.get(EMBEDDING_KEY_ENV) or api_key or "unused"
            base_url = url
        return OpenAIEmbedder(model=model, api_key=api_key, base_url=base_url)
    if _is_model_path(name):
        from memoryos_core.embeddings.onnx_folder import folder_embedder

        embedder: Embedder = folder_embedder(name)
        return embedder
    snapshot = None if name.startswith(_ST_PREFIX) else _hf_snapshot(name)
    if snapshot is not None:  # on onnxruntime if it carries an export (or BERT weights), else torch
        from memoryos_core.embeddings.onnx_folder import folder_embedder

        cached: Embedder = folder_embedder(snapshot, name=Path(name).name)
        return cached
    from memoryos_core.embeddings.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name.removeprefix(_ST_PREFIX))


def make_llm(api_key: str | None, base_url: str | None, model: str) -> Any:
    """An OpenAILLM when a key is given, else None (the engine then runs offline)."""
    if not api_key:
        return None
    from memoryos_core.llm.openai import OpenAILLM

    return OpenAILLM(model=model, api_key=api_key, base_url=base_url)


def make_store(
    data_storage_path: str | os.PathLike[str] | None, chroma_url: str | None, prefix: str
) -> ChromaStore:
    """A Chroma server when a URL is given (argument or MEMORYOS_CHROMA_URL), else an embedded store."""
    from memoryos_core.storage.chroma import ChromaStore  # chromadb is slow to import: only when needed

    url = chroma_url or os.environ.get("MEMORYOS_CHROMA_URL") or None
    if url:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"chroma_url must start with http:// or https://, got {url!r}")
        return ChromaStore(url=url, prefix=prefix)
    path = Path(data_storage_path or os.environ.get("MEMORYOS_DATA") or "./memoryos_data")
    return ChromaStore(path=str(path / "chroma"), prefix=prefix)
