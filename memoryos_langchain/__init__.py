"""LangChain and LangGraph adapters for MemoryOS: a thin layer over the public ``memoryos_core`` API.

Names are imported on first use, so ``import memoryos_langchain`` stays cheap and a missing optional
package (``pip install "memoryos-py[langchain]"``, or ``[classic]`` for ``MemoryOSMemory``) is reported
as a ``MissingDependencyError`` naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from memoryos_core import MissingDependencyError

if TYPE_CHECKING:
    from memoryos_langchain.classic import MemoryOSMemory
    from memoryos_langchain.history import MemoryOSChatMessageHistory
    from memoryos_langchain.llm import LangChainLLM
    from memoryos_langchain.middleware import MemoryOSMiddleware
    from memoryos_langchain.retriever import MemoryOSRetriever
    from memoryos_langchain.store import MemoryOSStore

_MODULES = {
    "LangChainLLM": "llm",
    "MemoryOSChatMessageHistory": "history",
    "MemoryOSMemory": "classic",
    "MemoryOSMiddleware": "middleware",
    "MemoryOSRetriever": "retriever",
    "MemoryOSStore": "store",
}


def __getattr__(name: str) -> Any:
    module_name = _MODULES.get(name)
    if module_name is None:
        raise AttributeError(f"module 'memoryos_langchain' has no attribute {name!r}")
    try:
        module = importlib.import_module(f"memoryos_langchain.{module_name}")
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        if not package or package.startswith("memoryos"):
            raise
        raise MissingDependencyError(package.replace("_", "-"), extra="langchain") from exc
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])


__all__ = [
    "LangChainLLM",
    "MemoryOSChatMessageHistory",
    "MemoryOSMemory",
    "MemoryOSMiddleware",
    "MemoryOSRetriever",
    "MemoryOSStore",
]
