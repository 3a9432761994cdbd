"""New pages journaled on local disk, embedded and written to an embedded Chroma store in batches.

One Chroma write costs about 5 ms on this kind of disk whatever its size, and embedding one page
with the default model 8-20 ms, so doing both in each ``add_memory`` would cost every turn that
much. Instead a new page is appended, without its vector, to a journal file (one ``write`` call,
which survives the process being killed; with ``durability="fsync"``, the default, also
``fdatasync``, so it survives a power loss as Chroma's own SQLite commits do) and kept in memory,
and a thread embeds whatever has gathered a few tens of milliseconds later, in one batch, and
writes it to Chroma, in one upsert per user. Until then:

- retrieval merges the pending pages of the user (``embedded``: the few not embedded yet are
  embedded on demand, once, and keep their vector for the write, so they rank exactly as stored
  pages do);
- lookups by id or ``meta_data`` read them as they are (``of``: no vector needed);
- every other operation that reads pages calls ``flush`` first.

Journal files are ``<store folder>/.memoryos-pending/<created ns>-<pid>-<n>.jsonl``, each held under an
exclusive ``flock`` by the process writing it from before it has that name (it is created under a
name no replay reads, locked, then renamed). Files no live process holds (their writer died) are
replayed: pages not yet in Chroma are embedded (a line may carry its vector: journals of earlier
versions did, and that vector is used as it is) and written, pages already there are left alone
(they may have been consolidated since), then the file is removed. A process replays them when it
opens the store, before any call that reads or changes stored pages (``Runtime.settled``: so a
delete or an export sees the pages a dead process accepted), and from its writer thread every
``ADOPT_S``. A failed embedding or write keeps the pages pending, in memory and on disk, and is
retried with backoff. Once written, a journal's pages go to ``check`` (a delete in another process
may have missed them: ``engine/erasure.py``); those it cannot settle yet move to a journal of their
own, named with their oldest page's time, and are passed to it again later.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import IO

from memoryos_core._exceptions import DimensionMismatchError, EmbeddingError, MemoryOSError, StorageError
from memoryos_core.engine.records import record_from_json, record_to_json
from memoryos_core.storage._private import DIR_MODE, open_private
from memoryos_core.storage.base import MemoryStore, Record

logger = logging.getLogger("memoryos")
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
_REPLAY_CHUNK = 64  # pages embedded and written at a time when a journal is replayed (a stop waits one)
_SETTLING = ".settling"
"""The name of a journal of pages already written and to be passed to ``check`` again ends with this
before ``.jsonl``: a replay re-checks those still stored and never writes one that is not (it was
erased, or deleted since)."""
_OPENING = ".opening"
"""The suffix of a journal being created (locked, then renamed to ``.jsonl``): replays do not read it."""
_STALE_S = 60.0
"""Age past which an unlocked journal still being created is a dead process's (removed: it is empty)."""
ADOPT_S = 5.0
"""How often the writer thread looks for journals of dead processes to replay (busy or idle)."""
_RECHECK_S = 1.0
"""How often pages ``check`` could not settle are passed to it again (besides every flush)."""
_REPLAYING = threading.Lock()
"""One replay at a time in this process (another process's is kept out by the journal's lock)."""

Embed = Callable[[Sequence[str]], list[list[float]]]
"""``Embedder.embed``: one vector per text, in order."""
Stored = Callable[[str, list[Record]], None]
"""Called with a user and their pages just written to the store."""
Check = Callable[[str, list[Record]], list[Record]]
"""Called with a user and their pages once written (and ``Stored`` called); returns those it cannot
settle yet (raises MemoryOSError when it cannot tell: all of them), kept journaled and passed again."""


