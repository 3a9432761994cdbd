"""The MemoryStore protocol: records of four kinds, filtered by metadata, searched by vector."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Kind = Literal["pages", "segments", "knowledge", "state"]
KINDS: tuple[Kind, ...] = ("pages", "segments", "knowledge", "state")

Where = dict[str, Any]
"""Equality filters (``{"user_id": "u1", "tier": "short"}``); a list value means "one of"."""


@dataclass(frozen=True)
class Record:
    """One stored item. ``state`` records carry no embedding."""

    id: str
    document: str
    metadata: dict[str, str | int | float | bool]
    embedding: Sequence[float] | None = field(default=None, repr=False)


@runtime_checkable
class MemoryStore(Protocol):
    """Where MemoryOS keeps everything. Every method is scoped by the caller's ``where``.

    Records of ``pages``, ``segments`` and ``knowledge`` belong to the ``user_id`` in their
    metadata; the engine names that ``user_id`` in every ``where`` it passes (by ids too), so
    a store may keep each user apart. A ``where`` without ``user_id`` is an administrative scan
    of every user; ``query`` always names one user.

    The engine calls ``open`` once before any other call. ``exclusive`` and ``local_path`` are
    capabilities a store without them answers plainly: ``exclusive()`` yields False (a context
    that holds nothing) and ``local_path`` is None.
    """

    def open(self, *, dim: int, embedder_name: str) -> None:
        """Connect, and create or check the store for vectors of ``dim`` made by ``embedder_name`` (the
        embedder's vector space: ``embeddings.base.vector_space``), which a new store records.

        Calling it again on an open store does nothing.

        Raises:
            DimensionMismatchError: the store holds vectors of another length or embedder; with
                ``recorded`` set to the store's ``embedder_name`` when only that differs. The store
                stays closed (``open`` may be called again, e.g. with ``recorded``).
            StorageError: the store cannot be reached or opened.
        """
        ...

    def close(self) -> None:
        """Release what ``open`` acquired (handles, connections); ``open`` may be called again.

        Calling it on a closed store does nothing. Closing never deletes records.
        """
        ...

    def exclusive(self) -> AbstractContextManager[bool]:
        """Hold exclusive access across several calls (a read, then a write), among processes too.

        Yields whether that makes the calls atomic among processes: False for a store that cannot
        hold such a lock (a server), in which case the caller confirms its write afterwards.
        """
        ...

    @property
    def local_path(self) -> str | None:
        """The folder of a store kept on this machine (the engine keeps its page journal beside
        it); None for a server or an in-memory store."""
        ...

    def upsert(self, kind: Kind, records: Sequence[Record]) -> None: ...

    def get(
        self,
        kind: Kind,
        *,
        ids: Sequence[str] | None = None,
        where: Where | None = None,
        with_embeddings: bool = False,
        limit: int | None = None,
    ) -> list[Record]: ...

    def delete(self, kind: Kind, *, ids: Sequence[str] | None = None, where: Where | None = None) -> None: ...

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
        """Nearest records to ``embedding`` with their cosine similarity, best first.

        With ``ids_only`` the records carry only their id (empty document and metadata): much
        cheaper when the caller fetches the few it keeps afterwards.
        """
        ...

    def count(self, kind: Kind, *, where: Where) -> int: ...


@runtime_checkable
class ErasableStore(Protocol):
    """An optional capability of a store: one that keeps deleted text in its files (a log, freed
    pages) declares ``erase_deleted``, which the engine calls after every delete (deleting is
    erasure). A store without it deletes plainly. ``ChromaStore`` has it."""

    def erase_deleted(self) -> None:
        """Erase from the store's files what it keeps of deleted and overwritten records.

        Raises:
            StorageError: the erasure failed; the records are deleted all the same.
        """
        ...
