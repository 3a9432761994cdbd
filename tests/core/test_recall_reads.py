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
