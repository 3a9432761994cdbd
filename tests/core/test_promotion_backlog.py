"""A backlog of more than MAX_PAGES_PER_ANALYSIS pages reaches long-term memory page by page, exactly once."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import pytest

from memoryos_core import ChatMessage, FunctionLLM, MemoryConfig, MemoryOS, MidTermConfig
from memoryos_core.engine.promotion import MAX_ANALYSIS_FAILURES, MAX_PAGES_PER_ANALYSIS
from memoryos_core.engine.repository import Repository
from memoryos_core.llm.rules import RuleBasedLLM

TOPICS = {
    "hiking": "I love hiking mountain trails with my dog",
    "cooking": "I like cooking pasta with fresh basil",
    "music": "I am learning jazz guitar chords",
}
_MARKER = re.compile(r"note-(\w+-\d+)\b")
_NUMBERED = re.compile(r"^\[(\d+)\] ", re.MULTILINE)


class Crash(Exception):
    """The process dying in the middle of a promotion call."""


class Recorder:
    """RuleBasedLLM behind a FunctionLLM that records the pages of each answered promotion prompt."""

    def __init__(self, crash_at: int | None = None) -> None:
        self.rules = RuleBasedLLM(pages_per_topic=8)
        self.answered: list[list[str]] = []  # the page markers of each answered promotion prompt
        self.crash_at = crash_at

    def __call__(self, messages: Sequence[ChatMessage], json_mode: bool) -> str:
        prompt = messages[-1].content
        if '"user_knowledge"' in prompt:
            if self.crash_at is not None and len(self.answered) == self.crash_at:
                raise Crash  # never answered: its pages must come again after the restart
            pages = prompt.split("New pages:\n", 1)[1]
            self.answered.append(_MARKER.findall(pages))
            assert len(_NUMBERED.findall(pages)) == len(self.answered[-1])
        return self.rules.complete(messages, json_mode=json_mode)


BIG_SEGMENTS = MemoryConfig(mid_term=MidTermConfig(max_segment_pages=1000))
"""Segments that are never split, so one topic's whole backlog waits in one segment."""


@pytest.fixture
def make_memory(make_memory: Callable[..., MemoryOS]) -> Callable[..., MemoryOS]:
    """The suite's factory with segments that are never split (the backlog's shape is what is tested)."""

    def make(**kwargs: Any) -> MemoryOS:
        kwargs.setdefault("config", BIG_SEGMENTS)
        return make_memory(**kwargs)

    return make


def _pages(counts: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "user_input": f"{TOPICS[topic]}, note-{topic}-{i}.",
            "agent_response": "I will remember that.",
            "meta_data": {"message_id": f"{topic}-{i}"},
        }
        for topic, count in counts.items()
        for i in range(count)
    ]


def _offline_backlog(make_memory: Callable[..., MemoryOS], counts: dict[str, int]) -> list[int]:
    """Consolidate pages with no LLM (so nothing is analysed); the sizes of the segments."""
    memory = make_memory(short_term_capacity=1)
    memory.add_memories(_pages(counts))
    memory.flush()
    segments = memory.export_memory()["segments"]
    memory.close()
    assert sum(len(s["pending_page_ids"]) for s in segments) == sum(counts.values()) - 1
    return sorted(len(s["pending_page_ids"]) for s in segments)


def _counters(memory: MemoryOS) -> dict[str, Any]:
    return Repository(memory.store).user_state("alice").data


