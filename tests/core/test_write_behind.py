"""Write-behind: add_memory journals a page without embedding it; the journal's writer thread embeds
it, recall embeds the few pending pages on demand, and a failure before that loses nothing (a killed
process's journal is embedded at the next start: tests/core/test_pending.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from memoryos_core import EmbeddingError, HashingEmbedder, MemoryConfig, MemoryOS
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore

SLOW = MemoryConfig(write_behind_s=30.0)  # the writer thread waits: pages stay pending until a flush
PAGES = [
    ("My cat Pixel likes tuna.", "Noted."),
    ("I fixed the build on Friday.", "Good."),
    ("My sister lives in Lisbon.", "Nice city."),
    ("Pixel sleeps on the radiator.", "Cosy."),
]


class RecordingEmbedder(HashingEmbedder):
    """A HashingEmbedder that records which thread embedded which texts (and can be made to fail)."""

    def __init__(self, dim: int = 64) -> None:
        super().__init__(dim)
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.failing = False

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.failing:
            raise EmbeddingError("model unavailable", backend="test")
        self.calls.append((threading.current_thread().name, tuple(texts)))
        return super().embed(texts)

    def texts(self) -> list[str]:
        return [text for _, texts in self.calls for text in texts]


def _memory(
    path: Path, embedder: HashingEmbedder, config: MemoryConfig = SLOW, background: bool = True
) -> MemoryOS:
    return MemoryOS(
        user_id="alice",
        store=ChromaStore(path=str(path)),
        embedder=embedder,
        config=config,
        background=background,
    )


def _stored(memory: MemoryOS) -> dict[str, Record]:
    records = memory.store.get("pages", where={"user_id": "alice"}, with_embeddings=True)
    return {r.id: r for r in records}


def _journal_lines(path: Path) -> list[dict[str, object]]:
    return [
        json.loads(line)
        for journal in sorted((path / ".memoryos-pending").glob("*.jsonl"))
        for line in journal.read_text().splitlines()
    ]


def _add(memory: MemoryOS) -> list[str]:
    return [
        memory.add_memory(user, agent, timestamp=f"2025-03-0{i + 1} 10:00:00").page_id
        for i, (user, agent) in enumerate(PAGES)
    ]


def test_add_memory_journals_the_page_without_embedding_it(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    memory = _memory(tmp_path, embedder)
    try:
        ids = _add(memory)
        assert embedder.calls == []  # nothing embedded, in any thread
        lines = _journal_lines(tmp_path)
        assert [line["id"] for line in lines] == ids and all(line["vec"] == [] for line in lines)
        assert _stored(memory) == {}
        memory.flush()  # a flush embeds them, in one batch
        assert len(embedder.calls) == 1 and len(embedder.calls[0][1]) == len(PAGES)
        stored = _stored(memory)
        for page_id in ids:
            expected = HashingEmbedder(64).embed([stored[page_id].document])[0]
            assert stored[page_id].embedding == pytest.approx(expected, abs=1e-6)
    finally:
        memory.close()


def test_the_writer_thread_embeds_and_writes_them_in_a_batch(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    memory = _memory(tmp_path, embedder, MemoryConfig(write_behind_s=0.02))
    try:
        ids = _add(memory)
        for _ in range(500):
            if len(_stored(memory)) == len(ids):
                break
            time.sleep(0.02)
        assert set(_stored(memory)) == set(ids)
        assert {thread for thread, _ in embedder.calls} == {"memoryos-pending"}
        assert sorted(embedder.texts()) == sorted(r.document for r in _stored(memory).values())
    finally:
        memory.close()


def test_without_write_behind_the_caller_embeds_and_stores_as_before(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    memory = _memory(tmp_path, embedder, background=False)
    try:
        page_id = memory.add_memory("hello there", "hi").page_id
        assert memory._runtime.pending is None
        assert [thread for thread, _ in embedder.calls] == [threading.current_thread().name]
        assert _stored(memory)[page_id].embedding
    finally:
        memory.close()


def test_a_page_just_added_is_recalled_before_the_flush_as_it_is_once_stored(tmp_path: Path) -> None:
    queries = ["what does Pixel like to eat", "where does my sister live", "the build"]
    stored = _memory(tmp_path / "stored", HashingEmbedder(), background=False)
    embedder = RecordingEmbedder()
    pending = _memory(tmp_path / "pending", embedder)
    try:
        _add(stored)
        _add(pending)
        for query in queries:
            want = stored.retrieve_memory(query, update_heat=False)
            got = pending.retrieve_memory(query, update_heat=False)
            assert [u.text for u in got.all_units] == [u.text for u in want.all_units]
            assert [u.score for u in got.all_units] == pytest.approx(
                [u.score for u in want.all_units], abs=1e-5
            )
        assert _stored(pending) == {}  # all of it from pages still waiting in the journal
        page_texts = [r.document for r in pending._runtime.pending_of("alice")]
        assert all(embedder.texts().count(text) == 1 for text in page_texts)  # embedded once, on demand
        pending.flush()
        assert len(_stored(pending)) == len(PAGES)
        assert all(embedder.texts().count(text) == 1 for text in page_texts)  # the flush kept the vectors
    finally:
        stored.close()
        pending.close()


def test_lookups_updates_and_deletes_see_pages_not_embedded_yet(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    memory = _memory(tmp_path, embedder)
    try:
        first = memory.add_memory(
            "I booked the train to Porto.", "Enjoy.", meta_data={"trip": "porto"}
        ).page_id
        second = memory.add_memory("The ticket cost 30 euros.", "Cheap.", meta_data={"trip": "porto"}).page_id
        assert embedder.calls == []
        assert [p.id for p in memory.get_pages([second, first])] == [second, first]
        assert [p.id for p in memory.find_pages({"trip": "porto"})] == [first, second]
        assert embedder.calls == []  # lookups read the journaled pages as they are
        memory.update_memory(second, agent_response="Quite cheap.")
        assert memory.get_pages([second])[0].agent_response == "Quite cheap."
        assert memory.delete_memory(first) == 1
        assert [p["id"] for p in memory.export_memory()["pages"]] == [second]
    finally:
        memory.close()


def test_a_failed_embedding_keeps_the_page_pending_and_loses_nothing(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    memory = _memory(tmp_path, embedder)
    try:
        embedder.failing = True
        page_id = memory.add_memory("The wifi password is on the fridge.", "Got it.").page_id  # accepted
        with pytest.raises(EmbeddingError, match="model unavailable"):
            memory.export_memory()  # a read that flushes first
        assert [p.id for p in memory.get_pages([page_id])] == [page_id]
        assert [line["id"] for line in _journal_lines(tmp_path)] == [page_id]
        embedder.failing = False
        assert [p["id"] for p in memory.export_memory()["pages"]] == [page_id]
        assert _journal_lines(tmp_path) == []
    finally:
        embedder.failing = False
        memory.close()


def test_close_embeds_and_writes_every_pending_page(tmp_path: Path) -> None:
    memory = _memory(tmp_path, RecordingEmbedder())
    ids = _add(memory)
    memory.close()
    store = ChromaStore(path=str(tmp_path))
    store.open(dim=64, embedder_name=HashingEmbedder(64).name)
    records = store.get("pages", where={"user_id": "alice"}, with_embeddings=True)
    assert sorted(r.id for r in records) == sorted(ids) and all(r.embedding for r in records)
    assert _journal_lines(tmp_path) == []
    store.close()


def test_a_journal_of_an_earlier_version_keeps_its_vectors(tmp_path: Path) -> None:
    memory = _memory(tmp_path, HashingEmbedder(), MemoryConfig(write_behind_s=0))
    page_id = memory.add_memory("I moved to Lisbon.", "Nice.").page_id
    [record] = _stored(memory).values()  # its metadata is borrowed for the journal lines below
    memory.delete_memory(page_id)
    memory.close()
    vector = [0.0] * 63 + [1.0]  # not what the embedder gives: a replay must keep it
    old = {"id": "pg_old", "doc": "old text", "meta": record.metadata, "vec": vector}
    new = {"id": "pg_new", "doc": "new text", "meta": record.metadata, "vec": []}
    folder = tmp_path / ".memoryos-pending"
    folder.mkdir(exist_ok=True)
    (folder / "1-dead.jsonl").write_text(json.dumps(old) + "\n" + json.dumps(new) + "\n")
    embedder = RecordingEmbedder()
    reopened = _memory(tmp_path, embedder)
    try:
        reopened.get_memory_stats()
        stored = _stored(reopened)
        assert stored["pg_old"].embedding == pytest.approx(vector)
        assert stored["pg_new"].embedding == pytest.approx(
            HashingEmbedder(64).embed(["new text"])[0], abs=1e-6
        )
        assert embedder.texts() == ["new text"]
    finally:
        reopened.close()


class WarmingEmbedder(RecordingEmbedder):
    """Loading its model waits until the test releases it, and says in which thread it ran."""

    def __init__(self) -> None:
        super().__init__()
        self.warmed_in: str | None = None
        self.release = threading.Event()

    def warm_up(self) -> None:
        self.warmed_in = threading.current_thread().name
        self.release.wait(timeout=30)


def test_the_first_add_loads_the_model_beside_the_store_and_close_waits_for_it(tmp_path: Path) -> None:
    embedder = WarmingEmbedder()
    memory = MemoryOS(data_storage_path=str(tmp_path), embedder=embedder, config=SLOW)
    memory.add_memory("My cat Pixel likes tuna.", "Noted.", user_id="ana")  # returns while the model loads
    warming = [t for t in threading.enumerate() if t.name == "memoryos-warm-up"]
    assert warming and warming[0].is_alive()
    embedder.release.set()
    memory.close()
    assert not warming[0].is_alive()  # joined by close: no thread outlives it
    assert embedder.warmed_in == "memoryos-warm-up"
    assert embedder.calls  # the journaled page was embedded at close


def test_a_read_only_call_does_not_load_the_model(tmp_path: Path) -> None:
    first = MemoryOS(data_storage_path=str(tmp_path), embedder=HashingEmbedder(), config=SLOW)
    first.add_memory("My cat Pixel likes tuna.", "Noted.", user_id="ana")
    first.close()
    embedder = WarmingEmbedder()
    memory = MemoryOS(data_storage_path=str(tmp_path), embedder=embedder, config=SLOW)
    assert memory.get_memory_stats(user_id="ana").short_term_pages == 1
    memory.close()
    assert embedder.warmed_in is None
