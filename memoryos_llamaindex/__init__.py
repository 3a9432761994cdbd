"""LlamaIndex adapters for MemoryOS: chat memory, a memory block, a retriever and an LLM backend."""

from memoryos_llamaindex import _deps  # noqa: F401  (a clear error when llama-index-core is missing)
from memoryos_llamaindex.block import MemoryOSMemoryBlock
from memoryos_llamaindex.llm import LlamaIndexLLM
from memoryos_llamaindex.memory import MemoryOSMemory
from memoryos_llamaindex.retriever import MemoryOSRetriever

__all__ = [
    "LlamaIndexLLM",
    "MemoryOSMemory",
    "MemoryOSMemoryBlock",
    "MemoryOSRetriever",
]
