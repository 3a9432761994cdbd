"""A Chroma ``get`` racing a write once returned its ids without their embeddings (``get_memory_stats``
beside the worker's upsert of segments): such a torn answer is read again, and raises StorageError if
it stays torn, instead of an IndexError from deep in the store or records paired with the wrong columns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from chromadb.api.models.Collection import Collection

from memoryos_core import StorageError
from memoryos_core.storage import _calls
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore

DIM = 8


@pytest.fixture
def store(tmp_path: Path) -> Any:
    made = ChromaStore(path=str(tmp_path))
    made.open(dim=DIM, embedder_name="test")
    made.upsert(
        "segments",
        [
            Record(f"s{i}", f"topic {i}", {"user_id": "alice"}, [float(i + j) for j in range(DIM)])
            for i in range(5)
        ],
    )
    yield made
    made.close()


def _tearing(monkeypatch: pytest.MonkeyPatch, torn_answers: int) -> list[int]:
    """Make Chroma's ``get`` drop the embeddings of its first ``torn_answers`` answers; counts the calls."""
    calls: list[int] = []
    get = Collection.get

    def torn(self: Collection, *args: Any, **kwargs: Any) -> Any:
        result = get(self, *args, **kwargs)
        calls.append(len(result["ids"]))
        if len(calls) <= torn_answers and result.get("embeddings") is not None:
            result["embeddings"] = result["embeddings"][:0]
        return result

    monkeypatch.setattr(Collection, "get", torn)
    monkeypatch.setattr(_calls, "_RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    return calls


def test_a_torn_answer_is_read_again(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    whole = store.get("segments", where={"user_id": "alice"}, with_embeddings=True)
    calls = _tearing(monkeypatch, torn_answers=2)
    again = store.get("segments", where={"user_id": "alice"}, with_embeddings=True)
    assert len(calls) == 3 and again == whole and len(whole) == 5
    by_id = store.get("segments", ids=["s1", "s3"], with_embeddings=True, where={"user_id": "alice"})
    assert [r.embedding for r in by_id] == [whole[1].embedding, whole[3].embedding]


def test_an_answer_that_stays_torn_raises_storage_error(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _tearing(monkeypatch, torn_answers=99)
    with pytest.raises(StorageError, match="5 ids but 0 embeddings"):
        store.get("segments", where={"user_id": "alice"}, with_embeddings=True)
    assert len(calls) == 4  # the first answer and three retries


def test_a_torn_query_answer_is_read_again_then_raises(store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    vector = [1.0] * DIM
    whole = store.query("segments", vector, where={"user_id": "alice"}, n_results=3)
    calls: list[int] = []
    query = Collection.query

    def torn(self: Collection, *args: Any, **kwargs: Any) -> Any:
        result = query(self, *args, **kwargs)
        calls.append(len(result["ids"][0]))
        if len(calls) in (1, 3, 4, 5, 6):  # torn, whole, then torn for good
            result["distances"] = [result["distances"][0][:1]]
        return result

    monkeypatch.setattr(Collection, "query", torn)
    monkeypatch.setattr(_calls, "_RETRY_DELAYS_S", (0.0, 0.0, 0.0))
    assert store.query("segments", vector, where={"user_id": "alice"}, n_results=3) == whole
    assert len(calls) == 2 and len(whole) == 3
    with pytest.raises(StorageError, match="3 ids but 1 distances"):
        store.query("segments", vector, where={"user_id": "alice"}, n_results=3)
    assert len(calls) == 6  # the first answer and three retries
