"""add_memory stores durably, validates at the boundary, and keeps every user apart."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memoryos_core import InvalidInputError, MemoryOS, NotFoundError
from tests.conftest import topic_pages


def _page_count(memory: MemoryOS, user: str) -> int:
    return len(memory.export_memory(user)["pages"])


def test_add_returns_the_stored_page_with_its_cost(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    result = memory.add_memory(
        "I like tea.", "Noted!", timestamp="2024-05-01 10:00:00", meta_data={"message_id": "m1"}
    )
    assert result.page_id.startswith("pg_") and result.user_id == "alice"
    assert result.cost.llm_calls == 0 and result.cost.ms > 0
    [page] = memory.export_memory()["pages"]
    assert (page["id"], page["user_input"], page["agent_response"]) == (
        result.page_id,
        "I like tea.",
        "Noted!",
    )
    assert page["timestamp"] == "2024-05-01 10:00:00" and page["tier"] == "short_term"
    assert page["source_ids"] == ["m1"] and page["meta_data"] == {"message_id": "m1"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"user_input": "", "agent_response": "  "}, "non-empty"),
        ({"user_input": b"bytes", "agent_response": "x"}, "must be a str"),
        ({"user_input": "\ud800", "agent_response": "x"}, "Unicode"),
        ({"user_input": "a\x00b", "agent_response": "x"}, "NUL"),
        ({"user_input": "x" * 200_001, "agent_response": "x"}, "limit"),
        ({"user_input": "x", "agent_response": "y", "meta_data": {"k": object()}}, "JSON"),
        ({"user_input": "x", "agent_response": "y", "meta_data": ["not", "a", "dict"]}, "dict"),
        ({"user_input": "x", "agent_response": "y", "timestamp": 12345}, "timestamp"),
    ],
)
def test_bad_input_raises_a_typed_error_and_stores_nothing(
    make_memory: Callable[..., MemoryOS], kwargs: dict[str, object], message: str
) -> None:
    memory = make_memory()
    memory.add_memory("keep me", "kept")
    with pytest.raises(InvalidInputError, match=message):
        memory.add_memory(**kwargs)  # type: ignore[arg-type]
    assert _page_count(memory, "alice") == 1


def test_deeply_nested_meta_data_is_rejected_cleanly(make_memory: Callable[..., MemoryOS]) -> None:
    nested: dict[str, object] = {}
    cursor = nested
    for _ in range(5000):
        cursor["k"] = {}
        cursor = cursor["k"]  # type: ignore[assignment]
    memory = make_memory()
    with pytest.raises(InvalidInputError):
        memory.add_memory("x", "y", meta_data=nested)
    assert _page_count(memory, "alice") == 0


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "a\\b", " alice", "x" * 129, "a..b", "-lead", 42])
def test_unsafe_ids_are_rejected(make_memory: Callable[..., MemoryOS], bad: object) -> None:
    memory = make_memory()
    with pytest.raises(InvalidInputError):
        memory.add_memory("x", "y", user_id=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        memory.retrieve_memory("x", user_id=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError):
        memory.add_memory("x", "y", assistant_id=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("good", ["alice", "user_42", "a.b@example.com", "tenant:user-1", "A" * 128])
def test_safe_ids_are_accepted(make_memory: Callable[..., MemoryOS], good: str) -> None:
    memory = make_memory()
    memory.add_memory("x", "y", user_id=good)
    assert _page_count(memory, good) == 1


def test_one_instance_serves_many_users_without_leaks(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=3)
    memory.add_memories(topic_pages("hiking", 12), user_id="alice")
    memory.add_memories(topic_pages("cooking", 12), user_id="bob")
    memory.flush()
    for user, other_topic in (("alice", "pasta"), ("bob", "hiking")):
        context = memory.retrieve_memory(f"{other_topic} day 3", user_id=user, top_k=20)
        owners = {page["id"] for page in memory.export_memory(user)["pages"]}
        assert context.all_units and all(set(unit.page_ids) <= owners for unit in context.all_units)
        assert all(other_topic not in unit.text for unit in context.all_units)
        stats = memory.get_memory_stats(user)
        assert stats.short_term_pages + stats.mid_term_pages == 12
    assert memory.get_memory_stats("carol").short_term_pages == 0
    assert memory.retrieve_memory("anything", user_id="carol").all_units == ()


def test_per_call_ids_override_the_instance_defaults(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(user_id="default_user", assistant_id="bot_a")
    memory.add_memory("hello", "hi", user_id="zoe", assistant_id="bot_b")
    [page] = memory.export_memory("zoe")["pages"]
    assert page["assistant_id"] == "bot_b"
    assert memory.export_memory()["pages"] == []


def test_batch_add_validates_everything_before_storing(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    pages = [*topic_pages("hiking", 3), {"user_input": "", "agent_response": ""}]
    with pytest.raises(InvalidInputError):
        memory.add_memories(pages)
    assert _page_count(memory, "alice") == 0
    results = memory.add_memories(topic_pages("hiking", 3))
    assert [p["id"] for p in memory.export_memory()["pages"]] == [r.page_id for r in results]


def test_recent_pages_are_the_newest_in_order_and_scoped(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=3)
    memory.add_memories(topic_pages("hiking", 8))
    memory.add_memories(topic_pages("cooking", 2), user_id="bob")
    memory.flush()
    recent = memory.recent_pages()
    assert [p.meta_data["message_id"] for p in recent] == ["hiking-5", "hiking-6", "hiking-7"]
    assert [p.tier for p in recent] == ["short_term"] * 3
    five = memory.recent_pages(5)
    assert [p.meta_data["message_id"] for p in five] == [f"hiking-{i}" for i in range(3, 8)]
    assert five[0].tier == "mid_term"
    assert [p.meta_data["message_id"] for p in memory.recent_pages(user_id="bob")] == [
        "cooking-0",
        "cooking-1",
    ]
    with pytest.raises(InvalidInputError):
        memory.recent_pages(0)


def test_update_memory_changes_a_page_in_place(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    first = memory.add_memory("What should I cook tonight?", "", meta_data={"message_id": "h1"})
    memory.add_memory("Thanks!", "You're welcome.")
    memory.update_memory(
        first.page_id, agent_response="Try a mushroom risotto.", meta_data={"message_ids": ["h1", "a1"]}
    )
    pages = memory.export_memory()["pages"]
    assert pages[0]["id"] == first.page_id and len(pages) == 2  # same id, same place
    assert pages[0]["agent_response"] == "Try a mushroom risotto." and pages[0]["source_ids"] == ["h1", "a1"]
    best = memory.retrieve_memory("risotto mushroom").all_units[0]
    assert best.id == first.page_id
    with pytest.raises(InvalidInputError):
        memory.update_memory(first.page_id, user_input="", agent_response=" ")
    with pytest.raises(NotFoundError):
        memory.update_memory(first.page_id, agent_response="x", user_id="bob")
    assert memory.export_memory()["pages"][0]["agent_response"] == "Try a mushroom risotto."


def test_list_users_and_skipping_heat_updates(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=1)
    memory.add_memories(topic_pages("hiking", 4), user_id="ann")
    memory.add_memory("hi", "hello", user_id="ben")
    assert memory.list_users() == ["ann", "ben"]
    memory.flush()
    memory.retrieve_memory("hiking trail", user_id="ann", update_heat=False)
    memory.flush()
    assert {s["n_visit"] for s in memory.export_memory("ann")["segments"]} == {0}
    memory.retrieve_memory("hiking trail", user_id="ann")
    memory.flush()
    assert max(s["n_visit"] for s in memory.export_memory("ann")["segments"]) == 1
    memory.delete_memory(everything=True, user_id="ben")
    assert memory.list_users() == ["ann"]
