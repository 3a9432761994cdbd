"""What MemoryOS's collaborators share: the backends, the clock and event hook, per-user locks and
leases, the session's cost per user, and the store, opened once (with its page journal)."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Protocol

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import DimensionMismatchError, MemoryOSError
from memoryos_core._types import Cost
from memoryos_core.embeddings.base import Embedder, vector_space, warm_up
from memoryos_core.engine import erasure
from memoryos_core.engine.late import LateIndex
from memoryos_core.engine.lease import LEASE_TTL_S, LeaseBusyError, Leases
from memoryos_core.engine.pending import (
    ADOPT_S,
    Check,
    PendingPages,
    journal_folder,
    remove_dead_openings,
    replay_journals,
)
from memoryos_core.llm.base import LLM
from memoryos_core.storage.base import MemoryStore, Record

logger = logging.getLogger("memoryos")


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Runtime:
    """The shared plumbing (see the module docstring); holds no memory of its own.

    Args:
        store, embedder, llm, config: the backends and tunables.
        clock: the current time (injected in tests).
        on_event: called with (event name, details); a failing hook is logged, never raised.
        is_write_behind: journal new pages and write them to the store in batches (when the
            store has a local folder and ``config.write_behind_s`` > 0).
        on_open: called right after the store was opened, and after pages a dead process journaled were
            written (to schedule work left pending).
        late: the pages' wordpiece vectors (embedded through it, written once stored).
        check: called with (user, pages) after a page journal's pages were written to the store (to
            erase those whose user was deleted meanwhile: ``engine/erasure.py``); the pages it returns
            stay journaled and are passed again later (``pending.Check``).
    """

    def __init__(
        self,
        store: MemoryStore,
        embedder: Embedder,
        llm: LLM | None,
        config: MemoryConfig,
        *,
        clock: Callable[[], datetime] | None,
        on_event: Callable[[str, dict[str, Any]], None] | None,
        is_write_behind: bool,
        on_open: Callable[[], None],
        late: LateIndex,
        check: Check | None = None,
    ) -> None:
        self.store, self.embedder, self.llm, self.config = store, embedder, llm, config
        self.late = late
        self.leases = Leases(store)
        self.pending: PendingPages | None = None
        """New pages journaled but not yet in the store (None without write-behind)."""
        self._clock: Callable[[], datetime] = clock or _utc_now
        self._on_event = on_event
        self._is_write_behind = is_write_behind
        self._warming: threading.Thread | None = None  # the embedder's model loading beside the store
        self._on_open = on_open
        self._is_open = False
        self._open_lock = threading.Lock()
        self._closing = threading.Event()  # no more replays of other processes' journals
        self._guard = threading.Lock()
        self._user_locks: dict[str, threading.RLock] = {}
        self._session_cost: dict[str, Cost] = {}
        self._check = check
        self._pruned_at = -ADOPT_S  # (monotonic) when the delete notes no journal needs were last removed

    # --- time and events ----------------------------------------------------------------------
    def now(self) -> datetime:
        return self._clock()

    def now_s(self) -> float:
        return self._clock().timestamp()

    def emit(self, event: str, details: dict[str, Any]) -> None:
        logger.debug("event %s %s", event, details)
        if self._on_event is not None:
            try:
                self._on_event(event, details)
            except Exception:  # a broken hook must not break memory
                logger.exception("on_event hook failed for %s", event)

    # --- the store ----------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._is_open

    def ready(self, *, warm: bool = False) -> None:
        """Open the store (once), start the page journal or replay one left by a dead process.

        ``warm``: the caller will embed soon (an add, a recall): the embedder's model loads in a
        thread while the store opens, rather than after it (joined by :meth:`close_journal`).
        """
        if self._is_open:
            return
        with self._open_lock:
            if self._is_open:
                return
            if warm and self._warming is None:
                self._warming = threading.Thread(target=self._warm_up, name="memoryos-warm-up", daemon=True)
                self._warming.start()
            self._open_store()
            folder, late = journal_folder(self.store), self.late
            if self._is_write_behind and self.config.write_behind_s > 0 and folder is not None:
                pending = PendingPages(
                    self.store,
                    folder,
                    self.config.write_behind_s,
                    is_fsync=self.config.durability == "fsync",
                    embed=late.embed,
                    on_stored=late.add,
                    on_adopted=self._on_open,
                    check=self._check,
                )
                pending.start()
                self.pending = pending
            elif folder is not None:  # pages journaled by a process that died, with write-behind on
                remove_dead_openings(folder)
                replay_journals(self.store, folder, late.embed, late.add, check=self._check)
            self._is_open = True
        self._on_open()

    def _open_store(self) -> None:
        """Open the store for the embedder's vector space. An embedder that can make the vectors of
        the space the store recorded instead (a ``LocalEmbedder`` without a precision, on a store of
        fp32 vectors) adopts it (``adopt_space``); otherwise the store's DimensionMismatchError stands.
        """
        embedder, dim = self.embedder, self.embedder.dim
        space = vector_space(embedder)
        adopt = getattr(embedder, "adopt_space", None)
        try:
            self.store.open(dim=dim, embedder_name=space)
        except DimensionMismatchError as exc:
            if exc.recorded is None or not callable(adopt):
                raise
            adopt(exc.recorded)  # raises the embedder's own DimensionMismatchError if it cannot
            self.store.open(dim=dim, embedder_name=exc.recorded)
        else:
            if callable(adopt):
                adopt(space)  # a default precision stays this store's

    def settled(self) -> None:
        """Open the store and write any pages still waiting in the journal (before reading pages), this
        process's and those a process that died since the store was opened left in its own (their
        users' consolidation is scheduled then)."""
        self.ready()
        self._adopt()
        if self.pending is not None:
            self.pending.flush()

    def _adopt(self) -> None:
        """Replay the page journals of processes that died since the store was opened. A failure is
        logged, not raised: those pages stay journaled for the next try, and this process's own
        calls go on."""
        if self._closing.is_set():
            return
        try:
            folder = journal_folder(self.store)
            if self.pending is not None:
                self.pending.adopt()
            elif folder is not None and replay_journals(
                self.store,
                folder,
                self.late.embed,
                self.late.add,
                check=self._check,
                stop=self._closing.is_set,
            ):
                self._on_open()
            if folder is not None and time.monotonic() - self._pruned_at >= ADOPT_S:
                self._pruned_at = time.monotonic()
                erasure.prune(self.store, folder)
        except MemoryOSError as exc:
            logger.warning("replaying the page journal of a dead process failed, will retry: %s", exc)

    def pending_of(self, user_id: str) -> list[Record]:
        """The user's new pages not yet written to the store (with write-behind, some may have
        no vector yet: they are embedded in the journal's writer thread)."""
        return self.pending.of(user_id) if self.pending is not None else []

    def embedded_pending_of(self, user_id: str) -> list[Record]:
        """:meth:`pending_of`, each page with its vector (the few not embedded yet are embedded
        now, once; for recall, so a page just added ranks as it will once stored)."""
        return self.pending.embedded(user_id) if self.pending is not None else []

    def _warm_up(self) -> None:
        try:
            # numpy 2 imports numpy.ma at a process's first np.unique (~36 ms; the late rerank's first
            # read calls it): loaded here, beside the store's opening, rather than in the first recall.
            import numpy.ma  # noqa: F401

            warm_up(self.embedder)
        except Exception:  # the embed that needs the model raises it again, to its caller
            logger.debug("loading the embedder ahead failed", exc_info=True)

    def stop_adopting(self) -> None:
        """Closing: replays of other processes' journals stop (one under way, after its chunk), so the
        background threads end promptly; the journals stay for the next process to open the store."""
        self._closing.set()
        if self.pending is not None:
            self.pending.stop_adopting()

    def close_journal(self) -> None:
        """Embed the journaled pages, write them to the store and stop the journal's writer (a
        page that cannot be written stays journaled, for the next open to replay)."""
        if self._warming is not None:
            self._warming.join()
        if self.pending is not None:
            self.pending.close()

    # --- per user -----------------------------------------------------------------------------
    def lock(self, user_id: str) -> threading.RLock:
        """The user's lock in this process (the lease guards against other processes)."""
        with self._guard:
            return self._user_locks.setdefault(user_id, threading.RLock())

    @contextmanager
    def hold(self, user_id: str, *, wait_s: float | None = LEASE_TTL_S) -> Iterator[Callable[[], None]]:
        """Hold the user's lock (this process) and lease (other processes) while changing their memory.

        Yields the lease's ``renew()``, to call before each batch of writes (it raises
        ``LeaseLostError`` once another process's claim replaced the lease). ``wait_s=None``: no wait at all,
        for the lock either (which otherwise waits for this process's other threads).

        Raises:
            LeaseBusyError: another process still holds the lease after ``wait_s`` (or, with
                ``wait_s=None``, another thread of this process holds the lock).
        """
        lock = self.lock(user_id)
        if not lock.acquire(blocking=wait_s is not None):
            raise LeaseBusyError(f"user {user_id} is busy in another thread of this process")
        try:
            with self.leases.hold(user_id, wait_s=wait_s or 0.0) as renew:
                yield renew
        finally:
            lock.release()

    def account(self, user_id: str, cost: Cost) -> None:
        """Add to what this session spent for the user."""
        with self._guard:
            self._session_cost[user_id] = self._session_cost.get(user_id, Cost()) + cost

    def session_cost(self, user_id: str) -> Cost:
        with self._guard:
            return self._session_cost.get(user_id, Cost())


class _Closable(Protocol):
    def close(self) -> None: ...


_LIVE: weakref.WeakSet[_Closable] = weakref.WeakSet()


def close_at_exit(memory: _Closable) -> None:
    """Close ``memory`` at interpreter exit if it is still alive then (see :func:`_close_all`)."""
    _LIVE.add(memory)


def _close_all() -> None:
    """Close every instance still open, so no background thread is inside Chroma (or writing a
    journal) when the interpreter ends its daemon threads; ``storage._lifecycle.close_at_exit``
    (registered earlier, so it runs after this) then closes the clients."""
    for memory in list(_LIVE):
        try:
            memory.close()
        except Exception:  # one broken instance must not keep the others open
            logger.exception("closing a MemoryOS instance at exit failed")


atexit.register(_close_all)
