"""A per-user lease in the store, so processes sharing one store never consolidate one user at once."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from memoryos_core._exceptions import MemoryOSError
from memoryos_core.storage.base import MemoryStore, Record

LEASE_TTL_S = 120.0
"""A lease not renewed for this long is taken over (its holder is presumed dead)."""
_CONFIRM_DELAY_S = 0.02


class LeaseBusyError(MemoryOSError):
    """Another process holds the user's lease; the work stays pending and is retried later."""


class LeaseLostError(LeaseBusyError):
    """The lease was held and another claimant's record has replaced it (two claims raced through a
    server: see ``Leases``): the holder stops before its next write; the work stays pending."""


def _alive(lease: dict[str, object]) -> bool:
    """False only when the holder is known dead: a process of this host that no longer exists."""
    if lease.get("host") != socket.gethostname() or not isinstance(lease.get("pid"), int):
        return True
    try:
        os.kill(int(lease["pid"]), 0)  # type: ignore[call-overload]
    except ProcessLookupError:
        return False
    except OSError:  # exists, but not ours to signal
        return True
    return True


class Leases:
    """Claims ``lease:<user>`` records. On an embedded store the read and the write happen under
    the folder's exclusive lock, so exactly one claimant wins. Through a server (Chroma has no
    compare-and-swap) the claim is confirmed by a re-read after a short delay: of two racing
    claimants only the one whose write landed last sees itself, unless that write took longer than
    the delay to land after its read (a loaded machine): then both saw themselves. So a holder confirms
    again before each batch of writes (``renew``, which raises ``LeaseLostError`` once the record is
    another's), and of two such holders the one whose record was replaced stops before its next batch.
    A record replaced after a confirmation is seen at the next one only: the window is narrowed, not
    closed (that needs a compare-and-swap the server does not offer).
    """

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.owner = uuid.uuid4().hex
        self._held: dict[str, int] = {}
        self._lock = threading.Lock()

    def _read(self, user_id: str) -> dict[str, object] | None:
        found = self.store.get("state", ids=[f"lease:{user_id}"])
        return json.loads(found[0].document) if found else None

    def _write(self, user_id: str) -> None:
        payload = {
            "owner": self.owner,
            "expires": time.time() + LEASE_TTL_S,
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        self.store.upsert(
            "state", [Record(f"lease:{user_id}", json.dumps(payload), {"user_id": user_id, "key": "lease"})]
        )

    def _renew(self, user_id: str) -> None:
        """Confirm the lease is still this holder's (LeaseLostError if another's record replaced it) and
        extend it once a third of its time has passed (a write makes the other processes of an embedded
        folder reload their client: not one per batch)."""
        current = self._read(user_id)
        if not current or current.get("owner") != self.owner:
            raise LeaseLostError(f"user {user_id}: the lease was taken over by another process")
        if float(current.get("expires", 0)) - time.time() < LEASE_TTL_S * 2 / 3:  # type: ignore[arg-type]
            self._write(user_id)

    def _taken(self, user_id: str) -> bool:
        """Whether another holder's lease on the user is in force."""
        current = self._read(user_id)
        expires = float(current.get("expires", 0)) if current else 0.0  # type: ignore[arg-type]
        return bool(
            current and current.get("owner") != self.owner and expires > time.time() and _alive(current)
        )

    def _claim(self, user_id: str) -> bool:
        # A look first, without the exclusive lock: taking it makes every process reload its client.
        if self._taken(user_id):
            return False
        # An embedded store's exclusive lock makes read-then-write atomic among processes.
        with self.store.exclusive() as atomic:
            if self._taken(user_id):
                return False
            self._write(user_id)
        if atomic:
            return True
        time.sleep(_CONFIRM_DELAY_S)
        confirmed = self._read(user_id)
        return bool(confirmed and confirmed.get("owner") == self.owner)

    @contextmanager
    def hold(self, user_id: str, *, wait_s: float = 0.0) -> Iterator[Callable[[], None]]:
        """Hold the user's lease for the block (re-entrant); LeaseBusyError if it stays taken.

        Yields a ``renew()`` to call before each batch of writes: it confirms the lease is still held
        (LeaseLostError if not) and extends it, so a slow LLM does not let it expire.
        """
        with self._lock:
            depth = self._held.get(user_id, 0)
            self._held[user_id] = depth + 1
        try:
            if depth == 0:
                deadline = time.monotonic() + wait_s
                while not self._claim(user_id):
                    if time.monotonic() >= deadline:
                        raise LeaseBusyError(f"user {user_id} is being consolidated by another process")
                    time.sleep(0.2)
            yield lambda: self._renew(user_id)
        finally:
            with self._lock:
                self._held[user_id] -= 1
                release = self._held[user_id] == 0
                if release:
                    del self._held[user_id]
            if release and depth == 0:
                current = self._read(user_id)
                if current and current.get("owner") == self.owner:
                    self.store.delete("state", ids=[f"lease:{user_id}"])
