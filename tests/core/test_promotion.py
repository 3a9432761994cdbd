"""Hot segments (every one, not only the hottest) are analysed into profile and knowledge."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

from memoryos_core import ChatMessage, FunctionLLM, MemoryOS
from memoryos_core.llm.rules import RuleBasedLLM
from tests.conftest import Clock

FACTS = {
    "hiking": "I love hiking in the alpine mountains on weekends",
    "cooking": "I enjoy cooking italian pasta for my friends",
    "coding": "I work as a python developer at a startup",
}
REPLIES = {
    "hiking": "I am glad the outdoors suit you.",
    "cooking": "I can share a risotto recipe.",
    "coding": "I will help you debug.",
}


def _add_topics(memory: MemoryOS, per_topic: int) -> None:
    for topic, fact in FACTS.items():
        memory.add_memories(
            [
                {
                    "user_input": f"{fact}, {i}.",
                    "agent_response": REPLIES[topic],
                    "meta_data": {"message_id": f"{topic}-{i}"},
                }
                for i in range(per_topic)
            ]
        )


def test_every_hot_segment_is_promoted_with_provenance(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(
        llm=RuleBasedLLM(pages_per_topic=8), short_term_capacity=1, mid_term_heat_threshold=5
    )
    _add_topics(memory, per_topic=6)
    memory.add_memory("bye", "see you")  # pushes the last topic page out of short-term memory
    memory.flush()
    export = memory.export_memory()
    assert len(export["segments"]) == 3
    assert all(
        s["l_interaction"] == 0 and s["n_visit"] == 0 and not s["pending_page_ids"]
        for s in export["segments"]
    )
    knowledge = {k["text"] for k in export["user_knowledge"]}
    for fact in FACTS.values():
        assert any(fact in text for text in knowledge)
    page_ids = {p["id"] for p in export["pages"]}
    for item in export["user_knowledge"] + export["assistant_knowledge"]:
        assert item["page_ids"] and set(item["page_ids"]) <= page_ids
        assert item["source_ids"]
    traits = {t["name"] for t in export["profile"]}
    assert {"love", "enjoy", "work"} <= traits
    assert export["assistant_knowledge"]


def test_cold_segments_are_not_analysed(make_memory: Callable[..., MemoryOS]) -> None:
    llm = RuleBasedLLM()
    memory = make_memory(llm=llm, short_term_capacity=1, mid_term_heat_threshold=50)
    _add_topics(memory, per_topic=3)
    memory.flush()
    assert memory.get_user_profile().traits == ()
    assert all('"user_knowledge"' not in json.dumps(call) for call in [llm.calls])
    assert memory.get_memory_stats().hot_segments == 0


def test_profile_is_updated_incrementally_not_regenerated(make_memory: Callable[..., MemoryOS]) -> None:
    prompts: list[str] = []
    rules = RuleBasedLLM(pages_per_topic=8)

    def handler(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        prompts.append(messages[-1].content)
        return rules.complete(messages, json_mode=json_mode)

    memory = make_memory(llm=FunctionLLM(handler), short_term_capacity=1, mid_term_heat_threshold=3)
    memory.add_memories(
        [{"user_input": f"I work as a nurse, shift {i}.", "agent_response": "ok"} for i in range(5)]
    )
    memory.flush()
    memory.add_memories(
        [{"user_input": f"I love jazz music, song {i}.", "agent_response": "ok"} for i in range(5)]
    )
    memory.flush()
    profile = {t.name: t.value for t in memory.get_user_profile().traits}
    assert "nurse" in profile["work"] and "jazz" in profile["love"]
    promotion_prompts = [p for p in prompts if '"user_knowledge"' in p]
    assert len(promotion_prompts) == 2
    assert "nurse" in promotion_prompts[1]  # the current profile is given, only new pages analysed
    assert "shift 0" not in promotion_prompts[1]


def test_without_an_llm_promotion_is_skipped_and_reported(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=1, mid_term_heat_threshold=3)
    _add_topics(memory, per_topic=5)
    memory.flush()
    stats = memory.get_memory_stats()
    assert stats.hot_segments >= 1 and stats.skipped_llm_steps >= 1
    assert stats.profile_traits == 0 and stats.user_knowledge == 0


def test_retrieval_hits_heat_segments_until_they_are_promoted(
    make_memory: Callable[..., MemoryOS], clock: Clock
) -> None:
    llm = RuleBasedLLM(pages_per_topic=8)
    memory = make_memory(llm=llm, short_term_capacity=1, mid_term_heat_threshold=6)
    memory.add_memories(
        [{"user_input": f"I love hiking in the alps, trip {i}.", "agent_response": "nice"} for i in range(4)]
    )
    memory.flush()
    [segment] = memory.export_memory()["segments"]
    assert (segment["l_interaction"], segment["n_visit"]) == (3, 0)  # heat 3 + 1 < 6
    clock.advance(60)
    for _ in range(2):
        memory.retrieve_memory("hiking alps trip")
        memory.flush()
    [segment] = memory.export_memory()["segments"]
    assert segment["n_visit"] == 0 and segment["l_interaction"] == 0  # 2 visits made it hot: analysed, reset
    assert memory.get_user_profile().user_knowledge
