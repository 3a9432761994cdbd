"""New pages are journaled, merged into reads, written to Chroma in batches, and replayed after a crash."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import HashingEmbedder, MemoryConfig, MemoryOS, ShortTermConfig, StorageError
from memoryos_core.engine import pending as pending_module
from memoryos_core.engine.pending import PendingPages
from memoryos_core.storage.base import Kind, Record
from memoryos_core.storage.chroma import ChromaStore

SLOW = MemoryConfig(write_behind_s=30.0)  # the writer thread waits: pages stay pending until a flush


def _memory(path: Path, config: MemoryConfig = SLOW, store: ChromaStore | None = None) -> MemoryOS:
    return MemoryOS(
        user_id="alice",
        store=store or ChromaStore(path=str(path)),
        embedder=HashingEmbedder(64),
        config=config,
        background=True,
    )


def _stored(memory: MemoryOS) -> list[Record]:
    return _stored_of(memory, "alice")


def _stored_of(memory: MemoryOS, user: str) -> list[Record]:
    return memory.store.get("pages", where={"user_id": user})


def _journals(path: Path) -> list[Path]:
    return sorted((path / ".memoryos-pending").glob("*.jsonl"))


def test_pending_pages_are_recalled_before_they_reach_chroma(tmp_path: Path) -> None:
    memory = _memory(tmp_path)
    try:
        added = memory.add_memory("My cat Pixel likes tuna.", "Noted.").page_id
        memory.add_memory("I fixed the build.", "Good.")
        assert _stored(memory) == [] and len(_journals(tmp_path)) == 1
        context = memory.retrieve_memory("what does Pixel like to eat")
        assert context.all_units[0].page_ids == (added,)
        assert next(p["id"] for p in memory.export_memory()["pages"]) == added  # reads flush first
        assert len(_stored(memory)) == 2 and _journals(tmp_path) == []
    finally:
        memory.close()


def test_the_writer_thread_writes_a_batch_soon(tmp_path: Path) -> None:
    memory = _memory(tmp_path, MemoryConfig(write_behind_s=0.02))
    try:
        for i in range(5):
            memory.add_memory(f"note {i}", "ok")
        pending = memory._runtime.pending
        assert pending is not None
        for _ in range(200):
            if not len(pending) and len(_stored(memory)) == 5:
                break
            time.sleep(0.02)
        assert len(_stored(memory)) == 5 and len(pending) == 0
    finally:
        memory.close()


def test_write_behind_is_off_for_a_server_inline_mode_or_zero(tmp_path: Path, chroma_server_url: str) -> None:
    cases = [
        MemoryOS(store=ChromaStore(url=chroma_server_url, prefix="wb_"), embedder=HashingEmbedder(64)),
        MemoryOS(store=ChromaStore(path=str(tmp_path / "a")), embedder=HashingEmbedder(64), background=False),
        _memory(tmp_path / "b", MemoryConfig(write_behind_s=0)),
    ]
    for memory in cases:
        try:
            memory.add_memory("hello", "hi")
            assert memory._runtime.pending is None
            assert len(memory.store.get("pages", where={"user_id": memory.user_id})) == 1
        finally:
            memory.close()


_CHILD = textwrap.dedent(
    """
    import os, sys
    from memoryos_core import HashingEmbedder, MemoryConfig, MemoryOS, ShortTermConfig
    from memoryos_core.storage.chroma import ChromaStore
    # (no consolidation either: its passes would write the journaled pages before the kill)
    config = MemoryConfig(write_behind_s=30.0, short_term=ShortTermConfig(capacity=1000))
    memory = MemoryOS(user_id="alice", store=ChromaStore(path=sys.argv[1]), embedder=HashingEmbedder(64),
                      config=config, background=True)
    ids = [memory.add_memory(f"page {i}", "ok").page_id for i in range(int(sys.argv[2]))]
    print(" ".join(ids), flush=True)
    os.kill(os.getpid(), 9)
    """
)


@pytest.mark.parametrize("background", [True, False])
def test_pages_journaled_by_a_killed_process_are_written_once_at_the_next_start(
    tmp_path: Path, background: bool
) -> None:
    accepted = _killed_writer(tmp_path)
    lines = [json.loads(line) for line in _journals(tmp_path)[0].read_text().splitlines()]
    assert all(line["vec"] == [] for line in lines)  # journaled before any embedding
    memory = _memory(tmp_path)
    if not background:  # an instance without write-behind replays them too
        memory.close()
        memory = MemoryOS(
            store=ChromaStore(path=str(tmp_path)), embedder=HashingEmbedder(64), background=False
        )
    try:
        memory.flush()
        pages = [p["id"] for p in memory.export_memory(user_id="alice")["pages"]]
        assert sorted(pages) == sorted(accepted)  # every accepted page, exactly once
        assert _journals(tmp_path) == []
        for record in memory.store.get("pages", where={"user_id": "alice"}, with_embeddings=True):
            want = HashingEmbedder(64).embed([record.document])[0]  # embedded when replayed
            assert record.embedding == pytest.approx(want, abs=1e-6)
    finally:
        memory.close()


def _killed_writer(path: Path, pages: int = 12) -> list[str]:
    """Run ``_CHILD`` on the store at ``path``: the ids of the pages it accepted and left journaled."""
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), str(pages)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    accepted = done.stdout.split()
    assert len(accepted) == pages and len(_journals(path)) == 1
    return accepted


@pytest.mark.parametrize("background", [True, False])
def test_a_live_process_writes_the_pages_of_one_that_died_since_it_opened_the_store(
    tmp_path: Path, background: bool
) -> None:
    live = (
        _memory(tmp_path)
        if background
        else MemoryOS(store=ChromaStore(path=str(tmp_path)), embedder=HashingEmbedder(64), background=False)
    )
    try:
        live.get_memory_stats(user_id="alice")  # open before the other process writes
        accepted = _killed_writer(tmp_path)
        pages = [p["id"] for p in live.export_memory(user_id="alice")["pages"]]  # reads adopt first
        assert sorted(pages) == sorted(accepted) and _journals(tmp_path) == []
        live.flush()  # the dead process's pages are consolidated as the live one's would be
        stats = live.get_memory_stats(user_id="alice")
        assert stats.short_term_pages <= live.config.short_term.capacity and stats.pending_pages == 0
    finally:
        live.close()


def test_a_page_a_dead_process_accepted_can_be_deleted_for_good(tmp_path: Path) -> None:
    live = _memory(tmp_path)
    try:
        live.get_memory_stats(user_id="alice")
        gone, *kept = _killed_writer(tmp_path)
        assert live.delete_memory(gone, user_id="alice") == 1
    finally:
        live.close()
    reopened = _memory(tmp_path)  # (a journal left behind would be replayed here)
    try:
        pages = [p["id"] for p in reopened.export_memory(user_id="alice")["pages"]]
        assert sorted(pages) == sorted(kept) and gone not in pages
    finally:
        reopened.close()


class _RefusingAlice(ChromaStore):
    """Refuses to write pages of user alice (the dead writer's) while ``refusing``."""

    refusing = True

    def upsert(self, kind: Kind, records: Any) -> None:
        if kind == "pages" and self.refusing and any(r.metadata.get("user_id") == "alice" for r in records):
            raise StorageError("alice's pages refused", backend=self.backend)
        super().upsert(kind, records)


def test_a_dead_process_journal_that_cannot_be_written_yet_blocks_no_call_of_a_live_one(
    tmp_path: Path,
) -> None:
    store = _RefusingAlice(path=str(tmp_path))
    live = _memory(tmp_path, store=store)
    try:
        live.get_memory_stats(user_id="carol")
        accepted = _killed_writer(tmp_path)
        mine = live.add_memory("carol's own page", "ok", user_id="carol").page_id
        assert [p["id"] for p in live.export_memory(user_id="carol")["pages"]] == [mine]
        assert len(_journals(tmp_path)) == 1  # kept for the next try
        store.refusing = False
        assert sorted(p["id"] for p in live.export_memory(user_id="alice")["pages"]) == sorted(accepted)
        assert _journals(tmp_path) == []
    finally:
        store.refusing = False
        live.close()


def test_an_idle_writer_thread_writes_the_pages_of_a_dead_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pending_module, "ADOPT_S", 0.05)
    live = _memory(tmp_path)
    try:
        live.get_memory_stats(user_id="alice")
        accepted = _killed_writer(tmp_path)
        for _ in range(400):  # no call of the live process: its writer thread looks by itself
            if len(_stored(live)) == len(accepted):
                break
            time.sleep(0.025)
        assert sorted(r.id for r in _stored(live)) == sorted(accepted) and _journals(tmp_path) == []
        found = live.retrieve_memory("page 7", user_id="alice").all_units
        assert any(unit.page_ids == (accepted[7],) for unit in found)
    finally:
        live.close()


