"""ChromaStore keeps each user's records in their own collections; the engine always names the user."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from memoryos_core import MemoryOS, RuleBasedLLM, StorageError
from memoryos_core.storage.base import KINDS, Record
from memoryos_core.storage.chroma import ChromaStore
from tests.conftest import topic_pages


def _names(store: ChromaStore) -> set[str]:
    return {str(getattr(c, "name", c)) for c in store._client.list_collections()}


def _user_collections(store: ChromaStore, user: str) -> set[str]:
    return {store.collection_name(kind, user) for kind in ("pages", "segments", "knowledge")} & _names(store)


def _fill(memory: MemoryOS, user: str, topic: str, count: int) -> None:
    memory.add_memories(topic_pages(topic, count), user_id=user)


def test_each_user_has_collections_of_their_own(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(llm=RuleBasedLLM())
    _fill(memory, "alice", "hiking", 20)
    _fill(memory, "bob", "cooking", 20)
    memory.flush("alice")
    memory.flush("bob")
    store = memory.store
    assert isinstance(store, ChromaStore)
    alice, bob = _user_collections(store, "alice"), _user_collections(store, "bob")
    assert len(alice) >= 2 and len(bob) >= 2 and not alice & bob  # pages and segments at least
    pages = store._client.get_collection(store.collection_name("pages", "alice"), embedding_function=None)
    owners = {m["user_id"] for m in pages.get(include=["metadatas"])["metadatas"]}
    assert owners == {"alice"} and pages.count() == 20
    assert store.users() == ["alice", "bob"]


def test_the_engine_never_scans_other_users(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(llm=RuleBasedLLM())
    _fill(memory, "bob", "cooking", 12)
    store = memory.store
    assert isinstance(store, ChromaStore)
    before = store.scans  # opening may scan once, for interrupted work
    added = [memory.add_memory(f"Hiking note {i}", "Nice.", user_id="alice").page_id for i in range(25)]
    memory.flush("alice")
    memory.force_mid_term_analysis("alice")
    memory.retrieve_memory("hiking", user_id="alice")
    memory.update_memory(added[-1], agent_response="Great hike.", user_id="alice")
    memory.delete_memory(added[0], user_id="alice")
    memory.get_user_profile("alice")
    memory.get_memory_stats("alice")
    memory.export_memory("alice")
    memory.delete_memory(user_id="bob", everything=True)
    assert store.scans == before


def test_deleting_a_user_drops_their_collections_only(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    _fill(memory, "alice", "hiking", 10)
    _fill(memory, "bob", "cooking", 10)
    store = memory.store
    assert isinstance(store, ChromaStore)
    bob_before = [u.id for u in memory.retrieve_memory("pasta", user_id="bob").all_units]
    assert memory.delete_memory(user_id="alice", everything=True) == 10
    assert _user_collections(store, "alice") == set()
    assert store.users() == ["bob"]
    assert [u.id for u in memory.retrieve_memory("pasta", user_id="bob").all_units] == bob_before
    assert memory.retrieve_memory("hiking", user_id="alice").all_units == ()
    memory.add_memory("I came back.", "Welcome back.", user_id="alice")  # same process, same user id
    assert store.users() == ["alice", "bob"]  # registered again: scans find the new collections
    assert len(store.get("pages", where={"tier": "short_term"})) == 11


def test_unscoped_queries_and_writes_are_refused(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    _fill(memory, "alice", "hiking", 3)
    store = memory.store
    assert isinstance(store, ChromaStore)
    with pytest.raises(StorageError, match="user_id"):
        store.query("pages", [0.1] * 64, where={"tier": "short_term"}, n_results=5)
    with pytest.raises(StorageError, match="no user_id"):
        store.upsert("pages", [Record("p1", "text", {"tier": "short_term"}, [0.1] * 64)])
    with pytest.raises(StorageError, match="refusing"):
        store.delete("pages")
    assert len(memory.export_memory("alice")["pages"]) == 3


def test_reads_of_an_unknown_user_create_nothing(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    _fill(memory, "alice", "hiking", 3)
    memory.flush("alice")  # alice's background work creates nothing while the reads run
    store = memory.store
    assert isinstance(store, ChromaStore)

    def own() -> set[str]:  # this test's collections (other tests' come and go on a shared server)
        return {name for name in _names(store) if name.startswith(store.prefix)}

    before = own()
    assert before
    assert memory.retrieve_memory("hiking", user_id="nobody").all_units == ()
    assert memory.get_memory_stats("nobody").short_term_pages == 0
    assert own() == before


def test_a_collection_dropped_elsewhere_is_recreated_on_write(
    store_factory: Callable[[], ChromaStore],
) -> None:
    first, second = store_factory(), store_factory()
    for store in (first, second):
        store.open(dim=4, embedder_name="test")

    def page(record_id: str) -> Record:
        return Record(record_id, record_id, {"user_id": "alice", "tier": "short_term"}, [1.0, 0.0, 0.0, 0.0])

    first.upsert("pages", [page("a1")])
    assert [r.id for r in second.get("pages", where={"user_id": "alice"})] == ["a1"]
    for kind in KINDS:
        second.delete(kind, where={"user_id": "alice"})  # drops alice's collections under first's cache
    first.upsert("pages", [page("a2")])
    assert [r.id for r in first.get("pages", where={"user_id": "alice"})] == ["a2"]
    assert [
        r.id for r, _ in first.query("pages", [1.0, 0, 0, 0], where={"user_id": "alice"}, n_results=3)
    ] == ["a2"]
