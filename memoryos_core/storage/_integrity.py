"""Cheap checks of an embedded Chroma folder's files before Chroma reads them.

Chroma's Rust code crashes the whole process (SIGSEGV, a malloc abort) on some corrupt HNSW
headers, and opens a 0-byte ``chroma.sqlite3`` as an empty store. So the SQLite file's magic
bytes are checked before a client opens the folder, and the HNSW header of a collection's
vector segment (100 bytes, plus two file sizes) before the collection is first used: a damaged
file is then a StorageError for the users it holds, not a crash or a silently empty memory.
"""

from __future__ import annotations

import math
import sqlite3
import struct
import time
from pathlib import Path

from memoryos_core._exceptions import StorageError

_SQLITE_MAGIC = b"SQLite format 3\x00"
_RECHECK_S = (0.05, 0.1, 0.2)
# hnswlib's header as Chroma's fork writes it: a version, six size_t, maxlevel, enterpoint,
# maxM, maxM0, M, mult (a double), ef_construction.
_HEADER = struct.Struct("<i6QiI3QdQ")


def check_sqlite_file(folder: str) -> None:
    """A StorageError if ``folder/chroma.sqlite3`` exists but is not a SQLite database."""
    file = Path(folder) / "chroma.sqlite3"
    try:
        with open(file, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return  # a new store
    except OSError as exc:
        raise StorageError(f"cannot read {file}: {exc}", backend="chroma") from exc
    if head != _SQLITE_MAGIC:
        raise StorageError(
            f"{file} is not a SQLite database ({file.stat().st_size} bytes): the store is damaged; "
            "restore it from a backup or move the folder away",
            backend="chroma",
        )


def header_problem(segment: Path) -> str | None:
    """What is wrong with the HNSW files in ``segment`` (None if they look whole or are absent)."""
    header = segment / "header.bin"
    if not header.exists():
        return None  # not persisted yet: Chroma builds the index from its log
    raw = header.read_bytes()
    if len(raw) != _HEADER.size:
        return None  # being written, or cut short: Chroma reports that as an error itself
    (_, offset0, max_elements, count, size_per, label_offset, offset_data, max_level, enter, max_m, max_m0, m,
     mult, ef) = _HEADER.unpack(raw)  # fmt: skip
    data = segment / "data_level0.bin"
    checks = (
        (offset0 == 0 and count <= max_elements <= 2**40, "element counts"),
        (2 <= m <= 4096 and max_m == m and max_m0 == 2 * m and 0 < ef <= 2**20, "graph parameters"),
        (math.isfinite(mult) and mult > 0, "level multiplier"),
        (offset_data == max_m0 * 4 + 4 < label_offset == size_per - 8, "layout"),
        (count == 0 or (0 <= max_level < 64 and enter < count), "entry point"),
        (data.exists() and data.stat().st_size >= count * size_per, "data_level0.bin is too short"),
    )
    return next((what for ok, what in checks if not ok), None)


def check_vector_segment(folder: str, collection_id: str, what: str) -> None:
    """A StorageError naming ``what`` if the collection's persisted HNSW index is damaged."""
    database = Path(folder) / "chroma.sqlite3"
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as connection:
            rows = connection.execute(
                "SELECT id FROM segments WHERE collection = ? AND scope = 'VECTOR'", (collection_id,)
            ).fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"cannot read {database}: {exc}", backend="chroma") from exc
    for (segment_id,) in rows:
        problem = header_problem(Path(folder) / str(segment_id))
        for delay_s in _RECHECK_S if problem else ():
            time.sleep(delay_s)  # this process's writer may be persisting the index right now
            problem = header_problem(Path(folder) / str(segment_id))
            if not problem:
                break
        if problem:
            raise StorageError(
                f"the vector index of {what} is damaged ({problem}) in {Path(folder) / str(segment_id)}; "
                "restore the folder from a backup",
                backend="chroma",
            )
