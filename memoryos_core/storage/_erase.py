"""Erasure in an embedded Chroma folder: after records are deleted, none of their text stays in a file.

Deleting through Chroma's API (1.x) is not erasure. Chroma keeps every write in its SQLite log
(``embeddings_queue``) until each segment of the collection has persisted past it, which for an
HNSW index means ``hnsw:sync_threshold`` (1,000) later records; SQLite frees pages without
zeroing them; the full-text index keeps a deleted document's trigrams until its segments merge;
and a dropped collection's HNSW folder stays on disk. ``erase_deleted`` undoes each of these:

1. log rows a segment no longer needs are deleted: for a record deleted or overwritten since,
   every row but the one that still tells the vector index what to do on replay (the record's
   last upsert, or a delete that names only its id);
2. the full-text index is merged (``optimize``), dropping deleted documents' trigrams;
3. ``VACUUM`` with ``secure_delete`` rewrites the file, so freed pages are gone too;
4. HNSW folders of segments that no longer exist are removed.

It must run under the folder's exclusive lock (no other process is inside Chroma then), and it
runs in a child process (this file run as a script, standard library only). Python's ``sqlite3``
and Chroma's bundled SQLite are two copies of the library: in one process their POSIX locks on
the file do not see each other (and closing one drops the other's), so a ``VACUUM`` beside a
Chroma read in another thread corrupted the file. From a child process the locks work: the
``VACUUM`` waits for this process's Chroma readers, and they wait for it (SQLite busy timeouts).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

logger = logging.getLogger("memoryos")

_ADD, _UPSERT, _DELETE = 0, 2, 3  # Chroma's operation codes in embeddings_queue
_METADATA = "urn:chroma:segment/metadata/sqlite"
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
BUSY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class _Row:
    seq_id: int
    operation: int
    has_vector: bool


ERASE_TIMEOUT_S = 900.0


def erase_deleted(folder: str) -> None:
    """Remove what Chroma keeps of deleted or overwritten records from ``folder`` (see the module),
    in a child process.

    Raises:
        OSError: the child failed (its last error line is in the message) or took too long.
    """
    if not os.path.exists(os.path.join(folder, "chroma.sqlite3")):
        return
    try:
        done = subprocess.run(
            [sys.executable, "-I", __file__, folder],  # -I: stdlib only, no user site or PYTHON* env
            capture_output=True,
            text=True,
            timeout=ERASE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired as exc:
        raise OSError(f"erasing deleted records in {folder} took over {ERASE_TIMEOUT_S:.0f} s") from exc
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OSError(f"erasing deleted records in {folder} failed: {last}")
    purged, removed = (int(n) for n in done.stdout.split()[-2:])
    logger.info(
        "erased deleted records from %s: %d log rows purged, %d segment folders removed",
        folder,
        purged,
        removed,
    )


def _erase_here(folder: str) -> tuple[int, int]:
    """The erasure itself, in this process; returns (log rows purged, segment folders removed)."""
    database = os.path.join(folder, "chroma.sqlite3")
    connection = sqlite3.connect(database, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    try:
        connection.execute("PRAGMA secure_delete=ON")  # pages freed from here on are zeroed
        connection.execute("BEGIN IMMEDIATE")
        try:
            purged = sum(
                _purge_collection(connection, folder, c)
                for (c,) in connection.execute("SELECT id FROM collections").fetchall()
            )
            connection.execute(
                "INSERT INTO embedding_fulltext_search(embedding_fulltext_search) VALUES('optimize')"
            )
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:  # SQLite may have rolled back already (an I/O error)
                connection.execute("ROLLBACK")
            raise
        connection.execute("VACUUM")
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # a no-op unless the file is in WAL mode
        live = {str(s) for (s,) in connection.execute("SELECT id FROM segments").fetchall()}
    finally:
        connection.close()
    return purged, _remove_orphan_segments(folder, live)


def _seq(value: int | str | bytes) -> int:
    """A max_seq_id value: an int, or big-endian bytes in stores made by Chroma before 0.5."""
    return int.from_bytes(value, "big") if isinstance(value, bytes) else int(value)


def _purge_collection(connection: sqlite3.Connection, folder: str, collection: str) -> int:
    """Delete the log rows of ``collection`` that hold text of deleted or overwritten records and
    that no segment needs to replay; returns how many."""
    segments = connection.execute(
        "SELECT s.id, s.type, m.seq_id FROM segments s LEFT JOIN max_seq_id m ON m.segment_id = s.id"
        " WHERE s.collection = ?",
        (collection,),
    ).fetchall()
    metadata = [(sid, seq) for sid, kind, seq in segments if kind == _METADATA]
    if len(metadata) != 1 or metadata[0][1] is None:
        return 0  # nothing applied yet, or a layout this does not know: leave the log alone
    metadata_id, metadata_seq = metadata[0][0], _seq(metadata[0][1])
    vector_seqs = [_seq(seq) if seq is not None else -1 for _, kind, seq in segments if kind != _METADATA]
    vector_seq = min(vector_seqs, default=metadata_seq)  # rows after this are replayed into the index
    # An index never persisted (no max_seq_id) is empty, unless an old Chroma kept its position elsewhere.
    is_index_empty = vector_seq < 0 and not any(
        os.path.getsize(header) if os.path.exists(header) else 0
        for sid, kind, _ in segments
        if kind != _METADATA
        for header in [os.path.join(folder, str(sid), "header.bin")]
    )
    live = {
        i
        for (i,) in connection.execute(
            "SELECT embedding_id FROM embeddings WHERE segment_id = ?", (metadata_id,)
        )
    }
    rows: dict[str, list[_Row]] = defaultdict(list)
    for seq_id, operation, record_id, has_vector in connection.execute(
        "SELECT seq_id, operation, id, vector IS NOT NULL FROM embeddings_queue"
        " WHERE topic LIKE ? ORDER BY seq_id",
        (f"%/{collection}",),
    ):
        rows[record_id].append(_Row(int(seq_id), int(operation), bool(has_vector)))
    doomed: list[int] = []
    for record_id, history in rows.items():
        if history[-1].seq_id > metadata_seq:
            continue  # not yet applied to the metadata segment (never the case in Chroma 1.x)
        doomed += _superseded(history, vector_seq, is_live=record_id in live, is_index_empty=is_index_empty)
    for start in range(0, len(doomed), 500):
        chunk = doomed[start : start + 500]
        connection.execute(
            f"DELETE FROM embeddings_queue WHERE seq_id IN ({','.join('?' * len(chunk))})", chunk
        )
    return len(doomed)


def _superseded(history: list[_Row], vector_seq: int, *, is_live: bool, is_index_empty: bool) -> list[int]:
    """The rows of one record that can go: replaying the rest into the vector index persisted at
    ``vector_seq`` gives the same index as replaying them all."""
    applied = [r for r in history if r.seq_id <= vector_seq]  # in the persisted index already
    pending = [r for r in history if r.seq_id > vector_seq]
    if not pending:
        return [r.seq_id for r in history]
    in_index: bool | None = applied[-1].operation != _DELETE if applied else None  # None: unknown
    if is_index_empty:
        in_index = False
    last = pending[-1]
    if is_live:
        keeps_last = last.has_vector and (
            last.operation == _UPSERT or (last.operation == _ADD and in_index is False)
        )
    elif in_index is False:
        return [r.seq_id for r in history]  # never reaches the index: no row is needed
    else:
        keeps_last = last.operation == _DELETE  # carries the id only, no text
    if not keeps_last:
        return [r.seq_id for r in applied]
    return [r.seq_id for r in history if r is not last]


def _remove_orphan_segments(folder: str, live: set[str]) -> int:
    """Remove HNSW folders of segments Chroma no longer has (dropped collections); returns how many."""
    removed = 0
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False) and _UUID.match(entry.name) and entry.name not in live:
            shutil.rmtree(entry.path)
            removed += 1
    return removed


if __name__ == "__main__":  # the child process of erase_deleted
    print(*_erase_here(sys.argv[1]))
