"""Records by id read straight from an embedded folder's chroma.sqlite3 (storage/_direct.py): the same
answer as Chroma's ``get``, never a stale, deleted or other user's record, across stores and processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import HashingEmbedder, MemoryOS
from memoryos_core.storage._direct import DirectReads
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore

DIM = 8


def _vector(i: int) -> list[float]:
    return [float((i * 7 + j) % 5) + 1.0 for j in range(DIM)]


def _store(path: Path) -> ChromaStore:
    store = ChromaStore(path=str(path))
    store.open(dim=DIM, embedder_name="test")
    return store


def _reads(store: ChromaStore) -> int:
    assert store._folder is not None
    return store._folder.direct.reads


def _chromas(store: ChromaStore, kind: Any, user: str, ids: list[str]) -> list[Record]:
    """What Chroma's own ``get`` answers for the same call."""
    collection = store._user_collection(kind, user, create=False)
    assert collection is not None
    return store._calls.read(collection, kind, ids, None, ["documents", "metadatas"], False, None)


def _plain(records: list[Record]) -> list[tuple[str, str, list[tuple[str, str, Any]]]]:
    return [
        (r.id, r.document, sorted((k, type(v).__name__, v) for k, v in r.metadata.items())) for r in records
    ]


def test_direct_reads_answer_what_chromas_get_answers(tmp_path: Path) -> None:
    store = _store(tmp_path / "chroma")
    try:
        records = [
            Record(
                "z",
                "Zoë's café ☕",
                {"user_id": "alice", "n": 3, "f": 2.5, "b": True, "s": "x"},
                _vector(1),
            ),
            Record("a", "", {"user_id": "alice", "b": False, "whole": 2.0, "big": 2**40}, _vector(2)),
            Record("m", "only text", {"user_id": "alice"}, _vector(3)),
        ]
        store.upsert("pages", records)
        ids = ["m", "gone", "a", "z"]
        before = _reads(store)
        got = store.get("pages", ids=ids, where={"user_id": "alice"})
        assert _reads(store) > before  # answered from the file
        assert _plain(got) == _plain(_chromas(store, "pages", "alice", ids))
        assert [r.id for r in got] == ["z", "a", "m"]  # Chroma's order (insertion), absent ids left out
        assert got[0].metadata["b"] is True and got[1].metadata["big"] == 2**40
        # an upsert merges metadata in Chroma: the same here; an edit, then a delete
        store.upsert("pages", [Record("z", "edited", {"user_id": "alice", "n": 4}, _vector(1))])
        store.delete("pages", ids=["a"], where={"user_id": "alice"})
        got = store.get("pages", ids=ids, where={"user_id": "alice"})
        assert _plain(got) == _plain(_chromas(store, "pages", "alice", ids))
        assert [(r.id, r.document) for r in got] == [("z", "edited"), ("m", "only text")]
        assert got[0].metadata["n"] == 4 and got[0].metadata["s"] == "x"
        assert store.get("pages", ids=["z"], where={"user_id": "alice"}, limit=1)[0].id == "z"
        # state records (the profile) likewise
        store.upsert("state", [Record("profile:alice", "likes tea", {"user_id": "alice", "key": "profile"})])
        assert [r.document for r in store.get("state", ids=["profile:alice", "profile:bob"])] == ["likes tea"]
        assert store._folder is not None and store._folder.direct.verified and store._folder.direct.enabled
    finally:
        store.close()


def test_another_users_page_is_never_read_by_id(tmp_path: Path) -> None:
    store = _store(tmp_path / "chroma")
    try:
        store.upsert("pages", [Record("p1", "alice's secret", {"user_id": "alice"}, _vector(1))])
        store.upsert("pages", [Record("p2", "bob's page", {"user_id": "bob"}, _vector(2))])
        before = _reads(store)
        assert store.get("pages", ids=["p1", "p2"], where={"user_id": "bob"}) == [
            Record("p2", "bob's page", {"user_id": "bob"})
        ]
        assert _reads(store) > before
    finally:
        store.close()


def test_beside_this_process_own_write_chroma_answers(tmp_path: Path) -> None:
    """Python's sqlite3 must not read while this process's Chroma (another SQLite) writes."""
    store = _store(tmp_path / "chroma")
    try:
        store.upsert("pages", [Record("p1", "text", {"user_id": "alice"}, _vector(1))])
        before = _reads(store)
        with store.exclusive():
            assert [r.id for r in store.get("pages", ids=["p1"], where={"user_id": "alice"})] == ["p1"]
        assert _reads(store) == before
    finally:
        store.close()


def test_an_answer_unlike_chromas_turns_direct_reads_off(tmp_path: Path) -> None:
    direct = DirectReads(str(tmp_path))
    assert direct.check([Record("a", "t", {"n": 1})], [Record("a", "t", {"n": 1})]) and direct.enabled
    assert not direct.check([Record("a", "t", {"n": 1})], [Record("a", "t", {"n": True})])  # 1 == True
    assert not direct.enabled
    assert direct.records("any", ["a"]) is None and direct.has_collection("any") is None


