"""ChromaStore: MemoryStore on any Chroma client (persistent by default, HTTP for a server)."""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from memoryos_core._exceptions import DimensionMismatchError, StorageError
from memoryos_core.storage.base import KINDS, Kind, Record, Where

_STATE_VECTOR = [1.0]  # state records are fetched by id only; Chroma still wants a vector
_BATCH = 4000  # below Chroma's max batch size
_RETRY_DELAYS_S = (0.05, 0.2, 0.5)
_PAGE = 5000  # records per get: Chroma's SQLite query fails with too many variables beyond ~30k
T = TypeVar("T")
logger = logging.getLogger("memoryos")


def _is_transient(exc: Exception) -> bool:
    """Chroma's internal errors under concurrent read/write and dropped connections pass."""
    name = type(exc).__name__
    return name in (
        "InternalError",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "ConnectTimeout",
        "ReadTimeout",
        "ConnectionError",
    )


def _where(where: Where | None) -> dict[str, Any] | None:
    if not where:
        return None
    clauses = [
        {key: {"$in": list(value)} if isinstance(value, (list, tuple)) else value}
        for key, value in where.items()
    ]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


class ChromaStore:
    """Stores MemoryOS records in four Chroma collections, one per kind.

    Args:
        client: any Chroma client (``EphemeralClient``, ``PersistentClient``, ``HttpClient``);
            built from ``path`` or ``url`` when omitted.
        path: folder of an embedded ``PersistentClient``.
        url: address of a ``chroma run`` server, e.g. ``http://127.0.0.1:8000``.
        prefix: prefix of the collection names.
    """

    def __init__(
        self,
        client: Any = None,
        *,
        path: str | None = None,
        url: str | None = None,
        prefix: str = "memoryos_",
    ) -> None:
        self._client = client
        self._path, self._url, self.prefix = path, url, prefix
        self._collections: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._lock_guard = threading.RLock()
        self._lock_file: Any = None
        self._dim: int | None = None
        self._embedder_name = ""
        self.backend = "chroma-http" if url else "chroma"

    def open(self, *, dim: int, embedder_name: str) -> None:
        """Connect and create or check the collections for vectors of ``dim`` from ``embedder_name``."""
        with self._lock:
            if self._collections:
                return
            with self._errors("open"):
                client = self._client or self._make_client()
                self._client = client
                collections = {}
                for kind in KINDS:
                    metadata = {"hnsw:space": "cosine"}
                    if kind != "state":
                        metadata |= {"memoryos_dim": dim, "memoryos_embedder": embedder_name}
                    collection = client.get_or_create_collection(
                        f"{self.prefix}{kind}", embedding_function=None, metadata=metadata
                    )
                    if kind != "state":
                        self._check(collection, dim, embedder_name)
                    collections[kind] = collection
            self._dim, self._embedder_name = dim, embedder_name
            self._collections = collections

    def _check(self, collection: Any, dim: int, embedder_name: str) -> None:
        stored = collection.metadata or {}
        if stored.get("memoryos_dim", dim) != dim:
            raise DimensionMismatchError(
                f"collection {collection.name} holds {stored.get('memoryos_dim')}-d vectors from "
                f"{stored.get('memoryos_embedder')!r}; the embedder {embedder_name!r} makes {dim}-d vectors. "
                "Use the same embedder, another data path, or another collection prefix.",
                backend=self.backend,
            )

    def _make_client(self) -> Any:
        import chromadb
        from chromadb.config import Settings

        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        if self._url:
            from urllib.parse import urlparse

            parsed = urlparse(self._url)
            return chromadb.HttpClient(
                host=parsed.hostname or "127.0.0.1",
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                settings=settings,
            )
        if self._path:
            return chromadb.PersistentClient(path=self._path, settings=settings)
        return chromadb.EphemeralClient(settings=settings)

    @contextmanager
    def _errors(self, operation: str) -> Iterator[None]:
        try:
            yield
        except StorageError:
            raise
        except Exception as exc:  # chromadb, httpx and sqlite errors all become StorageError
            raise StorageError(
                f"Chroma {operation} failed: {type(exc).__name__}: {exc}", backend=self.backend
            ) from exc

    def _run(self, operation: str, call: Callable[[], T], *, write: bool = False) -> T:
        """``call()`` with Chroma's transient errors retried, as a StorageError when it still fails.

        Every write is an idempotent upsert or delete, so retrying one is safe. Writes to an
        embedded store also hold a file lock: Chroma's embedded HNSW writer is not safe for
        several processes at once, and processes sharing one folder must take turns.
        """
        with self._errors(operation):
            for attempt, delay in enumerate((*_RETRY_DELAYS_S, None)):
                try:
                    if write and self._path:
                        with self._write_lock():
                            return call()
                    return call()
                except Exception as exc:
                    if delay is None or not _is_transient(exc):
                        raise
                    logger.debug("Chroma %s failed (attempt %d), retrying: %s", operation, attempt + 1, exc)
                    time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._lock_guard:
            if self._lock_file is None:
                os.makedirs(str(self._path), exist_ok=True)
                self._lock_file = open(os.path.join(str(self._path), ".memoryos-write.lock"), "a+b")  # noqa: SIM115
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def _collection(self, kind: Kind) -> Any:
        if not self._collections:
            raise StorageError("store is not open: call open() first", backend=self.backend)
        return self._collections[kind]

    def upsert(self, kind: Kind, records: Sequence[Record]) -> None:
        if not records:
            return
        for record in records:
            if kind != "state" and (record.embedding is None or len(record.embedding) != self._dim):
                got = None if record.embedding is None else len(record.embedding)
                raise DimensionMismatchError(
                    f"{kind} record {record.id} has a {got}-d vector, expected {self._dim}",
                    backend=self.backend,
                )
        collection = self._collection(kind)
        for start in range(0, len(records), _BATCH):
            chunk = records[start : start + _BATCH]
            self._run(
                f"upsert into {kind}",
                lambda chunk=chunk: collection.upsert(  # type: ignore[misc]
                    ids=[r.id for r in chunk],
                    documents=[r.document for r in chunk],
                    metadatas=[r.metadata for r in chunk],
                    embeddings=[_STATE_VECTOR if kind == "state" else list(r.embedding or ()) for r in chunk],
                ),
                write=True,
            )

    def get(
        self,
        kind: Kind,
        *,
        ids: Sequence[str] | None = None,
        where: Where | None = None,
        with_embeddings: bool = False,
        limit: int | None = None,
    ) -> list[Record]:
        if ids is not None and not ids:
            return []
        include = ["documents", "metadatas"] + (["embeddings"] if with_embeddings else [])
        collection = self._collection(kind)
        records: list[Record] = []
        if ids is not None:  # long id lists overflow SQLite's variable limit inside Chroma: chunk them
            for start in range(0, len(ids), _PAGE):
                chunk = list(ids[start : start + _PAGE])
                result = self._run(
                    f"get from {kind}",
                    lambda chunk=chunk: collection.get(ids=chunk, where=_where(where), include=include),
                )
                records += self._records(result["ids"], result, with_embeddings)
            return records[:limit] if limit is not None else records
        offset = 0
        while limit is None or len(records) < limit:  # large results are read page by page, likewise
            size = _PAGE if limit is None else min(_PAGE, limit - len(records))
            result = self._run(
                f"get from {kind}",
                lambda offset=offset, size=size: collection.get(
                    where=_where(where), include=include, limit=size, offset=offset
                ),
            )
            records += self._records(result["ids"], result, with_embeddings)
            if len(result["ids"]) < size:
                break
            offset += size
        return records

    def delete(self, kind: Kind, *, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        if ids is None and not where:
            raise StorageError("refusing to delete without ids or a filter", backend=self.backend)
        if ids is not None and not ids:
            return
        collection = self._collection(kind)
        self._run(
            f"delete from {kind}",
            lambda: collection.delete(ids=list(ids) if ids is not None else None, where=_where(where)),
            write=True,
        )

    def query(
        self,
        kind: Kind,
        embedding: Sequence[float],
        *,
        where: Where,
        n_results: int,
        with_embeddings: bool = False,
    ) -> list[tuple[Record, float]]:
        if n_results <= 0:
            return []
        include = ["documents", "metadatas", "distances"] + (["embeddings"] if with_embeddings else [])
        collection = self._collection(kind)
        result = self._run(
            f"query {kind}",
            lambda: collection.query(
                query_embeddings=[list(embedding)], n_results=n_results, where=_where(where), include=include
            ),
        )
        flat = {key: (value[0] if value else None) for key, value in result.items() if key != "included"}
        records = self._records(flat["ids"], flat, with_embeddings)
        return [(record, 1.0 - float(distance)) for record, distance in zip(records, flat["distances"] or [])]

    def count(self, kind: Kind, *, where: Where) -> int:
        collection = self._collection(kind)
        total, offset = 0, 0
        while True:
            result = self._run(
                f"count {kind}",
                lambda offset=offset: collection.get(
                    where=_where(where), include=[], limit=_PAGE, offset=offset
                ),
            )
            total += len(result["ids"])
            if len(result["ids"]) < _PAGE:
                return total
            offset += _PAGE

    @staticmethod
    def _records(ids: list[str], result: dict[str, Any], with_embeddings: bool) -> list[Record]:
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
