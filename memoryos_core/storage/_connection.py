"""ChromaStore's connection: the Chroma client, made or passed in, and its lifecycle (open, close,
reopen after another process wrote, the embedded folder's lock, erasure of deleted records).

``ChromaConnection`` is ``ChromaStore``'s base class; ``storage/chroma.py`` adds the collections and the
MemoryStore calls. ``chroma_client`` builds a client for a url, a folder or memory.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from memoryos_core._exceptions import DimensionMismatchError, StorageError
from memoryos_core.storage._calls import ChromaCalls, is_disk_full, is_unloaded
from memoryos_core.storage._erase import erase_deleted
from memoryos_core.storage._folder import SharedFolder, shared_folder
from memoryos_core.storage._integrity import check_sqlite_file, check_vector_segment
from memoryos_core.storage._lifecycle import (
    close_server_client,
    exit_gate,
    forget_failed_system,
    server_timeout_s,
)
from memoryos_core.storage._private import make_private_folder, tighten_new_entries
from memoryos_core.storage._scrub import scrub_freed_heap
from memoryos_core.storage.base import Kind

T = TypeVar("T")
logger = logging.getLogger("memoryos")


class ChromaConnection:
    """The client side of a ``ChromaStore`` (see there for the arguments): connect, close, reopen,
    hold the embedded folder's lock around each call."""

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
        """Connect, and create or check the store for vectors of ``dim`` from ``embedder_name`` (the
        embedder's vector space). A mismatch (``DimensionMismatchError``) leaves the store closed."""
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
                try:
                    self._check(state, dim, embedder_name)
                except DimensionMismatchError:
                    self._release()  # as if open had not been called: it may be called again
                    raise
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
            self._release()

    def _release(self) -> None:
        """Let go of the folder or the server client ``open`` took (under ``_lock``)."""
        if self._folder is not None:
            self._folder.forget(self)
            self._folder, self._client = None, None
        elif self._is_own_server_client:
            client, self._client, self._is_own_server_client = self._client, None, False
            with self._calls.errors("close"):
                close_server_client(client)

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
        """Refuse vectors of another length, or from another embedder (``embedder_name``: its vector
        space, e.g. ``all-MiniLM-L6-v2@int8``) than the collection recorded when it was made (a
        collection without a record takes any)."""
        stored = collection.metadata or {}
        recorded = stored.get("memoryos_embedder")
        is_other_dim = stored.get("memoryos_dim", dim) != dim
        if is_other_dim or recorded not in (None, embedder_name):
            raise DimensionMismatchError(
                f"collection {collection.name} holds {stored.get('memoryos_dim')}-d vectors from "
                f"{recorded!r}; the embedder {embedder_name!r} makes {dim}-d vectors. "
                "Use the same embedder, another data path, or another collection prefix.",
                backend=self.backend,
                recorded=None if is_other_dim else str(recorded),
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

    # --- the client and the shared state collection, for every call ---------------------------
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


def chroma_client(*, url: str | None = None, path: str | None = None, timeout_s: float | None = None) -> Any:
    """A Chroma client: HTTP to ``url``, else embedded in ``path``, else in memory; no telemetry.

    An HTTP client's calls time out after ``timeout_s`` (see ``server_timeout_s``): Chroma's own
    client waits forever (``httpx.Client(timeout=None)``), so a hung server would block every caller.
    """
    import chromadb
    import httpx
    from chromadb.config import Settings

    options: dict[str, Any] = {"anonymized_telemetry": False, "allow_reset": False}
    if url:
        from urllib.parse import urlparse

        timeout = server_timeout_s(timeout_s)
        parsed = urlparse(url)
        is_https = parsed.scheme == "https"
        if not is_https:
            # No TLS, so no certificates to load: httpx would otherwise read certifi's bundle for every
            # client (~25 ms, twice per open). Over HTTPS they are verified as usual.
            options["chroma_server_ssl_verify"] = False
        # Chroma's constructor already calls the server, without a timeout: check it answers first.
        httpx.get(f"{url.rstrip('/')}/api/v2/heartbeat", timeout=timeout, verify=is_https).raise_for_status()
        client = chromadb.HttpClient(
            host=parsed.hostname or "127.0.0.1",
            port=parsed.port or (443 if is_https else 8000),
            ssl=is_https,
            settings=Settings(**options),
        )
        # Chroma's private HTTP session (not in its types), shared by its admin client.
        client._server._session.timeout = httpx.Timeout(timeout)  # type: ignore[attr-defined]
        return client
    settings = Settings(**options)
    if path:
        check_sqlite_file(path)
        scrub_freed_heap()
        try:
            return chromadb.PersistentClient(path=path, settings=settings)
        except Exception:
            forget_failed_system(path)
            raise
    return chromadb.EphemeralClient(settings=settings)
