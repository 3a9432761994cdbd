"""Fixtures for the LlamaIndex adapters: offline Settings, a recorder, seeded memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from llama_index.core import Settings
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms.mock import MockLLM

from memoryos_core import MemoryOS
from tests.adapters.llamaindex.helpers import CAT_FACT, SEED_PAGES, Recorder


@pytest.fixture(autouse=True)
def _offline_settings() -> Iterator[None]:
    """Mocks as LlamaIndex's global defaults, so nothing resolves a downloading default."""
    saved_llm, saved_embed = Settings._llm, Settings._embed_model
    Settings.llm = MockLLM()
    Settings.embed_model = MockEmbedding(embed_dim=8)
    yield
    Settings._llm, Settings._embed_model = saved_llm, saved_embed


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def seeded(make_memory: Callable[..., MemoryOS]) -> MemoryOS:
    """A MemoryOS whose user alice has the cat fact in mid-term memory (short-term capacity 2)."""
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(SEED_PAGES, user_id="alice")
    memory.flush()
    tiers = {p["user_input"]: p["tier"] for p in memory.export_memory("alice")["pages"]}
    assert tiers[CAT_FACT] == "mid_term"
    return memory
