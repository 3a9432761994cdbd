"""Corrupt state is contained and a hung server is bounded (issue 13 items 11 and 12)."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from memoryos_core import MemoryOS, StorageError
from memoryos_core.bench.reliability_child import child_env
from memoryos_core.embeddings.fake import HashingEmbedder
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore
from tests._workers import ChromaServer


def _vector_segment(folder: Path, collection_name: str) -> Path:
    with sqlite3.connect(folder / "chroma.sqlite3") as connection:
        (segment,) = connection.execute(
            "SELECT s.id FROM segments s JOIN collections c ON s.collection = c.id "
            "WHERE c.name = ? AND s.scope = 'VECTOR'",
            (collection_name,),
        ).fetchone()
    return folder / str(segment)


def test_a_corrupt_hnsw_header_is_a_storage_error_for_that_user_not_a_crash(tmp_path: Path) -> None:
    folder = tmp_path / "chroma"
    store = ChromaStore(path=str(folder))
    store.open(dim=8, embedder_name="test")

    def records(user: str, count: int) -> list[Record]:
        vectors = [[float((i * 7 + j) % 11) + 1.0 for j in range(8)] for i in range(count)]
        return [Record(f"{user}{i}", f"page {i}", {"user_id": user}, v) for i, v in enumerate(vectors)]

    store.upsert("pages", records("alice", 1200))  # over Chroma's sync threshold: the index is on disk
    store.upsert("pages", records("bob", 5))
    header = _vector_segment(folder, store.collection_name("pages", "alice")) / "header.bin"
    raw = bytearray(header.read_bytes())
    raw[56:60] = (4_000_000).to_bytes(4, "little")  # an entry point far past the last element
    header.write_bytes(bytes(raw))
    script = textwrap.dedent(
        f"""
        from memoryos_core import StorageError
        from memoryos_core.storage.chroma import ChromaStore
        store = ChromaStore(path={str(folder)!r})
        store.open(dim=8, embedder_name="test")
        print("bob", len(store.query("pages", [1.0] * 8, where={{"user_id": "bob"}}, n_results=3)))
        try:
            store.query("pages", [1.0] * 8, where={{"user_id": "alice"}}, n_results=3)
            print("alice answered")
        except StorageError as exc:
            print("alice StorageError", "damaged" in str(exc))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=child_env(), capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]  # it used to die with SIGSEGV
    assert done.stdout.split("\n")[:2] == ["bob 3", "alice StorageError True"]


def test_a_zero_byte_chroma_sqlite3_is_an_error_not_an_empty_store(tmp_path: Path) -> None:
    (tmp_path / "chroma").mkdir()
    (tmp_path / "chroma" / "chroma.sqlite3").write_bytes(b"")
    memory = MemoryOS(data_storage_path=str(tmp_path), embedder=HashingEmbedder())
    with pytest.raises(StorageError, match="not a SQLite database"):
        memory.retrieve_memory("anything")
    assert (tmp_path / "chroma" / "chroma.sqlite3").stat().st_size == 0  # left for a person to look at


def test_a_bad_journal_line_is_quarantined_and_the_rest_replayed(tmp_path: Path) -> None:
    with MemoryOS(data_storage_path=str(tmp_path), embedder=HashingEmbedder(), user_id="alice") as memory:
        memory.add_memory("I keep bees.", "Nice.")
    journals = tmp_path / "chroma" / ".memoryos-pending"
    good = {
        "id": "pg_journaled",
        "doc": "I also keep hens.",
        "meta": {"user_id": "alice", "tier": "short_term"},
        "vec": HashingEmbedder().embed(["I also keep hens."])[0],
    }
    bad = [b'{"id": "x", "doc": "no user", "meta": {}, "vec": []}\n', b"\x00 not json at all\n"]
    (journals / "999999-dead.jsonl").write_bytes(json.dumps(good).encode() + b"\n" + b"".join(bad))
    with MemoryOS(data_storage_path=str(tmp_path), embedder=HashingEmbedder(), user_id="bob") as memory:
        memory.add_memory("I sail.", "Ahoy.")  # other users work: the bad lines broke every start
        assert memory.retrieve_memory("sail").all_units
        assert memory.store.get("pages", ids=["pg_journaled"], where={"user_id": "alice"})
    assert list(journals.glob("*.jsonl")) == []
    assert (journals / "999999-dead.quarantined").read_bytes() == b"".join(bad)


def test_a_hung_chroma_server_gives_a_storage_error_within_the_timeout(tmp_path: Path) -> None:
    server = ChromaServer(tmp_path)  # our own: the process's server is not ours to stop
    server.start()
    assert server.proc is not None
    outcome: list[object] = []
    try:
        store = ChromaStore(url=server.url, prefix="hung_", timeout_s=2)
        store.open(dim=4, embedder_name="test")
        store.upsert("pages", [Record("p1", "page", {"user_id": "u"}, [1.0, 0.0, 0.0, 0.0])])
        server.proc.send_signal(signal.SIGSTOP)

        def call() -> None:
            started = time.monotonic()
            try:
                store.get("pages", where={"user_id": "u"})
                outcome.append("answered")
            except StorageError as exc:
                outcome.append((time.monotonic() - started, exc))

        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        thread.join(60)  # the old client waited forever
        assert not thread.is_alive()
        ((elapsed, error),) = outcome  # type: ignore[misc]
        assert isinstance(error, StorageError) and elapsed < 10
    finally:
        server.proc.send_signal(signal.SIGCONT)
        server.stop()
