"""The lexical index on disk: one SQLite file beside an embedded store, shared by its processes.

Each user has one row in ``snap`` (a compact copy of the whole index: ids, terms, postings as
numpy bytes, page lengths, times), one small row in ``head`` (the copy's ``epoch`` and the last
tail ``seq``) and the rows in ``tail``, one per page written since that copy (its stemmed words,
so a reader does not stem again). A process loads the copy with a few ``np.frombuffer`` calls and
the tail on top; a write appends one tail row and moves ``head``'s seq (never the copy's row:
SQLite rewrites a whole row on any update, 25 MB at 100k pages). Every rewrite of the copy (a
rebuild from the store, a compaction of the tail, a page removed or updated) gives it a new
random ``epoch``: a process holding an older epoch reloads, one holding the same epoch reads
only the tail rows after the last ``seq`` it saw.

It is derived data, rebuilt from the store when missing, stale or unreadable. Writes are SQLite
transactions (WAL, ``synchronous=NORMAL``: a crash loses at most the last commits, never the
file's consistency, and the count check against the store finds what was lost); ``BEGIN
IMMEDIATE`` orders writers across processes. Deleted words do not stay in the file:
``secure_delete`` zeroes freed content and a ``TRUNCATE`` checkpoint empties the write-ahead log
after every removal. The file is created 0600 inside the store's private folder.

Processes coordinate through an ``flock`` on the folder (``LexicalFile.exclusive``): one process
rebuilds a stale copy while the others wait and then load it, and a damaged file is removed by
one process only; every transaction first checks that the file it holds open is still the one
at its path (a process that finds it replaced reconnects, never writing into a removed file).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from memoryos_core.engine.sqlite_file import SqliteFile, create_tables

logger = logging.getLogger("memoryos")

FILE_NAME = "memoryos-lexical.sqlite3"
VERSION = 3
"""``PRAGMA user_version`` of the layout. Files of layouts 1 (the seq in ``snap``) and 2 (no ``meta``: the
stemmer that wrote their stems is unknown) lose their indexes when opened: rebuilt from the store."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS snap (
    user TEXT PRIMARY KEY, epoch INTEGER NOT NULL, seq INTEGER NOT NULL,
    ids TEXT NOT NULL, vocab TEXT NOT NULL, ptr BLOB NOT NULL, pos BLOB NOT NULL, freq BLOB NOT NULL,
    lengths BLOB NOT NULL, times BLOB NOT NULL, timed BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS tail (
    user TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, ts REAL NOT NULL,
    timed INTEGER NOT NULL, terms TEXT NOT NULL, PRIMARY KEY (user, seq)
);
CREATE TABLE IF NOT EXISTS head (user TEXT PRIMARY KEY, epoch INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Snapshot:
    """A whole index as arrays: postings in CSR form (term ``t`` holds entries ``ptr[t]:ptr[t+1]``,
    positions ascending)."""

    ids: list[str]
    vocab: list[str]
    ptr: np.ndarray  # int64, len(vocab) + 1
    pos: np.ndarray  # int32
    freq: np.ndarray  # float32
    lengths: np.ndarray  # float32, one per page
    times: np.ndarray  # float64
    timed: np.ndarray  # int8


@dataclass(frozen=True)
class TailRow:
    seq: int
    id: str
    ts: float
    timed: bool
    terms: list[str]  # stemmed tokens, repeated as often as they occur


@dataclass(frozen=True)
class State:
    epoch: int
    seq: int


class Transaction:
    """Reads and writes of one SQLite transaction (see ``LexicalFile.reading``/``writing``).

    ``tokenizer``: this process's (``lexical.tokenizer_id``). While the file records another (a process of
    another stemmer version claimed it since this one connected), this process finds no index in it, and
    its next save claims the file back (every index dropped): a rebuild each time, never a stem mismatch.
    """

    def __init__(self, connection: sqlite3.Connection, tokenizer: str | None = None) -> None:
        self._db = connection
        self._tokenizer = tokenizer
        self.claimed = False  # a save claimed the file back: other processes' rows written meanwhile went

    def _foreign(self) -> bool:
        return self._tokenizer is not None and _recorded_tokenizer(self._db) != self._tokenizer

    def state(self, user: str) -> State | None:
        if self._foreign():
            return None
        row = self._db.execute("SELECT epoch, seq FROM head WHERE user = ?", (user,)).fetchone()
        return None if row is None else State(int(row[0]), int(row[1]))

    def load(self, user: str) -> tuple[State, Snapshot] | None:
        if self._foreign():
            return None
        row = self._db.execute(
            "SELECT h.epoch, h.seq, ids, vocab, ptr, pos, freq, lengths, times, timed"
            " FROM head h JOIN snap s ON s.user = h.user WHERE h.user = ?",
            (user,),
        ).fetchone()
        if row is None:
            return None
        snapshot = Snapshot(
            ids=json.loads(row[2]),
            vocab=json.loads(row[3]),
            ptr=np.frombuffer(row[4], dtype=np.int64),
            pos=np.frombuffer(row[5], dtype=np.int32),
            freq=np.frombuffer(row[6], dtype=np.float32),
            lengths=np.frombuffer(row[7], dtype=np.float32),
            times=np.frombuffer(row[8], dtype=np.float64),
            timed=np.frombuffer(row[9], dtype=np.int8),
        )
        _check(snapshot)
        return State(int(row[0]), int(row[1])), snapshot

    def tail(self, user: str, after: int) -> list[TailRow]:
        rows = self._db.execute(
            "SELECT seq, id, ts, timed, terms FROM tail WHERE user = ? AND seq > ? ORDER BY seq",
            (user, after),
        )
        return [TailRow(int(s), str(i), float(t), bool(d), str(w).split()) for s, i, t, d, w in rows]

    def append(
        self, user: str, rows: Sequence[tuple[str, float, bool, list[str]]]
    ) -> tuple[State, int] | None:
        """Append pages (id, time, timed, tokens) after the user's copy; (state after, first seq),
        or None when the file has no index of the user (it is built from the store when needed)."""
        state = self.state(user)
        if state is None or not rows:
            return None
        first = state.seq + 1
        self._db.executemany(
            "INSERT INTO tail (user, seq, id, ts, timed, terms) VALUES (?, ?, ?, ?, ?, ?)",
            [
                (user, first + i, pid, ts, int(timed), " ".join(terms))
                for i, (pid, ts, timed, terms) in enumerate(rows)
            ],
        )
        after = State(state.epoch, state.seq + len(rows))
        self._db.execute("UPDATE head SET seq = ? WHERE user = ?", (after.seq, user))
        return after, first

    def save(self, user: str, snapshot: Snapshot, upto: int) -> State:
        """Replace the user's copy with ``snapshot`` (a new epoch), which holds every tail row up
        to ``upto``: those rows go. Rows after it stay, read on top of the new copy."""
        _check(snapshot)
        if self._tokenizer is not None and self._foreign():
            _claim(self._db, self._tokenizer)
            self.claimed = True
        old = self.state(user)
        state = State(secrets.randbits(62), max(upto, old.seq if old else 0))
        self._db.execute(
            "INSERT OR REPLACE INTO snap"
            " (user, epoch, seq, ids, vocab, ptr, pos, freq, lengths, times, timed)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                user,
                state.epoch,
                state.seq,
                json.dumps(snapshot.ids),
                json.dumps(snapshot.vocab, ensure_ascii=False),
                snapshot.ptr.astype(np.int64).tobytes(),
                snapshot.pos.astype(np.int32).tobytes(),
                snapshot.freq.astype(np.float32).tobytes(),
                snapshot.lengths.astype(np.float32).tobytes(),
                snapshot.times.astype(np.float64).tobytes(),
                snapshot.timed.astype(np.int8).tobytes(),
            ),
        )
        self._db.execute(
            "INSERT OR REPLACE INTO head (user, epoch, seq) VALUES (?, ?, ?)", (user, state.epoch, state.seq)
        )
        self._db.execute("DELETE FROM tail WHERE user = ? AND seq <= ?", (user, upto))
        return state

    def drop(self, user: str) -> None:
        self._db.execute("DELETE FROM head WHERE user = ?", (user,))
        self._db.execute("DELETE FROM snap WHERE user = ?", (user,))
        self._db.execute("DELETE FROM tail WHERE user = ?", (user,))