@pytest.mark.parametrize(
    "counts", [{"hiking": 77}, {"hiking": 26, "cooking": 25, "music": 26}], ids=["one-segment", "three"]
)
def test_a_backlog_is_analysed_in_calls_within_budget_every_page_once_across_a_restart(
    make_memory: Callable[..., MemoryOS], counts: dict[str, int]
) -> None:
    sizes = _offline_backlog(make_memory, counts)
    if len(counts) == 1:
        assert sizes == [76]  # one segment holds the whole backlog: it is split across calls
    first = Recorder(crash_at=1)
    memory = make_memory(short_term_capacity=1, llm=FunctionLLM(first))
    with pytest.raises(Crash):
        memory.force_mid_term_analysis()
    assert len(first.answered) == 1 and _counters(memory)["promoted_pages"] == MAX_PAGES_PER_ANALYSIS
    memory.close()  # the restart: what was analysed stays analysed, the rest is still pending

    second = Recorder()
    memory = make_memory(short_term_capacity=1, llm=FunctionLLM(second))
    memory.force_mid_term_analysis()
    answered = first.answered + second.answered
    seen = Counter(marker for prompt in answered for marker in prompt)
    consolidated = {
        p["meta_data"]["message_id"] for p in memory.export_memory()["pages"] if p["tier"] != "short_term"
    }
    assert set(seen) == consolidated and set(seen.values()) == {1}  # every page once, none twice
    assert all(len(prompt) <= MAX_PAGES_PER_ANALYSIS for prompt in answered)
    assert len(answered) == -(-len(consolidated) // MAX_PAGES_PER_ANALYSIS)  # 76 pages: 3 calls
    # Oldest first: the first call took the oldest pages.
    order = [m["meta_data"]["message_id"] for m in _pages(counts)]
    assert first.answered[0] == order[:MAX_PAGES_PER_ANALYSIS]
    state = _counters(memory)
    assert state["consolidated_pages"] == state["promoted_pages"] == len(consolidated) == 76
    assert "promotion_journal" not in state
    segments = memory.export_memory()["segments"]
    assert all(not s["pending_page_ids"] and s["n_visit"] == 0 for s in segments)
    memory.force_mid_term_analysis()  # nothing left: no call, no page twice
    assert len(second.answered) == len(answered) - 1


def test_a_failed_call_keeps_its_pages_pending_and_counts(make_memory: Callable[..., MemoryOS]) -> None:
    _offline_backlog(make_memory, {"hiking": 41})
    rules, failing = RuleBasedLLM(pages_per_topic=8), [True]

    def handler(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        return "not json at all" if failing[0] else rules.complete(messages, json_mode=json_mode)

    memory = make_memory(short_term_capacity=1, llm=FunctionLLM(handler))
    memory.force_mid_term_analysis()  # the first call fails (re-asked once): the segment waits, untouched
    state = _counters(memory)
    assert state["llm_fallbacks"] == 1 and state["promoted_pages"] == 0
    assert len(memory.export_memory()["segments"][0]["pending_page_ids"]) == 40
    failing[0] = False
    memory.force_mid_term_analysis()
    state = _counters(memory)
    assert state["promoted_pages"] == 40 and state["promotion_pages_given_up"] == 0


def test_pages_given_up_after_max_failures_are_counted(make_memory: Callable[..., MemoryOS]) -> None:
    _offline_backlog(make_memory, {"hiking": 31})
    memory = make_memory(short_term_capacity=1, llm=FunctionLLM(lambda messages, json_mode: "not json"))
    for _ in range(MAX_ANALYSIS_FAILURES):
        memory.force_mid_term_analysis()
    state = _counters(memory)
    assert state["promotion_pages_given_up"] == 30 and state["promoted_pages"] == 0
    assert state["llm_fallbacks"] == MAX_ANALYSIS_FAILURES
    assert memory.export_memory()["segments"][0]["pending_page_ids"] == []


def test_the_worker_sends_full_calls_and_a_flush_sends_the_rest(make_memory: Callable[..., MemoryOS]) -> None:
    _offline_backlog(make_memory, {"hiking": MAX_PAGES_PER_ANALYSIS + 9})
    recorder = Recorder()
    memory = make_memory(short_term_capacity=1, llm=FunctionLLM(recorder))
    memory._scheduler.run_due("alice")  # one background worker pass: full calls only
    assert [len(p) for p in recorder.answered] == [MAX_PAGES_PER_ANALYSIS]
    memory.flush()  # the partial tail goes now
    assert [len(p) for p in recorder.answered] == [MAX_PAGES_PER_ANALYSIS, 8]
    assert _counters(memory)["promoted_pages"] == MAX_PAGES_PER_ANALYSIS + 8
