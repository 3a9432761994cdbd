"""The shared lexical index: one SQLite file beside an embedded store, the same BM25 scores as an
index built in memory, kept in step across processes, erased on delete, rebuilt when damaged."""

from __future__ import annotations

import math
import os
import random
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from memoryos_core import HashingEmbedder, MemoryOS
from memoryos_core.engine import lexical
from memoryos_core.engine.lexical import PageIndex, tokens
from memoryos_core.engine.lexical_shared import PageIndexes
from memoryos_core.engine.lexical_store import FILE_NAME, LexicalFile
from memoryos_core.storage.base import Record

WORDS = "hiking trail coffee sister dinner pasta garden tomato guitar lisbon train doctor marathon".split()
ROOT = Path(__file__).resolve().parents[2]


def pages(count: int, seed: int = 3, start: int = 0) -> list[Record]:
    rng = random.Random(seed)
    return [
        Record(
            id=f"p{start + i}",
            document=" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) + f" yesterday {i}",
            metadata={"created_ns": start + i, "ts_s": float(start + i)},
        )
        for i in range(count)
    ]


def in_memory(records: list[Record]) -> PageIndex:
    index = PageIndex()
    for r in records:
        index.add(r.id, r.document, float(r.metadata["ts_s"]))
    return index


def same_scores(a: PageIndex, b: PageIndex) -> None:
    assert a.ids == b.ids
    assert list(a.times) == list(b.times) and list(a.timed) == list(b.timed)
    for query in ["hiking trail", "sister dinner pasta yesterday", "lisbon 7", "nothing here", "coffee"]:
        assert np.array_equal(a.bm25(tokens(query)), b.bm25(tokens(query))), query


def shared(folder: Path) -> PageIndexes:
    return PageIndexes(folder=lambda: str(folder))


def counting_rebuilds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The users whose index ``PageIndexes.rebuild`` builds from the store from now on, in order."""
    rebuilt: list[str] = []
    original = PageIndexes.rebuild
    monkeypatch.setattr(PageIndexes, "rebuild", lambda self, u, p: rebuilt.append(u) or original(self, u, p))
    return rebuilt


def test_a_loaded_index_scores_exactly_as_one_built_in_memory(tmp_path: Path) -> None:
    records = pages(300)
    writer = shared(tmp_path)
    writer.build("u", records[:200])
    writer.add("u", records[200:])  # tail rows on top of the copy
    reader = shared(tmp_path)
    loaded = reader.get("u")
    assert loaded is not None and loaded.base_count == 200
    same_scores(loaded, in_memory(records))
    assert writer.get("u") is not None
    same_scores(writer.get("u"), in_memory(records))  # type: ignore[arg-type]


def test_many_pages_added_are_folded_into_a_new_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lexical, "COMPACT_ROWS", 10)
    records = pages(60)
    first = shared(tmp_path)
    first.build("u", records[:20])
    for r in records[20:]:
        first.add("u", [r])
    compacted = first.get("u")
    assert compacted is not None and compacted.base_count == 60
    same_scores(compacted, in_memory(records))
    fresh = shared(tmp_path).get("u")
    assert fresh is not None and fresh.base_count == 60
    same_scores(fresh, in_memory(records))


def test_a_second_process_sees_pages_added_and_removed_by_the_first(tmp_path: Path) -> None:
    records = pages(50)
    a, b = shared(tmp_path), shared(tmp_path)
    a.build("u", records[:40])
    assert len(b.get("u") or []) == 40
    a.add("u", records[40:45])
    b.add("u", records[45:])
    assert len(a.get("u") or []) == len(b.get("u") or []) == 50
    b.remove("u", ["p3", "p41"])
    expected = in_memory(
        [r for r in records[:40] + records[40:45] + records[45:] if r.id not in {"p3", "p41"}]
    )
    for index in (a.get("u"), b.get("u"), shared(tmp_path).get("u")):
        assert index is not None
        assert "p3" not in index.position and "p41" not in index.position
        same_scores(index, expected)
    a.forget("u")
    assert b.get("u") is None  # the next recall rebuilds it from the store


def test_two_writer_processes_lose_no_page(tmp_path: Path) -> None:
    shared(tmp_path).build("u", pages(10))
    script = textwrap.dedent(
        """
        import sys
        from memoryos_core.engine.lexical_shared import PageIndexes
        from memoryos_core.storage.base import Record
        indexes = PageIndexes(folder=lambda: sys.argv[1])
        for i in range(150):
            page = Record(id=f"{sys.argv[2]}{i}", document=f"page {i} of {sys.argv[2]}", metadata={})
            indexes.add("u", [page])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(tmp_path), name], env=env) for name in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    index = shared(tmp_path).get("u")
    assert index is not None and len(index) == 310
    assert {f"{n}{i}" for n in "ab" for i in range(150)} <= set(index.position)