def _check(snapshot: Snapshot) -> None:
    """Array sizes that agree with each other (a damaged copy raises, and is rebuilt)."""
    pages = len(snapshot.ids)
    sizes_agree = (
        len(snapshot.ptr) == len(snapshot.vocab) + 1
        and len(snapshot.lengths) == len(snapshot.times) == len(snapshot.timed) == pages
        and len(snapshot.pos) == len(snapshot.freq) == (int(snapshot.ptr[-1]) if len(snapshot.ptr) else -1)
        and (not len(snapshot.pos) or 0 <= int(snapshot.pos.min()) <= int(snapshot.pos.max()) < pages)
    )
    if not sizes_agree:
        raise sqlite3.DatabaseError("lexical index copy with arrays of inconsistent sizes")


def edited(
    snapshot: Snapshot,
    without: Sequence[int] = (),
    replace: Mapping[int, tuple[Mapping[str, int], bool]] | None = None,
) -> Snapshot:
    """``snapshot`` with the pages at positions ``without`` left out (the others renumbered, order
    kept) and the words of the pages at the positions in ``replace`` swapped for new ones (term
    counts, and whether they place the page in time); terms no page uses any more are dropped."""
    replace = replace or {}
    sizes = np.diff(snapshot.ptr)
    vocab = list(snapshot.vocab)
    pos, freq = snapshot.pos.astype(np.int64), snapshot.freq
    term_of = np.repeat(np.arange(len(vocab), dtype=np.int64), sizes)
    lengths, timed = snapshot.lengths.copy(), snapshot.timed.copy()
    if replace:
        changed = np.fromiter(replace, dtype=np.int64, count=len(replace))
        kept_entry = ~np.isin(pos, changed)
        row_of = {term: row for row, term in enumerate(vocab)}
        new_terms, new_pos, new_freq = [], [], []
        for position, (counts, is_timed) in replace.items():
            for term, count in counts.items():
                if term not in row_of:
                    row_of[term] = len(vocab)
                    vocab.append(term)
                new_terms.append(row_of[term])
                new_pos.append(position)
                new_freq.append(float(count))
            lengths[position] = float(sum(counts.values()))
            timed[position] = int(is_timed)
        term_of = np.concatenate([term_of[kept_entry], np.array(new_terms, dtype=np.int64)])
        pos = np.concatenate([pos[kept_entry], np.array(new_pos, dtype=np.int64)])
        freq = np.concatenate([freq[kept_entry], np.array(new_freq, dtype=np.float32)])
        order = np.lexsort((pos, term_of))  # by term, then page: a term's positions ascending
        term_of, pos, freq = term_of[order], pos[order], freq[order]
    ids, times = list(snapshot.ids), snapshot.times
    if len(without):
        keep = np.ones(len(ids), dtype=bool)
        keep[np.asarray(without, dtype=np.int64)] = False
        entry_kept = keep[pos]
        renumber = np.cumsum(keep) - 1
        pos, freq, term_of = renumber[pos[entry_kept]], freq[entry_kept], term_of[entry_kept]
        ids = [page_id for page_id, kept in zip(ids, keep) if kept]
        lengths, times, timed = lengths[keep], times[keep], timed[keep]
    per_term = np.bincount(term_of, minlength=len(vocab))
    used = np.flatnonzero(per_term)
    return Snapshot(
        ids=ids,
        vocab=[vocab[t] for t in used],
        ptr=np.concatenate([[0], np.cumsum(per_term[used])]).astype(np.int64),
        pos=pos.astype(np.int32),
        freq=freq.astype(np.float32),
        lengths=lengths.astype(np.float32),
        times=times.astype(np.float64),
        timed=timed.astype(np.int8),
    )


