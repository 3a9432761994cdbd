"""A reply cut off by the token limit never leaves a cut-off string in memory; the cut is counted."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from memoryos_core import MemoryOS
from memoryos_core._types import ChatMessage
from memoryos_core.llm.fake import FunctionLLM, ScriptedLLM
from memoryos_core.llm.parsing import complete_json, was_truncated
from tests.conftest import topic_pages

CUT_CONSOLIDATION = (
    '{"continues_previous": false, "topics": [{"pages": [1, 2, 3, 4, 5, 6, 7, 8], '
    '"summary": "The user goes hiking in the mountains.", "keywords": ["hiking", "mountains", "alp'
)
CUT_OVERVIEW = (
    '{"continues_previous": false, "topics": [{"pages": [1, 2, 3, 4, 5, 6, 7, 8], '
    '"summary": "The user goes hiking in the mountains.", "keywords": ["hiking"], '
    '"overview": "The user hikes to cope with stress and has started counselin'
)
CUT_PROMOTION = (
    '{"profile": [{"trait": "hobby", "value": "hiking", "pages": [1]}], '
    '"user_knowledge": [{"text": "The user hikes in the Alps.", "pages": [1]}, '
    '{"text": "The user sees a counselin'
)


def test_the_cut_off_value_is_dropped_and_the_reply_flagged() -> None:
    value, raws = complete_json(ScriptedLLM([CUT_OVERVIEW]), [ChatMessage("user", "go")])
    topic = value["topics"][0]
    assert "overview" not in topic and topic["summary"] == "The user goes hiking in the mountains."
    assert was_truncated(raws[-1]) and not was_truncated(json.dumps(value))


def test_consolidation_keeps_no_cut_off_string_and_counts_the_cut(
    make_memory: Callable[..., MemoryOS],
) -> None:
    events: list[str] = []
    llm = ScriptedLLM([CUT_OVERVIEW])
    memory = make_memory(llm=llm, short_term_capacity=1, mid_term_heat_threshold=1000,
                         on_event=lambda name, details: events.append(name))  # fmt: skip
    memory.add_memories(topic_pages("hiking", 9))
    memory.flush()
    export = memory.export_memory()
    assert "counselin" not in json.dumps(export)
    mid = [p for p in export["pages"] if p["tier"] == "mid_term"]
    assert len(mid) == 8 and {p["chain_overview"] for p in mid} == {"The user goes hiking in the mountains."}
    assert memory.get_memory_stats().truncated_replies == 1 and "llm_truncated" in events
    assert memory.get_memory_stats().llm_fallbacks == 0  # what was complete was used


def test_a_cut_keyword_is_not_kept(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(llm=ScriptedLLM([CUT_CONSOLIDATION]), short_term_capacity=1,
                         mid_term_heat_threshold=1000)  # fmt: skip
    memory.add_memories(topic_pages("hiking", 9))
    memory.flush()
    [segment] = memory.export_memory()["segments"]
    assert segment["keywords"] == ["hiking", "mountains"]


def test_promotion_keeps_no_cut_off_knowledge(make_memory: Callable[..., MemoryOS]) -> None:
    def handler(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        if "organise the memory" in messages[0].content:
            pages = list(range(1, 17))
            return json.dumps({"topics": [{"pages": pages, "summary": "Hiking.", "keywords": ["hiking"]}]})
        return CUT_PROMOTION

    memory = make_memory(llm=FunctionLLM(handler), short_term_capacity=1, mid_term_heat_threshold=1)
    memory.add_memories(topic_pages("hiking", 4))
    memory.flush()
    profile = memory.get_user_profile()
    assert [item.text for item in profile.user_knowledge] == ["The user hikes in the Alps."]
    assert [(t.name, t.value) for t in profile.traits] == [("hobby", "hiking")]
    assert memory.get_memory_stats().truncated_replies >= 1
