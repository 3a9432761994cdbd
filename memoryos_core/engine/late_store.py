"""The wordpiece vectors of each user's pages, for the late-interaction rerank: one SQLite file
beside an embedded store (``sqlite_file.py``: 0600, WAL, ``secure_delete``, ``BEGIN IMMEDIATE``).

One row per page (``page``, keyed by user and page id, WITHOUT ROWID): the kept wordpieces' ids
(int32) and unit vectors as int8 codes with one float16 scale per vector (its max-abs / 127).
``df`` counts, per user and wordpiece, the user's pages holding it; ``tally`` the user's pages.
Once a user has ``FIT_PAGES`` pages, a PCA basis (``basis``: mean and ``DIMS`` axes) is fitted on
their vectors, and every row is re-projected to ``DIMS`` dimensions in the same transaction:
a reader sees a user's rows all in the embedder's space or all in the basis's (removed with the
user's last page: it was fitted on their vectors). Rows are about
2 KB then; 16 KB pages keep them inline (with 4 KB pages each spills to an overflow page: at
100k pages a file twice the size, 446 MB, and reads three times as slow).

Removed vectors do not stay in the file: ``secure_delete`` zeroes freed content and a
``TRUNCATE`` checkpoint empties the log after a remove, a drop or the replacement of a page.
A damaged file (not SQLite, or rows of inconsistent sizes) is logged and removed: its pages then
have no vectors. A file that cannot be used (a missing or read-only folder, a full disk,
locked past ``sqlite_file.BUSY_TIMEOUT_S``) raises ``OSError`` (opening or creating the file)
or ``sqlite3.OperationalError`` (SQLite's log and writes) from every method: the caller decides.
"""

from __future__ import annotations

import logging
import os
import secrets
import sqlite3
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any, TypeVar

import numpy as np

from memoryos_core._blas import one_blas_thread
from memoryos_core._exceptions import InvalidInputError
from memoryos_core.engine.sqlite_file import SqliteFile, create_tables

logger = logging.getLogger("memoryos")

FILE_NAME = "memoryos-wordpieces.sqlite3"
FIT_PAGES = 100
"""Pages a user has when their vectors' basis is fitted."""
DIMS = 64
"""Dimensions of the basis's space."""
FIT_SAMPLE = 80_000
"""Most vectors the basis is fitted on (a fixed-seed sample beyond that)."""
PAGE_SIZE = 16384
MMAP_BYTES = 1 << 30
"""Read through a memory map (up to this much of the file): a read of 100 pages out of 100k
takes half the time it takes through ``read`` calls. SQLite writes through ``write`` calls."""
CHUNK = 500
"""Most values in one ``IN (...)``."""
VERSION = 1
_KEPT_BASES = 64
_SCHEMA = """
CREATE TABLE IF NOT EXISTS page (
    user TEXT NOT NULL, page_id TEXT NOT NULL, ids BLOB NOT NULL, scales BLOB NOT NULL,
    codes BLOB NOT NULL, PRIMARY KEY (user, page_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS df (
    user TEXT NOT NULL, wp INTEGER NOT NULL, n INTEGER NOT NULL, PRIMARY KEY (user, wp)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tally (user TEXT PRIMARY KEY, pages INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS basis (
    user TEXT PRIMARY KEY, epoch INTEGER NOT NULL, mean BLOB NOT NULL, axes BLOB NOT NULL
);
"""
Basis = tuple[np.ndarray, np.ndarray]
"""(mean (dim,), axes (dim, DIMS)), float32."""
_T = TypeVar("_T")


@dataclass(frozen=True)
class PageVectors:
    ids: np.ndarray  # int32 (n,) wordpiece vocabulary ids
    vectors: np.ndarray  # float32 (n, d): dequantised, in the user's space


