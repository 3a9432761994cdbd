"""Calls on one Chroma collection: errors as StorageError, transient failures retried, big
reads paged and big writes chunked under Chroma's limits."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from memoryos_core._exceptions import StorageError
from memoryos_core.storage.base import Kind, Record, Where

_STATE_VECTOR = [1.0]  # state records are fetched by id only; Chroma still wants a vector
_BATCH = 4000  # below Chroma's max batch size
_RETRY_DELAYS_S = (0.05, 0.2, 0.5)
_PAGE = 5000  # records per get: Chroma's SQLite query fails with too many variables beyond ~30k
T = TypeVar("T")
logger = logging.getLogger("memoryos")


def _is_transient(exc: Exception) -> bool:
    """Chroma's internal errors under concurrent read/write and dropped connections pass; a read
    timeout does not (a hung server: retrying would multiply the caller's time bound)."""
    name = type(exc).__name__
    if is_disk_full(exc):  # Chroma's client hangs on a retry after SQLITE_FULL: reopen it instead
        return False
    return name in (
        "TornReadError",
        "InternalError",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "ConnectTimeout",
        "ConnectionError",
    )


class TornReadError(Exception):
    """A Chroma get or query whose columns are shorter than its ids: a read that raced a write (seen
    once, a ``get_memory_stats`` beside the worker's upsert of segments). Retried like Chroma's internal
    errors."""


def whole(read: Callable[..., Any], **kwargs: Any) -> Any:
    """``read(**kwargs)`` (a collection's ``get``, or its ``query``: one list per query vector), raising
    TornReadError when a column it includes is shorter than its ids."""
    result = read(**kwargs)
    nested = "query_embeddings" in kwargs
    answers = result["ids"] if nested else [result["ids"]]
    for column in kwargs.get("include") or ():
        values = result.get(column)
        if values is None:
            continue
        columns = values if nested else [values]
        if len(columns) != len(answers):
            raise TornReadError(f"Chroma answered {len(answers)} queries but {len(columns)} with {column}")
        for ids, found in zip(answers, columns, strict=True):
            if len(found) != len(ids):
                raise TornReadError(f"Chroma returned {len(ids)} ids but {len(found)} {column}")
    return result


def is_missing(exc: BaseException | None) -> bool:
    """A collection that does not exist (never created, or dropped by another process)."""
    return exc is not None and (type(exc).__name__ == "NotFoundError" or "does not exist" in str(exc))


def is_unloaded(exc: BaseException | None) -> bool:
    """Chroma dropped an index it had not persisted (its in-memory pool is full): reopen, retry."""
    text = str(exc)
    return "Nothing found on disk" in text or "Error loading hnsw index" in text


class ExitGate:
    """Counts the threads inside Chroma, so the process can exit with none of them there.

    At interpreter exit Python ends daemon threads where they next take the GIL; one doing so
    inside Chroma's Rust code unwinds through Rust frames and the process dies with SIGSEGV.
    ``close`` (called at exit) waits for the threads inside to leave, then turns new calls away
    with a StorageError.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._inside = 0
        self._closed = False

    @contextmanager
    def inside(self, backend: str) -> Iterator[None]:
        with self._cond:
            if self._closed:
                raise StorageError("the process is exiting: Chroma is closed", backend=backend)
            self._inside += 1
        try:
            yield
        finally:
            with self._cond:
                self._inside -= 1
                self._cond.notify_all()

    def close(self, timeout_s: float) -> bool:
        """Turn new calls away and wait for the ones inside; False if some are still inside."""
        with self._cond:
            self._closed = True
            return self._cond.wait_for(lambda: self._inside == 0, timeout_s)


exit_gate = ExitGate()
"""The process's gate: every ChromaStore call passes it (``ChromaStore._access``)."""


def is_disk_full(exc: BaseException | None) -> bool:
    """SQLite's SQLITE_FULL (code 13) or ENOSPC, as Chroma reports them."""
    text = str(exc)
    return "database or disk is full" in text or "No space left on device" in text


def where_clause(where: Where | None) -> dict[str, Any] | None:
    if not where:
        return None
    clauses = [
        {key: {"$in": list(value)} if isinstance(value, (list, tuple)) else value}
        for key, value in where.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaCalls:
    """How ``ChromaStore`` talks to a collection; ``backend`` names the store in errors."""

    def __init__(self, backend: str) -> None:
        self.backend = backend

    @contextmanager
    def errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:  # chromadb, httpx and sqlite errors all become StorageError
            raise StorageError(
                f"Chroma {operation} failed: {type(exc).__name__}: {exc}", backend=self.backend
            ) from exc

    def run(self, operation: str, call: Callable[[], T]) -> T:
        """``call()`` with Chroma's transient errors retried, as a StorageError when it still fails.

        Every write is an idempotent upsert or delete, so retrying one is safe.
        """
        with self.errors(operation):
            for attempt, delay in enumerate((*_RETRY_DELAYS_S, None)):
                try:
                    return call()
                except Exception as exc:
                    if delay is None or not _is_transient(exc):
                        raise
                    logger.debug("Chroma %s failed (attempt %d), retrying: %s", operation, attempt + 1, exc)
                    time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def write_chunks(self, collection: Any, kind: Kind, records: Sequence[Record]) -> None:
        for start in range(0, len(records), _BATCH):
            chunk = records[start : start + _BATCH]
            self.run(
                f"upsert into {kind}",
                lambda chunk=chunk: collection.upsert(  # type: ignore[misc]
                    ids=[r.id for r in chunk],
                    documents=[r.document for r in chunk],
                    metadatas=[r.metadata for r in chunk],
                    embeddings=[_STATE_VECTOR if kind == "state" else list(r.embedding or ()) for r in chunk],
                ),
            )

    def read(
        self,
        collection: Any,
        kind: Kind,
        ids: Sequence[str] | None,
        where: Where | None,
        include: list[str],
        with_embeddings: bool,
        limit: int | None,
    ) -> list[Record]:
        records: list[Record] = []
        if ids is not None:  # long id lists overflow SQLite's variable limit inside Chroma: chunk them
            for start in range(0, len(ids), _PAGE):
                chunk = list(ids[start : start + _PAGE])
                result = self.run(
                    f"get from {kind}",
                    functools.partial(
                        whole, collection.get, ids=chunk, where=where_clause(where), include=include
                    ),
                )
                records += self.records(result["ids"], result, with_embeddings)
            return records[:limit] if limit is not None else records
        offset = 0
        while limit is None or len(records) < limit:  # large results are read page by page, likewise
            size = _PAGE if limit is None else min(_PAGE, limit - len(records))
            result = self.run(
                f"get from {kind}",
                functools.partial(
                    whole,
                    collection.get,
                    where=where_clause(where),
                    include=include,
                    limit=size,
                    offset=offset,
                ),
            )
            records += self.records(result["ids"], result, with_embeddings)
            if len(result["ids"]) < size:
                break
            offset += size
        return records

    def count(self, collection: Any, kind: Kind, where: Where | None) -> int:
        if not where:
            return int(self.run(f"count {kind}", collection.count))
        total, offset = 0, 0
        while True:
            result = self.run(
                f"count {kind}",
                functools.partial(
                    collection.get, where=where_clause(where), include=[], limit=_PAGE, offset=offset
                ),
            )
            total += len(result["ids"])
            if len(result["ids"]) < _PAGE:
                return total
            offset += _PAGE

    @staticmethod
    def records(ids: list[str], result: dict[str, Any], with_embeddings: bool) -> list[Record]:
        documents = result.get("documents") or [""] * len(ids)
        metadatas = result.get("metadatas") or [{}] * len(ids)
        embeddings = result.get("embeddings") if with_embeddings else None
        return [
            Record(
                id=record_id,
                document=documents[i] or "",
                metadata=dict(metadatas[i] or {}),
                embedding=[float(x) for x in embeddings[i]] if embeddings is not None else None,
            )
            for i, record_id in enumerate(ids)
        ]
