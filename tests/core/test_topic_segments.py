"""Offline consolidation makes topic segments: nearest-page joins, recurring topics, splits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from memoryos_core import MemoryConfig, MemoryOS, MidTermConfig, ShortTermConfig
from tests.conftest import topic_pages


def _topics_per_segment(memory: MemoryOS) -> list[set[str]]:
    export: dict[str, Any] = memory.export_memory("alice")
    by_id = {p["id"]: p for p in export["pages"]}
    return [
        {by_id[pid]["meta_data"]["message_id"].split("-")[0] for pid in s["page_ids"]}
        for s in export["segments"]
    ]


def test_interleaved_and_recurring_topics_end_in_one_segment_each(
    make_memory: Callable[..., MemoryOS],
) -> None:
    config = MemoryConfig(short_term=ShortTermConfig(capacity=1, offline_batch_pages=4))
    memory = make_memory(config=config, mid_term_heat_threshold=1000)
    pages = []
    for round_ in range(4):  # hiking, cooking, hiking, cooking...: each topic recurs across batches
        pages += topic_pages("hiking", 3, start=3 * round_) + topic_pages("cooking", 3, start=3 * round_)
    memory.add_memories(pages + topic_pages("coding", 1))
    memory.flush()
    assert sorted(map(sorted, _topics_per_segment(memory))) == [["cooking"], ["hiking"]]


def test_a_segment_beyond_its_cap_splits_and_every_page_keeps_one_segment(
    make_memory: Callable[..., MemoryOS],
) -> None:
    config = MemoryConfig(
        short_term=ShortTermConfig(capacity=1, offline_batch_pages=8),
        mid_term=MidTermConfig(max_segment_pages=6, similarity_threshold=0.0),
    )
    memory = make_memory(config=config, mid_term_heat_threshold=1000)
    memory.add_memories(topic_pages("hiking", 10) + topic_pages("cooking", 10) + topic_pages("coding", 1))
    memory.flush()
    export: dict[str, Any] = memory.export_memory("alice")
    sizes = [len(s["page_ids"]) for s in export["segments"]]
    assert sum(sizes) == 20 and max(sizes) <= 6 and len(sizes) >= 4
    members = [pid for s in export["segments"] for pid in s["page_ids"]]
    assert len(members) == len(set(members))
    segment_of = {pid: s["id"] for s in export["segments"] for pid in s["page_ids"]}
    for page in export["pages"]:
        if page["tier"] == "mid_term":
            assert page["segment_id"] == segment_of[page["id"]]
    # theta 0 joins everything: only the split keeps topics apart, and it does
    assert all(len(topics) == 1 for topics in _topics_per_segment(memory))
