"""Processes sharing one store take turns consolidating a user (a lease record in the store)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from memoryos_core import ChromaStore, MemoryOS, Record
from memoryos_core.engine.lease import LeaseBusyError, Leases
from memoryos_core.storage._folder import GENERATION_NAME
from tests.conftest import topic_pages


def test_racing_claimants_never_hold_one_user_together(store_factory: Callable[[], ChromaStore]) -> None:
    stores = [store_factory() for _ in range(3)]
    for store in stores:
        store.open(dim=8, embedder_name="x")
    holders: list[int] = []
    overlaps: list[int] = []
    wins = [0, 0, 0]

    def contend(index: int) -> None:
        leases = Leases(stores[index])
        for _ in range(8):
            try:
                with leases.hold("alice"):
                    holders.append(index)
                    if len(holders) > 1:
                        overlaps.append(len(holders))
                    time.sleep(0.01)
                    holders.remove(index)
                    wins[index] += 1
            except LeaseBusyError:
                time.sleep(0.005)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert overlaps == []
    assert sum(wins) >= 3  # progress was made
    assert stores[0].get("state", ids=["lease:alice"]) == []  # released


def test_an_expired_lease_is_taken_over(store_factory: Callable[[], ChromaStore]) -> None:
    store = store_factory()
    store.open(dim=8, embedder_name="x")
    stale = {"owner": "dead-process", "expires": time.time() - 1}
    store.upsert("state", [Record("lease:alice", json.dumps(stale), {"user_id": "alice", "key": "lease"})])
    with Leases(store).hold("alice"):
        pass
    live = {"owner": "live-process", "expires": time.time() + 60}
    store.upsert("state", [Record("lease:alice", json.dumps(live), {"user_id": "alice", "key": "lease"})])
    with pytest.raises(LeaseBusyError), Leases(store).hold("alice", wait_s=0.3):
        pass


def test_a_busy_user_is_retried_later_and_nothing_is_lost(
    make_memory: Callable[..., MemoryOS], store_factory: Callable[[], ChromaStore]
) -> None:
    first = make_memory(short_term_capacity=2)
    second = make_memory(short_term_capacity=2)
    first.add_memories(topic_pages("hiking", 10))
    with first._runtime.leases.hold("alice"):
        assert second._scheduler.run_due("alice") is True  # busy: try again later
        assert second.get_memory_stats().pending_pages == 8
    second.flush()
    stats = second.get_memory_stats()
    assert (stats.pending_pages, stats.mid_term_pages) == (0, 8)


def test_a_refused_claim_leaves_the_folder_as_it_was(tmp_path: Path) -> None:
    """A claim of a lease held elsewhere takes no exclusive lock: that would make every process
    sharing the folder reload its Chroma client."""
    store = ChromaStore(path=str(tmp_path))
    store.open(dim=8, embedder_name="test")
    generation = tmp_path / GENERATION_NAME
    try:
        with Leases(store).hold("alice"):
            before = generation.read_bytes()
            for _ in range(3):
                with pytest.raises(LeaseBusyError), Leases(store).hold("alice", wait_s=0.0):
                    pass
            assert generation.read_bytes() == before
    finally:
        store.close()
