"""Two processes on one embedded folder see each other's writes, in search too (storage/_folder.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from memoryos_core._exceptions import StorageError
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore

DIM = 16
CHILD = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    from memoryos_core.storage.base import Record
    from memoryos_core.storage.chroma import ChromaStore

    path, dim, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    store = ChromaStore(path=path)
    store.open(dim=dim, embedder_name="test")
    vectors = np.random.default_rng(0).normal(size=(200, dim))
    found = [store.query("pages", vectors[i].tolist(), where={"user_id": "alice"}, n_results=1)[0][0].id
             for i in range(start)]
    store.upsert("pages", [Record(f"p{i}", f"page {i}", {"user_id": "alice"}, vectors[i].tolist())
                           for i in range(start, start + 40)])
    print(json.dumps(found))
    """
)


def _vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(200, DIM))


def test_each_process_finds_what_the_other_wrote(tmp_path: Path) -> None:
    path = str(tmp_path / "chroma")
    store = ChromaStore(path=path)
    store.open(dim=DIM, embedder_name="test")
    vectors = _vectors()

    def query(i: int) -> str:
        return store.query("pages", vectors[i].tolist(), where={"user_id": "alice"}, n_results=1)[0][0].id

    store.upsert(
        "pages", [Record(f"p{i}", f"page {i}", {"user_id": "alice"}, vectors[i].tolist()) for i in range(40)]
    )
    assert [query(i) for i in range(40)] == [f"p{i}" for i in range(40)]  # this process's index is loaded now
    for start in (40, 80):  # another process reads ours, then writes 40 more, twice
        child = subprocess.run(
            [sys.executable, "-c", CHILD, path, str(DIM), str(start)],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert child.returncode == 0, child.stderr[-2000:]
        assert json.loads(child.stdout) == [f"p{i}" for i in range(start)]
        assert [query(i) for i in range(start + 40)] == [f"p{i}" for i in range(start + 40)]
    assert store.count("pages", where={"user_id": "alice"}) == 120


def test_a_client_that_cannot_open_gives_the_lock_back(tmp_path: Path) -> None:
    from memoryos_core.storage._folder import SharedFolder

    attempts: list[int] = []

    def broken() -> object:
        attempts.append(1)
        raise RuntimeError("chroma cannot open")

    folder = SharedFolder(str(tmp_path), broken)
    for write in (True, False, True):
        try:
            with folder.access(write=write):
                raise AssertionError("unreachable")
        except StorageError as exc:  # the error contract: Chroma's failure, translated
            assert isinstance(exc.__cause__, RuntimeError)
    assert len(attempts) == 3  # each access tried again: no lock or state was left behind
    other = SharedFolder(str(tmp_path), lambda: "client")  # another process's view: the file lock is free
    with other.access(write=True) as client:
        assert client == "client"
