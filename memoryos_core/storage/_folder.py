"""One embedded Chroma folder shared safely by several processes (and by every store in this one).

Chroma's embedded client (1.x) keeps each HNSW index it has touched in memory and never reloads
it: it replays the SQLite log into a collection once per client lifetime, and persists an index
(with its replay watermark) only every ``sync_threshold`` records. So another process's adds stay
invisible to ``query()``, and a process persisting a stale index can overwrite the other's
vectors. The remedy here: every access takes a file lock (shared to read, exclusive to write);
each write bumps a generation number kept beside the store; and a process that finds the
generation changed since it last looked closes and reopens its client, which reloads each
collection from disk and the log when next touched. One process alone never reopens.

Within a process there is one client per folder (``shared_folder``): Chroma shares one engine
between clients of the same path, so reopening one of them would not drop the other's cache.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from memoryos_core._exceptions import StorageError
from memoryos_core.storage._direct import DirectReads
from memoryos_core.storage._private import open_private, tighten_new_entries

LOCK_NAME = ".memoryos-write.lock"
GENERATION_NAME = ".memoryos-generation"


class SharedFolder:
    """The process's client of one embedded Chroma folder, kept coherent with other processes.

    Between processes the folder's file lock is shared to read and exclusive to write. Within
    this process, writers take turns, and reads run beside this process's own write (Chroma's
    client is safe for that; the file lock is held for the process as a whole): a recall does
    not wait for the background worker's writes. A reopen only happens when no thread of this
    process is inside Chroma.
    """

    def __init__(self, path: str, make_client: Callable[[], Any]) -> None:
        os.makedirs(path, exist_ok=True)
        self.path, self._make_client = path, make_client
        self._lock_file = open(os.path.join(path, LOCK_NAME), "a+b", opener=open_private)  # noqa: SIM115  (lives with the process)
        self._generation_path = os.path.join(path, GENERATION_NAME)
        self._state = threading.Condition()  # guards everything below
        self._mode: int | None = None  # the file lock this process holds: LOCK_SH, LOCK_EX or none
        self._readers = 0
        self._writer_waiting = False
        self._stale = False  # another process may have written while our readers held on
        self._writer = threading.Lock()
        self._local = threading.local()  # nesting depth of the current thread
        self._client: Any = None
        self._seen: bytes | None = None
        self._listeners: weakref.WeakSet[Any] = weakref.WeakSet()
        self.reopens = 0
        self.direct = DirectReads(path)  # records by id from the file itself (see _direct.py)

    def listen(self, store: Any) -> None:
        """``store.on_reopen()`` is called after each reopen: its collection handles are stale."""
        self._listeners.add(store)

    def forget(self, store: Any) -> None:
        """``store`` closed: it is no longer told of reopens (a folder nobody listens to may be closed)."""
        self._listeners.discard(store)

    @contextmanager
    def access(self, *, write: bool, backend: str = "chroma") -> Iterator[Any]:
        """The client, under the folder's lock (exclusive to write); nested calls reuse the outer one.

        An outer read must not write inside: take the exclusive lock at the outermost call.
        Whatever fails (a read-only or full disk, a client that cannot open), the file lock is
        given back and the failure is a StorageError naming ``backend``.
        """
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            try:
                yield self._client
            finally:
                self._local.depth = depth
            return
        if write:
            self._writer.acquire()
        try:
            with _translated(f"cannot open the store in {self.path}", backend):
                self._enter(write)
            self._local.depth, ok = 1, False
            try:
                yield self._client
                ok = True
            finally:
                self._local.depth = 0
                with _translated(f"cannot record a write in {self.path}", backend):
                    self._leave(write, ok)
        finally:
            if write:
                self._writer.release()

    def shared_only(self) -> bool:
        """Called inside ``access``: whether this process holds the folder's lock shared, so no
        write of this process runs beside the caller (writers wait for every reader) nor of another
        process (the file lock): what a read of Chroma's files through another SQLite needs."""
        return self._mode == fcntl.LOCK_SH

    def _flock(self, mode: int) -> None:
        fcntl.flock(self._lock_file.fileno(), mode)

    def _enter(self, write: bool) -> None:
        with self._state:
            if write:
                self._writer_waiting = True
                while self._mode == fcntl.LOCK_SH:  # this process's readers finish first
                    self._state.wait()
                self._flock(fcntl.LOCK_EX)
                self._mode, self._writer_waiting = fcntl.LOCK_EX, False
                self._sync_or_unlock()
                return
            while self._mode == fcntl.LOCK_SH and (self._writer_waiting or self._stale):
                self._state.wait()
            if self._mode is None:
                self._flock(fcntl.LOCK_SH)
                self._mode = fcntl.LOCK_SH
                self._sync_or_unlock()
            self._readers += 1

    def _sync_or_unlock(self) -> None:
        """``_sync``; if Chroma cannot be (re)opened, give the lock back before raising."""
        try:
            self._sync()
        except BaseException:
            self._flock(fcntl.LOCK_UN)
            self._mode, self._writer_waiting, self._seen = None, False, None
            self._state.notify_all()
            raise

    def _leave(self, write: bool, ok: bool) -> None:
        with self._state:
            try:
                if write:  # others must reload; this process's view includes its own write
                    self._seen = None  # reload here too if the generation cannot be written
                    try:
                        generation = str(int(self._generation()) + 1).encode()
                        with open(self._generation_path, "wb", opener=open_private) as file:
                            file.write(generation)
                        self._seen = generation if ok else None
                    finally:  # a failed write never keeps the exclusive lock
                        self._unlock_after_write()
                else:
                    self._readers -= 1
                    if not self._readers and self._mode == fcntl.LOCK_SH:
                        self._flock(fcntl.LOCK_UN)
                        self._mode, self._stale = None, False
            finally:
                self._state.notify_all()

    def _unlock_after_write(self) -> None:
        if self._readers:  # readers that came in meanwhile keep a shared lock
            self._flock(fcntl.LOCK_SH)  # (not atomic: another process may write between)
            self._mode = fcntl.LOCK_SH
            self._stale = self._generation() != self._seen
        else:
            self._flock(fcntl.LOCK_UN)
            self._mode = None

    def close(self) -> None:
        """Close the client and the lock file (at exit, when no thread is inside Chroma)."""
        with self._state:
            if self._client is not None:
                self._client.close()
                self._client = None
            self._seen = None
            self.direct.close()
            self._lock_file.close()

    def invalidate(self) -> None:
        """Reopen at the next access (after Chroma lost an index it had not persisted)."""
        with self._state:
            self._seen = None
            self._stale = self._mode == fcntl.LOCK_SH  # new readers wait for a reopen

    def _generation(self) -> bytes:
        try:
            with open(self._generation_path, "rb") as file:
                value = file.read().strip()
            return value if value.isdigit() else b"0"
        except FileNotFoundError:
            return b"0"

    def _sync(self) -> Any:
        generation = self._generation()
        if self._client is not None and generation == self._seen:
            return self._client
        if self._client is not None:
            client, self._client = self._client, None  # not used again even if the next one fails
            client.close()  # drops the in-memory indexes
            self.reopens += 1
        self._client = self._make_client()
        tighten_new_entries(self.path)  # chroma.sqlite3, on a filesystem without default ACLs
        self._seen = generation
        for store in list(self._listeners):
            store.on_reopen()
        return self._client


_FOLDERS: dict[str, SharedFolder] = {}
_FOLDERS_LOCK = threading.Lock()


def close_folders() -> None:
    """Close every folder's client and lock file, at exit once no thread is inside Chroma (see
    ``close_at_exit``); a store still holding one gets a StorageError if it tries again."""
    with _FOLDERS_LOCK:
        folders = list(_FOLDERS.values())
        _FOLDERS.clear()
    for folder in folders:
        folder.close()


@contextmanager
def _translated(what: str, backend: str) -> Iterator[None]:
    """OSError and Chroma's errors from opening a client become a StorageError."""
    try:
        yield
    except StorageError:
        raise
    except Exception as exc:
        raise StorageError(f"{what}: {type(exc).__name__}: {exc}", backend=backend) from exc


def shared_folder(path: str, make_client: Callable[[], Any]) -> SharedFolder:
    """The process-wide ``SharedFolder`` of ``path``."""
    key = os.path.realpath(path)
    with _FOLDERS_LOCK:
        folder = _FOLDERS.get(key)
        if folder is None:
            folder = _FOLDERS[key] = SharedFolder(path, make_client)
        return folder
