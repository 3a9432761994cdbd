"""MemoryOSStore: LangGraph's BaseStore API over MemoryOS, one namespace per user."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain.tools import ToolRuntime
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.tools import tool
from langgraph.store.base import GetOp, InvalidNamespaceError, PutOp

from memoryos_core import ChromaStore, HashingEmbedder, InvalidInputError, MemoryConfig, MemoryOS
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_langchain import MemoryOSMiddleware, MemoryOSStore
from tests.adapters.langchain.fakes import RecordingChatModel, replies

ALICE = ("memories", "alice")
BOB = ("memories", "bob")


def test_put_get_replace_delete(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    store = MemoryOSStore(memory)
    store.put(ALICE, "diet", {"text": "Alice is vegetarian", "confidence": 0.9})
    first = store.get(ALICE, "diet")
    assert first is not None and first.value == {"text": "Alice is vegetarian", "confidence": 0.9}
    assert first.namespace == ALICE and first.key == "diet"

    store.put(ALICE, "diet", {"text": "Alice is vegan"})
    second = store.get(ALICE, "diet")
    assert second is not None and second.value == {"text": "Alice is vegan"}
    assert second.created_at == first.created_at and second.updated_at >= first.updated_at
    pages = memory.export_memory(user_id="alice")["pages"]
    assert [p["user_input"] for p in pages] == ["Alice is vegan"]  # replaced, not duplicated
    assert store.get(BOB, "diet") is None

    store.delete(ALICE, "diet")
    assert store.get(ALICE, "diet") is None
    assert memory.export_memory(user_id="alice")["pages"] == []


def test_search_is_recall_scoped_to_one_user(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    store = MemoryOSStore(memory)
    store.put(ALICE, "pet", {"text": "Alice has a cat called Pixel", "kind": "fact"})
    store.put(ALICE, "job", {"text": "Alice works as a nurse", "kind": "fact"})
    memory.add_memory("My cat Pixel sleeps all day.", "Cats do that.", user_id="alice")
    store.put(BOB, "pet", {"text": "Bob has a cat called Tom", "kind": "fact"})

    found = store.search(ALICE, query="cat called Pixel", limit=10)
    assert {item.namespace for item in found} == {ALICE}
    assert not any("Bob" in str(item.value) for item in found)
    assert found[0].key == "pet" and found[0].value["text"] == "Alice has a cat called Pixel"
    scores = [item.score for item in found]
    assert all(isinstance(s, float) for s in scores) and scores == sorted(scores, reverse=True)
    page = next(item for item in found if item.value.get("kind") == "page")
    assert (
        page.value["user_input"] == "My cat Pixel sleeps all day." and store.get(ALICE, page.key) is not None
    )

    assert [i.key for i in store.search(ALICE, query="cat", filter={"kind": "fact"}, limit=1)] == ["pet"]
    listed = store.search(ALICE)  # no query: every item of the user, oldest first
    assert [i.key for i in listed][:2] == ["pet", "job"] and len(listed) == 3
    assert [i.key for i in store.search(ALICE, offset=1, limit=1)] == ["job"]


def test_get_and_put_look_up_one_key_without_exporting_the_user(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = make_memory()
    store = MemoryOSStore(memory)
    store.put(ALICE, "diet", {"text": "Alice is vegetarian"})
    added = memory.add_memory("I moved to Lyon.", "Nice.", meta_data={"message_id": "m-1"}, user_id="alice")
    page_id = added.page_id
    memory.add_memory("Bob's secret.", "ok", user_id="bob")

    def no_export(*args: object, **kwargs: object) -> dict[str, object]:
        raise AssertionError("export_memory called")

    monkeypatch.setattr(memory, "export_memory", no_export)
    store.put(ALICE, "diet", {"text": "Alice is vegan"})
    found = store.get(ALICE, "diet")
    assert found is not None and found.value == {"text": "Alice is vegan"}
    page = store.get(ALICE, page_id)
    assert page is not None and page.value == {
        "kind": "page",
        "user_input": "I moved to Lyon.",
        "agent_response": "Nice.",
        "tier": "short_term",
        "timestamp": memory.get_pages([page_id])[0].timestamp,
        "source_ids": ["m-1"],
    }
    bob_page = memory.recent_pages(user_id="bob")[0].id
    assert store.get(ALICE, bob_page) is None and store.get(BOB, bob_page) is not None
    put_page = memory.find_pages({"langgraph_key": "diet"}, user_id="alice")[0].id
    assert store.get(ALICE, put_page) is None  # a put page is found by its key, not its id
    store.put(ALICE, "any text, not an id!", {"text": "odd key"})
    odd = store.get(ALICE, "any text, not an id!")
    assert odd is not None and odd.value == {"text": "odd key"}
    assert store.get(ALICE, "missing") is None


def test_put_and_get_see_pages_still_in_the_journal(tmp_path: Path) -> None:
    memory = MemoryOS(
        user_id="alice",
        store=ChromaStore(path=str(tmp_path)),
        embedder=HashingEmbedder(64),
        config=MemoryConfig(write_behind_s=30.0),  # pages wait in the journal until a flush
        background=True,
    )
    try:
        store = MemoryOSStore(memory)
        store.put(ALICE, "diet", {"text": "Alice is vegetarian"})
        assert memory.store.get("pages", where={"user_id": "alice"}) == []
        found = store.get(ALICE, "diet")
        assert found is not None and found.value == {"text": "Alice is vegetarian"}
        store.put(ALICE, "diet", {"text": "Alice is vegan"})
        again = store.get(ALICE, "diet")
        assert again is not None and again.value == {"text": "Alice is vegan"}
        assert [p.user_input for p in memory.find_pages({})] == ["Alice is vegan"]
    finally:
        memory.close()


@pytest.mark.parametrize(
    "namespace",
    [("memories",), ("other", "alice"), ("memories", "alice", "extra"), ("memories", "not valid!")],
)
def test_a_namespace_that_is_not_one_user_is_rejected(
    make_memory: Callable[..., MemoryOS], namespace: tuple[str, ...]
) -> None:
    store = MemoryOSStore(make_memory())
    with pytest.raises(InvalidNamespaceError):
        store.put(namespace, "k", {"text": "x"})
    with pytest.raises(InvalidNamespaceError):
        store.search(namespace, query="x")
    with pytest.raises(InvalidNamespaceError):
        store.batch([GetOp(namespace, "k")])


def test_list_namespaces_and_async_batch(make_memory: Callable[..., MemoryOS]) -> None:
    store = MemoryOSStore(make_memory(), namespace_prefix=("app", "users"), users=["zoe"])

    async def run() -> list[Any]:
        await store.aput(("app", "users", "alice"), "a", {"text": "alpha"})
        return await store.abatch(
            [GetOp(("app", "users", "alice"), "a"), PutOp(("app", "users", "bob"), "b", None)]
        )

    got, deleted = asyncio.run(run())
    assert got is not None and got.value == {"text": "alpha"} and deleted is None
    assert store.list_namespaces() == [
        ("app", "users", "alice"),
        ("app", "users", "bob"),
        ("app", "users", "zoe"),
    ]
    assert store.list_namespaces(suffix=("alice",)) == [("app", "users", "alice")]
    assert store.list_namespaces(max_depth=2) == [("app", "users")]


def test_knowledge_items_are_readable_but_derived(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(llm=RuleBasedLLM(), short_term_capacity=1)
    memory.add_memory("I love climbing in the Alps.", "Great hobby!", user_id="alice")
    memory.add_memory("Thanks.", "Anytime.", user_id="alice")
    memory.force_mid_term_analysis(user_id="alice")
    knowledge = memory.get_user_profile(user_id="alice").user_knowledge
    assert knowledge

    store = MemoryOSStore(memory)
    item = store.get(ALICE, knowledge[0].id)
    assert item is not None and item.value["kind"] == "user_knowledge"
    assert "climbing" in item.value["text"] and item.value["page_ids"]
    with pytest.raises(InvalidInputError, match="derived knowledge"):
        store.put(ALICE, knowledge[0].id, {"text": "overwrite"})


@dataclass
class Context:
    user_id: str


@tool
def save_preference(preference: str, runtime: ToolRuntime[Context]) -> str:
    """Save a preference of the current user."""
    runtime.store.put(("memories", runtime.context.user_id), "preference", {"text": preference})
    return "saved"


def test_langgraph_native_tools_use_the_store(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    call = {"name": "save_preference", "args": {"preference": "Alice prefers window seats"}, "id": "c-1"}
    model = RecordingChatModel(messages=replies(AIMessage("", tool_calls=[call]), "Saved.", "A window seat."))
    agent = create_agent(
        model,
        tools=[save_preference],
        middleware=[MemoryOSMiddleware(memory)],
        store=MemoryOSStore(memory),
        context_schema=Context,
    )
    agent.invoke({"messages": [HumanMessage("I like window seats.")]}, context=Context("alice"))
    agent.invoke({"messages": [HumanMessage("Which seat should I book?")]}, context=Context("alice"))

    assert "Alice prefers window seats" in model.system_texts()[2]  # put by the tool, recalled next turn
    assert MemoryOSStore(memory).get(BOB, "preference") is None
