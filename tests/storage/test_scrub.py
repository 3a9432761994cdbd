"""Opening an embedded store makes glibc overwrite freed and handed-out heap chunks (storage/_scrub.py),
so bytes Chroma's HNSW index never wrote cannot carry a deleted page's words into its files."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CHILD = textwrap.dedent(
    """
    import ctypes, sys
    from memoryos_core import ChromaStore
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    def fresh_chunk_is_filled():
        p = libc.malloc(4096)  # past glibc's per-thread cache: served by malloc proper
        filled = ctypes.string_at(p, 4096) == bytes([0xA5 ^ 0xFF]) * 4096
        libc.free(ctypes.c_void_p(p))
        return filled
    before = fresh_chunk_is_filled()
    store = ChromaStore(path=sys.argv[1])
    store.open(dim=8, embedder_name="hash")
    print(before, fresh_chunk_is_filled())
    store.close()
    """
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


def run_child(folder: Path, scrub: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MEMORYOS_SCRUB_HEAP"}
    if scrub is not None:
        env["MEMORYOS_SCRUB_HEAP"] = scrub
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(folder / "data")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_an_embedded_store_turns_on_heap_scrubbing(tmp_path: Path) -> None:
    assert run_child(tmp_path, None) == "False True"


def test_scrubbing_can_be_turned_off_for_the_host_process(tmp_path: Path) -> None:
    assert run_child(tmp_path, "0") == "False False"
