"""New pages journaled on local disk and written to an embedded Chroma store in batches.

One Chroma write costs about 5 ms on this kind of disk whatever its size, so writing each
``add_memory`` straight through would cost every turn that much. Instead a new page is
appended to a journal file (one ``write`` call, which survives the process being killed; with
``durability="fsync"``, the default, also ``fdatasync``, so it survives a power loss as Chroma's
own SQLite commits do) and kept in memory, and a thread writes whatever has gathered
to Chroma a few tens of milliseconds later, in one upsert per user. Until then:

- retrieval merges the pending pages of the user (``of``);
- every other operation that reads pages calls ``flush`` first.

Journal files are ``<store folder>/.memoryos-pending/<pid>-<n>.jsonl``, each held under an
exclusive ``flock`` by the process writing it. At start, files no live process holds (their
writer died) are replayed: pages not yet in Chroma are written, pages already there are left
alone (they may have been consolidated since), then the file is removed. A failed write to
Chroma keeps the pages pending, in memory and on disk, and is retried with backoff.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from memoryos_core._exceptions import DimensionMismatchError, MemoryOSError, StorageError
from memoryos_core.engine.records import record_from_json, record_to_json
from memoryos_core.storage._private import DIR_MODE, open_private
from memoryos_core.storage.base import MemoryStore, Record

logger = logging.getLogger("memoryos")
_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)


def _line(record: Record) -> bytes:
    return (json.dumps(record_to_json(record), ensure_ascii=False, separators=(",", ":")) + "\n").encode()


def _record(line: bytes) -> Record | None:
    try:
        return record_from_json(json.loads(line))
    except (ValueError, KeyError, TypeError):  # a line cut short by a crash: its add never returned
        return None


class PendingPages:
    """Pages accepted but not yet in Chroma (see the module docstring).

    Args:
        store: where the pages go.
        folder: the journal folder (on the same disk as an embedded store).
        delay_s: how long a page may wait so that several are written together.
        is_fsync: flush each journal write to the disk before ``add`` returns (and the folder
            entry of each new journal file), so that an accepted page survives a power loss,
            not only a killed process.
    """

    def __init__(
        self, store: MemoryStore, folder: str | Path, delay_s: float, *, is_fsync: bool = True
    ) -> None:
        self.store, self.folder, self.delay_s, self.is_fsync = store, Path(folder), delay_s, is_fsync
        self._pages: dict[str, dict[str, Record]] = {}
        self._lock = threading.Lock()  # guards _pages and the journal
        self._flush_lock = threading.Lock()  # one flush at a time
        self._wake = threading.Condition(self._lock)
        self._journal: IO[bytes] | None = None
        self._written: list[IO[bytes]] = []  # journals whose pages are being or failed to be flushed
        self._failures = 0
        self._stopped = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- start and stop -------------------------------------------------------------------
    def start(self) -> int:
        """Replay journals left by dead processes, then start the writer thread; returns pages replayed."""
        self.folder.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
        os.chmod(self.folder, DIR_MODE)  # the pages of every user pass through here
        if self.is_fsync:
            _fsync_folder(self.folder.parent)  # the journal folder's own name
        replayed = replay_journals(self.store, self.folder)
        self._thread = threading.Thread(target=self._loop, name="memoryos-pending", daemon=True)
        self._thread.start()
        return replayed

    def close(self) -> None:
        """Write everything pending and stop; pages that cannot be written stay in the journal."""
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

    # --- write path ---------------------------------------------------------------------------
    def add(self, user_id: str, records: Sequence[Record]) -> None:
        """Journal ``records`` (new pages of ``user_id``); they are durable when this returns."""
        data = b"".join(_line(r) for r in records)
        with self._lock:
            if self._journal is None:
                self._journal = self._open_journal()
            fd = self._journal.fileno()
            size = os.lseek(fd, 0, os.SEEK_END)
            try:
                written = os.write(fd, data)
                if written != len(data):
                    raise OSError(f"short write ({written} of {len(data)} bytes)")
                if self.is_fsync:
                    _fdatasync(fd)
            except OSError as exc:  # a full disk, say: nothing is accepted, the journal stays whole
                os.ftruncate(fd, size)
                raise StorageError(
                    f"cannot write the page journal in {self.folder}: {exc}", backend="journal"
                ) from exc
            self._pages.setdefault(user_id, {}).update((r.id, r) for r in records)
            self._wake.notify_all()

    def of(self, user_id: str) -> list[Record]:
        """The user's pages not yet in the store, oldest first."""
        with self._lock:
            return list(self._pages.get(user_id, {}).values())

    def __len__(self) -> int:
        with self._lock:
            return sum(len(pages) for pages in self._pages.values())

    def flush(self) -> None:
        """Write every pending page to the store now.

        Raises:
            StorageError: the store failed; the pages stay pending (memory and journal).
        """
        with self._flush_lock:
            with self._lock:
                batch = {user: dict(pages) for user, pages in self._pages.items() if pages}
                if self._journal is not None:  # later pages go to a new journal
                    self._written.append(self._journal)
                    self._journal = None
            for user, pages in batch.items():
                self.store.upsert("pages", list(pages.values()))
                with self._lock:
                    left = self._pages.get(user, {})
                    for page_id in pages:
                        left.pop(page_id, None)
                    if not left:
                        self._pages.pop(user, None)
            with self._lock:
                done, self._written = self._written, []
            for journal in done:
                os.unlink(journal.name)
                journal.close()  # closing releases the flock

    # --- internals ------------------------------------------------------------------------
    def _open_journal(self) -> IO[bytes]:
        path = self.folder / f"{os.getpid()}-{uuid.uuid4().hex[:16]}.jsonl"
        journal = open(path, "ab", opener=open_private)  # noqa: SIM115  (closed once its pages are in the store)
        fcntl.flock(journal.fileno(), fcntl.LOCK_EX)
        if self.is_fsync:  # a new file's name is in the folder, which needs its own fsync
            _fsync_folder(self.folder)
        return journal

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._pages and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
            delay = self.delay_s if not self._failures else _BACKOFF_S[min(self._failures, 4) - 1]
            if self._stop.wait(delay):  # let more pages gather; close() ends the wait
                return
            try:
                self.flush()
                self._failures = 0
            except Exception as exc:  # kept pending and retried; reads merge them meanwhile
                self._failures += 1
                logger.warning("writing %d pending pages failed, retrying: %s", len(self), exc)