def _line(record: Record) -> bytes:
    return (json.dumps(record_to_json(record), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _record(line: bytes) -> Record | None:
    try:
        record = record_from_json(json.loads(line))
    except (ValueError, KeyError, TypeError):  # a line cut short by a crash: its add never returned
        return None
    return record if record.embedding else replace(record, embedding=None)  # "vec": [] is no vector


def with_vectors(records: Sequence[Record], embed: Embed | None) -> list[Record]:
    """``records``, those without a vector given one by ``embed`` (one batch); the rest as they are.

    Raises:
        EmbeddingError: the embedder failed, returned another number of vectors, or there is none.
    """
    bare = [r for r in records if not r.embedding]
    if not bare:
        return list(records)
    if embed is None:
        raise EmbeddingError(
            "journaled pages without a vector and no embedder to embed them", backend="journal"
        )
    vectors = embed([r.document for r in bare])
    if len(vectors) != len(bare):
        raise EmbeddingError(
            f"the embedder returned {len(vectors)} vectors for {len(bare)} pages", backend="journal"
        )
    filled = {r.id: replace(r, embedding=v) for r, v in zip(bare, vectors)}
    return [filled.get(r.id, r) for r in records]


class PendingPages:
    """Pages accepted but not yet in Chroma (see the module docstring).

    Args:
        store: where the pages go.
        folder: the journal folder (on the same disk as an embedded store).
        delay_s: how long a page may wait so that several are embedded and written together.
        is_fsync: flush each journal write to the disk before ``add`` returns (and the folder
            entry of each new journal file), so that an accepted page survives a power loss,
            not only a killed process.
        embed: gives vectors to pages added without one (``Embedder.embed``); without it every
            page must come with its vector.
        on_stored: called with (user, pages) after pages were written to the store (the late
            rerank's wordpieces are written then); must not raise.
        on_adopted: called after pages of a dead process's journal were written (to schedule
            their consolidation); must not raise.
        check: called with (user, pages) after ``on_stored``; the pages it returns (all of them when it
            raises MemoryOSError) are kept in a journal of their own and passed again at the next flush
            (at least every ``_RECHECK_S``).
    """

    def __init__(
        self,
        store: MemoryStore,
        folder: str | Path,
        delay_s: float,
        *,
        is_fsync: bool = True,
        embed: Embed | None = None,
        on_stored: Stored | None = None,
        on_adopted: Callable[[], None] = lambda: None,
        check: Check | None = None,
    ) -> None:
        self.store, self.folder, self.delay_s, self.is_fsync = store, Path(folder), delay_s, is_fsync
        self._embed = embed
        self._on_stored = on_stored
        self._on_adopted = on_adopted
        self._check = check
        # pages written that ``check`` did not settle, and their journal (both under _flush_lock)
        self._unchecked: dict[str, dict[str, Record]] = {}
        self._held: tuple[IO[bytes], Path, frozenset[str]] | None = None
        self._checked_at = time.monotonic()
        self._pages: dict[str, dict[str, Record]] = {}
        self._lock = threading.Lock()  # guards _pages and the journal
        self._flush_lock = threading.Lock()  # one flush at a time
        self._embed_lock = threading.Lock()  # a page is embedded once, by a flush or a recall
        self._wake = threading.Condition(self._lock)
        self._journal: tuple[IO[bytes], Path] | None = None  # the open journal and its path
        # journals whose pages are being or failed to be written
        self._written: list[tuple[IO[bytes], Path]] = []
        self._failures = 0
        self._stopped = False
        self._stop = threading.Event()
        self._no_adopt = threading.Event()  # set once closing: a replay under way stops between chunks
        self._adopted_at = time.monotonic()
        self._thread: threading.Thread | None = None

    # --- start and stop -------------------------------------------------------------------
    def start(self) -> int:
        """Replay journals left by dead processes, then start the writer thread; returns pages replayed."""
        self.folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.folder, DIR_MODE)  # the pages of every user pass through here
        if self.is_fsync:
            _fsync_folder(self.folder.parent)  # the journal folder's own name
        remove_dead_openings(self.folder)
        replayed = replay_journals(self.store, self.folder, self._embed, self._on_stored, check=self._check)
        self._thread = threading.Thread(target=self._loop, name="memoryos-pending", daemon=True)
        self._thread.start()
        return replayed

    def adopt(self) -> int:
        """Replay the journals of processes that died since the store was opened (``on_adopted`` is
        called when there were pages to write); returns the pages written.

        Raises:
            StorageError, EmbeddingError: as ``replay_journals`` (the journal stays for the next try).
        """
        replayed = replay_journals(
            self.store,
            self.folder,
            self._embed,
            self._on_stored,
            check=self._check,
            stop=self._no_adopt.is_set,
        )
        self._adopted_at = time.monotonic()
        if replayed:
            self._on_adopted()
        return replayed

    def stop_adopting(self) -> None:
        """No more replays of other processes' journals; one under way stops after its chunk (the
        journal stays, for the next process to open the store: its pages written already are skipped)."""
        self._no_adopt.set()

    def close(self) -> None:
        """Write everything pending and stop; pages that cannot be written stay in the journal."""
        self.stop_adopting()
        with self._lock:
            self._stopped = True
            self._stop.set()
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join()
        try:
            self.flush()
        except MemoryOSError as exc:
            logger.warning("pending pages could not be written at close, kept in %s: %s", self.folder, exc)
        # Journals left (pages not written, or not settled) are closed, not removed: unlocked, they are
        # a dead process's for the next replay, here or in another process, and so are their pages
        # (written again from here, after that replay, one could come back after a delete).
        with self._lock:
            left = [*self._written, *filter(None, [self._journal])]
            self._written, self._journal, self._pages = [], None, {}
        if self._held is not None:
            left.append(self._held[:2])
            self._held = None
            logger.warning("pages not settled at close: their journal stays in %s", self.folder)
        self._unchecked = {}
        for journal, _ in left:
            journal.close()

    # --- write path ---------------------------------------------------------------------------
    def add(self, user_id: str, records: Sequence[Record]) -> None:
        """Journal ``records`` (new pages of ``user_id``, with or without vectors); they are durable
        when this returns. Nothing is embedded here: that is the writer thread's work (or a recall's)."""
        data = b"".join(_line(r) for r in records)
        with self._lock:
            if self._journal is None:
                self._journal = self._open_journal()
            fd = self._journal[0].fileno()
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
                if self.is_fsync:
                    _fdatasync(fd)
            except OSError as exc:  # a full disk, say: nothing is accepted, the journal stays whole
                os.ftruncate(fd, size)
                raise _unwritable(self.folder, exc) from exc
            self._pages.setdefault(user_id, {}).update((r.id, r) for r in records)
            self._wake.notify_all()

    def of(self, user_id: str) -> list[Record]:
        """The user's pages not yet in the store, oldest first (some may have no vector yet)."""
        with self._lock:
            return list(self._pages.get(user_id, {}).values())

    def embedded(self, user_id: str) -> list[Record]:
        """The user's pages not yet in the store, oldest first, each with its vector: pages not
        embedded yet are embedded now, in one batch, and keep the vector for their write.

        Raises:
            EmbeddingError: the embedder failed (the pages stay pending, without vectors).
        """
        with self._embed_lock:
            records = with_vectors(self.of(user_id), self._embed)
            with self._lock:
                current = self._pages.get(user_id, {})
                for record in records:
                    if record.id in current and not current[record.id].embedding:
                        current[record.id] = record  # same key: the order stays
            return records

    def __len__(self) -> int:
        with self._lock:
            return sum(len(pages) for pages in self._pages.values())

    def flush(self) -> None:
        """Write every pending page to the store now, and pass them to ``check``.

        Pages without a vector are embedded first, one batch per user. Every page of the journals
        closed here is in the batch (pages leave ``_pages`` only once written), so those journals
        can go once the pages ``check`` did not settle are in a journal of their own; pages added
        meanwhile may be written too (their new journal goes as well when they all were, else it
        stays until the next flush).

        Raises:
            StorageError: the store failed; the pages stay pending (memory and journal).
            EmbeddingError: the embedder failed; the same.
        """
        with self._flush_lock:
            with self._lock:
                users = [user for user, pages in self._pages.items() if pages]
                if self._journal is not None:  # later pages go to a new journal
                    self._written.append(self._journal)
                    self._journal = None
            for user in users:
                records = self.embedded(user)
                if records:
                    self.store.upsert("pages", records)
                    if self._on_stored is not None:
                        self._on_stored(user, records)
                    self._unchecked.setdefault(user, {}).update((r.id, r) for r in records)
                with self._lock:
                    left = self._pages.get(user, {})
                    for record in records:
                        left.pop(record.id, None)
                    if not left:
                        self._pages.pop(user, None)
            self._settle()
            with self._lock:
                done, self._written = self._written, []
                if self._journal is not None and not self._pages:  # (pages added meanwhile, all written)
                    done.append(self._journal)  # (kept, a replay would write one deleted since back)
                    self._journal = None
            for journal, path in done:
                os.unlink(path)
                journal.close()  # closing releases the flock

    def _settle(self) -> None:
        """Pass the pages written and not settled yet to ``check`` (under ``_flush_lock``); those it
        leaves go to a journal of their own (``_held``), so that the ones they came from can go.

        Raises:
            StorageError: that journal cannot be written (the others stay).
        """
        self._checked_at = time.monotonic()
        for user in list(self._unchecked):
            pages = list(self._unchecked[user].values())
            try:
                left = self._check(user, pages) if self._check is not None else []
            except MemoryOSError as exc:
                logger.warning("pages of user %s written, not settled yet (kept journaled): %s", user, exc)
                left = pages
            if left:
                self._unchecked[user] = {r.id: r for r in left}
            else:
                del self._unchecked[user]
        held = [r for pages in self._unchecked.values() for r in pages.values()]
        ids = frozenset(r.id for r in held)
        old = self._held
        if old is not None and old[2] == ids:
            return
        self._held = None
        if held:
            try:
                self._held = (*spool(self.folder, held, is_fsync=self.is_fsync), ids)
            except OSError as exc:
                self._held = old
                raise _unwritable(self.folder, exc) from exc
        if old is not None:
            os.unlink(old[1])
            old[0].close()

    # --- internals ------------------------------------------------------------------------
    def _open_journal(self) -> tuple[IO[bytes], Path]:
        """A new journal, locked before it takes its ``.jsonl`` name: a replay in another process never
        finds it unlocked (it would take it for a dead process's and remove it, and the pages written
        to it after would be in no file once this process died)."""
        return _new_journal(self.folder, time.time_ns(), is_fsync=self.is_fsync)

    def _loop(self) -> None:
        while True:
            with self._lock:
                while (
                    not self._pages
                    and not self._stopped
                    and not self._adoption_due()
                    and not self._recheck_due()
                ):
                    wake_at = self._adopted_at + ADOPT_S
                    if self._unchecked:
                        wake_at = min(wake_at, self._checked_at + _RECHECK_S)
                    self._wake.wait(max(0.0, wake_at - time.monotonic()))
                if self._stopped:
                    return
                has_pages = bool(self._pages) or self._recheck_due()
            if self._adoption_due():  # (also between batches: a process that always has pages looks too)
                self._adopt_quietly()
            if not has_pages:
                continue
            delay = self.delay_s if not self._failures else _BACKOFF_S[min(self._failures, 4) - 1]
            if self._stop.wait(delay):  # let more pages gather; close() ends the wait
                return
            try:
                self.flush()
                self._failures = 0
            except Exception as exc:  # kept pending and retried; reads merge them meanwhile
                self._failures += 1
                logger.warning("writing %d pending pages failed, retrying: %s", len(self), exc)

    def _recheck_due(self) -> bool:
        return bool(self._unchecked) and time.monotonic() - self._checked_at >= _RECHECK_S

    def _adoption_due(self) -> bool:
        return time.monotonic() - self._adopted_at >= ADOPT_S

    def _adopt_quietly(self) -> None:
        try:
            self.adopt()
        except Exception as exc:  # the journal stays: the next look, or the next open, replays it
            self._adopted_at = time.monotonic()
            logger.warning("replaying a journal of a dead process failed, will retry: %s", exc)


_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replay_journals(
    store: MemoryStore,
    folder: Path,
    embed: Embed | None,
    on_stored: Stored | None = None,
    *,
    check: Check | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Write the pages of journals that no live process holds (their writer died), then remove
    them; pages already in the store are left as they are, pages without a vector are embedded
    with ``embed`` first (a line with its vector keeps it), ``on_stored`` called after each write
    (and with the pages already stored, as the store holds them: their writer may have died
    between its write and its call), ``check`` with each user's pages at the end of a journal (those
    it returns, all of them when it raises MemoryOSError, move to a ``_SETTLING`` journal that rests
    ``ADOPT_S`` before a replay tries it again). Once ``stop()`` is true it stops before the next
    chunk of ``_REPLAY_CHUNK`` pages, leaving the journal (its pages written so far are skipped next
    time). Returns the pages written.

    Raises:
        StorageError, EmbeddingError: the store or the embedder failed; the journal stays.
    """
    if not folder.is_dir():
        return 0
    with _REPLAYING:  # a thread of this process replaying one waits for another's replay to end
        return _replay(store, folder, embed, on_stored, check, stop)


def _new_journal(
    folder: Path, created_ns: int, *, is_fsync: bool, suffix: str = ""
) -> tuple[IO[bytes], Path]:
    """A new journal named with ``created_ns`` (``oldest_journal_ns``), locked before it takes its
    ``.jsonl`` name: a replay in another process never finds it unlocked (it would take it for a dead
    process's and remove it, and the pages written to it after would be in no file once this process
    died)."""
    name = f"{created_ns}-{os.getpid()}-{uuid.uuid4().hex[:16]}"
    opening = folder / f".{name}{_OPENING}"
    journal = open(opening, "ab", opener=open_private)  # noqa: SIM115  (closed once its pages are in the store)
    try:
        fcntl.flock(journal.fileno(), fcntl.LOCK_EX)
        path = folder / f"{name}{suffix}.jsonl"
        os.rename(opening, path)  # (the lock is the file's: it holds under the new name)
    except OSError:
        journal.close()
        opening.unlink(missing_ok=True)
        raise
    if is_fsync:  # a new file's name is in the folder, which needs its own fsync
        _fsync_folder(folder)
    return journal, path


def spool(
    folder: Path, records: Sequence[Record], *, is_fsync: bool, rest_s: float = 0.0
) -> tuple[IO[bytes], Path]:
    """A new journal holding ``records``, pages already written that ``check`` has still to settle
    (written and flushed), locked: named with the oldest page's time, so that the delete notes those
    pages may need are kept while it is there, and marked (``_SETTLING``), so that a replay never
    writes one of them again. ``rest_s``: replays leave it alone that long (``_resting``)."""
    created = min(int(r.metadata.get("created_ns", 0)) for r in records)
    journal, path = _new_journal(folder, created, is_fsync=is_fsync, suffix=_SETTLING)
    try:
        data = b"".join(_line(r) for r in records)
        if os.write(journal.fileno(), data) != len(data):
            raise OSError("short write")
        _fdatasync(journal.fileno())
        if rest_s:
            later = time.time() + rest_s
            os.utime(path, (later, later))
    except OSError:
        journal.close()
        path.unlink(missing_ok=True)
        raise
    return journal, path


def _replay(
    store: MemoryStore,
    folder: Path,
    embed: Embed | None,
    on_stored: Stored | None,
    check: Check | None,
    stop: Callable[[], bool],
) -> int:
    replayed = 0
    for path in sorted(folder.glob("*.jsonl")):
        if stop():
            break
        if _resting(path):
            continue
        with _orphan(path) as journal:
            if journal is None:
                continue
            by_user: dict[str, dict[str, Record]] = {}
            bad: list[bytes] = []
            unsettled: list[Record] = []  # pages ``check`` did not settle: moved to a journal of their own
            for line in journal:
                record = _record(line)
                user = record.metadata.get("user_id") if record is not None else None
                if record is None or not isinstance(user, str) or not user:
                    bad.append(line)
                    continue
                by_user.setdefault(user, {})[record.id] = record
            for user, pages in by_user.items():
                stored = store.get("pages", ids=list(pages), where={"user_id": user})
                present = {r.id for r in stored}
                settling = path.name.endswith(f"{_SETTLING}.jsonl")  # (a page not stored went for good)
                missing = [] if settling else [r for r in pages.values() if r.id not in present]
                # Its writer may have died before calling it (a settling journal's pages had it called).
                if stored and on_stored is not None and not settling:
                    on_stored(user, stored)
                landed = list(stored)
                for start in range(0, len(missing), _REPLAY_CHUNK):
                    if stop():
                        return _replayed(replayed)  # (the journal stays whole)
                    chunk = missing[start : start + _REPLAY_CHUNK]
                    try:
                        written = with_vectors(chunk, embed)
                        store.upsert("pages", written)
                        if on_stored is not None:
                            on_stored(user, written)
                    except DimensionMismatchError:  # not the store's fault: retrying would fail forever
                        bad += [_line(r) for r in chunk]
                        continue
                    replayed += len(chunk)
                    landed += written
                if check is not None and landed:
                    try:
                        unsettled += check(user, landed)
                    except MemoryOSError as exc:
                        logger.warning(
                            "replayed pages of user %s not settled yet (kept journaled): %s", user, exc
                        )
                        unsettled += landed
            if unsettled:  # (their own journal, left to rest before the next replay tries them again)
                try:
                    spool(folder, unsettled, is_fsync=True, rest_s=ADOPT_S)[0].close()
                except OSError as exc:  # (this journal stays)
                    raise _unwritable(folder, exc) from exc
            if bad:
                _quarantine(path, bad)
            path.unlink(missing_ok=True)
    return _replayed(replayed)


def remove_dead_openings(folder: Path) -> None:
    """Remove the journals a dead process left while creating them (unlocked ``.opening`` files older
    than ``_STALE_S``: nothing was written to them). Run when the store is opened, not before every
    replay: such a file is empty, and one glob fewer on the calls that look for dead journals."""
    for path in sorted(folder.glob(f".*{_OPENING}")) if folder.is_dir() else []:
        with _orphan(path) as opening:  # (a young one may be locked and named in a moment)
            if opening is not None and time.time() - os.fstat(opening.fileno()).st_mtime > _STALE_S:
                path.unlink(missing_ok=True)


def _unwritable(folder: Path, exc: OSError) -> StorageError:
    return StorageError(f"cannot write the page journal in {folder}: {exc}", backend="journal")


def _resting(path: Path) -> bool:
    """Whether the journal is one of pages a replay could not settle, not to be tried again yet (its
    modification time set up to ``ADOPT_S`` ahead: further, the clock went back, and it is tried), or
    gone."""
    try:
        ahead = path.stat().st_mtime - time.time()
    except FileNotFoundError:
        return True
    return 0 < ahead <= ADOPT_S + 1


def oldest_journal_ns(folder: Path) -> int:
    """A time (``time.time_ns``) before which no journal in ``folder``, finished or being created,
    was created: the oldest one's (read from its name; a name of an earlier version, without it,
    reads as a time long past), or now when there is none."""
    now = time.time_ns()
    if not folder.is_dir():
        return now
    # Listed twice: a journal renamed from ``.opening`` while a listing runs may be missing from it.
    names = set(os.listdir(folder)) | set(os.listdir(folder))
    created = [
        int(stem) if stem.isascii() and stem.isdigit() else 0
        for name in names
        if name.endswith(".jsonl") or name.endswith(_OPENING)
        for stem in [name.lstrip(".").split("-", 1)[0]]
    ]
    return min([now, *created])


def _replayed(count: int) -> int:
    if count:
        logger.info("wrote %d journaled pages left by an earlier process", count)
    return count


@contextmanager
def _orphan(path: Path) -> Iterator[IO[bytes] | None]:
    """The file at ``path``, open and locked, when no live process holds it; None when one does, or
    when it is gone (another process replayed it meanwhile: a file unlinked after it was opened here
    is not read again, so a page deleted since is not written back)."""
    try:
        file = open(path, "rb")  # noqa: SIM115  (closed below)
    except FileNotFoundError:
        yield None
        return
    with file:
        try:
            fcntl.flock(file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live process is still writing it
            yield None
            return
        yield file if os.fstat(file.fileno()).st_nlink else None


def _quarantine(path: Path, lines: list[bytes]) -> None:
    """Move journal lines that cannot be replayed aside (``<journal>.quarantined``), so one bad
    line does not fail every start of every user; they stay there for a person to look at."""
    target = path.with_suffix(".quarantined")
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as file:
        file.write(b"".join(line if line.endswith(b"\n") else line + b"\n" for line in lines))
    logger.warning("quarantined %d journal lines that cannot be replayed in %s", len(lines), target)


def journal_folder(store: MemoryStore) -> Path | None:
    """Where ``store`` can keep a page journal: beside an embedded Chroma folder; None otherwise."""
    path = store.local_path
    return Path(path) / ".memoryos-pending" if path else None
