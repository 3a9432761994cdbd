"""An in-process BM25 index of each user's pages, kept in conversation order.

Chroma's sparse (BM25) index is not available in embedded mode, rank-bm25 rescans every page
in Python on each query, and bm25s cannot add a page without re-indexing: so pages are indexed
here, incrementally, from what the store holds. The index is derived data: it is rebuilt from
the store whenever in doubt (a new process, another writer, a delete).
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

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
from memoryos_core.policy.text import STOPWORDS
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")

K1, B = 0.9, 0.4  # BM25 parameters: measured best on LoCoMo among the usual settings
REFRESH_S = 60.0
"""An index is checked against the store at most this often (pages written by other processes)."""
_TOKEN = re.compile(r"\w+", re.UNICODE)
_STEMMER: Any = None
_STEM_LOCK = threading.Lock()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    global _STEMMER
    with _STEM_LOCK:  # snowballstemmer objects are not thread-safe
        if _STEMMER is None:
            # Imported on first use: snowballstemmer loads all of its ~30 languages (~0.1 s), and a
            # process that never ranks text (`memoryos stats`, a first add_memory) should not pay that.
            import snowballstemmer

            _STEMMER = snowballstemmer.stemmer("english")
        return str(_STEMMER.stemWord(word))


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words and numbers, without stop words."""
    return [_stem(word) for word in _TOKEN.findall(text.lower()) if word not in STOPWORDS]


class PageIndex:
    """BM25 postings, times and order of one user's pages (position = conversation order).

    Postings are a compact base (CSR arrays, as loaded from the shared file) plus the pages added
    since, per term; a term's positions are the base's then the added ones, ascending.
    """

    def __init__(self, base: Snapshot | None = None, state: State | None = None) -> None:
        self.ids: list[str] = list(base.ids) if base else []
        self.position: dict[str, int] = dict(zip(self.ids, range(len(self.ids))))
        self.times = array("d", base.times.tobytes() if base else b"")
        self.lengths = array("f", base.lengths.tobytes() if base else b"")
        self.timed = array("b", base.timed.tobytes() if base else b"")  # words place it in time
        self.postings: dict[str, tuple[array[int], array[float]]] = {}
        self._base_terms = {term: row for row, term in enumerate(base.vocab)} if base else {}
        self._base = (base.ptr, base.pos, base.freq) if base else _EMPTY_CSR
        self.checked_at = time.monotonic()
        self.state = state  # the shared file's copy this index holds, up to which tail row
        self.base_count = len(self.ids)  # pages in the copy it was loaded from
        # Writers append while readers score: every access holds the lock, and reads copy out of
        # the arrays (a live numpy view of an array.array makes a concurrent append fail).
        self._lock = threading.Lock()
        self._arrays: dict[str, np.ndarray] = {}  # see _cached

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, page_id: str, text: str, time_s: float) -> None:
        self.add_terms(page_id, tokens(text), time_s, places_in_time(text))

    def add_terms(self, page_id: str, terms: Sequence[str], time_s: float, timed: bool) -> None:
        counts = Counter(terms)
        with self._lock:
            self._add(page_id, counts, time_s, timed)

    def _add(self, page_id: str, counts: Counter[str], time_s: float, timed: bool) -> None:
        if page_id in self.position:
            return
        position = len(self.ids)
        self.ids.append(page_id)
        self.position[page_id] = position
        self.times.append(time_s)
        self.timed.append(timed)
        self.lengths.append(float(sum(counts.values())))
        for term, frequency in counts.items():
            where, freqs = self.postings.setdefault(term, (array("i"), array("f")))
            where.append(position)
            freqs.append(float(frequency))

    def snapshot(self, query_terms: Iterable[str]) -> tuple[int, np.ndarray, np.ndarray]:
        """(page count, BM25 score of every page, page times), consistent with each other."""
        with self._lock:
            count = len(self.ids)
            return count, self._bm25(query_terms, count), self._cached("times", count)

    def _cached(self, name: str, count: int) -> np.ndarray:
        """``times`` or BM25's length ``norm`` of the first ``count`` pages as a read-only array,
        computed once per page count (pages are only ever appended; held under ``_lock``)."""
        cached = self._arrays.get(name)
        if cached is not None and len(cached) == count:
            return cached
        value: np.ndarray
        if name == "times":
            value = np.array(self.times, dtype=np.float64)
        else:
            lengths = np.array(self.lengths, dtype=np.float32)
            value = K1 * (1 - B + B * lengths / max(float(lengths.mean()), 1e-9))
        value.flags.writeable = False
        self._arrays[name] = value
        return value

    def timed_pages(self, count: int) -> np.ndarray:
        """Whether each of the first ``count`` pages places something in time ("last week")."""
        with self._lock:
            return np.array(self.timed[:count], dtype=bool)

    def bm25(self, query_terms: Iterable[str]) -> np.ndarray:
        """BM25 score of every page for the query terms (zeros when none matches)."""
        return self.snapshot(query_terms)[1]

    def _posting(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        row = self._base_terms.get(term)
        if row is not None:
            ptr, pos, freq = self._base
            start, end = int(ptr[row]), int(ptr[row + 1])
            parts.append((pos[start:end].astype(np.int64), freq[start:end]))
        added = self.postings.get(term)
        if added is not None:
            parts.append((np.array(added[0], dtype=np.int64), np.array(added[1], dtype=np.float32)))
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _bm25(self, query_terms: Iterable[str], count: int) -> np.ndarray:
        scores = np.zeros(count, dtype=np.float32)
        if not count:
            return scores
        norm = self._cached("norm", count)
        for term in set(query_terms):
            posting = self._posting(term)
            if posting is None:
                continue
            where, freqs = posting
            idf = math.log(1 + (count - len(where) + 0.5) / (len(where) + 0.5))
            scores[where] += idf * freqs * (K1 + 1) / (freqs + norm[where])
        return scores

    def to_snapshot(self) -> Snapshot:
        """The whole index as arrays (for the shared file; ``lexical_store.edited`` changes one)."""
        with self._lock:
            vocab = list(dict.fromkeys([*self._base_terms, *self.postings]))
            columns = [p for p in (self._posting(term) for term in vocab) if p is not None]
            sizes = np.array([len(p[0]) for p in columns], dtype=np.int64)
            return Snapshot(
                ids=list(self.ids),
                vocab=vocab,
                ptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                pos=(np.concatenate([p[0] for p in columns]) if columns else np.zeros(0)).astype(np.int32),
                freq=(np.concatenate([p[1] for p in columns]) if columns else np.zeros(0)).astype(np.float32),
                lengths=np.array(self.lengths, dtype=np.float32),
                times=np.array(self.times, dtype=np.float64),
                timed=np.array(self.timed, dtype=np.int8),
            )


_EMPTY_CSR = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))


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
                    self._file = LexicalFile(Path(folder) / FILE_NAME) if folder else None
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
            if found is not None and len(found) - found.base_count > COMPACT_ROWS:
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
                    if state is None:
                        index = None
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


COMPACT_ROWS = 4096
"""Pages added to a loaded copy above which a process writes a new copy."""


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
