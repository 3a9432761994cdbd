"""Async twins share the sync implementation; consolidation runs in the background; flush waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from memoryos_core import MemoryConfig, MemoryOS, ShortTermConfig
from memoryos_core.llm.rules import RuleBasedLLM
from tests.conftest import topic_pages


def _shape(export: dict[str, object]) -> list[tuple[str, str, str]]:
    return [(p["user_input"], p["agent_response"], p["tier"]) for p in export["pages"]]  # type: ignore[index]


def test_async_twins_give_the_same_results_as_sync(make_memory: Callable[..., MemoryOS]) -> None:
    pages = topic_pages("hiking", 6) + topic_pages("coding", 6)
    sync = make_memory(short_term_capacity=3, user_id="sync_user")
    for page in pages:
        sync.add_memory(**page)
    sync.flush()
    sync_context = sync.retrieve_memory("python bugs", top_k=3)

    amem = make_memory(short_term_capacity=3, user_id="async_user")

    async def run() -> tuple[object, ...]:
        for page in pages:
            await amem.aadd_memory(**page)
        await amem.aflush()
        return (
            await amem.aretrieve_memory("python bugs", top_k=3),
            await amem.aexport_memory(),
            await amem.aget_memory_stats(),
            await amem.aget_user_profile(),
        )

    context, export, stats, profile = asyncio.run(run())
    assert _shape(export) == _shape(sync.export_memory())
    assert [u.text for u in context.all_units] == [u.text for u in sync_context.all_units]
    assert stats.mid_term_pages == sync.get_memory_stats().mid_term_pages == 9
    assert profile.user_id == "async_user"


def test_background_worker_consolidates_without_flush(make_memory: Callable[..., MemoryOS]) -> None:
    config = MemoryConfig(short_term=ShortTermConfig(capacity=2, batch_pages=4, max_wait_s=0.5))
    memory = make_memory(config=config, background=True, llm=RuleBasedLLM(), mid_term_heat_threshold=1000)
    started = time.perf_counter()
    for page in topic_pages("hiking", 7):
        memory.add_memory(**page)
    assert time.perf_counter() - started < 5  # no LLM call in the caller's path
    deadline = time.monotonic() + 20
    while memory.get_memory_stats().mid_term_pages < 5 and time.monotonic() < deadline:
        time.sleep(0.1)  # 4 by a full batch, then 1 after max_wait_s
    stats = memory.get_memory_stats()
    assert (stats.short_term_pages, stats.pending_pages, stats.mid_term_pages) == (2, 0, 5)


def test_flush_waits_for_all_pending_work(make_memory: Callable[..., MemoryOS]) -> None:
    config = MemoryConfig(short_term=ShortTermConfig(capacity=2, batch_pages=50, max_wait_s=3600))
    memory = make_memory(config=config, background=True)
    memory.add_memories(topic_pages("cooking", 9))
    assert memory.get_memory_stats().pending_pages == 7  # a partial batch waits for more pages
    memory.flush()
    stats = memory.get_memory_stats()
    assert (stats.pending_pages, stats.mid_term_pages) == (0, 7)
