"""The background worker: consolidates users marked dirty, retrying failures with backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from memoryos_core._exceptions import MemoryOSError

logger = logging.getLogger("memoryos")


class Worker:
    """One daemon thread that calls ``run_user(user_id)`` for every user marked dirty.

    ``run_user`` returns True when the user still has a partial batch waiting; the worker
    then looks again after ``recheck_s``. A failure (LLM down, store unreachable) leaves the
    work pending on disk and is retried with exponential backoff up to ``max_backoff_s``.
    """

    def __init__(
        self, run_user: Callable[[str], bool], *, recheck_s: float, max_backoff_s: float = 60.0
    ) -> None:
        self._run_user = run_user
        self._recheck_s, self._max_backoff_s = recheck_s, max_backoff_s
        self._due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._busy = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None

    def notify(self, user_id: str, delay_s: float = 0.0) -> None:
        with self._cond:
            when = time.monotonic() + delay_s
            due = self._due.get(user_id)
            if due is not None and due <= when and self._thread is not None:
                return  # due by then already: waking the thread would only cost the caller the GIL
            self._due[user_id] = when if due is None else min(due, when)
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._loop, name="memoryos-worker", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no user is due now and nothing runs; False on timeout."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while self._busy or any(when <= time.monotonic() for when in self._due.values()):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(timeout=0.05 if remaining is None else min(0.05, remaining))
        return True

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)

    def _next(self) -> str | None:
        """The next due user, waiting for one; None once stopped."""
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                due = [u for u, when in self._due.items() if when <= now]
                if due:
                    user = min(due, key=self._due.__getitem__)
                    del self._due[user]
                    self._busy += 1
                    return user
                wait = min(self._due.values(), default=now + 1.0) - now
                self._cond.wait(timeout=max(0.01, min(wait, 1.0)))
            return None

    def _loop(self) -> None:
        while (user := self._next()) is not None:
            try:
                again = self._run_user(user)
                self._failures.pop(user, None)
                if again:
                    self.notify(user, self._recheck_s)
            except MemoryOSError as exc:
                failures = self._failures[user] = self._failures.get(user, 0) + 1
                delay = min(self._max_backoff_s, 0.5 * 2 ** (failures - 1))
                logger.warning(
                    "consolidation for user %s failed (%s); pending work kept, retry in %.1fs",
                    user,
                    exc,
                    delay,
                )
                self.notify(user, delay)
            except Exception:  # a bug: keep the work pending and say so loudly
                logger.exception("unexpected error consolidating user %s; pending work kept", user)
                self.notify(user, self._max_backoff_s)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
