"""Freed heap memory overwritten, so Chroma's HNSW files cannot carry deleted words out of it.

Chroma's HNSW index (hnswlib, C++) allocates its element and link arrays with ``malloc`` and
persists them whole, capacity included: bytes it never wrote are whatever the heap held before,
and in a process that handled a user's text that can be the text of a page deleted since
(``data_level0.bin`` held a deleted word in about 1 run in 3 of the user-deletion scenario in
``tests/reliability/test_reliability_privacy.py``; 0 in 40 with this on). glibc's ``M_PERTURB``
fills every chunk it frees, and every chunk it hands out, with a fixed byte, so no stale text can
reach a file that way. It costs a ``memset`` per ``malloc``/``free`` of glibc's own chunks
(~5% of a recall's CPU measured at 1k pages); chunks served from glibc's small per-thread cache
(``tcache``) are not filled, which is why small HNSW files (``length.bin``) can still rarely hold a
fragment (README, Guarantees).

Turned on, process-wide and once, when an embedded store opens; ``MEMORYOS_SCRUB_HEAP=0`` leaves
the allocator alone (for a host process that cannot pay the cost). Other C libraries: no effect.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os

logger = logging.getLogger("memoryos")

ENV = "MEMORYOS_SCRUB_HEAP"
M_PERTURB = -6
"""glibc's ``mallopt`` parameter (malloc.h)."""
FILL = 0xA5
HNSW_HEAP_FILES = frozenset({"data_level0.bin", "length.bin", "link_lists.bin"})
"""Chroma's HNSW files written from malloc'd arrays: where stale heap bytes can land."""


@functools.cache
def scrub_freed_heap() -> bool:
    """Make glibc fill freed and newly handed-out heap chunks (see the module), once per process; whether
    it is on. (Two threads racing here both call ``mallopt`` with the same value: harmless.)"""
    if os.environ.get(ENV, "1").strip() == "0":
        logger.info("%s=0: freed heap memory is not overwritten", ENV)
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS, Windows)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_PERTURB, FILL))
