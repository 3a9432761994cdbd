"""Deletes that reach pages still in flight in other processes.

With write-behind a page is accepted (journaled) before it is in the store, and several processes
share an embedded store: a delete of a user's memory in one process cannot see the pages another
process accepted and has not written yet, nor those in a dead process's journal that a third one
is replaying. So before it removes anything the delete writes a note: the user (as a digest) and
the time. Every process that writes a journal's pages to the store reads the note after the write
and erases the pages accepted before that time (``DataManager.erase_if_deleted``): a page is either
in the store when the delete removes what it holds, or written after the note and erased by its
writer. A note is removed once no journal that could hold such a page is left (``prune``): journal
files carry their creation time in their name, and a page goes into a journal created before its add
returns.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from memoryos_core.engine.pending import oldest_journal_ns
from memoryos_core.storage.base import MemoryStore, Record

logger = logging.getLogger("memoryos")

KEY = "erased"
"""The ``key`` of the notes in the ``state`` collection (no ``user_id``: a user's delete keeps them)."""


def _note_id(user_id: str) -> str:
    return f"{KEY}:" + hashlib.sha256(user_id.encode()).hexdigest()[:32]


def mark(store: MemoryStore, user_id: str, erased_ns: int) -> None:
    """Note that the user's memory is deleted as of ``erased_ns`` (wall clock, ns; a later delete
    of the same user moves it)."""
    store.upsert("state", [Record(_note_id(user_id), json.dumps({"erased_ns": erased_ns}), {"key": KEY})])


def erased_ns(store: MemoryStore, user_id: str) -> int | None:
    """When the user's memory was last deleted, if a note of it is kept; None otherwise."""
    found = store.get("state", ids=[_note_id(user_id)])
    return _time(found[0]) if found else None


def prune(store: MemoryStore, folder: Path) -> int:
    """Remove the notes that no journal in ``folder`` can still need (every journal there was
    created after them); returns how many. The removal is decided again under the store's
    exclusive lock (taken only then: it makes every process reload), so that a delete does not
    move a note between the look at its time and its removal."""

    def stale() -> list[str]:
        notes = store.get("state", where={"key": KEY})
        before = oldest_journal_ns(folder) if notes else 0
        return [r.id for r in notes if (_time(r) or 0) < before]  # (unreadable: no check can use it)

    if not stale():
        return 0
    with store.exclusive():
        ids = stale()
        if ids:
            store.delete("state", ids=ids)
    return len(ids)


def _time(note: Record) -> int | None:
    try:
        return int(json.loads(note.document)["erased_ns"])
    except (ValueError, TypeError, KeyError) as exc:
        logger.warning("unreadable delete note %s ignored: %s", note.id, exc)
        return None