def test_a_write_cut_short_leaves_the_last_committed_index(tmp_path: Path) -> None:
    shared(tmp_path).build("u", pages(30))
    script = textwrap.dedent(
        """
        import os, sys
        from memoryos_core.engine.lexical_shared import PageIndexes
        indexes = PageIndexes(folder=lambda: sys.argv[1])
        file = indexes.file
        with file.writing() as tx:
            tx.append("u", [("torn", 0.0, False, ["torn", "page"])])
            tx.drop("u")
            os._exit(0)  # killed inside the transaction
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    assert subprocess.run([sys.executable, "-c", script, str(tmp_path)], env=env, timeout=120).returncode == 0
    index = shared(tmp_path).get("u")
    assert index is not None and "torn" not in index.position
    same_scores(index, in_memory(pages(30)))


def test_a_damaged_file_is_rebuilt_and_a_server_keeps_the_index_in_memory(tmp_path: Path) -> None:
    first = shared(tmp_path)
    first.build("u", pages(30))
    first.close()
    path = tmp_path / FILE_NAME
    path.write_bytes(b"not a database" * 500)
    damaged = shared(tmp_path)
    assert damaged.get("u") is None  # the caller rebuilds from the store
    rebuilt = damaged.build("u", pages(30))
    same_scores(rebuilt, in_memory(pages(30)))
    assert shared(tmp_path).get("u") is not None
    server = PageIndexes(folder=lambda: None)
    assert server.file is None and server.get("u") is None
    server.build("u", pages(5))
    assert len(server.get("u") or []) == 5
    assert list(tmp_path.iterdir()) == [path] or {p.name for p in tmp_path.iterdir()} <= {
        FILE_NAME,
        FILE_NAME + "-wal",
        FILE_NAME + "-shm",
    }


def test_removed_pages_leave_no_word_in_the_file_and_the_file_is_private(tmp_path: Path) -> None:
    marker, other = "zqxmarkerword", "zqxforgotword"
    records = pages(80)
    records[30] = Record(
        id="secret", document=f"my pin is {marker}", metadata={"created_ns": 30, "ts_s": 0.0}
    )
    indexes = shared(tmp_path)
    indexes.build("u", records[:60])
    indexes.add("u", records[60:])
    indexes.add("v", [Record(id="v1", document=other, metadata={})])  # v has no index yet: not kept
    indexes.build("v", [Record(id="v1", document=other, metadata={})])
    files = lambda: b"".join(p.read_bytes() for p in tmp_path.iterdir())  # noqa: E731
    assert marker.encode() in files() and other.encode() in files()
    indexes.remove("u", ["secret"])
    indexes.forget("v")
    for p in tmp_path.iterdir():
        assert not stat.S_IMODE(p.stat().st_mode) & 0o077, p
    assert marker.encode() not in files() and b"secret" not in files() and other.encode() not in files()
    indexes.close()
    assert marker.encode() not in files()
    left = shared(tmp_path).get("u")
    assert left is not None and len(left) == 79


def test_a_new_memoryos_loads_the_index_instead_of_rebuilding_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    memory = MemoryOS(data_storage_path=str(data), user_id="alice", embedder=HashingEmbedder(64))
    try:
        for i in range(12):
            memory.add_memory(f"I walk my dog on trail {i}", "Nice.")
        memory.add_memory("My sister cooks pasta in Lisbon", "Lovely.")
        memory.flush()
        before = memory.retrieve_memory("sister pasta Lisbon").all_units[0].text
    finally:
        memory.close()
    rebuilt = counting_rebuilds(monkeypatch)
    again = MemoryOS(data_storage_path=str(data), user_id="alice", embedder=HashingEmbedder(64))
    try:
        assert again.retrieve_memory("sister pasta Lisbon").all_units[0].text == before
        assert rebuilt == []
        # a page written around the engine (an older version, a bulk load): the count shows it stale
        stored = again.store.get("pages", where={"user_id": "alice"}, with_embeddings=True)[0]
        copy = Record(
            id="around", document="a quokka visit", metadata=stored.metadata, embedding=stored.embedding
        )
        again.store.upsert("pages", [copy])
    finally:
        again.close()
    third = MemoryOS(data_storage_path=str(data), user_id="alice", embedder=HashingEmbedder(64))
    try:
        assert third.retrieve_memory("quokka visit").all_units[0].text == "a quokka visit"
        assert rebuilt == ["alice"]
    finally:
        third.close()


def test_an_add_writes_one_row_not_the_users_whole_copy(tmp_path: Path) -> None:
    indexes = shared(tmp_path)
    indexes.build("u", pages(500, seed=5))
    file = indexes.file
    assert file is not None
    with file.writing() as tx:  # noting every change of the copy's row made on this connection
        tx._db.execute("CREATE TEMP TABLE copy_writes (n INTEGER)")
        tx._db.execute(
            "CREATE TEMP TRIGGER copy_written AFTER UPDATE ON snap"
            " BEGIN INSERT INTO copy_writes VALUES (1); END"
        )
    for i in range(3):
        indexes.add("u", pages(1, seed=9 + i, start=500 + i))
    with file.reading() as tx:
        # SQLite rewrites (or reads back to compare) a whole row on any update: an add that
        # moved a counter in the copy's row went through the copy, 25 MB at 100k pages
        assert tx._db.execute("SELECT count(*) FROM copy_writes").fetchone()[0] == 0
    assert len(shared(tmp_path).get("u") or []) == 503


def test_a_file_of_an_older_layout_loses_its_indexes_and_is_usable(tmp_path: Path) -> None:
    """Layouts 1 and 2 did not record the stemmer that wrote their stems: their indexes are dropped (each
    user's is rebuilt from the store at its next recall) and the file takes the new layout."""
    records = pages(120)
    indexes = shared(tmp_path)
    indexes.build("u", records[:100])
    indexes.add("u", records[100:])
    indexes.close()
    db = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
    db.execute("DROP TABLE meta")  # layout 2
    db.execute("PRAGMA user_version = 2")
    db.close()
    reopened = shared(tmp_path)
    assert reopened.get("u") is None  # dropped: built from the store by the caller
    reopened.build("u", records)
    same_scores(shared(tmp_path).get("u"), in_memory(records))  # type: ignore[arg-type]
    db = sqlite3.connect(tmp_path / FILE_NAME)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 3
    assert db.execute("SELECT value FROM meta").fetchall() == [(lexical.tokenizer_id(),)]
    db.close()


def test_an_index_another_stemmer_wrote_is_rebuilt_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file stores stems: words stemmed by another stemmer (another PyStemmer or Snowball version)
    would silently stop matching the queries' words, so a file whose recorded tokenizer differs from
    this process's loses its indexes, and the next recall rebuilds the user's from the store."""
    data = tmp_path / "data"
    try:
        with monkeypatch.context() as other_stemmer:  # a stemmer that keeps every word as it is
            other_stemmer.setattr(lexical, "_stem", lambda word: word)
            lexical.tokenizer_id.cache_clear()
            memory = MemoryOS(data_storage_path=str(data), user_id="alice", embedder=HashingEmbedder(64))
            try:
                memory.add_memory("We went hiking on mountain trails", "Sounds great.")
                memory.add_memory("My sister cooks pasta in Lisbon", "Lovely.")
                memory.flush()
                assert memory.retrieve_memory("hiking").all_units  # (the index is built and saved)
            finally:
                memory.close()
    finally:
        lexical.tokenizer_id.cache_clear()  # (this process's own tokenizer again, for every later test)
    rebuilt = counting_rebuilds(monkeypatch)
    again = MemoryOS(data_storage_path=str(data), user_id="alice", embedder=HashingEmbedder(64))
    try:
        hiking = next(p["id"] for p in again.export_memory()["pages"] if "hiking" in p["user_input"])  # opens
        index = again._retriever.index("alice")
        scores = index.bm25(tokens("hikes"))  # "hike": the stem of "hiking" too
        assert scores[index.position[hiking]] > 0 and rebuilt == ["alice"]
    finally:
        again.close()


def test_processes_of_two_stemmers_never_read_each_other_s_stems(tmp_path: Path) -> None:
    """A process connected before another of a different stemmer claimed the file finds no index in it (not
    the other's stems), and its save claims the file back: each rebuilds, neither reads the other's stems."""
    records = pages(60)
    first = shared(tmp_path)
    first.build("u", records)
    assert first.get("u") is not None
    other = PageIndexes(folder=lambda: str(tmp_path))
    other._file, other._resolved = LexicalFile(tmp_path / FILE_NAME, lambda: "another-stemmer"), True
    assert other.get("u") is None  # claimed: the first's index dropped
    other.build("u", records[:30])
    assert first.get("u") is None  # connected before the claim, it does not load the other's copy
    claimed_back = first.build("u", records)  # and its save claims the file back
    assert claimed_back.checked_at == -math.inf  # (rows written meanwhile went: counted at its next use)
    assert other.get("u") is None
    same_scores(shared(tmp_path).get("u"), in_memory(records))  # type: ignore[arg-type]
    other.remove("u", [records[0].id])  # (the file is the first's now): its copy goes, words and all
    assert first.get("u") is None
    db = sqlite3.connect(tmp_path / FILE_NAME)
    assert [
        db.execute(f"SELECT count(*) FROM {t} WHERE user = 'u'").fetchone()[0] for t in ("snap", "tail")
    ] == [0, 0]
    db.close()


def test_an_updated_page_keeps_its_place_and_only_its_new_words(tmp_path: Path) -> None:
    marker = "zqxoldword"
    records = pages(60)
    records[20] = Record(
        id="p20", document=f"the old text {marker}", metadata={"created_ns": 20, "ts_s": 20.0}
    )
    a, b = shared(tmp_path), shared(tmp_path)
    a.build("u", records[:50])
    a.add("u", records[50:])
    assert b.get("u") is not None
    changed = Record(id="p20", document="a quokka on the trail last week", metadata={"ts_s": 20.0})
    a.update("u", [changed])
    expected = in_memory([changed if r.id == "p20" else r for r in records])
    for index in (a.get("u"), b.get("u"), shared(tmp_path).get("u")):
        assert index is not None and index.position["p20"] == 20
        same_scores(index, expected)
    assert not any(marker.encode() in p.read_bytes() for p in tmp_path.iterdir())
    server = PageIndexes(folder=lambda: None)  # a Chroma server: in this process only
    server.build("u", records)
    server.update("u", [changed])
    same_scores(server.get("u"), expected)  # type: ignore[arg-type]


def test_update_memory_does_not_rebuild_the_word_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = MemoryOS(data_storage_path=str(tmp_path / "data"), user_id="alice", embedder=HashingEmbedder(64))
    try:
        ids = [memory.add_memory(f"I walk my dog on trail {i}", "Nice.").page_id for i in range(12)]
        memory.flush()
        memory.retrieve_memory("dog trail")  # the index is built (once)
        rebuilt = counting_rebuilds(monkeypatch)
        memory.update_memory(ids[4], user_input="My sister cooks pasta in Lisbon")
        found = memory.retrieve_memory("sister pasta Lisbon").all_units[0]
        assert found.id == ids[4] and "Lisbon" in found.text
        assert rebuilt == []
    finally:
        memory.close()


def test_two_indexes_that_find_it_stale_at_once_rebuild_it_once(tmp_path: Path) -> None:
    records, reads = pages(200), []
    shared(tmp_path).build("u", records[:10])

    def slow_read() -> list[Record]:
        reads.append(1)
        time.sleep(0.5)  # a long rebuild: the other waits for it rather than doing it again
        return records

    first, second = shared(tmp_path), shared(tmp_path)  # as two processes: each its own file handle
    assert first.get("u") is not None and second.get("u") is not None
    results: list[PageIndex] = []
    threads = [
        threading.Thread(target=lambda i=i: results.append(i.rebuild("u", slow_read)))
        for i in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(reads) == 1
    for index in results:
        same_scores(index, in_memory(records))


def test_a_file_removed_by_another_process_is_not_written_into(tmp_path: Path) -> None:
    a, b, c = shared(tmp_path), shared(tmp_path), shared(tmp_path)
    a.build("u", pages(30))
    assert b.get("u") is not None and c.get("u") is not None
    b.file.reset()  # type: ignore[union-attr]  # b found the file damaged and removed it
    assert a.get("u") is None  # a uses the file now at the path (empty), not the removed one
    a.build("u", pages(40))
    assert len(b.get("u") or []) == 40
    c.file.reset()  # type: ignore[union-attr]  # c found the old file damaged too: already replaced
    assert len(shared(tmp_path).get("u") or []) == 40


def test_postings_kept_for_queries_follow_pages_added_updated_and_removed(
    tmp_path: Path,
) -> None:
    records = pages(120)
    indexes = shared(tmp_path)
    indexes.build("u", records[:60])
    loaded = shared(tmp_path)
    for step, (held, change) in enumerate(
        [
            (records[:60], lambda: None),
            (records[:90], lambda: loaded.add("u", records[60:90])),  # the kept postings grow
            (records[:90], lambda: None),
        ]
    ):
        change()
        index = loaded.get("u")
        assert index is not None
        same_scores(index, in_memory(held))
        terms = tokens("hiking trail coffee lisbon")
        count = len(index)
        postings, _ = index.matches(terms, count)
        expected, _ = in_memory(held).matches(terms, count)
        assert sorted(p[0].tolist() for p in postings) == sorted(p[0].tolist() for p in expected), step
    updated = Record(id="p3", document="marathon marathon lisbon", metadata=records[3].metadata)
    loaded.update("u", [updated])
    loaded.remove("u", ["p5"])
    index = loaded.get("u")
    assert index is not None
    held = [updated if r.id == "p3" else r for r in records[:90] if r.id != "p5"]
    same_scores(index, in_memory(held))
    small = PageIndex(index.to_snapshot())
    small._keep_budget = len(small._base[1]) // 2  # room for about half of the words' postings
    for word in WORDS:
        small.bm25(tokens(word))
    kept = sum(len(posting[0]) for _, posting in small._kept.values())
    assert 0 < kept == small._kept_size <= small._keep_budget
    same_scores(small, in_memory(held))