class LexicalFile(SqliteFile[Transaction]):
    """The SQLite file of the lexical indexes (a damaged one is ``reset``: rebuilt from the store).

    ``tokenizer``: the identity of the words the indexes hold (``lexical.tokenizer_id``), called when a
    connection opens; a file whose indexes another tokenizer wrote (or one that did not record it) loses
    them then, and each user's is rebuilt from the store at its next recall.
    """

    def __init__(self, path: str | os.PathLike[str], tokenizer: Callable[[], str]) -> None:
        super().__init__(
            path,
            transaction=lambda db: Transaction(db, tokenizer()),
            upgrade=lambda db: _upgrade(db, tokenizer()),
            label="lexical index",
        )


def _upgrade(db: sqlite3.Connection, tokenizer: str) -> None:
    """Create the tables, or bring a file of an older layout to this one (in one transaction); then drop
    the indexes another tokenizer wrote."""
    create_tables(db, _SCHEMA, VERSION)
    if _recorded_tokenizer(db) == tokenizer:
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        if _recorded_tokenizer(db) != tokenizer:  # (another process may have done it meanwhile)
            _claim(db, tokenizer)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _claim(db: sqlite3.Connection, tokenizer: str) -> None:
    """Drop every index (their stems are another tokenizer's) and record ``tokenizer`` (in the caller's
    write transaction)."""
    users = int(db.execute("SELECT count(*) FROM head").fetchone()[0])
    for table in ("head", "snap", "tail"):
        db.execute(f"DELETE FROM {table}")
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('tokenizer', ?)", (tokenizer,))
    if users:
        logger.warning(
            "word index %s was written by another stemmer or tokenizer: the indexes of %d users are rebuilt"
            " from the store at their next recall",
            _path_of(db),
            users,
        )


def _recorded_tokenizer(db: sqlite3.Connection) -> str | None:
    row = db.execute("SELECT value FROM meta WHERE key = 'tokenizer'").fetchone()
    return None if row is None else str(row[0])


def _path_of(db: sqlite3.Connection) -> str:
    row = db.execute("PRAGMA database_list").fetchone()
    return str(row[2]) if row else "?"
