"""Embedders behind one small protocol: :class:`Embedder` (``name``, ``dim``, ``embed``), and its backends.

``LocalEmbedder`` (all-MiniLM-L6-v2 on onnxruntime, offline) is the default; ``OpenAIEmbedder`` speaks to
any OpenAI-compatible embeddings endpoint; ``OnnxFolderEmbedder`` runs a sentence-transformers model folder
with an ONNX export, with its query and document prompts; ``HashingEmbedder`` is a cheap deterministic one
for tests. ``Wordpieces``: a text's tokens and their contextual vectors (``LocalEmbedder.embed_wordpieces``).
The names are imported when first used, so importing one backend loads none of the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from memoryos_core._lazy import lazy_exports

if TYPE_CHECKING:
    from memoryos_core.embeddings.base import Embedder, QueryEmbedder, Wordpieces
    from memoryos_core.embeddings.fake import HashingEmbedder
    from memoryos_core.embeddings.local import LocalEmbedder
    from memoryos_core.embeddings.onnx_folder import OnnxFolderEmbedder
    from memoryos_core.embeddings.openai import OpenAIEmbedder

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Embedder": "memoryos_core.embeddings.base",
        "HashingEmbedder": "memoryos_core.embeddings.fake",
        "LocalEmbedder": "memoryos_core.embeddings.local",
        "OnnxFolderEmbedder": "memoryos_core.embeddings.onnx_folder",
        "QueryEmbedder": "memoryos_core.embeddings.base",
        "OpenAIEmbedder": "memoryos_core.embeddings.openai",
        "Wordpieces": "memoryos_core.embeddings.base",
    },
)


__all__ = [
    "Embedder",
    "HashingEmbedder",
    "LocalEmbedder",
    "OnnxFolderEmbedder",
    "OpenAIEmbedder",
    "QueryEmbedder",
    "Wordpieces",
]
