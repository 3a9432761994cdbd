"""ChromaStore: MemoryStore on any Chroma client (persistent by default, HTTP for a server).

The client and its lifecycle live in ``storage/_connection.py`` (``ChromaConnection``, the base class,
and ``chroma_client``); here are the collections (one per user and kind) and the MemoryStore calls.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from memoryos_core._exceptions import DimensionMismatchError, StorageError
from memoryos_core.storage._calls import is_missing, where_clause, whole
from memoryos_core.storage._connection import ChromaConnection, chroma_client
from memoryos_core.storage.base import Kind, Record, Where

__all__ = ["ChromaStore", "chroma_client"]

T = TypeVar("T")


class ChromaStore(ChromaConnection):
    """Stores MemoryOS records in Chroma: one collection per user for each of pages, segments
    and knowledge, and one shared ``state`` collection of small records fetched by id.

    A user's records live in that user's own collections, so every search runs on the user's
    data alone (no metadata filter on a shared index, whose cost grows with all users' data),
    one user can never see another's records, and deleting a user drops their collections.
    An operation whose ``where`` names no ``user_id`` reads every user's collections: that is an
    administrative scan (``store.scans`` counts them); the engine itself always names the user.

    Args:
        client: any Chroma client (``EphemeralClient``, ``PersistentClient``, ``HttpClient``);
            built from ``path`` or ``url`` when omitted.
        path: folder of an embedded ``PersistentClient``.
        url: address of a ``chroma run`` server, e.g. ``http://127.0.0.1:8000``.
        prefix: prefix of the collection names.
        timeout_s: how long one call to a Chroma server may take before it is a StorageError
            (default ``MEMORYOS_CHROMA_TIMEOUT_S`` or 30 s); a hung server never blocks a caller.
    """

    # --- collections ------------------------------------------------------------------------
    def collection_name(self, kind: Kind, user_id: str) -> str:
        """The collection of ``user_id``'s records of ``kind`` (a digest: ids may hold any text)."""
        return f"{self.prefix}{kind}-{hashlib.sha256(user_id.encode()).hexdigest()[:40]}"

    def _user_collection(self, kind: Kind, user_id: str, *, create: bool) -> Any | None:
        """The user's collection of ``kind``; None when it does not exist and ``create`` is false."""
        found = self._user_collections.get((kind, user_id))
        if found is not None:
            return found
        client, name = self._ready(), self.collection_name(kind, user_id)
        if create:
            self._register(user_id)
            metadata = {
                "hnsw:space": "cosine",
                "memoryos_dim": self._dim,
                "memoryos_embedder": self._embedder_name,
                "memoryos_user": user_id,
            }
            collection = self._calls.run(
                f"create {kind} of {user_id}",
                lambda: client.get_or_create_collection(name, embedding_function=None, metadata=metadata),
            )
            self._keep_private()
        else:
            folder = self._folder
            if folder is not None and folder.shared_only() and folder.direct.has_collection(name) is False:
                return None  # e.g. a user with no knowledge yet: no lookup through Chroma each recall
            try:
                collection = self._calls.run(
                    f"open {kind} of {user_id}", lambda: client.get_collection(name, embedding_function=None)
                )
            except StorageError as exc:
                if is_missing(exc.__cause__):
                    return None
                raise
        self._check(collection, self._dim or 0, self._embedder_name)
        self._check_files(collection, f"the {kind} of user {user_id!r}")
        self._user_collections[(kind, user_id)] = collection
        return collection

    def _register(self, user_id: str) -> None:
        """Note the user in ``state`` (once per process), so scans can find their collections."""
        if user_id in self._registered:
            return
        record = Record(f"store_user:{user_id}", "", {"key": "store_user", "user_id": user_id})
        self.upsert("state", [record])
        self._registered.add(user_id)

    def users(self) -> list[str]:
        """Every user with collections in this store."""
        return sorted({str(r.metadata["user_id"]) for r in self.get("state", where={"key": "store_user"})})

    def _scope(self, kind: Kind, where: Where | None) -> tuple[list[str], Where | None]:
        """The users an operation touches and the rest of its filter."""
        rest = dict(where or {})
        user = rest.pop("user_id", None)
        if user is None:
            self.scans += 1
            users = self.users()
        else:
            users = [str(u) for u in user] if isinstance(user, (list, tuple)) else [str(user)]
        return users, rest or None

    def _per_user(
        self, kind: Kind, user_id: str, operation: str, call: Callable[[Any], T], *, write: bool = False
    ) -> T | None:
        """``call(collection)`` on the user's collection (None when it does not exist and this is a
        read; the collection is created for a write); a collection dropped by another process since
        it was cached is looked up again. ``call`` goes through ``_run`` itself."""
        for attempt in (0, 1):
            collection = self._user_collection(kind, user_id, create=write)
            if collection is None:
                return None
            try:
                with self._calls.errors(operation):
                    return call(collection)
            except StorageError as exc:
                if attempt or not is_missing(exc.__cause__):
                    raise
                self._user_collections.pop((kind, user_id), None)
                self._registered.discard(user_id)
        return None  # pragma: no cover

    # --- MemoryStore: every call holds the embedded folder's lock -----------------------------
    def upsert(self, kind: Kind, records: Sequence[Record]) -> None:
        if records:
            self._guarded(lambda: self._upsert(kind, records), write=True)

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
        return self._guarded(lambda: self._get(kind, ids, where, with_embeddings, limit), write=False)

    def delete(self, kind: Kind, *, ids: Sequence[str] | None = None, where: Where | None = None) -> None:
        if ids is None and not where:
            raise StorageError("refusing to delete without ids or a filter", backend=self.backend)
        if ids is None or ids:
            self._guarded(lambda: self._delete(kind, ids, where), write=True)

    def query(
        self,
        kind: Kind,
        embedding: Sequence[float],
        *,
        where: Where,
        n_results: int,
        with_embeddings: bool = False,
        ids_only: bool = False,
    ) -> list[tuple[Record, float]]:
        if n_results <= 0:
            return []
        if ids_only:  # fetching documents and metadata makes a query about 5x slower
            include = ["distances"]
        else:
            include = ["documents", "metadatas", "distances"] + (["embeddings"] if with_embeddings else [])
        return self._guarded(
            lambda: self._query(kind, embedding, where, n_results, include, with_embeddings), write=False
        )

    def count(self, kind: Kind, *, where: Where) -> int:
        return self._guarded(lambda: self._count_all(kind, where), write=False)

    # --- the same, inside the lock ------------------------------------------------------------
    def _upsert(self, kind: Kind, records: Sequence[Record]) -> None:
        self._ready()
        if kind == "state":
            self._calls.write_chunks(self._state_collection(), kind, records)
            return
        by_user: dict[str, list[Record]] = {}
        for record in records:
            if record.embedding is None or len(record.embedding) != self._dim:
                got = None if record.embedding is None else len(record.embedding)
                raise DimensionMismatchError(
                    f"{kind} record {record.id} has a {got}-d vector, expected {self._dim}",
                    backend=self.backend,
                )
            user = record.metadata.get("user_id")
            if not isinstance(user, str) or not user:
                raise StorageError(f"{kind} record {record.id} has no user_id", backend=self.backend)
            by_user.setdefault(user, []).append(record)
        for user, group in by_user.items():
            self._per_user(
                kind,
                user,
                f"upsert into {kind}",
                functools.partial(self._calls.write_chunks, kind=kind, records=group),
                write=True,
            )

    def _get(
        self,
        kind: Kind,
        ids: Sequence[str] | None,
        where: Where | None,
        with_embeddings: bool,
        limit: int | None,
    ) -> list[Record]:
        self._ready()
        include = ["documents", "metadatas"] + (["embeddings"] if with_embeddings else [])
        if kind == "state":
            return self._read(self._state_collection(), kind, ids, where, include, with_embeddings, limit)
        users, rest = self._scope(kind, where)
        records: list[Record] = []
        for user in users:
            left = None if limit is None else limit - len(records)
            if left is not None and left <= 0:
                break
            records += (
                self._per_user(
                    kind,
                    user,
                    f"get from {kind}",
                    functools.partial(
                        self._read,
                        kind=kind,
                        ids=ids,
                        where=rest,
                        include=include,
                        with_embeddings=with_embeddings,
                        limit=left,
                    ),
                )
                or []
            )
        return records

    def _read(
        self,
        collection: Any,
        kind: Kind,
        ids: Sequence[str] | None,
        where: Where | None,
        include: list[str],
        with_embeddings: bool,
        limit: int | None,
    ) -> list[Record]:
        """``ChromaCalls.read``; records by id (no filter, no vectors) straight from an embedded
        folder's file when that is safe (``storage/_direct.py``), the first such answer checked."""
        folder = self._folder
        if ids is not None and not where and not with_embeddings and folder and folder.shared_only():
            direct = folder.direct.records(str(collection.id), ids)
            if direct is not None:
                if direct and not folder.direct.verified:
                    chromas = self._calls.read(collection, kind, ids, where, include, False, None)
                    if not folder.direct.check(direct, chromas):
                        direct = chromas
                return direct[:limit] if limit is not None else direct
        return self._calls.read(collection, kind, ids, where, include, with_embeddings, limit)

    def _delete(self, kind: Kind, ids: Sequence[str] | None, where: Where | None) -> None:
        client = self._ready()
        if kind == "state":
            self._calls.run(
                "delete from state",
                lambda: self._state_collection().delete(
                    ids=list(ids) if ids is not None else None, where=where_clause(where)
                ),
            )
            if where and isinstance(where.get("user_id"), str):  # the user's registration may be gone
                self._registered.discard(str(where["user_id"]))
            return
        users, rest = self._scope(kind, where)
        for user in users:
            if ids is None and rest is None:  # the whole user: drop the collection
                name = self.collection_name(kind, user)
                self._user_collections.pop((kind, user), None)
                self._registered.discard(user)
                try:
                    self._calls.run(
                        f"drop {kind} of {user}", functools.partial(client.delete_collection, name)
                    )
                except StorageError as exc:
                    if not is_missing(exc.__cause__):
                        raise
                continue
            self._per_user(  # a read-mode lookup: a missing collection is not created
                kind,
                user,
                f"delete from {kind}",
                lambda c: self._calls.run(
                    f"delete from {kind}",
                    lambda: c.delete(ids=list(ids) if ids is not None else None, where=where_clause(rest)),
                ),
            )

    def _query(
        self,
        kind: Kind,
        embedding: Sequence[float],
        where: Where,
        n_results: int,
        include: list[str],
        with_embeddings: bool,
    ) -> list[tuple[Record, float]]:
        self._ready()
        rest = dict(where or {})
        user = rest.pop("user_id", None)
        if kind == "state" or not isinstance(user, str):
            raise StorageError(f"a {kind} query must name one user_id", backend=self.backend)
        result = self._per_user(
            kind,
            user,
            f"query {kind}",
            lambda c: self._calls.run(
                f"query {kind}",
                functools.partial(
                    whole,
                    c.query,
                    query_embeddings=[list(embedding)],
                    n_results=n_results,
                    where=where_clause(rest),
                    include=include,
                ),
            ),
        )
        if result is None:
            return []
        flat: dict[str, Any] = {
            key: (value[0] if value else None) for key, value in result.items() if key != "included"
        }
        records = self._calls.records(flat["ids"], flat, with_embeddings)
        return [(record, 1.0 - float(distance)) for record, distance in zip(records, flat["distances"] or [])]

    def _count_all(self, kind: Kind, where: Where) -> int:
        self._ready()
        if kind == "state":
            return self._calls.count(self._state_collection(), kind, where)
        users, rest = self._scope(kind, where)
        return sum(
            self._per_user(kind, user, f"count {kind}", lambda c: self._calls.count(c, kind, rest)) or 0
            for user in users
        )
