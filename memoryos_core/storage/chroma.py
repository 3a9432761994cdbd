"""ChromaStore: MemoryStore on any Chroma client (persistent by default, HTTP for a server)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from memoryos_core._exceptions import DimensionMismatchError, StorageError
from memoryos_core.storage._calls import (
    ChromaCalls,
    is_disk_full,
    is_missing,
    is_unloaded,
    where_clause,
)
from memoryos_core.storage._erase import erase_deleted
from memoryos_core.storage._folder import SharedFolder, shared_folder
from memoryos_core.storage._integrity import check_sqlite_file, check_vector_segment
from memoryos_core.storage._lifecycle import exit_gate, forget_failed_system, server_timeout_s
from memoryos_core.storage._private import make_private_folder, tighten_new_entries
from memoryos_core.storage.base import Kind, Record, Where

T = TypeVar("T")
logger = logging.getLogger("memoryos")


class ChromaStore:
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

    def __init__(
        self,
        client: Any = None,
        *,
        path: str | None = None,
        url: str | None = None,
        prefix: str = "memoryos_",
        timeout_s: float | None = None,
    ) -> None:
        self._client = client
        self._is_own_server_client = False  # a server client open() made, which close() closes
        self._timeout_s = server_timeout_s(timeout_s)
        # Absolute now: Chroma caches clients by the path string, so a relative one opened again after a
        # chdir would reach the first folder's data.
        self._path = os.path.abspath(path) if path else None
        self._url, self.prefix = url, prefix
        self._state: Any = None
        self._user_collections: dict[tuple[Kind, str], Any] = {}
        self._registered: set[str] = set()
        self._checked: set[Any] = set()  # collections whose index files passed _check_files
        self._lock = threading.Lock()
        self._folder: SharedFolder | None = None
        self._opened = False
        self._dim: int | None = None
        self._embedder_name = ""
        self.scans = 0
        self.backend = "chroma-http" if url else "chroma"
        self._calls = ChromaCalls(self.backend)

    @property
    def local_path(self) -> str | None:
        """The folder of an embedded store; None for a server or an in-memory client."""
        return None if self._url else self._path

    # --- connection -------------------------------------------------------------------------
    def open(self, *, dim: int, embedder_name: str) -> None:
        """Connect, and create or check the store for vectors of ``dim`` from ``embedder_name``."""
        with self._lock:
            if self._opened:
                return
            with self._calls.errors("open"):
                if self._path and self._client is None:
                    make_private_folder(self._path)  # each open: tightens a store left loose
                    # A factory that holds no reference to this store: the process-wide folder outlives it,
                    # and a bound method would keep every store (and its caches) alive with it.
                    make_client = functools.partial(chroma_client, path=self._path)
                    self._folder = shared_folder(self._path, make_client)
                    self._folder.listen(self)
                elif self._client is None:
                    self._client = self._make_client()
                    self._is_own_server_client = self._url is not None
                with self._access(write=True):
                    client: Any = self._client  # set by _access for a folder
                    state = client.get_or_create_collection(
                        f"{self.prefix}state",
                        embedding_function=None,
                        metadata={
                            "hnsw:space": "cosine",
                            "memoryos_dim": dim,
                            "memoryos_embedder": embedder_name,
                        },
                    )
                self._check(state, dim, embedder_name)
                self._keep_private()
                self._check_files(state, "the shared state")
            self._dim, self._embedder_name = dim, embedder_name
            self._state, self._opened = state, True

    def close(self) -> None:
        """Drop this store's handles; ``open`` connects again. Records stay where they are.

        An embedded folder's client is shared by the process's stores and closed once none uses it (at
        the latest at exit); a server client made by ``open`` is closed; a client passed in stays the
        caller's, and an in-memory one stays open (closing it would drop its records).
        """
        with self._lock:
            if not self._opened:
                return
            self._opened, self._state = False, None
            self._user_collections.clear()
            self._registered.clear()
            self._checked.clear()
            if self._folder is not None:
                self._folder.forget(self)
                self._folder, self._client = None, None
            elif self._is_own_server_client:
                client, self._client, self._is_own_server_client = self._client, None, False
                with self._calls.errors("close"):
                    client.close()

    def on_reopen(self) -> None:
        """The shared folder reopened its client (another process wrote): drop stale handles."""
        self._user_collections.clear()
        self._state = None

    @contextmanager
    def _access(self, *, write: bool) -> Iterator[None]:
        """Hold the embedded folder's lock (shared to read, exclusive to write) with a current client;
        pass the process's exit gate (no Chroma call may be running when the interpreter exits)."""
        with exit_gate.inside(self.backend):
            if self._folder is None:
                yield
                return
            with self._folder.access(write=write, backend=self.backend) as client:
                self._client = client
                yield

    @contextmanager
    def exclusive(self) -> Iterator[bool]:
        """Hold an embedded folder's exclusive lock across several calls (a read, then a write);
        yields whether that makes them atomic among processes (False for a server)."""
        if self._folder is None:
            yield False
            return
        with self._access(write=True):
            yield True

    def _guarded(self, call: Callable[[], T], *, write: bool) -> T:
        """``call()`` under ``_access``; once more after a reopen if Chroma lost an unpersisted index."""
        for attempt in (0, 1):
            try:
                with self._access(write=write):
                    return call()
            except StorageError as exc:
                if self._folder is not None and is_disk_full(exc.__cause__ or exc):
                    # Chroma's embedded client hangs on its next write after a full disk: a new one does not
                    self._folder.invalidate()
                if attempt or self._folder is None or not is_unloaded(exc.__cause__ or exc):
                    raise
                logger.info("Chroma lost an index from memory; reopening the client: %s", exc)
                self._folder.invalidate()
        raise AssertionError("unreachable")  # pragma: no cover

    def _check(self, collection: Any, dim: int, embedder_name: str) -> None:
        stored = collection.metadata or {}
        if stored.get("memoryos_dim", dim) != dim:
            raise DimensionMismatchError(
                f"collection {collection.name} holds {stored.get('memoryos_dim')}-d vectors from "
                f"{stored.get('memoryos_embedder')!r}; the embedder {embedder_name!r} makes {dim}-d vectors. "
                "Use the same embedder, another data path, or another collection prefix.",
                backend=self.backend,
            )

    def _check_files(self, collection: Any, what: str) -> None:
        """Check an embedded collection's index files before Chroma first loads them (see _integrity);
        once per collection and process, not after every reopen: a reopen must stay cheap."""
        if self._folder is not None and collection.id not in self._checked:
            check_vector_segment(self._folder.path, str(collection.id), what)
            self._checked.add(collection.id)

    def _make_client(self) -> Any:
        return chroma_client(url=self._url, path=self._path, timeout_s=self._timeout_s)

    def _keep_private(self) -> None:
        """Chroma just created files (a collection's segment folder): make them owner-only."""
        if self._folder is not None:
            tighten_new_entries(self._folder.path)

    def erase_deleted(self) -> None:
        """Erase from an embedded folder's files what Chroma keeps of deleted and overwritten
        records (its log, freed SQLite pages, full-text segments, dropped collections' indexes);
        see ``storage/_erase.py``. Holds the folder's exclusive lock. A no-op for a server (its
        files are its operator's) and for an in-memory client. Works on a store not opened, e.g.
        ``ChromaStore(path=folder).erase_deleted()`` on a stopped ``chroma run``'s folder.

        Raises:
            StorageError: the erasure failed; the records are deleted all the same.
        """
        if self._folder is None and self._path and not self._url and self._client is None:
            with self._lock:
                make_private_folder(self._path)
                self._folder = shared_folder(self._path, self._make_client)
                self._folder.listen(self)
        if self._folder is None:
            return
        folder = self._folder
        with self._calls.errors("erase deleted records"), self._access(write=True):
            erase_deleted(folder.path)

    # --- collections ------------------------------------------------------------------------
    def _ready(self) -> Any:
        if not self._opened:
            raise StorageError("store is not open: call open() first", backend=self.backend)
        return self._client

    def _state_collection(self) -> Any:
        if self._state is None:  # dropped by a reopen
            client = self._ready()
            self._state = self._calls.run(
                "open state", lambda: client.get_collection(f"{self.prefix}state", embedding_function=None)
            )
        return self._state

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
            records = self._calls.read(
                self._state_collection(), kind, ids, where, include, with_embeddings, limit
            )
            return records
        users, rest = self._scope(kind, where)
        records = []
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
                        self._calls.read,
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
                lambda: c.query(
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


def chroma_client(*, url: str | None = None, path: str | None = None, timeout_s: float | None = None) -> Any:
    """A Chroma client: HTTP to ``url``, else embedded in ``path``, else in memory; no telemetry.

    An HTTP client's calls time out after ``timeout_s`` (see ``server_timeout_s``): Chroma's own
    client waits forever (``httpx.Client(timeout=None)``), so a hung server would block every caller.
    """
    import chromadb
    import httpx
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False, allow_reset=False)
    if url:
        from urllib.parse import urlparse

        timeout = server_timeout_s(timeout_s)
        # Chroma's constructor already calls the server, without a timeout: check it answers first.
        httpx.get(f"{url.rstrip('/')}/api/v2/heartbeat", timeout=timeout).raise_for_status()
        parsed = urlparse(url)
        client = chromadb.HttpClient(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (443 if parsed.scheme == "https" else 8000),
            ssl=parsed.scheme == "https",
            settings=settings,
        )
        # Chroma's private HTTP session (not in its types), shared by its admin client.
        client._server._session.timeout = httpx.Timeout(timeout)  # type: ignore[attr-defined]
        return client
    if path:
        check_sqlite_file(path)
        try:
            return chromadb.PersistentClient(path=path, settings=settings)
        except Exception:
            forget_failed_system(path)
            raise
    return chromadb.EphemeralClient(settings=settings)