def test_a_process_that_keeps_adding_still_writes_the_pages_of_a_dead_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pending_module, "ADOPT_S", 0.1)
    # (no consolidation, whose passes would look for dead journals too: the journal thread alone)
    config = MemoryConfig(write_behind_s=0.02, short_term=ShortTermConfig(capacity=1000))
    live = _memory(tmp_path, config)
    try:
        live.get_memory_stats(user_id="alice")
        accepted = _killed_writer(tmp_path)
        for i in range(200):  # a page every 10 ms: the journal thread is never idle for ADOPT_S
            live.add_memory(f"carol's page {i}", "ok", user_id="carol")
            if {r.id for r in _stored(live)} >= set(accepted):
                break
            time.sleep(0.01)
        assert sorted(r.id for r in _stored(live)) == sorted(accepted)
    finally:
        live.close()


class _SlowEmbedder(HashingEmbedder):
    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        time.sleep(0.004 * len(texts))
        return super().embed(texts)


def test_close_stops_a_replay_under_way_and_the_journal_is_kept_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pending_module, "ADOPT_S", 0.05)
    live = MemoryOS(
        user_id="carol",
        store=ChromaStore(path=str(tmp_path)),
        embedder=_SlowEmbedder(64),
        config=SLOW,
        background=True,
    )
    live.get_memory_stats()
    accepted = _killed_writer(tmp_path, pages=400)  # ~1.6 s of embedding at 4 ms a page
    for _ in range(400):
        if _stored_of(live, "alice"):
            break  # the journal thread is replaying it
        time.sleep(0.01)
    started = time.monotonic()
    live.close()
    assert time.monotonic() - started < 1.0  # one chunk of 64 pages (0.26 s) at most, not the rest
    assert not [t for t in threading.enumerate() if t.name in ("memoryos-pending", "memoryos-worker")]
    assert 0 < len(_stored_of(live, "alice")) < len(accepted) and len(_journals(tmp_path)) == 1
    reopened = _memory(tmp_path)  # the next process to open the store writes the rest, once each
    try:
        pages = [p["id"] for p in reopened.export_memory(user_id="alice")["pages"]]
        assert sorted(pages) == sorted(accepted) and _journals(tmp_path) == []
    finally:
        reopened.close()


