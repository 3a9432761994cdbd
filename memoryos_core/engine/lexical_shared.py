"""Each user's PageIndex in this process, kept in step with the shared file beside an embedded store
(``lexical_store.py``): loaded from it, brought up to date with the pages other processes wrote,
written to on every add, update and delete; rebuilt from the store when missing or stale."""

from __future__ import annotations

import logging
import math
import sqlite3
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path

from memoryos_core.engine import lexical
from memoryos_core.engine.lexical import PageIndex, tokens
from memoryos_core.engine.lexical_store import (
    FILE_NAME,
    LexicalFile,
    Snapshot,
    State,
    TailRow,
    Transaction,
    edited,
)
from memoryos_core.policy.dates import places_in_time
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")


class PageIndexes:
    """One PageIndex per recently used user (least recently used dropped beyond ``max_users``),
    kept in step with the shared file beside an embedded store (``lexical_store.py``) when
    ``folder`` gives one; without it (a Chroma server) each process builds its own from the store.
    """

    def __init__(self, max_users: int = 64, folder: Callable[[], str | None] = lambda: None) -> None:
        self.max_users = max_users
        self._indexes: OrderedDict[str, PageIndex] = OrderedDict()
        self._lock = threading.RLock()
        self._folder = folder
        self._file: LexicalFile | None = None
        self._resolved = False

    @property
    def file(self) -> LexicalFile | None:
        """The shared file (opened on first use, once the store's folder exists), or None."""
        if not self._resolved:
            with self._lock:
                if not self._resolved:
                    folder = self._folder()
                    self._file = (
                        LexicalFile(Path(folder) / FILE_NAME, lexical.tokenizer_id) if folder else None
                    )
                    self._resolved = True
        return self._file

    def get(self, user_id: str) -> PageIndex | None:
        """The user's index in this process, brought up to date with the shared file; None when
        there is none (then ``build`` it from the store)."""
        with self._lock:
            index = self._indexes.get(user_id)
            if index is not None:
                self._indexes.move_to_end(user_id)
        if self.file is None:
            return index
        found: PageIndex | None = None  # stays None if the file fails: rebuilt from the store
        with self._shared(user_id) as file:
            if file is None:
                return index
            with file.reading() as tx:
                state = tx.state(user_id)
                if state is None:  # deleted, or never built: from the store
                    pass
                elif index is not None and index.state is not None and index.state.epoch == state.epoch:
                    if state.seq > index.state.seq:
                        _apply(index, tx.tail(user_id, index.state.seq), state)
                    found = index
                else:
                    found = _load(tx, user_id)
                    if found is not None:
                        found.checked_at = -math.inf  # counted against the store at its first use
            if found is not None and len(found) - found.base_count > lexical.COMPACT_ROWS:
                found = self._compact(user_id, found, file)
        self._keep(user_id, found)
        return found

    def build(self, user_id: str, pages: Sequence[Record]) -> PageIndex:
        """A fresh index from the user's stored pages (any order; sorted by creation here), saved
        to the shared file."""
        file = self.file
        with file.exclusive() if file is not None else nullcontext():
            return self._rebuild(user_id, lambda: pages)

    def rebuild(self, user_id: str, pages: Callable[[], Sequence[Record]]) -> PageIndex:
        """``build`` from ``pages()`` (read after noting the shared file's state: tail rows written
        meanwhile by other processes stay in the file, read on top of the new copy), replacing the
        copy this process holds (stale, or none).

        One process (and thread) rebuilds at a time (``LexicalFile.exclusive``): one that finds a
        new copy saved while it waited takes that instead (counted against the store at its use)."""
        with self._lock:
            held = self._indexes.get(user_id)
        held_epoch = held.state.epoch if held is not None and held.state is not None else None
        file = self.file
        with file.exclusive() if file is not None else nullcontext():
            state = self._state(user_id)
            if state is not None and state.epoch != held_epoch:
                found = self.get(user_id)
                if found is not None:
                    found.checked_at = -math.inf
                    return found
            return self._rebuild(user_id, pages)

    def _rebuild(self, user_id: str, pages: Callable[[], Sequence[Record]]) -> PageIndex:
        before = self._state(user_id)
        index = PageIndex()
        for record in sorted(pages(), key=lambda r: int(r.metadata.get("created_ns", 0))):
            index.add(record.id, record.document, float(record.metadata.get("ts_s", 0.0)))
        with self._shared(user_id) as file:
            if file is not None:
                upto = before.seq if before else 0
                with file.writing() as tx:
                    saved = tx.save(user_id, index.to_snapshot(), upto)
                index.state = State(saved.epoch, upto)  # rows after ``upto`` are read by the next get
                if tx.claimed:  # (pages other processes indexed since ``pages()`` went with the claim)
                    index.checked_at = -math.inf  # counted against the store at its next use
        self._keep(user_id, index)
        return index

    def add(self, user_id: str, records: Sequence[Record]) -> None:
        """Pages just written by this process: into the shared file (when it indexes the user) and
        into this process's index (when it has one). Nothing is stemmed for a user indexed nowhere."""
        with self._lock:
            index = self._indexes.get(user_id)
        rows: list[tuple[str, float, bool, list[str]]] = []

        def prepared() -> list[tuple[str, float, bool, list[str]]]:
            if not rows:
                rows.extend(
                    (r.id, float(r.metadata.get("ts_s", 0.0)), places_in_time(r.document), tokens(r.document))
                    for r in records
                )
            return rows

        with self._shared(user_id) as file:
            if file is not None:
                with file.writing() as tx:
                    state = tx.state(user_id)
                    held = index.state if index is not None else None
                    if state is None:
                        pass  # the file has no copy of this user: built from the store when needed
                    elif index is not None and held is not None and held.epoch == state.epoch:
                        # other processes' pages first: this index keeps the file's order
                        if state.seq > held.seq:
                            _apply(index, tx.tail(user_id, held.seq), state)
                        appended = tx.append(user_id, prepared())
                        _add_rows(index, rows)
                        index.state = appended[0] if appended else index.state
                        return
                    else:
                        tx.append(user_id, prepared())
        if index is not None:
            _add_rows(index, prepared())

    def remove(self, user_id: str, page_ids: Sequence[str]) -> None:
        """Take pages out of the user's index, in this process and in the shared file (rewritten,
        so their words leave the file); before the store deletes them."""
        gone = set(page_ids)

        def without(index: PageIndex) -> Snapshot | None:
            positions = [index.position[p] for p in gone if p in index.position]
            return edited(index.to_snapshot(), without=positions) if positions else None

        self._rewrite(user_id, without)

    def update(self, user_id: str, records: Sequence[Record]) -> None:
        """Pages whose text changed (same ids, same place in the conversation): their words
        replaced, in this process and in the shared file (rewritten, so the old words leave it)."""

        def replaced(index: PageIndex) -> Snapshot | None:
            changes = {
                index.position[r.id]: (Counter(tokens(r.document)), places_in_time(r.document))
                for r in records
                if r.id in index.position
            }
            return edited(index.to_snapshot(), replace=changes) if changes else None

        self._rewrite(user_id, replaced)

    def _rewrite(self, user_id: str, edit: Callable[[PageIndex], Snapshot | None]) -> None:
        """Replace the user's index with ``edit(index)`` (None: unchanged), here and in the file."""
        kept: PageIndex | None = None  # stays None if the file fails: rebuilt from the store
        with self._shared(user_id) as file:
            with self._lock:
                index = self._indexes.get(user_id)
            if file is None:  # in this process only (a Chroma server)
                snapshot = edit(index) if index is not None else None
                if index is not None and snapshot is not None:
                    checked_at, index = index.checked_at, PageIndex(snapshot)
                    index.checked_at = checked_at
                kept = index
            else:
                with file.writing() as tx:
                    state = tx.state(user_id)
                    if state is None:  # none, or one another stemmer wrote: its words of the pages go too
                        index = None
                        tx.drop(user_id)
                    elif index is None or index.state is None or index.state.epoch != state.epoch:
                        index = _load(tx, user_id)
                    elif state.seq > index.state.seq:
                        _apply(index, tx.tail(user_id, index.state.seq), state)
                    snapshot = edit(index) if index is not None and state is not None else None
                    if snapshot is not None and state is not None:
                        index = PageIndex(snapshot, tx.save(user_id, snapshot, state.seq))
                file.erase_log()
                kept = index
        self._keep(user_id, kept)

    def forget(self, user_id: str) -> None:
        """Drop a user's index (after a delete, an update or an import), here and in the shared
        file (its words erased): rebuilt from the store when next needed."""
        with self._lock:
            self._indexes.pop(user_id, None)
        with self._shared(user_id) as file:
            if file is not None:
                with file.writing() as tx:
                    tx.drop(user_id)
                file.erase_log()

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()

    # --- the shared file ------------------------------------------------------------------
    def _keep(self, user_id: str, index: PageIndex | None) -> None:
        with self._lock:
            if index is None:
                self._indexes.pop(user_id, None)
                return
            self._indexes[user_id] = index
            self._indexes.move_to_end(user_id)
            while len(self._indexes) > self.max_users:
                self._indexes.popitem(last=False)

    def _state(self, user_id: str) -> State | None:
        with self._shared(user_id) as file:
            if file is None:
                return None
            with file.reading() as tx:
                return tx.state(user_id)

    def _compact(self, user_id: str, index: PageIndex, file: LexicalFile) -> PageIndex:
        """Fold the pages added since the copy into a new copy (a new process then loads one copy,
        not thousands of tail rows)."""
        with file.writing() as tx:
            state = tx.state(user_id)
            if state is None or index.state is None or state.epoch != index.state.epoch:
                return index  # rewritten meanwhile: the next get loads that
            if state.seq > index.state.seq:
                _apply(index, tx.tail(user_id, index.state.seq), state)
            snapshot = index.to_snapshot()
            compacted = PageIndex(snapshot, tx.save(user_id, snapshot, state.seq))
        compacted.checked_at = index.checked_at
        return compacted

    @contextmanager
    def _shared(self, user_id: str) -> Iterator[LexicalFile | None]:
        """The shared file for one operation; a damaged file is removed (indexes are rebuilt from
        the store), and one that cannot be used at all (a read-only folder) is left aside."""
        file = self.file
        try:
            yield file
        except (sqlite3.OperationalError, OSError) as exc:  # locked past the timeout, read-only, full
            if file is None:
                raise
            logger.warning("lexical index %s not usable (%s): kept in memory only", file.path, exc)
            with self._lock:
                self._file = None
                self._indexes.clear()
            file.close()
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            if file is None:
                raise
            logger.warning("lexical index %s unreadable (%s): rebuilt from the store", file.path, exc)
            with self._lock:
                self._indexes.clear()
            file.reset()


def _load(tx: Transaction, user_id: str) -> PageIndex | None:
    loaded = tx.load(user_id)
    if loaded is None:
        return None
    state, snapshot = loaded
    index = PageIndex(snapshot)
    _apply(index, tx.tail(user_id, 0), state)
    return index


def _add_rows(index: PageIndex, rows: Sequence[tuple[str, float, bool, list[str]]]) -> None:
    for page_id, time_s, timed, terms in rows:
        index.add_terms(page_id, terms, time_s, timed)


def _apply(index: PageIndex, rows: Sequence[TailRow], state: State) -> None:
    for row in rows:
        index.add_terms(row.id, row.terms, row.ts, row.timed)
    index.state = state