def test_a_missing_collection_is_looked_up_in_the_file_and_seen_once_created(tmp_path: Path) -> None:
    first, second = _store(tmp_path / "chroma"), _store(tmp_path / "chroma")  # two stores, one process
    try:
        first.upsert("pages", [Record("p1", "text", {"user_id": "alice"}, _vector(1))])
        client = first._client
        calls: list[str] = []
        real = client.get_collection

        def counted(name: str, **kwargs: Any) -> Any:
            calls.append(name)
            return real(name, **kwargs)

        client.get_collection = counted
        try:
            assert first.query("knowledge", _vector(1), where={"user_id": "alice"}, n_results=3) == []
            assert calls == []  # no Chroma lookup for a collection the file does not have
            second.upsert("knowledge", [Record("k1", "knows tea", {"user_id": "alice"}, _vector(1))])
            found = first.query("knowledge", _vector(1), where={"user_id": "alice"}, n_results=3)
            assert [r.id for r, _ in found] == ["k1"]
        finally:
            del client.get_collection
    finally:
        first.close()
        second.close()


CHILD = textwrap.dedent(
    """
    import sys
    from memoryos_core.storage.base import Record
    from memoryos_core.storage.chroma import ChromaStore

    store = ChromaStore(path=sys.argv[1])
    store.open(dim=8, embedder_name="test")
    store.upsert("pages", [Record("p1", "edited elsewhere", {"user_id": "alice", "n": 2}, [1.0] * 8)])
    store.delete("pages", ids=["p2"], where={"user_id": "alice"})
    profile = {"user_id": "alice", "key": "profile"}
    store.upsert("state", [Record("profile:alice", "now likes coffee", profile)])
    store.close()
    """
)


def test_a_page_edited_or_deleted_by_another_process_is_never_served_stale(tmp_path: Path) -> None:
    path = tmp_path / "chroma"
    store = _store(path)
    try:
        store.upsert(
            "pages",
            [
                Record("p1", "original", {"user_id": "alice", "n": 1}, _vector(1)),
                Record("p2", "to be deleted", {"user_id": "alice", "n": 1}, _vector(2)),
            ],
        )
        store.upsert("state", [Record("profile:alice", "likes tea", {"user_id": "alice", "key": "profile"})])
        assert len(store.get("pages", ids=["p1", "p2"], where={"user_id": "alice"})) == 2
        assert store.get("state", ids=["profile:alice"])[0].document == "likes tea"
        child = subprocess.run(
            [sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True, timeout=120, check=False
        )
        assert child.returncode == 0, child.stderr[-2000:]
        before = _reads(store)
        got = store.get("pages", ids=["p1", "p2"], where={"user_id": "alice"})
        assert [(r.id, r.document, r.metadata["n"]) for r in got] == [("p1", "edited elsewhere", 2)]
        assert store.get("state", ids=["profile:alice"])[0].document == "now likes coffee"
        assert _reads(store) > before
    finally:
        store.close()


def _change(data: str, gone: list[str], edited: list[str]) -> None:
    """Delete ``gone`` and rewrite ``edited`` through another MemoryOS on the same folder."""
    other = MemoryOS(data_storage_path=data, user_id="alice", embedder=HashingEmbedder(64))
    try:
        for page_id in gone:
            other.delete_memory(page_id)
        for page_id in edited:
            other.update_memory(page_id, user_input="We saw a wombat at Rottnest", agent_response="Cute.")
    finally:
        other.close()


CHANGE = textwrap.dedent(
    """
    import sys
    from memoryos_core import HashingEmbedder, MemoryOS

    other = MemoryOS(data_storage_path=sys.argv[1], user_id="alice", embedder=HashingEmbedder(64))
    for page_id in sys.argv[2].split(","):
        other.delete_memory(page_id)
    for page_id in sys.argv[3].split(","):
        other.update_memory(page_id, user_input="We saw a wombat at Rottnest", agent_response="Cute.")
    other.close()
    """
)


@pytest.mark.parametrize("where", ["same process", "other process"])
def test_recall_never_returns_a_page_deleted_or_edited_through_another_instance(
    tmp_path: Path, where: str
) -> None:
    data = str(tmp_path / "data")
    memory = MemoryOS(data_storage_path=data, user_id="alice", embedder=HashingEmbedder(64))
    try:
        ids = [
            memory.add_memory(f"We saw a quokka on Rottnest, day {i}", "Lovely.").page_id for i in range(12)
        ]
        for i in range(20):
            memory.add_memory(f"I walk the dog on trail {i}", "Nice.")
        memory.flush()
        texts = [u.text for u in memory.retrieve_memory("quokka Rottnest", top_k=5).units]
        assert any("quokka" in t for t in texts)
        gone, edited = ids[:6], ids[6:]
        if where == "other process":
            child = subprocess.run(
                [sys.executable, "-c", CHANGE, data, ",".join(gone), ",".join(edited)],
                capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            assert child.returncode == 0, child.stderr[-2000:]
        else:
            _change(data, gone, edited)
        units = memory.retrieve_memory("quokka Rottnest wombat", top_k=10).units
        assert not {u.id for u in units} & set(gone)
        assert all("quokka" not in u.text for u in units)
        assert any("wombat" in u.text for u in units)
    finally:
        memory.close()