def test_a_journal_being_created_is_named_once_locked_and_a_dead_ones_leftover_goes(tmp_path: Path) -> None:
    folder = tmp_path / ".memoryos-pending"
    folder.mkdir()
    stale, young = folder / ".1-dead.opening", folder / ".2-starting.opening"
    stale.write_bytes(b"")
    young.write_bytes(b"")
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    memory = _memory(tmp_path)
    try:
        memory.add_memory("hello", "hi")
        [journal] = _journals(tmp_path)
        with open(journal, "rb") as other, pytest.raises(BlockingIOError):
            fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held under its final name
        assert not stale.exists() and young.exists()  # (a young one may be a live writer's)
        assert sorted(p.name for p in folder.iterdir()) == sorted([journal.name, young.name])
    finally:
        memory.close()


def test_a_replayed_journal_never_overwrites_a_page_already_stored(tmp_path: Path) -> None:
    memory = _memory(tmp_path, MemoryConfig(write_behind_s=0))
    page_id = memory.add_memory("I moved to Lisbon.", "Nice.").page_id
    [record] = _stored(memory)
    memory.close()
    stale = {"id": page_id, "doc": "old", "meta": record.metadata | {"tier": "stale"}, "vec": [0.0] * 64}
    folder = tmp_path / ".memoryos-pending"
    folder.mkdir()
    (folder / "1-dead.jsonl").write_text(json.dumps(stale) + "\n" + '{"id": "cut sh')  # a torn last line
    reopened = _memory(tmp_path)
    try:
        reopened.get_memory_stats()
        [again] = _stored(reopened)
        assert again.metadata["tier"] == "short_term" and again.document == record.document
        assert _journals(tmp_path) == []
    finally:
        reopened.close()


def _dead_journal(tmp_path: Path) -> tuple[ChromaStore, Path]:
    """A store and, in ``tmp_path / "journal"``, a journal no process holds, of one page of alice."""
    store = ChromaStore(path=str(tmp_path))
    store.open(dim=2, embedder_name="t")
    folder = tmp_path / "journal"
    folder.mkdir()
    (folder / "1-dead.jsonl").write_bytes(
        pending_module._line(Record("p0", "doc", {"user_id": "alice"}, [1.0, 0.0]))
    )
    return store, folder


