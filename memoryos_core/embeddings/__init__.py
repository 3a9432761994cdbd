"""Embedders behind one small protocol: :class:`Embedder` (``name``, ``dim``, ``embed``), and its backends.

``LocalEmbedder`` (all-MiniLM-L6-v2 on onnxruntime, offline) is the default; ``OpenAIEmbedder`` speaks to
any OpenAI-compatible embeddings endpoint; ``HashingEmbedder`` is a cheap deterministic one for tests.
The names are imported when first used, so importing one backend loads none of the others.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memoryos_core.embeddings.base import Embedder
    from memoryos_core.embeddings.fake import HashingEmbedder
    from memoryos_core.embeddings.local import LocalEmbedder
    from memoryos_core.embeddings.openai import OpenAIEmbedder

_EXPORTS = {
    "Embedder": "memoryos_core.embeddings.base",
    "HashingEmbedder": "memoryos_core.embeddings.fake",
    "LocalEmbedder": "memoryos_core.embeddings.local",
    "OpenAIEmbedder": "memoryos_core.embeddings.openai",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = ["Embedder", "HashingEmbedder", "LocalEmbedder", "OpenAIEmbedder"]
