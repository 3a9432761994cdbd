"""One SQLite file beside an embedded store, shared by its processes: the connection (0600, WAL,
``secure_delete``), read and write transactions, the folder lock, emptying the log after removals,
and removing a damaged file. The lexical index and the wordpiece vectors each keep one."""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Generic, TypeVar

from memoryos_core.storage._private import open_private

logger = logging.getLogger("memoryos")

BUSY_TIMEOUT_S = 60.0
TransactionT = TypeVar("TransactionT")


class SqliteFile(Generic[TransactionT]):
    """The SQLite file (one connection per process, its calls serialised by a lock).

    Args:
        path: The file (created 0600; its folder must exist).
        transaction: Wraps the connection for the duration of one transaction.
        upgrade: Creates the tables, or brings a file of an older layout to this one (on connect).
        label: What the file holds, for log messages.
        page_size: The page size of a new file (ignored for an existing one).
        mmap_bytes: Read up to this much of the file through a memory map (SQLite's default: none).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        transaction: Callable[[sqlite3.Connection], TransactionT],
        upgrade: Callable[[sqlite3.Connection], None],
        label: str,
        page_size: int | None = None,
        mmap_bytes: int | None = None,
    ) -> None:
        self.path = Path(path)
        self._transaction = transaction
        self._upgrade = upgrade
        self._label = label
        self._page_size = page_size
        self._mmap_bytes = mmap_bytes
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # (device, inode) of the file connected to
        self._folder_fd: int | None = None
        self._exclusive_lock = threading.RLock()
        self._exclusive_depth = 0

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None and self._identity != _identity(self.path):
            # Removed (found damaged by another process) or replaced since: the file at the path
            # is the one every process uses; writing into the removed one would be lost.
            self._drop_connection()
        if self._db is None:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT)  # 0600 before SQLite opens it
            try:
                self._identity = _identity_of(os.fstat(fd))  # noted even if it proves damaged
            finally:
                os.close(fd)
            db = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            try:
                if self._page_size is not None:  # before WAL: a WAL file keeps the size it has
                    db.execute(f"PRAGMA page_size={int(self._page_size)}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute("PRAGMA secure_delete=ON")
                if self._mmap_bytes is not None:
                    db.execute(f"PRAGMA mmap_size={int(self._mmap_bytes)}")
                self._upgrade(db)
            except sqlite3.DatabaseError:
                db.close()
                raise
            self._db = db
        return self._db

    @contextmanager
    def reading(self) -> Iterator[TransactionT]:
        """One read transaction: a consistent view while other processes write."""
        with self._lock:
            db = self._connect()
            db.execute("BEGIN")
            try:
                yield self._transaction(db)
            finally:
                db.execute("COMMIT")

    @contextmanager
    def writing(self) -> Iterator[TransactionT]:
        """One write transaction (``BEGIN IMMEDIATE``: writers in other processes wait for it)."""
        with self._lock:
            db = self._connect()
            db.execute("BEGIN IMMEDIATE")
            try:
                yield self._transaction(db)
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Held by one thread of one process at a time (an ``flock`` on the file's folder, waited
        for): around a rebuild of a user's copy, so the others wait and load it instead of each
        rebuilding it, and around the removal of a damaged file. Re-entrant within a thread.
        The files of one folder share its lock: never take one's inside another's (it would
        wait for itself)."""
        with self._exclusive_lock:  # not ``_lock``: this thread's transactions go on meanwhile
            if self._exclusive_depth == 0:
                if self._folder_fd is None:
                    self._folder_fd = os.open(self.path.parent, os.O_RDONLY)
                fcntl.flock(self._folder_fd, fcntl.LOCK_EX)
            self._exclusive_depth += 1
            try:
                yield
            finally:
                self._exclusive_depth -= 1
                if self._exclusive_depth == 0 and self._folder_fd is not None:
                    fcntl.flock(self._folder_fd, fcntl.LOCK_UN)

    def erase_log(self) -> None:
        """Empty the write-ahead log, where the old images of rewritten pages are kept."""
        with self._lock:
            busy, _, _ = self._connect().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:
                logger.warning(
                    "could not empty the %s's log %s-wal (a reader held it)", self._label, self.path
                )

    def reset(self) -> None:
        """Remove a damaged file (and its log). One process removes it: another that found it
        damaged too sees it replaced, and only reconnects."""
        with self.exclusive(), self._lock:
            held = self._identity
            self._drop_connection()
            if held is not None and held != _identity(self.path):
                return  # already removed (and maybe made anew) by another process
            for suffix in ("", "-wal", "-shm"):
                with suppress(FileNotFoundError):
                    os.unlink(f"{self.path}{suffix}")

    def close(self) -> None:
        with self._exclusive_lock, self._lock:
            if self._db is not None:
                with suppress(sqlite3.Error):
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._drop_connection()
            if self._folder_fd is not None and self._exclusive_depth == 0:
                os.close(self._folder_fd)
                self._folder_fd = None

    def _drop_connection(self) -> None:
        if self._db is not None:
            with suppress(sqlite3.Error):
                self._db.close()
        self._db, self._identity = None, None


def _identity_of(info: os.stat_result) -> tuple[int, int]:
    return info.st_dev, info.st_ino


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        return _identity_of(os.stat(path))
    except FileNotFoundError:
        return None


def create_tables(
    db: sqlite3.Connection,
    schema: str,
    version: int,
    migrate: Callable[[sqlite3.Connection], None] | None = None,
) -> None:
    """Create the tables of ``schema`` (``CREATE TABLE IF NOT EXISTS`` statements), or bring a file of an
    older layout (``PRAGMA user_version`` below ``version``) to this one with ``migrate``, in one
    transaction; a file already at ``version`` is left as it is (an ``upgrade`` of :class:`SqliteFile`)."""
    if int(db.execute("PRAGMA user_version").fetchone()[0]) == version:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in schema.split(";"):
            if statement.strip():
                db.execute(statement)
        if int(db.execute("PRAGMA user_version").fetchone()[0]) < version:
            if migrate is not None:
                migrate(db)
            db.execute(f"PRAGMA user_version = {int(version)}")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
