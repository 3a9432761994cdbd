"""Reopen runs for ``memoryos bench reliability``: a process that writes, closes, opens the same
folder again and exits must exit with code 0 (it used to die with SIGSEGV about half the time:
a background thread was inside Chroma's Rust code when the interpreter ended it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any


def child_main(path: str, embedder: str) -> None:
    """The pattern of issue 13 item 9: write, flush, recall, close, reopen, recall, exit."""
    from memoryos_core.embeddings.fake import HashingEmbedder
    from memoryos_core.engine.memory import MemoryOS

    def make() -> MemoryOS:
        return MemoryOS(
            data_storage_path=path, user_id="u", embedder=HashingEmbedder() if embedder == "hashing" else None
        )

    memory = make()
    for i in range(13):
        memory.add_memory(f"fact {i} about my cat.", "Thanks!")
    memory.flush()
    memory.retrieve_memory("cat")
    memory.close()
    del memory
    again = make()  # not closed: the process must still exit cleanly
    again.retrieve_memory("cat")


def reopen_exit(embedder: str = "hashing", timeout_s: float = 120.0) -> int:
    """Run the pattern in a fresh process and folder; its exit code (-N for signal N)."""
    folder = tempfile.mkdtemp(prefix="memoryos-reopen-")
    root = str(Path(__file__).resolve().parents[2])
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "memoryos_core.bench.reopen", folder, embedder]
    try:
        done = subprocess.run(command, env=env, capture_output=True, timeout=timeout_s, check=False)
        return done.returncode
    except subprocess.TimeoutExpired:
        return -9
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_reopens(
    runs: int, *, embedder: str = "hashing", progress: Callable[[str], None] = print
) -> dict[str, Any]:
    """``runs`` reopen processes one after another; bad exits are those with a code other than 0."""
    progress(f"{runs} reopen runs ({embedder} embedder)")
    codes: Counter[int] = Counter()
    for run in range(1, runs + 1):
        codes[reopen_exit(embedder)] += 1
        if run % 50 == 0 or run == runs:
            progress(f"  {run} reopen runs, {run - codes[0]} bad exits")
    return {
        "reopen_runs": runs,
        "reopen_bad_exits": runs - codes.get(0, 0),
        "reopen_exit_codes": {str(code): count for code, count in sorted(codes.items())},
    }


if __name__ == "__main__":
    child_main(sys.argv[1], sys.argv[2])
