"""ingest_batches on a real embedded store: all or nothing, and idempotent (stable page ids)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, InvalidInputError, MemoryOS
from memoryos_core.app.ingest import PageBatch, ingest_batches, page_ids


def open_memory(folder: Path, **kwargs: Any) -> MemoryOS:
    return MemoryOS(store=ChromaStore(path=str(folder / "chroma")), embedder=HashingEmbedder(32),
                    user_id="alice", **kwargs)  # fmt: skip


def turn(i: int, **extra: Any) -> dict[str, Any]:
    return {"user_input": f"Turn {i} about sailing.", "agent_response": "Nice.", **extra}


def test_the_same_turns_get_the_same_ids_and_repeats_stay_distinct() -> None:
    pages = [turn(1), turn(2), turn(1), turn(1, timestamp="2025-01-01")]
    ids = page_ids("alice", pages)
    assert len(set(ids)) == 4 and ids == page_ids("alice", pages)
    assert page_ids("alice", pages[1:2]) == ids[1:2]  # position in the file does not matter
    assert page_ids("bob", pages) != ids


def test_a_bad_page_in_a_later_batch_stores_nothing_for_any_user(tmp_path: Path) -> None:
    memory = open_memory(tmp_path, background=False)
    try:
        good = PageBatch("conv-1", "conv-1", [turn(i) for i in range(100)])
        bad = PageBatch("conv-2", "conv-2", [turn(1), turn(2, meta_data={"t": (1, 2)})])
        with pytest.raises(InvalidInputError, match="conv-2 item 2: meta_data"):
            ingest_batches(memory, [good, bad], chunk_pages=10)
        assert memory.export_memory("conv-1")["pages"] == [] and memory.export_memory("conv-2")["pages"] == []
    finally:
        memory.close()


@pytest.mark.parametrize("background", [True, False], ids=["write-behind", "inline"])
def test_ingesting_twice_never_duplicates(tmp_path: Path, background: bool) -> None:
    batch = PageBatch(None, "t.jsonl", [turn(i) for i in range(30)])
    memory = open_memory(tmp_path, background=background)
    try:
        first = ingest_batches(memory, [batch], chunk_pages=8)
        memory.flush()
        before = memory.export_memory()
        second = ingest_batches(memory, [batch], chunk_pages=8)
        memory.flush()
        assert (first.stored, first.already_stored) == ({"alice": 30}, {"alice": 0})
        assert (second.stored, second.already_stored) == ({"alice": 0}, {"alice": 30})
        assert memory.export_memory() == before
    finally:
        memory.close()
    reopened = open_memory(tmp_path, background=background)  # another process, later
    try:
        assert ingest_batches(reopened, [batch]).stored == {"alice": 0}
        assert len(reopened.export_memory()["pages"]) == 30
    finally:
        reopened.close()


class Interrupted(Exception):
    """The import stopping mid-file (a lost lease, a store error, Ctrl-C)."""


def test_the_chunks_stored_before_a_failure_are_registered_and_consolidated(tmp_path: Path) -> None:
    batch = PageBatch("bob", "t.jsonl", [turn(i) for i in range(30)])
    memory = open_memory(tmp_path, background=True)
    try:

        def stop_after_two_chunks(handled: int) -> None:
            progress.append(handled)
            if len(progress) == 2:
                raise Interrupted

        progress: list[int] = []
        with pytest.raises(Interrupted):
            ingest_batches(memory, [batch], chunk_pages=8, on_progress=stop_after_two_chunks)
        assert "bob" in memory.list_users()
        memory.flush()  # the stored chunks are this instance's pending work
        stats = memory.get_memory_stats("bob")
        assert (stats.pending_pages, stats.short_term_pages + stats.mid_term_pages) == (0, 16)
        assert ingest_batches(memory, [batch], chunk_pages=8).stored == {"bob": 14}  # the rest, once
    finally:
        memory.close()