@dataclass(frozen=True)
class View:
    """What one ``read`` saw, in one transaction."""

    pages: dict[str, PageVectors]
    """The asked pages that have rows."""
    df: np.ndarray
    """float64, per asked query id: the user's pages holding that wordpiece (0 for unknown)."""
    page_count: int
    """The user's pages with rows."""
    basis: Basis | None

    def project(self, vectors: np.ndarray) -> np.ndarray:
        """Query vectors (m, dim), unit length, into the pages' space."""
        vectors = np.asarray(vectors, dtype=np.float32)
        return vectors if self.basis is None else _project(vectors, self.basis)


class WordpieceFile:
    """The SQLite file of the wordpiece vectors (one connection per process, serialised by a lock).

    Args:
        path: The file (created 0600 if missing; its folder must exist).
        dim: The dimension of the vectors added (the embedder's).
    """

    def __init__(self, path: str | os.PathLike[str], *, dim: int = 384) -> None:
        self.dim = dim
        self._file: SqliteFile[sqlite3.Connection] = SqliteFile(
            path,
            transaction=lambda db: db,
            upgrade=_upgrade,
            label="wordpiece vectors",
            page_size=PAGE_SIZE,
            mmap_bytes=MMAP_BYTES,
        )
        self._bases: OrderedDict[str, tuple[int, Basis]] = OrderedDict()  # used under the file's lock

    @property
    def path(self) -> str:
        return str(self._file.path)

    def add(self, user: str, pages: Sequence[tuple[str, np.ndarray, np.ndarray]]) -> None:
        """Store pages' wordpieces (page id, ids int32 (n,), unit vectors (n, dim)); a page stored
        already is replaced. Fits the user's basis when they reach ``FIT_PAGES`` pages.

        Raises:
            InvalidInputError: A page's ids and vectors disagree in length, or the vectors have
                another dimension or non-finite values (nothing is stored).
        """
        prepared = self._checked(pages)
        if prepared:
            replaced = self._guarded(lambda: self._add(user, prepared))
            if replaced:
                self._file.erase_log()  # the replaced pages' old vectors

    def remove(self, user: str, page_ids: Sequence[str]) -> None:
        """Erase pages' rows and their counts in ``df`` (a page without a row is skipped), and the
        user's basis with their last page."""
        self._guarded(lambda: self._remove(user, list(dict.fromkeys(page_ids))))
        self._file.erase_log()

    def drop(self, user: str) -> None:
        """Erase everything of a user: rows, counts and basis."""

        def drop() -> None:
            with self._file.writing() as db:
                for table in ("page", "df", "tally", "basis"):
                    db.execute(f"DELETE FROM {table} WHERE user = ?", (user,))
                self._bases.pop(user, None)

        self._guarded(drop)
        self._file.erase_log()

    def read(self, user: str, page_ids: Sequence[str], query_ids: np.ndarray) -> View:
        """The asked pages that have rows, the df of ``query_ids`` and the user's page count and
        basis, as one transaction saw them."""
        return self._guarded(lambda: self._read(user, list(dict.fromkeys(page_ids)), query_ids))

    def close(self) -> None:
        self._file.close()

    # --- inside one transaction -----------------------------------------------------------
    def _read(self, user: str, page_ids: list[str], query_ids: np.ndarray) -> View:
        asked = np.asarray(query_ids, dtype=np.int64).ravel()
        wanted = np.unique(asked).tolist()
        with self._file.reading() as db:
            rows = _select(db, "page_id, ids, scales, codes FROM page", "page_id", user, page_ids)
            counts = dict(_select(db, "wp, n FROM df", "wp", user, wanted))
            tally = db.execute("SELECT pages FROM tally WHERE user = ?", (user,)).fetchone()
            basis = self._basis(db, user)
        dim = DIMS if basis is not None else self.dim
        decoded = _decode([(r[1], r[2], r[3]) for r in rows], dim)
        return View(
            pages={row[0]: PageVectors(ids, vectors) for row, (ids, vectors) in zip(rows, decoded)},
            df=np.array([counts.get(i, 0) for i in asked.tolist()], dtype=np.float64),
            page_count=int(tally[0]) if tally else 0,
            basis=basis,
        )

    def _add(self, user: str, pages: dict[str, tuple[np.ndarray, np.ndarray]]) -> bool:
        """Write the pages; True when some replaced stored ones."""
        with self._file.writing() as db:
            old = dict(_select(db, "page_id, ids FROM page", "page_id", user, list(pages)))
            tally = db.execute("SELECT pages FROM tally WHERE user = ?", (user,)).fetchone()
            count = (int(tally[0]) if tally else 0) + len(set(pages) - set(old))
            basis = self._basis(db, user)
            if basis is None and count >= FIT_PAGES:
                basis = self._fit(db, user, pages)
            db.executemany(
                "INSERT OR REPLACE INTO page (user, page_id, ids, scales, codes) VALUES (?, ?, ?, ?, ?)",
                [
                    (
                        user,
                        page_id,
                        ids.tobytes(),
                        *_encode(vectors if basis is None else _project(vectors, basis)),
                    )
                    for page_id, (ids, vectors) in pages.items()
                ],
            )
            _count(db, user, [ids for ids, _ in pages.values()], [_ids(blob) for blob in old.values()])
        return bool(old)

    def _remove(self, user: str, page_ids: list[str]) -> None:
        with self._file.writing() as db:
            old = dict(_select(db, "page_id, ids FROM page", "page_id", user, page_ids))
            if not old:
                return
            for chunk in _chunks(list(old)):
                marks = ",".join("?" * len(chunk))
                db.execute(f"DELETE FROM page WHERE user = ? AND page_id IN ({marks})", (user, *chunk))
            _count(db, user, [], [_ids(blob) for blob in old.values()])
            if db.execute("SELECT 1 FROM tally WHERE user = ?", (user,)).fetchone() is None:
                db.execute("DELETE FROM basis WHERE user = ?", (user,))  # fitted on pages now all gone
                self._bases.pop(user, None)

    def _fit(
        self, db: sqlite3.Connection, user: str, pages: dict[str, tuple[np.ndarray, np.ndarray]]
    ) -> Basis | None:
        """Fit the user's basis on their stored vectors and ``pages``' (as stored: dequantised),
        and re-project their stored rows; None (postponed) with too few vectors to fit."""
        stored = [
            row
            for row in db.execute("SELECT page_id, ids, scales, codes FROM page WHERE user = ?", (user,))
            if row[0] not in pages
        ]
        kept = _decode([(r[1], r[2], r[3]) for r in stored], self.dim)
        blocks = [vectors for _, vectors in kept]
        blocks += [
            _decode([(ids.tobytes(), *_encode(vectors))], self.dim)[0][1] for ids, vectors in pages.values()
        ]
        sample = np.concatenate(blocks) if blocks else np.zeros((0, self.dim), np.float32)
        if len(sample) <= DIMS:
            return None
        if len(sample) > FIT_SAMPLE:
            sample = sample[np.random.default_rng(0).choice(len(sample), FIT_SAMPLE, replace=False)]
        basis = _pca(sample)
        epoch = secrets.randbits(62)
        db.execute(
            "INSERT OR REPLACE INTO basis (user, epoch, mean, axes) VALUES (?, ?, ?, ?)",
            (user, epoch, basis[0].tobytes(), basis[1].tobytes()),
        )
        db.executemany(
            "UPDATE page SET scales = ?, codes = ? WHERE user = ? AND page_id = ?",
            [(*_encode(_project(vectors, basis)), user, row[0]) for row, (_, vectors) in zip(stored, kept)],
        )
        self._keep(user, epoch, basis)
        return basis

    def _basis(self, db: sqlite3.Connection, user: str) -> Basis | None:
        """The user's basis (kept in this process while its epoch stays the file's)."""
        row = db.execute("SELECT epoch FROM basis WHERE user = ?", (user,)).fetchone()
        if row is None:
            self._bases.pop(user, None)
            return None
        kept = self._bases.get(user)
        if kept is not None and kept[0] == row[0]:
            self._bases.move_to_end(user)
            return kept[1]
        mean, axes = db.execute("SELECT mean, axes FROM basis WHERE user = ?", (user,)).fetchone()
        basis = np.frombuffer(mean, dtype=np.float32), np.frombuffer(axes, dtype=np.float32)
        if len(basis[0]) != self.dim or len(basis[1]) != self.dim * DIMS:
            raise sqlite3.DatabaseError("wordpiece basis of another dimension")
        self._keep(user, int(row[0]), (basis[0], basis[1].reshape(self.dim, DIMS)))
        return self._bases[user][1]

    def _keep(self, user: str, epoch: int, basis: Basis) -> None:
        for array in basis:
            array.flags.writeable = False  # shared by every View of the user
        self._bases[user] = (epoch, basis)
        self._bases.move_to_end(user)
        while len(self._bases) > _KEPT_BASES:
            self._bases.popitem(last=False)

    def _checked(
        self, pages: Sequence[tuple[str, np.ndarray, np.ndarray]]
    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Pages as (int32 ids, float32 vectors) by id (the last of a repeated id), or raise."""
        checked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for page_id, ids, vectors in pages:
            ids, vectors = np.asarray(ids), np.asarray(vectors)
            if not isinstance(page_id, str) or not page_id:
                raise InvalidInputError(f"wordpiece page id {page_id!r}: expected a non-empty string")
            if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
                raise InvalidInputError(f"page {page_id}: wordpiece ids must be a 1-d integer array")
            if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
                raise InvalidInputError(f"page {page_id}: wordpiece ids outside 0..2**31-1")
            if vectors.shape != (len(ids), self.dim) or (vectors.size and vectors.dtype.kind not in "fiu"):
                raise InvalidInputError(
                    f"page {page_id}: {len(ids)} ids need vectors of shape ({len(ids)}, {self.dim}),"
                    f" got {vectors.shape} {vectors.dtype}"
                )
            with np.errstate(over="ignore"):
                vectors = vectors.astype(np.float32)
                if not np.isfinite(_scales(vectors)).all():  # NaN or inf in a vector, or past float16
                    raise InvalidInputError(f"page {page_id}: non-finite or too large vector values")
            checked.pop(page_id, None)
            checked[page_id] = (ids.astype(np.int32), vectors)
        return checked

    def _guarded(self, action: Callable[[], _T]) -> _T:
        """``action()``; once more on a new file when this one is damaged (it is removed)."""
        try:
            return action()
        except sqlite3.OperationalError:
            raise  # locked past the timeout, read-only, full: not damage
        except sqlite3.DatabaseError as exc:  # not a database, or a damaged one
            logger.warning("wordpiece vectors %s unreadable (%s): removed", self.path, exc)
            self._bases.clear()
            self._file.reset()
            return action()


def _upgrade(db: sqlite3.Connection) -> None:
    """Create the tables (in one transaction)."""
    create_tables(db, _SCHEMA, VERSION)


def _chunks(values: Sequence[_T]) -> Iterable[Sequence[_T]]:
    return (values[start : start + CHUNK] for start in range(0, len(values), CHUNK))


def _select(
    db: sqlite3.Connection, what: str, key: str, user: str, values: Sequence[object]
) -> list[tuple[Any, ...]]:
    """``SELECT what WHERE user = ? AND key IN values``, in chunks."""
    rows: list[tuple[Any, ...]] = []
    for chunk in _chunks(values):
        marks = ",".join("?" * len(chunk))
        rows += db.execute(f"SELECT {what} WHERE user = ? AND {key} IN ({marks})", (user, *chunk)).fetchall()
    return rows


def _count(db: sqlite3.Connection, user: str, added: list[np.ndarray], removed: list[np.ndarray]) -> None:
    """Move ``df`` and the user's page count by pages added and removed (a replaced page is both)."""
    plus = np.concatenate([np.unique(ids) for ids in added] or [np.zeros(0, np.int32)])
    minus = np.concatenate([np.unique(ids) for ids in removed] or [np.zeros(0, np.int32)])
    wps, signs = np.concatenate([plus, minus]), np.concatenate([np.ones(len(plus)), -np.ones(len(minus))])
    order = np.unique(wps, return_inverse=True)
    delta = np.bincount(order[1], weights=signs, minlength=len(order[0])).astype(np.int64)
    changed = [(user, int(wp), int(n)) for wp, n in zip(order[0].tolist(), delta.tolist()) if n]
    db.executemany(
        "INSERT INTO df (user, wp, n) VALUES (?, ?, ?)"
        " ON CONFLICT (user, wp) DO UPDATE SET n = n + excluded.n",
        changed,
    )
    db.executemany(
        "DELETE FROM df WHERE user = ? AND wp = ? AND n <= 0", [c[:2] for c in changed if c[2] < 0]
    )
    db.execute(
        "INSERT INTO tally (user, pages) VALUES (?, ?)"
        " ON CONFLICT (user) DO UPDATE SET pages = pages + excluded.pages",
        (user, len(added) - len(removed)),
    )
    db.execute("DELETE FROM tally WHERE user = ? AND pages <= 0", (user,))


def _ids(blob: bytes) -> np.ndarray:
    if len(blob) % 4:
        raise sqlite3.DatabaseError("wordpiece ids of a partial size")
    return np.frombuffer(blob, dtype=np.int32)


def _scales(vectors: np.ndarray) -> np.ndarray:
    peak = np.abs(vectors).max(axis=1) if vectors.size else np.zeros(len(vectors), np.float32)
    return (peak / 127).astype(np.float16)


def _encode(vectors: np.ndarray) -> tuple[bytes, bytes]:
    """(float16 scales, int8 codes) of vectors (n, d)."""
    scales = _scales(vectors)
    wide = scales.astype(np.float32)[:, None]
    codes = np.rint(np.divide(vectors, wide, out=np.zeros_like(vectors), where=wide > 0))
    return scales.tobytes(), np.clip(codes, -127, 127).astype(np.int8).tobytes()


def _decode(rows: Sequence[tuple[bytes, bytes, bytes]], dim: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(ids, dequantised vectors) of rows (ids, scales, codes), decoded at once (slices of one array)."""
    sizes = [len(row[0]) // 4 for row in rows]
    if any(len(r[0]) != 4 * n or len(r[1]) != 2 * n or len(r[2]) != dim * n for r, n in zip(rows, sizes)):
        raise sqlite3.DatabaseError("wordpiece row of inconsistent sizes")
    ids = np.frombuffer(b"".join(row[0] for row in rows), dtype=np.int32)
    scales = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float16)
    codes = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.int8).reshape(len(ids), dim)
    vectors = codes * scales.astype(np.float32)[:, None]
    ends = list(accumulate(sizes))
    return [(ids[a:b], vectors[a:b]) for a, b in zip([0, *ends[:-1]], ends)]


def _project(vectors: np.ndarray, basis: Basis) -> np.ndarray:
    """unit((x - mean) @ axes), on one BLAS thread."""
    with one_blas_thread():
        projected: np.ndarray = np.matmul(vectors - basis[0], basis[1])
    norms = np.linalg.norm(projected, axis=1, keepdims=True)
    return np.asarray(projected / np.maximum(norms, 1e-12), dtype=np.float32)


def _pca(sample: np.ndarray) -> Basis:
    """Mean and top ``DIMS`` principal axes (columns; each axis's largest entry positive), on one BLAS
    thread."""
    data = sample.astype(np.float64)
    mean = data.mean(axis=0)
    centred = data - mean
    with one_blas_thread():
        _, vectors = np.linalg.eigh(centred.T @ centred / (len(data) - 1))
    axes = vectors[:, ::-1][:, :DIMS]
    axes *= np.where(axes[np.abs(axes).argmax(axis=0), np.arange(DIMS)] < 0, -1.0, 1.0)
    return mean.astype(np.float32), np.ascontiguousarray(axes, dtype=np.float32)
