"""MemoryOS: a tiered memory operating system for personalised AI agents, on Chroma."""

import typing as _typing

from memoryos_core._config import (
    LongTermConfig,
    MemoryConfig,
    MidTermConfig,
    RetrievalConfig,
    ShortTermConfig,
)
from memoryos_core._exceptions import (
    BackendError,
    ConfigError,
    DimensionMismatchError,
    EmbeddingError,
    InvalidInputError,
    LLMError,
    LLMNotConfiguredError,
    LLMOutputError,
    MemoryOSError,
    MissingDependencyError,
    NotFoundError,
    StorageError,
)
from memoryos_core._types import (
    AddResult,
    ChatMessage,
    ContextUnit,
    Cost,
    KnowledgeEntry,
    MemoryStats,
    Page,
    ProfileTrait,
    ResponseResult,
    RetrievedContext,
    SegmentInfo,
    UserProfile,
)
from memoryos_core._validation import SOURCE_KEYS, validate_id
from memoryos_core.embeddings.base import Embedder
from memoryos_core.embeddings.fake import HashingEmbedder
from memoryos_core.engine.memory import MemoryOS, Memoryos
from memoryos_core.llm.base import LLM
from memoryos_core.llm.fake import FunctionLLM, ScriptedLLM
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.policy.turns import Turn, TurnMessage, close_turn, fold_messages
from memoryos_core.storage.base import MemoryStore, Record
from memoryos_core.storage.chroma import ChromaStore

if _typing.TYPE_CHECKING:
    from memoryos_core.embeddings.local import LocalEmbedder
    from memoryos_core.llm.openai import OpenAILLM

    __version__: str

# Imported when first used: the backends' modules cost import time most programs never need.
_LAZY = {"LocalEmbedder": "memoryos_core.embeddings.local", "OpenAILLM": "memoryos_core.llm.openai"}


def __getattr__(name: str) -> object:
    # Read lazily: importlib.metadata costs an import at every start, and most callers never ask.
    if name == "__version__":
        from memoryos_core._version import package_version

        return package_version()
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AddResult",
    "BackendError",
    "ChatMessage",
    "ChromaStore",
    "ConfigError",
    "ContextUnit",
    "Cost",
    "DimensionMismatchError",
    "Embedder",
    "EmbeddingError",
    "FunctionLLM",
    "HashingEmbedder",
    "InvalidInputError",
    "KnowledgeEntry",
    "LLM",
    "LLMError",
    "LLMNotConfiguredError",
    "LLMOutputError",
    "LocalEmbedder",
    "LongTermConfig",
    "MemoryConfig",
    "MemoryOS",
    "MemoryOSError",
    "MemoryStats",
    "MemoryStore",
    "Memoryos",
    "MidTermConfig",
    "MissingDependencyError",
    "NotFoundError",
    "OpenAILLM",
    "Page",
    "ProfileTrait",
    "Record",
    "ResponseResult",
    "RetrievalConfig",
    "RetrievedContext",
    "RuleBasedLLM",
    "SOURCE_KEYS",
    "ScriptedLLM",
    "SegmentInfo",
    "ShortTermConfig",
    "StorageError",
    "Turn",
    "TurnMessage",
    "UserProfile",
    "__version__",
    "close_turn",
    "fold_messages",
    "validate_id",
]
