"""Processes sharing one store take turns consolidating a user (a lease record in the store)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChatMessage, ChromaStore, FunctionLLM, MemoryOS, Record
from memoryos_core.bench.reliability_figures import consistency_problems
from memoryos_core.engine import lease, scheduler
from memoryos_core.engine.lease import LeaseBusyError, LeaseLostError, Leases
from memoryos_core.llm.rules import RuleBasedLLM
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


def _other_claim(store: ChromaStore, user_id: str, pid: int) -> None:
    """Another claimant's lease record landing over the holder's: what a claim that raced it through a
    server leaves when its write took longer than the confirmation delay (both saw themselves)."""
    other = {"owner": "late-claimant", "expires": time.time() + 60, "host": socket.gethostname(), "pid": pid}
    record = Record(f"lease:{user_id}", json.dumps(other), {"user_id": user_id, "key": "lease"})
    store.upsert("state", [record])


def _lease(store: ChromaStore, user_id: str) -> dict[str, Any]:
    lease_record: dict[str, Any] = json.loads(store.get("state", ids=[f"lease:{user_id}"])[0].document)
    return lease_record


def _dead_pid() -> int:
    """The pid of a process of this host that has exited: a lease holder known dead."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return dead.pid


def _checking_the_lease(memory: MemoryOS, call: Callable[..., Any], foreign: list[str]) -> Callable[..., Any]:
    """``call`` (a step that writes), noting in ``foreign`` the owner of the lease when it is not
    ``memory``'s as the step starts."""

    def checked(user_id: str, *args: Any) -> Any:
        owner = str(_lease(memory.store, user_id)["owner"])
        if owner != memory._runtime.leases.owner:
            foreign.append(owner)
        return call(user_id, *args)

    return checked


