"""A recall reads from the store only the pages it returns: when one of the best pages leaves the
store between the ranking and the read (another process deleted it), the next best takes its place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from memoryos_core import HashingEmbedder, MemoryOS


def test_a_best_page_deleted_before_it_is_read_is_replaced_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = MemoryOS(data_storage_path=str(tmp_path / "data"), user_id="alice", embedder=HashingEmbedder(64))
    try:
        for i in range(8):
            memory.add_memory(f"We saw a quokka on Rottnest, day {i}", "Lovely.")
        for i in range(30):
            memory.add_memory(f"I walk the dog on trail {i}", "Nice.")
        memory.flush()
        before = memory.retrieve_memory("quokka", top_k=4).units
        assert len(before) == 4 and all("quokka" in u.text for u in before)
        gone, store, read = before[1].id, memory.store, memory.store.get

        def deleted_meanwhile(kind: str, **kwargs: Any) -> Any:
            records = read(kind, **kwargs)  # type: ignore[arg-type]
            if kind == "pages" and kwargs.get("ids") is not None and gone in kwargs["ids"]:
                store.delete("pages", ids=[gone], where={"user_id": "alice"})  # by another process
                records = [r for r in records if r.id != gone]
            return records

        monkeypatch.setattr(store, "get", deleted_meanwhile)
        after = memory.retrieve_memory("quokka", top_k=4).units
        assert len(after) == 4 and gone not in [u.id for u in after]
        assert [u.id for u in after if u.id in {b.id for b in before}] == [
            before[0].id,
            *[b.id for b in before[2:]],
        ]
    finally:
        memory.close()


def test_a_page_stored_around_the_engine_is_indexed_and_scored_in_the_same_recall(tmp_path: Path) -> None:
    """Chroma's search runs beside the lexical scoring: a page it finds that the word index lacks (written
    by another process, or around the engine) is indexed and the lexical scores computed again."""
    import time

    from memoryos_core._types import Page, render_page
    from memoryos_core.engine.records import page_record

    embedder = HashingEmbedder(64)
    memory = MemoryOS(data_storage_path=str(tmp_path / "data"), user_id="alice", embedder=embedder)
    try:
        for i in range(30):
            memory.add_memory(f"I walk the dog on trail {i}", "Nice.")
        memory.flush()
        assert all("quokka" not in u.text for u in memory.retrieve_memory("quokka").units)  # index built
        page = Page(
            "around_1", "alice", "default_assistant", "We saw a quokka on Rottnest", "Lovely.",
            "2025-01-01 00:00:00", "mid_term", created_ns=time.time_ns(),
        )  # fmt: skip
        text = render_page(page.user_input, page.agent_response, page.timestamp)
        memory.store.upsert("pages", [page_record(page, embedder.embed([text])[0], ts_s=0.0, source_ids=())])
        units = memory.retrieve_memory("quokka Rottnest").units
        assert units[0].id == "around_1" and units[0].score_parts["lexical"] > 0
    finally:
        memory.close()


def test_recalls_from_many_threads_match_one_at_a_time_and_close_ends_the_pool(tmp_path: Path) -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    before = set(threading.enumerate())  # (an earlier test's instance may still be open)
    memory = MemoryOS(data_storage_path=str(tmp_path / "data"), user_id="alice", embedder=HashingEmbedder(64))
    try:
        for i in range(40):
            memory.add_memory(f"Day {i}: we saw a quokka, then walked trail {i % 7}", "Lovely.")
        memory.flush()
        queries = [f"quokka trail {i % 7}" for i in range(24)]

        def recall(query: str) -> list[tuple[str, float]]:
            return [(u.id, u.score) for u in memory.retrieve_memory(query, update_heat=False).units]

        alone = [recall(q) for q in queries]
        with ThreadPoolExecutor(max_workers=6) as callers:
            assert list(callers.map(recall, queries)) == alone
    finally:
        memory.close()
    left = set(threading.enumerate()) - before
    assert not [t for t in left if t.name.startswith("memoryos-recall") and t.is_alive()]
