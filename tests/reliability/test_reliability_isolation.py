"""Isolation: random cross-user queries never return another user's memory; deleting a user (or a page)
leaves nothing of it in any collection and touches no one else."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS
from memoryos_core.bench.reliability_child import CRASH_CONFIG, StoreSpec
from memoryos_core.bench.reliability_figures import (
    check_isolation,
    consistency_problems,
    context_leaks,
    fill_users,
    owned_ids,
    user_token,
)
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.storage.base import KINDS

SIZES = {"embedded": (20, 1000), "server": (10, 300)}  # users, cross-user queries


@pytest.fixture
def memory(store_spec: StoreSpec) -> Iterator[MemoryOS]:
    """MemoryOS with the rule-based LLM, so users also get segments, knowledge and a profile."""
    memory = MemoryOS(store=store_spec.make(), embedder=HashingEmbedder(64), llm=RuleBasedLLM(),
                      config=CRASH_CONFIG, background=False)  # fmt: skip
    yield memory
    memory.close()


@pytest.fixture
def local_memory(tmp_path: Path) -> Iterator[MemoryOS]:
    """The same on an embedded store only: for checks that do not depend on the backend."""
    memory = MemoryOS(store=ChromaStore(path=str(tmp_path / "chroma")), embedder=HashingEmbedder(64),
                      llm=RuleBasedLLM(), config=CRASH_CONFIG, background=False)  # fmt: skip
    yield memory
    memory.close()


@pytest.mark.slow  # soak: thousands of random cross-user queries from four threads; ~25-30 s per store
def test_cross_user_queries_from_four_threads_never_leak(memory: MemoryOS, store_spec: StoreSpec) -> None:
    users, queries = SIZES["embedded" if store_spec.path else "server"]
    names = fill_users(memory, users, 12, random.Random(5))
    profile = memory.get_user_profile(user_id=names[0])
    assert profile.traits and profile.user_knowledge  # every tier is populated, so every tier is tested
    results: list[dict[str, Any]] = []

    def run(seed: int) -> None:
        results.append(check_isolation(memory, names, queries // 4, random.Random(seed)))

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert sum(r["cross_user_queries"] for r in results) == queries
    assert [e for r in results for e in r["leak_examples"]] == []
    assert sum(r["leaks"] + r["duplicate_units"] for r in results) == 0


def test_the_leak_check_sees_a_leak(local_memory: MemoryOS) -> None:
    """The check above can fail: another user's recall is flagged unit by unit."""
    names = fill_users(local_memory, 2, 8, random.Random(1))
    context = local_memory.retrieve_memory(f"{user_token(1)} hiking", user_id=names[1])
    leaks = context_leaks(context, names[0], owned_ids(local_memory, names[0]), user_token(0))
    assert len(leaks) >= len(context.all_units) > 0


def _everything_of(memory: MemoryOS, user: str, token: str) -> list[str]:
    """Every record in any collection that belongs to, is named after, or quotes ``user``."""
    found = []
    for kind in KINDS:
        found += [f"{kind}:{r.id}" for r in memory.store.get(kind, where={"user_id": user})]
        for record in memory.store.get(kind):
            text = f"{record.id} {record.document} {json.dumps(record.metadata, ensure_ascii=False)}"
            if token in text or record.id.endswith(f":{user}"):
                found.append(f"{kind}:{record.id} mentions {user}")
    return found


def test_deleting_a_user_leaves_nothing_of_them_and_touches_no_one_else(
    memory: MemoryOS, store_spec: StoreSpec
) -> None:
    names = fill_users(memory, 4, 12, random.Random(2))
    victim, others = names[0], names[1:]
    memory.add_memories(
        [{"user_input": f"I love {user_token(0)} more.", "agent_response": "ok"}] * 3, user_id=victim
    )
    memory.retrieve_memory(f"{user_token(0)} hiking", user_id=victim)  # pending visits and pages too
    before = {user: memory.export_memory(user_id=user) for user in others}
    assert _everything_of(memory, victim, user_token(0))  # there was something to delete
    assert memory.delete_memory(everything=True, user_id=victim) == 15
    memory.flush()  # whatever was pending for the victim must not come back
    assert _everything_of(memory, victim, user_token(0)) == []
    assert victim not in memory.list_users()
    assert {user: memory.export_memory(user_id=user) for user in others} == before
    reopened = MemoryOS(store=store_spec.make(), embedder=HashingEmbedder(64), config=CRASH_CONFIG,
                        background=False)  # fmt: skip
    assert reopened.export_memory(user_id=victim)["pages"] == []  # and not in another instance either
    reopened.close()


def test_a_deleted_page_leaves_no_trace_in_summaries_knowledge_or_profile(local_memory: MemoryOS) -> None:
    pages = [{"user_input": "I love zxsecretq gardens.", "agent_response": "I will remember it."}]
    pages += [
        {"user_input": f"I love gardens with roses, day {i}.", "agent_response": "Nice."} for i in range(7)
    ]
    ids = [r.page_id for r in local_memory.add_memories(pages, user_id="gardener")]
    local_memory.flush()
    assert "zxsecretq" in json.dumps(local_memory.export_memory(user_id="gardener"))
    local_memory.delete_memory(ids[0], user_id="gardener")
    export = local_memory.export_memory(user_id="gardener")
    assert sorted(p["id"] for p in export["pages"]) == sorted(ids[1:])
    assert consistency_problems(local_memory, "gardener") == []
    assert [
        k for k in ("segments", "profile", "user_knowledge") if "zxsecretq" in json.dumps(export[k])
    ] == []


def test_a_deleted_page_is_not_quoted_by_its_neighbours(local_memory: MemoryOS) -> None:
    pages = [{"user_input": "I love zxsecretq gardens.", "agent_response": "I will remember it."}]
    pages += [
        {"user_input": f"I love gardens with roses, day {i}.", "agent_response": "Nice."} for i in range(7)
    ]
    ids = [r.page_id for r in local_memory.add_memories(pages, user_id="gardener")]
    local_memory.flush()
    local_memory.delete_memory(ids[0], user_id="gardener")
    assert _everything_of(local_memory, "nobody", "zxsecretq") == []


def test_importing_knowledge_without_ids_never_takes_another_users_item(local_memory: MemoryOS) -> None:
    local_memory.import_memory(
        {"pages": [], "user_knowledge": [{"text": "Alice is allergic to peanuts"}]}, user_id="alice"
    )
    local_memory.import_memory({"pages": [], "user_knowledge": [{"text": "Bob plays chess"}]}, user_id="bob")
    assert [k.text for k in local_memory.get_user_profile(user_id="alice").user_knowledge] == [
        "Alice is allergic to peanuts"
    ]


def test_importing_a_segment_id_of_another_user_never_takes_it(local_memory: MemoryOS) -> None:
    pages = [{"user_input": f"I went hiking, day {i}.", "agent_response": "ok"} for i in range(10)]
    local_memory.add_memories(pages, user_id="carol")
    local_memory.flush()
    before = local_memory.export_memory(user_id="carol")
    stolen = {"id": before["segments"][0]["id"], "summary": "now mine", "page_ids": []}
    local_memory.import_memory({"pages": [], "segments": [stolen]}, user_id="mallory")
    assert local_memory.export_memory(user_id="carol") == before
    assert consistency_problems(local_memory, "carol") == []
