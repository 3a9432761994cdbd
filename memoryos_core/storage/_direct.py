"""Records by id read straight from an embedded folder's ``chroma.sqlite3``: Chroma's own metadata
segment, which its ``get`` reads too, without the ~0.13 ms of Chroma's machinery per record.

A recall reads ~14 pages and the profile by id: through Chroma's ``get`` that was the largest part of
its fixed cost (37% at 100k pages); one indexed ``SELECT`` here costs ~0.02 ms per record. Nothing is
cached: every read sees what the file holds now, so a page edited or deleted by any process is never
served stale, and nothing is kept that a delete would have to erase.

When it is used (``ChromaStore`` decides, and otherwise calls Chroma):

- only inside the folder's shared lock with no write of this process running (``SharedFolder.
  shared_only``): Python's ``sqlite3`` and Chroma's bundled SQLite are two copies of the library,
  whose POSIX locks do not see each other within one process (see ``_erase.py``), so a read here must
  never overlap this process's Chroma write; other processes cannot write while the lock is held;
- only when the collection's metadata segment has applied every log row of the collection (Chroma
  applies a write to it in the same call; after a crash between the two, Chroma's own ``get`` replays);
- only while the file has the tables and columns read here (checked at connect), and once per
  process the first non-empty answer is compared with Chroma's (ids, order, documents, metadata and
  value types): any difference turns it off for the process, with a warning.

The connection is read-only (``mode=ro``: it creates no file) and closed only with the folder, at the
end (closing it drops the process's POSIX locks on the file, Chroma's included).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")

MAX_IDS = 500
"""Longer id lists go through Chroma (its own chunking; SQLite's variable limit)."""
CACHE_KIB = 16384
"""SQLite's page cache of the connection (its default is 2 MB): the indexes' upper levels stay in it."""
_DOCUMENT = "chroma:document"
_TABLES = {
    "collections": {"id", "name"},
    "segments": {"id", "scope", "collection"},
    "embeddings": {"id", "segment_id", "embedding_id"},
    "embedding_metadata": {"id", "key", "string_value", "int_value", "float_value", "bool_value"},
    "embedding_metadata_array": {"id"},
    "max_seq_id": {"segment_id", "seq_id"},
    "embeddings_queue": {"seq_id", "topic"},
}

Value = str | int | float | bool
Row = tuple[str, str | None, str | None, int | None, float | None, int | None]
T = TypeVar("T")


class DirectReads:
    """Read-only access to one folder's ``chroma.sqlite3`` (see the module); thread-safe."""

    def __init__(self, folder: str) -> None:
        self.path = os.path.join(folder, "chroma.sqlite3")
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._segments: dict[str, str] = {}  # collection id -> its metadata segment id
        self.enabled = True
        self.verified = False  # an answer matched Chroma's (see ``check``)
        self.reads = 0  # answered here (for tests)

    # --- reads --------------------------------------------------------------------------------
    def records(self, collection_id: str, ids: Sequence[str]) -> list[Record] | None:
        """The records of ``ids`` in the collection, in Chroma's order (its insertion order), absent
        ones left out, as Chroma's ``get(ids=, include=["documents", "metadatas"])`` gives them; None
        when this cannot answer (then ask Chroma)."""
        if not ids or len(ids) > MAX_IDS or len(set(ids)) != len(ids):
            return None

        def read(db: sqlite3.Connection) -> list[Row] | None:
            segment = self._segment(db, collection_id)
            if segment is None or not self._applied(db, segment, collection_id):
                return None
            marks = ",".join("?" * len(ids))
            rows: list[Row] = db.execute(
                "SELECT e.embedding_id, m.key, m.string_value, m.int_value, m.float_value, m.bool_value"
                " FROM embeddings e LEFT JOIN embedding_metadata m ON m.id = e.id"
                f" WHERE e.segment_id = ? AND e.embedding_id IN ({marks}) ORDER BY e.id",
                (segment, *ids),
            ).fetchall()
            self.reads += 1
            return rows

        rows = self._answer(read)
        return None if rows is None else _decode(rows)

    def has_collection(self, name: str) -> bool | None:
        """Whether a collection of that name exists (in any database of the file); None: unknown."""
        return self._answer(
            lambda db: (
                db.execute("SELECT 1 FROM collections WHERE name = ? LIMIT 1", (name,)).fetchone() is not None
            )
        )

    def _answer(self, read: Callable[[sqlite3.Connection], T | None]) -> T | None:
        """``read(connection)``, or None when direct reads are off, the file is not there or fails."""
        if not self.enabled:
            return None
        with self._lock:
            try:
                db = self._connection()
                return None if db is None else read(db)
            except sqlite3.Error as exc:
                logger.debug("direct read of %s failed, asking Chroma: %s", self.path, exc)
                self._drop()
                return None

    def check(self, mine: Sequence[Record], chromas: Sequence[Record]) -> bool:
        """Compare an answer with Chroma's for the same call (the first non-empty one per process);
        a difference turns direct reads off. True when they agree."""
        if _comparable(mine) == _comparable(chromas):
            self.verified = True
            return True
        self.enabled = False
        logger.warning(
            "reading %s directly gave other records than Chroma's get: Chroma answers every read from now on",
            self.path,
        )
        return False

    def close(self) -> None:
        with self._lock:
            self._drop()

    # --- the connection -------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection | None:
        """The open connection to the file now at ``path`` (reconnected when it was replaced)."""
        try:
            info = os.stat(self.path)
        except OSError:
            self._drop()
            return None
        identity = (info.st_dev, info.st_ino)
        if self._db is not None and identity == self._identity:
            return self._db
        self._drop()
        db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
        try:
            if not self._has_schema(db):
                self.enabled = False
                logger.info("%s is not laid out as expected: Chroma answers every read", self.path)
                db.close()
                return None
        except sqlite3.Error:
            db.close()
            raise
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self._db, self._identity = db, identity
        return db

    @staticmethod
    def _has_schema(db: sqlite3.Connection) -> bool:
        for table, columns in _TABLES.items():
            found = {str(row[1]) for row in db.execute(f"PRAGMA table_info({table})")}
            if not columns <= found:
                return False
        mode = db.execute("PRAGMA journal_mode").fetchone()
        return mode is not None and str(mode[0]).lower() == "delete"  # a WAL file would need -shm

    def _drop(self) -> None:
        if self._db is not None:
            self._db.close()
        self._db, self._identity = None, None
        self._segments.clear()

    def _segment(self, db: sqlite3.Connection, collection_id: str) -> str | None:
        segment = self._segments.get(collection_id)
        if segment is None:
            found = db.execute(
                "SELECT id FROM segments WHERE collection = ? AND scope = 'METADATA'", (collection_id,)
            ).fetchall()
            if len(found) != 1:
                return None
            segment = self._segments[collection_id] = str(found[0][0])
        return segment

    @staticmethod
    def _applied(db: sqlite3.Connection, segment: str, collection_id: str) -> bool:
        """Whether the metadata segment holds every write logged for its collection, and the file
        holds no list value (MemoryOS writes none; Chroma decodes those)."""
        watermark, last, lists = db.execute(
            "SELECT (SELECT seq_id FROM max_seq_id WHERE segment_id = ?),"
            " (SELECT max(seq_id) FROM embeddings_queue), EXISTS (SELECT 1 FROM embedding_metadata_array)",
            (segment,),
        ).fetchone()
        if lists or not isinstance(watermark, (int, type(None))):  # an older Chroma: a blob
            return False
        floor = -1 if watermark is None else watermark
        if last is None or last <= floor:
            return True
        later = db.execute(  # the log rows since, of this collection (no index on topic: few rows)
            "SELECT 1 FROM embeddings_queue WHERE seq_id > ? AND substr(topic, -?) = ? LIMIT 1",
            (floor, len(collection_id) + 1, "/" + collection_id),
        ).fetchone()
        return later is None


def _decode(rows: Sequence[Row]) -> list[Record]:
    documents: dict[str, str] = {}
    metadata: dict[str, dict[str, Value]] = {}
    for record_id, key, text, integer, real, flag in rows:
        meta = metadata.setdefault(record_id, {})
        documents.setdefault(record_id, "")
        if key is None:  # a record with no document and no metadata
            continue
        if key == _DOCUMENT:
            documents[record_id] = text or ""
        elif key.startswith("chroma:"):
            continue
        elif text is not None:
            meta[key] = text
        elif flag is not None:
            meta[key] = bool(flag)
        elif integer is not None:
            meta[key] = integer
        elif real is not None:
            meta[key] = real
    return [Record(record_id, documents[record_id], meta) for record_id, meta in metadata.items()]


def _comparable(records: Sequence[Record]) -> list[tuple[str, str, list[tuple[str, str, Value]]]]:
    """Records as plain values, the type of each metadata value included (``True == 1`` in Python)."""
    return [
        (r.id, r.document, sorted((k, type(v).__name__, v) for k, v in r.metadata.items())) for r in records
    ]