def test_a_journal_another_process_replayed_while_this_one_opened_it_is_not_replayed_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, folder = _dead_journal(tmp_path)
    real_flock = fcntl.flock

    def lock_after_the_other(fd: int, operation: int) -> None:  # it replayed the file and removed it
        (folder / "1-dead.jsonl").unlink(missing_ok=True)
        real_flock(fd, operation)

    monkeypatch.setattr(pending_module.fcntl, "flock", lock_after_the_other)
    assert pending_module.replay_journals(store, folder, None) == 0
    monkeypatch.undo()
    assert store.get("pages", where={"user_id": "alice"}) == []  # (the user may have deleted it since)
    store.close()


def test_a_journal_gone_between_listing_and_opening_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, folder = _dead_journal(tmp_path)

    def gone(path: Any, *args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError(path)

    monkeypatch.setattr(pending_module, "open", gone, raising=False)
    assert pending_module.replay_journals(store, folder, None) == 0
    monkeypatch.undo()
    assert pending_module.replay_journals(store, folder, None) == 1  # (here it was still there)
    assert [r.id for r in store.get("pages", where={"user_id": "alice"})] == ["p0"]
    store.close()


def test_a_journal_held_by_a_live_process_is_left_alone(tmp_path: Path) -> None:
    first = _memory(tmp_path)
    second = _memory(tmp_path)
    try:
        first.add_memory("written by the first", "ok")
        second.get_memory_stats()  # opens, looks for journals to replay: the first's is in use
        assert len(_journals(tmp_path)) == 1 and _stored(second) == []
        first.flush()
        assert len(_stored(second)) == 1 and _journals(tmp_path) == []
    finally:
        first.close()
        second.close()


class _FailingStore(ChromaStore):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failing = True

    def upsert(self, kind: Kind, records: Any) -> None:
        if kind == "pages" and self.failing:
            raise StorageError("disk full", backend=self.backend)
        super().upsert(kind, records)


def test_a_failed_write_keeps_pages_pending_and_recallable(tmp_path: Path) -> None:
    store = _FailingStore(path=str(tmp_path))
    memory = _memory(tmp_path, store=store)
    try:
        page_id = memory.add_memory("The wifi password is on the fridge.", "Got it.").page_id
        with pytest.raises(StorageError, match="disk full"):
            memory.export_memory()
        assert memory.retrieve_memory("where is the wifi password").all_units[0].page_ids == (page_id,)
        assert len(_journals(tmp_path)) == 1
        store.failing = False
        assert [p["id"] for p in memory.export_memory()["pages"]] == [page_id]
        assert _journals(tmp_path) == []
    finally:
        store.failing = False
        memory.close()


def test_close_writes_what_is_pending(tmp_path: Path) -> None:
    memory = _memory(tmp_path)
    memory.add_memory("last words", "ok")
    memory.close()
    reopened = ChromaStore(path=str(tmp_path))
    reopened.open(dim=64, embedder_name=HashingEmbedder(64).name)
    assert len(reopened.get("pages", where={"user_id": "alice"})) == 1
    assert _journals(tmp_path) == []


def test_a_short_write_accepts_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ChromaStore(path=str(tmp_path))
    store.open(dim=2, embedder_name="t")
    pending = PendingPages(store, tmp_path / "journal", 30.0)
    pending.start()
    pending.add("alice", [Record("p0", "doc", {"user_id": "alice"}, [1.0, 0.0])])
    [journal] = (tmp_path / "journal").glob("*.jsonl")
    before = journal.read_bytes()
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[: len(data) // 2]))
    with pytest.raises(StorageError, match="short write"):
        pending.add("alice", [Record("p1", "doc", {"user_id": "alice"}, [1.0, 0.0])])
    monkeypatch.undo()
    assert [r.id for r in pending.of("alice")] == ["p0"]
    assert journal.read_bytes() == before  # the half-written line is cut off again
    pending.add("alice", [Record("p2", "doc", {"user_id": "alice"}, [0.0, 1.0])])
    assert [json.loads(line)["id"] for line in journal.read_bytes().splitlines()] == ["p0", "p2"]
    pending.close()


def test_a_journal_carries_its_creation_time_and_the_oldest_is_found(tmp_path: Path) -> None:
    folder = tmp_path / ".memoryos-pending"
    started = time.time_ns()
    assert started <= pending_module.oldest_journal_ns(folder) <= time.time_ns()  # none: now
    memory = _memory(tmp_path)
    try:
        memory.add_memory("hello", "hi")
        (journal,) = _journals(tmp_path)
        created = pending_module.oldest_journal_ns(folder)
        assert started <= created <= time.time_ns() and journal.name.startswith(f"{created}-")
        (folder / f".{started - 5}-1-ab.opening").touch()  # one being created counts too
        (folder / f"{started - 9}-1-cd.quarantined").touch()  # lines set aside do not
        assert pending_module.oldest_journal_ns(folder) == started - 5
        (folder / "4242-0123456789abcdef.jsonl").touch()  # an earlier version's name: long past
        assert pending_module.oldest_journal_ns(folder) < started - 5
    finally:
        memory.close()


def test_a_journal_of_pages_to_settle_never_writes_one_that_is_not_stored(tmp_path: Path) -> None:
    memory = _memory(tmp_path, MemoryConfig(write_behind_s=0.0))  # (pages straight to the store)
    try:
        kept = memory.add_memory("kept page", "ok").page_id
        gone = memory.add_memory("page deleted by id", "ok").page_id
        records = memory.store.get("pages", ids=[kept, gone], where={"user_id": "alice"})
        assert memory.delete_memory(gone) == 1
        folder = tmp_path / ".memoryos-pending"
        folder.mkdir(exist_ok=True)
        journal, path = pending_module.spool(folder, records, is_fsync=False)  # (from before the delete)
        journal.close()  # left by a dead process
        checked: list[list[str]] = []
        stored: list[str] = []
        replayed = pending_module.replay_journals(
            memory.store,
            folder,
            None,
            lambda user, pages: stored.extend(r.id for r in pages),
            check=lambda user, pages: checked.append([r.id for r in pages]) or [],
        )
        assert replayed == 0 and checked == [[kept]] and not path.exists()
        assert stored == []  # (their wordpieces were kept when they were written: not encoded again)
        assert [r.id for r in _stored(memory)] == [kept]  # the deleted page was not written back
    finally:
        memory.close()


def test_a_journal_left_to_rest_is_tried_again_when_the_clock_went_back(tmp_path: Path) -> None:
    path = tmp_path / "1-2-ab.settling.jsonl"
    path.touch()
    for ahead, resting in [(-1.0, False), (2.0, True), (pending_module.ADOPT_S + 60, False)]:
        os.utime(path, (time.time() + ahead, time.time() + ahead))
        assert pending_module._resting(path) is resting


def test_pages_not_written_at_close_are_left_to_their_journal_not_written_later(tmp_path: Path) -> None:
    """A close whose flush fails unlocks the journal for the next replay and forgets the pages: a later
    close (at exit, say) does not write them after that replay, nor after a delete since."""
    store = _RefusingAlice(path=str(tmp_path))
    memory = _memory(tmp_path, store=store)
    memory.add_memory("refused for now", "ok")
    memory.close()  # the write fails: the journal stays, unlocked
    (journal,) = _journals(tmp_path)
    with open(journal, "rb") as file:
        fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # (no one holds it)
    pending = memory._runtime.pending
    assert pending is not None and len(pending) == 0
    store.refusing = False
    memory.close()  # again, as at exit
    assert _stored(memory) == [] and _journals(tmp_path) == [journal]  # the next replay's to write


class _AddingDuringWrite(ChromaStore):
    """Its first write of pages journals a page of another user (as a thread would, meanwhile)."""

    memory: MemoryOS | None = None

    def upsert(self, kind: Kind, records: Any) -> None:
        memory, self.memory = self.memory, None
        if kind == "pages" and memory is not None:
            memory.add_memory("added while the flush writes", "ok", user_id="zoe")
        super().upsert(kind, records)


def test_a_journal_whose_pages_a_flush_wrote_meanwhile_goes_with_the_flush(tmp_path: Path) -> None:
    """A page journaled during a flush and written by it leaves no journal behind (a process killed
    while idle would have it replayed: a page deleted by id meanwhile would come back)."""
    store = _AddingDuringWrite(path=str(tmp_path))
    memory = _memory(tmp_path, store=store)
    try:
        memory.get_memory_stats()  # (opens the store)
        memory.add_memory("first", "ok")  # alice's: written first (the users in the order they came)
        memory.add_memory("zoe's first", "ok", user_id="zoe")
        store.memory = memory  # zoe's second page comes while alice's are written: in this flush too
        pending = memory._runtime.pending
        assert pending is not None
        pending.flush()
        assert len(pending) == 0 and len(_stored_of(memory, "zoe")) == 2
        assert _journals(tmp_path) == []
    finally:
        memory.close()
