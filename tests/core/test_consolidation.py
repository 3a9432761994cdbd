"""Short-term overflow moves to segments in batches: one LLM call per batch, no page lost or doubled."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence

import pytest

from memoryos_core import (
    ChatMessage,
    ConfigError,
    FunctionLLM,
    LLMError,
    MemoryConfig,
    MemoryOS,
    ScriptedLLM,
    ShortTermConfig,
)
from memoryos_core.llm.rules import RuleBasedLLM
from tests.conftest import topic_pages


def _assert_every_page_once_in_one_segment(memory: MemoryOS, user: str = "alice") -> dict[str, object]:
    export = memory.export_memory(user)
    ids = [p["id"] for p in export["pages"]]
    assert len(ids) == len(set(ids))
    members = [pid for s in export["segments"] for pid in s["page_ids"]]
    assert len(members) == len(set(members))
    segment_ids = {s["id"] for s in export["segments"]}
    for page in export["pages"]:
        if page["tier"] == "mid_term":
            assert page["segment_id"] in segment_ids
        else:
            assert page["tier"] == "short_term" and not page["segment_id"]
    return export


def test_overflow_is_consolidated_in_batches_with_one_llm_call_each(
    make_memory: Callable[..., MemoryOS],
) -> None:
    llm = RuleBasedLLM()
    config = MemoryConfig(short_term=ShortTermConfig(capacity=7, batch_pages=10))
    memory = make_memory(llm=llm, config=config, mid_term_heat_threshold=1000)  # no promotion here
    memory.add_memories(topic_pages("hiking", 30) + topic_pages("cooking", 30))
    cost = memory.flush()
    overflow = 60 - 7
    assert llm.calls == math.ceil(overflow / 10) == cost.llm_calls
    assert cost.prompt_tokens > 0 and cost.completion_tokens > 0
    stats = memory.get_memory_stats()
    assert (stats.short_term_pages, stats.pending_pages, stats.mid_term_pages) == (7, 0, overflow)
    assert stats.cost.llm_calls == llm.calls
    export = _assert_every_page_once_in_one_segment(memory)
    # the 7 newest pages stay in short-term memory, verbatim
    assert [p["tier"] for p in export["pages"][-7:]] == ["short_term"] * 7


def test_without_an_llm_overflow_is_consolidated_in_larger_batches(
    make_memory: Callable[..., MemoryOS],
) -> None:
    events: list[dict[str, object]] = []
    config = MemoryConfig(short_term=ShortTermConfig(capacity=3, batch_pages=4, offline_batch_pages=20))
    memory = make_memory(
        config=config, on_event=lambda name, info: events.append(info) if name == "consolidated" else None
    )
    memory.add_memories(topic_pages("hiking", 25) + topic_pages("cooking", 25))
    memory.flush()
    # 47 pages overflow: two full batches of 20 and the forced tail, not twelve batches of 4
    assert [info["pages"] for info in events] == [20, 20, 7]
    stats = memory.get_memory_stats()
    assert (stats.short_term_pages, stats.mid_term_pages) == (3, 47)
    _assert_every_page_once_in_one_segment(memory)


def test_offline_batch_pages_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="offline_batch_pages"):
        MemoryConfig(short_term=ShortTermConfig(offline_batch_pages=0))


def test_offline_consolidation_groups_topics_into_separate_segments(
    make_memory: Callable[..., MemoryOS],
) -> None:
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(
        topic_pages("hiking", 6) + topic_pages("coding", 6) + topic_pages("hiking", 2, start=6)
    )
    memory.flush()
    export = _assert_every_page_once_in_one_segment(memory)
    by_id = {p["id"]: p for p in export["pages"]}
    topics_per_segment = [
        {by_id[pid]["meta_data"]["message_id"].split("-")[0] for pid in s["page_ids"]}
        for s in export["segments"]
    ]
    assert sorted(map(sorted, topics_per_segment)) == [["coding"], ["hiking"]]
    for segment in export["segments"]:
        assert segment["summary"] and segment["keywords"]
        assert all("[" not in keyword for keyword in segment["keywords"])
    # the hiking pages after the coding run were merged back into the hiking segment
    hiking = next(s for s in export["segments"] if "hiking" in s["keywords"])
    assert len(hiking["page_ids"]) == 6 + 2 - 2  # two newest pages are still short-term


def test_pages_the_llm_leaves_out_are_still_consolidated(make_memory: Callable[..., MemoryOS]) -> None:
    def handler(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        return json.dumps({"topics": [{"pages": [1, 2], "summary": "Hiking talk.", "keywords": ["hiking"]}]})

    memory = make_memory(llm=FunctionLLM(handler), short_term_capacity=1, mid_term_heat_threshold=1000)
    memory.add_memories(topic_pages("hiking", 6))
    memory.flush()
    export = _assert_every_page_once_in_one_segment(memory)
    assert sum(p["tier"] == "mid_term" for p in export["pages"]) == 5
    assert any(s["summary"] == "Hiking talk." for s in export["segments"])


def test_unparseable_replies_fall_back_to_extractive_and_store_no_llm_text(
    make_memory: Callable[..., MemoryOS],
) -> None:
    llm = ScriptedLLM(["Sorry, I cannot help with that.", "ERROR: rate limited"])
    events: list[str] = []
    memory = make_memory(
        llm=llm,
        short_term_capacity=1,
        mid_term_heat_threshold=1000,
        on_event=lambda name, details: events.append(name),
    )
    memory.add_memories(topic_pages("hiking", 4))
    memory.flush()
    assert len(llm.calls) == 2  # one repair retry, then the fallback
    export = _assert_every_page_once_in_one_segment(memory)
    text = json.dumps(export)
    assert "Sorry" not in text and "ERROR" not in text
    assert memory.get_memory_stats().llm_fallbacks == 1 and "llm_fallback" in events


def test_an_llm_outage_keeps_pages_pending_until_it_recovers(make_memory: Callable[..., MemoryOS]) -> None:
    llm = ScriptedLLM(
        [LLMError("503 after retries"), *[json.dumps(RuleBasedLLM()._topics({1: "a", 2: "b", 3: "c"}))]]
    )
    memory = make_memory(llm=llm, short_term_capacity=1, mid_term_heat_threshold=1000)
    memory.add_memories(topic_pages("hiking", 4))
    with pytest.raises(LLMError):
        memory.flush()
    stats = memory.get_memory_stats()
    assert (stats.short_term_pages, stats.pending_pages, stats.mid_term_pages) == (1, 3, 0)
    memory.flush()
    stats = memory.get_memory_stats()
    assert (stats.short_term_pages, stats.pending_pages, stats.mid_term_pages) == (1, 0, 3)
    _assert_every_page_once_in_one_segment(memory)


def test_chain_links_and_overview_are_kept_per_page(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=1)
    memory.add_memories(topic_pages("hiking", 5))
    memory.flush()
    mid = [p for p in memory.export_memory()["pages"] if p["tier"] == "mid_term"]
    assert all(p["chain_overview"] for p in mid)
    context = memory.retrieve_memory("hiking mountains", top_k=10)
    assert any(u.meta_data["chain_overview"] for u in context.by_tier("mid_term"))


def test_continuity_cursor_survives_batches(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(config=MemoryConfig(short_term=ShortTermConfig(capacity=1, batch_pages=3)))
    memory.add_memories(topic_pages("hiking", 7))
    memory.flush()
    export = memory.export_memory()
    assert len(export["segments"]) == 1  # three batches, one chain, one segment
    assert len(export["segments"][0]["page_ids"]) == 6
