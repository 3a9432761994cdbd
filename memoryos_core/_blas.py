"""The late rerank's numpy products on one BLAS thread.

numpy's OpenBLAS runs a matrix product of more than about 260k multiply-adds on every core, and its worker
threads then spin for a while, waiting for the next product. The late rerank's products can be that size
(a batch of pages projected on the user's basis; a query's wordpieces against a long page's, 384-d before
the user has a basis; until session 15, against 100 pages' at once): on this project's 2-core machine the
spinning took a core from the next recall's query embedding and word scoring (retrieve p50 at 100k pages
13.3 -> 11.3 ms on LoCoMo's messages, 17.3 -> 12.8 ms on the synthetic ones, with the products on one
thread; README, "Where a recall's time goes"). On one thread a product of this size takes about as long.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any


class _OneThread:
    """One thread at a time inside :meth:`held` (re-entrant): threadpoolctl lets one thread at a time
    set OpenBLAS's process-wide limit, and a section that began while another held the limit would
    later put back the 1 it found there, for good."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # the holder's nested sections (changed only under the lock)
        self._controller: Any = None  # threadpoolctl's, made at first use (it scans the loaded libraries)

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._depth:  # a section inside this thread's own: the limit is on
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            if self._controller is None:
                from threadpoolctl import ThreadpoolController

                self._controller = ThreadpoolController()
            # As a context: leaving it also gives up the thread's control of OpenBLAS's limit, which
            # threadpoolctl would otherwise keep for this thread, ignoring the other threads' limits.
            with self._controller.limit(limits=1, user_api="blas"):
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0


_ONE_THREAD = _OneThread()


def one_blas_thread() -> AbstractContextManager[None]:
    """Within it, the BLAS libraries numpy loaded (OpenBLAS, MKL, BLIS) use one thread; the limits found
    before come back at its end. 7 us to enter and leave.

    The limit is the process's: another thread's products run on one thread too meanwhile, and another
    thread waits at this call until the holder's section ends (keep sections to a few products, no I/O
    in them). A thread of the application holding a threadpoolctl limit of its own keeps its limit (this
    one is then not applied).
    """
    return _ONE_THREAD.held()