def _counting_llm() -> tuple[FunctionLLM, list[str]]:
    """The rule-based stand-in for an LLM, and the prompts it is asked, in order."""
    answered: list[str] = []
    rules = RuleBasedLLM(pages_per_topic=8)

    def answer(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        answered.append(messages[-1].content)
        return rules.complete(messages, json_mode=json_mode)

    return FunctionLLM(answer), answered


def _losing_the_lease_after_planning(
    memory: MemoryOS, monkeypatch: pytest.MonkeyPatch, pid: int, *, every_time: bool = False
) -> tuple[list[int], list[str]]:
    """Another claim (of process ``pid``) replaces ``memory``'s lease once its first consolidation batch is
    planned (after every one with ``every_time``); returns the pages of each batch planned and the owners of
    the foreign leases that batches were written under (``_checking_the_lease``)."""
    consolidator = memory._scheduler._consolidator
    plan, apply = consolidator._plan, consolidator._apply
    planned: list[int] = []
    foreign_writes: list[str] = []

    def plan_then_lose_the_lease(user_id: str, pages: Sequence[Record]) -> dict[str, Any]:
        planned.append(len(pages))
        out = plan(user_id, pages)
        if every_time or len(planned) == 1:
            _other_claim(memory.store, user_id, pid)
        return out

    monkeypatch.setattr(consolidator, "_plan", plan_then_lose_the_lease)
    monkeypatch.setattr(consolidator, "_apply", _checking_the_lease(memory, apply, foreign_writes))
    return planned, foreign_writes


def test_a_holder_whose_lease_another_claim_replaced_stops_at_its_next_renew(
    store_factory: Callable[[], ChromaStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_factory()
    store.open(dim=8, embedder_name="x")

    def expires() -> float:
        return float(_lease(store, "alice")["expires"])

    with Leases(store).hold("alice") as renew:
        claimed = expires()
        renew()  # still its own, and fresh: confirmed, not written again
        assert expires() == claimed
        with monkeypatch.context() as patched:  # a third of a longer lease has passed: extended
            patched.setattr(lease, "LEASE_TTL_S", 3 * lease.LEASE_TTL_S)
            renew()
        assert expires() > claimed
        _other_claim(store, "alice", os.getpid())
        with pytest.raises(LeaseLostError):
            renew()
    assert _lease(store, "alice")["owner"] == "late-claimant"


def test_a_consolidation_whose_lease_was_taken_over_writes_nothing_and_runs_again(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is confirmed between planning a batch and writing it: a pass whose lease another
    process's claim replaced meanwhile writes nothing, and ``flush`` claims the lease again (the other
    holder here is dead) and consolidates every page once."""
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(topic_pages("hiking", 10))
    planned, foreign_writes = _losing_the_lease_after_planning(memory, monkeypatch, _dead_pid())
    memory.flush()
    assert foreign_writes == []
    assert planned == [8, 8]  # planned, not written; planned again under the lease claimed back
    stats = memory.get_memory_stats()
    assert (stats.pending_pages, stats.mid_term_pages, stats.short_term_pages) == (0, 8, 2)
    assert consistency_problems(memory, "alice") == []


def test_a_pass_whose_lease_was_taken_over_after_consolidating_writes_no_heat_and_runs_again(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is confirmed again once the pages are consolidated, before the heat and long-term
    memory are written: a pass that lost it there leaves them to the pass that holds it."""
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(topic_pages("hiking", 10))
    scheduler = memory._scheduler
    consolidate, apply_visits = scheduler._consolidator.consolidate, scheduler._apply_visits
    passes: list[int] = []
    foreign_writes: list[str] = []
    dead_pid = _dead_pid()

    def consolidate_then_lose_the_lease(user_id: str, **kwargs: Any) -> int:
        moved = consolidate(user_id, **kwargs)
        passes.append(moved)
        if len(passes) == 1:
            _other_claim(memory.store, user_id, dead_pid)
        return moved

    monkeypatch.setattr(scheduler._consolidator, "consolidate", consolidate_then_lose_the_lease)
    monkeypatch.setattr(scheduler, "_apply_visits", _checking_the_lease(memory, apply_visits, foreign_writes))
    memory.flush()
    assert foreign_writes == []
    assert passes == [8, 0]  # consolidated, then the heat left to the pass that claimed the lease back
    assert consistency_problems(memory, "alice") == []


def test_a_pass_whose_lease_was_taken_over_before_it_began_replays_no_journal(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lease is confirmed before an interrupted batch's journal is replayed: the journal is the
    holder's, and another process replaying it meanwhile could write over the holder's next batch."""
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(topic_pages("hiking", 10))
    consolidator = memory._scheduler._consolidator
    consolidate, resume = consolidator.consolidate, consolidator.resume
    foreign_replays: list[str] = []
    dead_pid = _dead_pid()
    calls: list[str] = []

    def lose_the_lease_then_consolidate(user_id: str, **kwargs: Any) -> int:
        calls.append(user_id)
        if len(calls) == 1:
            _other_claim(memory.store, user_id, dead_pid)
        return consolidate(user_id, **kwargs)

    monkeypatch.setattr(consolidator, "consolidate", lose_the_lease_then_consolidate)
    monkeypatch.setattr(consolidator, "resume", _checking_the_lease(memory, resume, foreign_replays))
    memory.flush()
    assert foreign_replays == []
    assert len(calls) == 2
    stats = memory.get_memory_stats()
    assert (stats.pending_pages, stats.mid_term_pages) == (0, 8)


def test_an_analysis_whose_lease_was_taken_over_runs_again_and_counts_every_call(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``force_mid_term_analysis`` waits for the lease again like ``flush`` (it raised before), and the
    cost it returns counts the LLM calls of the pass that lost the lease (they were made, and paid)."""
    llm, answered = _counting_llm()
    memory = make_memory(short_term_capacity=2, llm=llm)
    memory.add_memories(topic_pages("hiking", 10))
    planned, foreign_writes = _losing_the_lease_after_planning(memory, monkeypatch, _dead_pid())
    answered.clear()
    cost = memory.force_mid_term_analysis()
    assert foreign_writes == []
    assert planned == [8, 8]
    analyses = [prompt for prompt in answered if '"user_knowledge"' in prompt]
    assert len(analyses) == 1 and len(answered) >= 3  # topic calls of both passes, and the analysis
    assert cost.llm_calls == len(answered)
    stats = memory.get_memory_stats()
    assert (stats.pending_pages, stats.mid_term_pages, stats.short_term_pages) == (0, 8, 2)


def test_a_flush_that_cannot_get_its_lease_back_raises_and_counts_the_calls_it_made(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live process keeps the lease past the wait: ``flush`` raises LeaseBusyError, and the LLM calls its
    stopped pass made are still in the session's cost (they were paid); nothing was written."""
    llm, answered = _counting_llm()
    memory = make_memory(short_term_capacity=2, llm=llm)
    memory.add_memories(topic_pages("hiking", 10))
    # (this process's pid: a live holder, whose lease is not taken back)
    _losing_the_lease_after_planning(memory, monkeypatch, os.getpid(), every_time=True)
    monkeypatch.setattr(scheduler, "LEASE_TTL_S", 0.5)  # the wait
    answered.clear()
    before = memory._runtime.session_cost("alice")
    with pytest.raises(LeaseBusyError):
        memory.flush()
    assert answered and memory._runtime.session_cost("alice").llm_calls - before.llm_calls == len(answered)
    assert memory.get_memory_stats().pending_pages == 8  # nothing consolidated
