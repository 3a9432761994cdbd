"""get_segments: each segment's topic, pages and heat now, as the engine computes and uses them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from memoryos_core import InvalidInputError, MemoryOS, SegmentInfo
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.policy import heat as heat_policy
from tests.conftest import Clock, topic_pages


def _conversation(memory: MemoryOS, user: str | None = None) -> None:
    """Two topics, then a closing page, consolidated: the topics leave short-term memory."""
    memory.add_memories([*topic_pages("hiking", 4), *topic_pages("coding", 3)], user_id=user)
    memory.add_memory("bye", "see you", user_id=user)
    memory.flush(user)


def _expected_heat(memory: MemoryOS, segment: SegmentInfo, clock: Clock) -> float:
    state = heat_policy.HeatState(segment.n_visit, segment.l_interaction, segment.last_access_s)
    return heat_policy.heat(state, clock.now.timestamp(), memory.config.mid_term)


def test_segments_list_stored_pages_with_the_engines_heat(
    make_memory: Callable[..., MemoryOS], clock: Clock
) -> None:
    memory = make_memory(short_term_capacity=1, mid_term_heat_threshold=100)
    _conversation(memory)
    clock.advance(3600)  # recency decays between events: heat is computed at the call's clock
    segments = memory.get_segments()
    assert len(segments) == 2 and all(isinstance(s, SegmentInfo) for s in segments)
    exported = {s["id"]: s for s in memory.export_memory()["segments"]}
    assert {s.id for s in segments} == set(exported)
    mid_term = {p.id: p for p in memory.get_pages([p for s in segments for p in s.page_ids])}
    assert len(mid_term) == sum(len(s.page_ids) for s in segments) == 7
    for segment in segments:
        assert all(mid_term[p].segment_id == segment.id for p in segment.page_ids)
        assert all(mid_term[p].tier == "mid_term" for p in segment.page_ids)
        stored = exported[segment.id]
        assert (segment.n_visit, segment.l_interaction) == (stored["n_visit"], stored["l_interaction"])
        assert segment.last_access_s == stored["last_access_s"] < clock.now.timestamp()
        assert segment.heat == pytest.approx(_expected_heat(memory, segment, clock))
        assert segment.heat < segment.l_interaction + 1  # recency has decayed below its full 1.0
        assert segment.pending_pages == len(stored["pending_page_ids"]) > 0
        assert segment.summary and segment.keywords
        assert not segment.is_hot  # threshold 100
    assert [s.heat for s in segments] == sorted((s.heat for s in segments), reverse=True)
    assert asyncio.run(memory.aget_segments()) == segments


def test_a_recall_visit_raises_heat_before_and_after_it_is_written(
    make_memory: Callable[..., MemoryOS], clock: Clock
) -> None:
    memory = make_memory(short_term_capacity=1, mid_term_heat_threshold=100)
    _conversation(memory)
    before = {s.id: s for s in memory.get_segments()}
    visited = memory.retrieve_memory("alpine hiking trails", top_k=3)
    segment_ids = {u.meta_data.get("segment_id") for u in visited.units} & set(before)
    assert segment_ids
    pending = {s.id: s for s in memory.get_segments()}  # the visits are not written yet
    memory.flush()  # ... now they are
    written = {s.id: s for s in memory.get_segments()}
    for segment_id in segment_ids:
        for seen in (pending[segment_id], written[segment_id]):
            assert seen.n_visit == before[segment_id].n_visit + 1
            assert seen.heat > before[segment_id].heat
            assert seen.heat == pytest.approx(_expected_heat(memory, seen, clock))
    stored = {s["id"]: s["n_visit"] for s in memory.export_memory()["segments"]}
    assert all(stored[sid] == written[sid].n_visit for sid in segment_ids)


def test_is_hot_is_what_promotion_picks(make_memory: Callable[..., MemoryOS], clock: Clock) -> None:
    events: list[tuple[str, dict[str, Any]]] = []
    memory = make_memory(short_term_capacity=1, mid_term_heat_threshold=5)
    _conversation(memory)
    segments = memory.get_segments()
    hot = {s.id for s in segments if s.is_hot}
    assert hot and hot != {s.id for s in segments}  # the 4-page topic is hot, the 3-page one not
    assert all(s.heat >= 5 and s.pending_pages for s in segments if s.is_hot)
    # The same store with an LLM: promotion analyses exactly the segments shown hot.
    promoting = make_memory(
        store=memory.store,
        llm=RuleBasedLLM(pages_per_topic=8),
        short_term_capacity=1,
        mid_term_heat_threshold=5,
        on_event=lambda name, data: events.append((name, data)),
    )
    promoting.flush("alice")  # nothing left to consolidate: only promotion's own pick runs
    promoted = [data for name, data in events if name == "promoted"]
    assert promoted
    analysed = {sid for data in promoted for sid in data["segment_ids"]}
    assert analysed == hot
    assert all(data["segments"] == len(data["segment_ids"]) for data in promoted)
    after = {s.id: s for s in promoting.get_segments()}
    assert all(after[sid].pending_pages == 0 and not after[sid].is_hot for sid in hot)


def test_segments_are_per_user_and_ids_are_checked(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=1)
    _conversation(memory, "bob")
    bobs = {s.id for s in memory.get_segments(user_id="bob")}
    assert bobs
    assert memory.get_segments() == []  # alice (the default user) has none
    _conversation(memory)
    assert not {s.id for s in memory.get_segments()} & bobs
    assert {s.id for s in memory.get_segments(user_id="bob")} == bobs
    for bad in ("", "a/b", 3):
        with pytest.raises(InvalidInputError):
            memory.get_segments(user_id=bad)  # type: ignore[arg-type]
