"""Backends from the reference's flat parameters and from strings (used by the shell, CLI and MCP)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from memoryos_core._exceptions import ConfigError
from memoryos_core.embeddings.base import Embedder
from memoryos_core.storage.chroma import ChromaStore

DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def make_embedder(name: str | None, *, api_key: str | None = None, base_url: str | None = None) -> Embedder:
    """``None`` or "all-MiniLM-L6-v2": the offline local model; "hash" or "hash:DIM": HashingEmbedder;
    "openai:MODEL" or "text-embedding-*": OpenAIEmbedder; a folder: a local model in that folder;
    anything else: a sentence-transformers model name."""
    if name is None or name in (
        DEFAULT_EMBEDDING_MODEL,
        f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}",
        "local",
    ):
        from memoryos_core.embeddings.local import LocalEmbedder

        return LocalEmbedder()
    if name == "hash" or name.startswith("hash:"):
        from memoryos_core.embeddings.fake import HashingEmbedder

        return HashingEmbedder(int(name.split(":", 1)[1]) if ":" in name else 64)
    if name.startswith("openai:") or name.startswith("text-embedding-"):
        from memoryos_core.embeddings.openai import OpenAIEmbedder

        return OpenAIEmbedder(model=name.removeprefix("openai:"), api_key=api_key, base_url=base_url)
    if Path(name).is_dir():
        from memoryos_core.embeddings.local import LocalEmbedder

        return LocalEmbedder(model_path=name)
    from memoryos_core.embeddings.sentence_transformers import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(name)


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
    url = chroma_url or os.environ.get("MEMORYOS_CHROMA_URL") or None
    if url:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"chroma_url must start with http:// or https://, got {url!r}")
        return ChromaStore(url=url, prefix=prefix)
    path = Path(data_storage_path or os.environ.get("MEMORYOS_DATA") or "./memoryos_data")
    return ChromaStore(path=str(path / "chroma"), prefix=prefix)
