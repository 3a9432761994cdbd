"""Storage behind one small protocol; Chroma is the implementation."""

from memoryos_core.storage.base import KINDS, MemoryStore, Record
from memoryos_core.storage.chroma import ChromaStore

__all__ = ["KINDS", "ChromaStore", "MemoryStore", "Record"]
