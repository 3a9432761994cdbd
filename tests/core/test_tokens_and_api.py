"""Offline token counting, the public API surface, and the reference's parameter names."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import memoryos_core
from memoryos_core import ChatMessage, ConfigError, MemoryConfig
from memoryos_core.llm.tokens import TokenCounter


def test_token_counting_is_exact_offline_and_never_zero_for_text() -> None:
    counter = TokenCounter()
    assert counter.exact, "tiktoken's o200k_base file should be found offline (llama-index-core ships it)"
    assert counter.count("Hello world") == 2
    assert counter.count("") == 0
    assert counter.count("Grüß Gott, 世界!") > 3
    messages = [ChatMessage("system", "Be brief."), ChatMessage("user", "Hi")]
    assert counter.count_messages(messages) == counter.count("Be brief.") + counter.count("Hi") + 11


def test_the_approximate_fallback_never_counts_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from memoryos_core.llm import tokens as _tokens

    monkeypatch.setattr(_tokens, "_load_encoding", lambda name: None)
    counter = TokenCounter("no_such_encoding")
    assert not counter.exact
    assert counter.count("x") >= 1 and counter.count("one two three four") >= 4


def test_all_is_sorted_and_complete() -> None:
    names = memoryos_core.__all__
    assert names == sorted(names)
    public = {
        name
        for name in dir(memoryos_core)
        if not name.startswith("_") and not isinstance(getattr(memoryos_core, name), types.ModuleType)
    }
    assert public <= set(names)
    assert memoryos_core.Memoryos is memoryos_core.MemoryOS


def test_reference_parameters_map_onto_the_config() -> None:
    config = MemoryConfig().with_reference_params(
        short_term_capacity=10,
        mid_term_capacity=50,
        long_term_knowledge_capacity=20,
        retrieval_queue_capacity=9,
        mid_term_heat_threshold=7.5,
        mid_term_similarity_threshold=0.4,
    )
    assert (config.short_term.capacity, config.mid_term.capacity, config.long_term.knowledge_capacity) == (
        10,
        50,
        20,
    )
    assert (config.retrieval.top_pages, config.mid_term.heat_threshold) == (9, 7.5)
    assert config.mid_term.similarity_threshold == 0.4
    with pytest.raises(ConfigError):
        MemoryConfig().with_reference_params(short_term_capacity=0)
    with pytest.raises(ConfigError):
        MemoryConfig().with_reference_params(no_such_parameter=1)


def test_config_fields_are_documented() -> None:
    rows = MemoryConfig.field_docs()
    names = {name for name, _, _ in rows}
    assert {
        "short_term.capacity",
        "mid_term.heat_threshold",
        "retrieval.top_pages",
        "collection_prefix",
    } <= names
    assert all(doc for _, _, doc in rows)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    undocumented = [name for name, _, _ in rows if f"| `{name}` |" not in readme]
    assert not undocumented, f"README's configuration table lacks {undocumented}"
