"""get_pages / find_pages: pages of one user by id or by meta_data, from every tier and the journal."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, InvalidInputError, MemoryConfig, MemoryOS
from memoryos_core.llm.rules import RuleBasedLLM
from tests.conftest import topic_pages


def _tiered(make_memory: Callable[..., MemoryOS]) -> MemoryOS:
    """Alice with pages in the short-term, mid-term and archive tiers; Bob with a few pages."""
    memory = make_memory(llm=RuleBasedLLM(pages_per_topic=4), short_term_capacity=2, mid_term_capacity=1)
    for topic in ("hiking", "cooking", "coding"):
        memory.add_memories(topic_pages(topic, 4))
        memory.flush()
    memory.add_memories(topic_pages("hiking", 2, start=10), user_id="bob")
    return memory


def test_get_pages_reads_every_tier_in_the_order_asked(make_memory: Callable[..., MemoryOS]) -> None:
    memory = _tiered(make_memory)
    export = memory.export_memory()["pages"]
    by_tier: dict[str, str] = {}
    for page in export:
        by_tier.setdefault(page["tier"], page["id"])
    assert set(by_tier) == {"short_term", "mid_term", "archive"}

    asked = [by_tier["archive"], "pg_missing", by_tier["short_term"], by_tier["mid_term"], by_tier["archive"]]
    pages = memory.get_pages(asked)
    assert [p.id for p in pages] == [by_tier["archive"], by_tier["short_term"], by_tier["mid_term"]]
    assert [p.tier for p in pages] == ["archive", "short_term", "mid_term"]
    expected = {p["id"]: p for p in export}
    for page in pages:
        assert page.user_input == expected[page.id]["user_input"]
        assert page.meta_data == expected[page.id]["meta_data"]
        assert list(page.source_ids) == expected[page.id]["source_ids"] != []
    assert memory.get_pages([]) == [] and memory.get_pages(["pg_missing"]) == []


def test_another_users_pages_are_never_returned(make_memory: Callable[..., MemoryOS]) -> None:
    memory = _tiered(make_memory)
    bob_ids = [p.id for p in memory.recent_pages(user_id="bob")]
    assert len(bob_ids) == 2
    assert memory.get_pages(bob_ids) == []  # alice, the default user
    assert [p.id for p in memory.get_pages(bob_ids, user_id="bob")] == bob_ids
    assert memory.find_pages({"message_id": "hiking-10"}) == []
    assert [p.user_id for p in memory.find_pages({"message_id": "hiking-10"}, user_id="bob")] == ["bob"]


def test_find_pages_matches_every_pair_oldest_first(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    metas: list[dict[str, Any]] = [
        {"kind": "fact", "n": 1, "ok": True},
        {"kind": "fact", "n": 2, "ok": False},
        {"kind": "chat", "n": 1, "ok": True, "nested": {"kind": "fact"}},
        {"kind": "fact", "n": 1.0, "ok": True},
        {},
    ]
    ids = [
        r.page_id
        for r in memory.add_memories(
            [{"user_input": f"note {i}", "agent_response": "ok", "meta_data": m} for i, m in enumerate(metas)]
        )
    ]

    def found(meta: dict[str, Any], **kwargs: Any) -> list[str]:
        return [p.id for p in memory.find_pages(meta, **kwargs)]

    assert found({"kind": "fact"}) == [ids[0], ids[1], ids[3]]  # top-level keys only
    assert found({"kind": "fact", "n": 1}) == [ids[0], ids[3]]  # 1 == 1.0
    assert found({"ok": True}) == [ids[0], ids[2], ids[3]]
    assert found({"n": True}) == [] and found({"ok": 1}) == []  # a bool is not a number here
    assert found({"kind": "fact"}, limit=2) == [ids[1], ids[3]]  # the newest matches
    assert found({}) == ids
    assert found({"kind": "nothing"}) == [] and found({"missing": ""}) == []


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m: m.get_pages("pg_1"), "list of ids"),
        (lambda m: m.get_pages(["pg_1", "not an id!"]), "invalid page_id"),
        (lambda m: m.get_pages([1]), "invalid page_id"),
        (lambda m: m.get_pages(None), "list of ids"),
        (lambda m: m.get_pages(["pg_1"], user_id="bad user"), "invalid user_id"),
        (lambda m: m.find_pages([("kind", "fact")]), "mapping"),
        (lambda m: m.find_pages({1: "x"}), "keys must be str"),
        (lambda m: m.find_pages({"kind": ["fact"]}), "meta\\['kind'\\]"),
        (lambda m: m.find_pages({"kind": None}), "meta\\['kind'\\]"),
        (lambda m: m.find_pages({"n": float("nan")}), "finite"),
        (lambda m: m.find_pages({}, limit=0), "limit"),
        (lambda m: m.find_pages({}, limit=True), "limit"),
        (lambda m: m.find_pages({}, user_id=""), "invalid user_id"),
    ],
)
def test_bad_input_is_a_typed_error(
    make_memory: Callable[..., MemoryOS], call: Callable[[MemoryOS], object], match: str
) -> None:
    with pytest.raises(InvalidInputError, match=match):
        call(make_memory())


def test_pages_still_in_the_journal_are_found(tmp_path: Path) -> None:
    memory = MemoryOS(
        user_id="alice",
        store=ChromaStore(path=str(tmp_path)),
        embedder=HashingEmbedder(64),
        config=MemoryConfig(write_behind_s=30.0),  # the writer waits: pages stay in the journal
        background=True,
    )
    try:
        added = memory.add_memory("My cat Pixel likes tuna.", "Noted.", meta_data={"source_id": "m-1"})
        other = memory.add_memory("Bob's note.", "ok", meta_data={"source_id": "m-1"}, user_id="bob")
        assert memory.store.get("pages", where={"user_id": "alice"}) == []  # not in Chroma yet
        pages = memory.get_pages([added.page_id, other.page_id])
        assert [(p.id, p.tier, p.user_input, p.source_ids) for p in pages] == [
            (added.page_id, "short_term", "My cat Pixel likes tuna.", ("m-1",))
        ]
        assert [p.id for p in memory.find_pages({"source_id": "m-1"})] == [added.page_id]
        assert memory.store.get("pages", where={"user_id": "alice"}) == []  # read without a flush
    finally:
        memory.close()


def test_async_twins(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    added = memory.add_memory("I play chess.", "Fun.", meta_data={"topic": "chess"})

    async def run() -> tuple[list[str], list[str]]:
        by_id = await memory.aget_pages([added.page_id], user_id="alice")
        by_meta = await memory.afind_pages({"topic": "chess"}, user_id="alice", limit=1)
        return [p.id for p in by_id], [p.id for p in by_meta]

    assert asyncio.run(run()) == ([added.page_id], [added.page_id])