_fdatasync = getattr(os, "fdatasync", os.fsync)  # macOS has no fdatasync


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replay_journals(store: MemoryStore, folder: Path) -> int:
    """Write the pages of journals that no live process holds (their writer died), then remove
    them; pages already in the store are left as they are. Returns the pages written."""
    replayed = 0
    for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
        with open(path, "rb") as journal:
            try:
                fcntl.flock(journal.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live process is still writing it
            by_user: dict[str, dict[str, Record]] = {}
            bad: list[bytes] = []
            for line in journal:
                record = _record(line)
                user = record.metadata.get("user_id") if record is not None else None
                if record is None or not isinstance(user, str) or not user:
                    bad.append(line)
                    continue
                by_user.setdefault(user, {})[record.id] = record
            for user, pages in by_user.items():
                present = {r.id for r in store.get("pages", ids=list(pages), where={"user_id": user})}
                missing = [r for r in pages.values() if r.id not in present]
                try:
                    store.upsert("pages", missing)
                except DimensionMismatchError:  # not the store's fault: retrying would fail forever
                    bad += [_line(r) for r in missing]
                    continue
                replayed += len(missing)
            if bad:
                _quarantine(path, bad)
            path.unlink()
    if replayed:
        logger.info("wrote %d journaled pages left by an earlier process", replayed)
    return replayed


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
