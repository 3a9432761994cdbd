"""Fixtures shared by the core tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from memoryos_core import MemoryOS

PUPPY_PAGES = [
    {"user_input": "We adopted a puppy from the shelter.", "agent_response": "What breed?"},
    {"user_input": "The printer jammed again.", "agent_response": "Printers always break."},
    {"user_input": "A puppy needs a lot of walks.", "agent_response": "And training!"},
]
"""Three pages a recall for "Which puppy did they adopt?" re-ranks by their words."""


@pytest.fixture
def puppy_memory(make_memory: Callable[..., MemoryOS], local_embedder: Any) -> MemoryOS:
    """MemoryOS with the local embedder (the late rerank on) and ``PUPPY_PAGES`` stored."""
    memory = make_memory(embedder=local_embedder)
    memory.add_memories(PUPPY_PAGES)
    memory.flush()
    return memory
