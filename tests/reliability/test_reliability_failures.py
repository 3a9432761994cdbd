"""Failing cleanly (issue 13 items 10 and 13): a write that fails on a read-only or full disk is a
StorageError and never leaves the folder's exclusive lock held for other processes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from memoryos_core.bench.reliability_child import child_env

_WRITER = """
import sys, time
from memoryos_core import MemoryOS
from memoryos_core.embeddings.fake import HashingEmbedder
memory = MemoryOS(data_storage_path=sys.argv[1], embedder=HashingEmbedder(), background=False)
memory.add_memory("I grow tomatoes.", "Nice.")  # opens the store (files open for writing)
print("ready", flush=True)
sys.stdin.readline()  # the test makes the folder read-only meanwhile
try:
    memory.add_memory("I also grow basil.", "Lovely.")
    print("stored", flush=True)
except Exception as exc:
    print("error", type(exc).__name__, flush=True)
time.sleep(120)  # alive, so a lock it kept would still be held
"""


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make ``folder`` read-only for the processes that already have it open: a read-only bind
    mount when running as root (root ignores file modes), else ``chmod a-w``; undone on exit."""
    if os.geteuid() == 0:
        subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
        try:
            subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
            yield
        finally:
            subprocess.run(["umount", str(folder)], check=True)
        return
    modes = {path: path.stat().st_mode for path in [folder, *folder.rglob("*")]}
    for path, mode in modes.items():
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        yield
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


@pytest.fixture
def data_folder() -> Iterator[Path]:
    # Not under tmp_path: a bind mount over a folder pytest removes must be undone first.
    folder = Path(tempfile.mkdtemp(prefix="memoryos-ro-"))
    try:
        yield folder
    finally:
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def _python(script: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=child_env(),
        text=True,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        **kwargs,  # type: ignore[arg-type]
    )


def test_a_write_failing_on_a_read_only_folder_is_a_storage_error_and_frees_the_lock(
    data_folder: Path,
) -> None:
    writer = _python(_WRITER, str(data_folder), stderr=subprocess.DEVNULL)
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline().strip() == "ready"
        with read_only(data_folder / "chroma"):
            writer.stdin.write("go\n")
            writer.stdin.flush()
            assert writer.stdout.readline().split() == ["error", "StorageError"]
        reader = textwrap.dedent(
            """
            import sys
            from memoryos_core import MemoryOS
            from memoryos_core.embeddings.fake import HashingEmbedder
            memory = MemoryOS(data_storage_path=sys.argv[1], embedder=HashingEmbedder(), background=False)
            print(len(memory.export_memory()["pages"]))
            """
        )
        # another process reads while the failed writer is still alive (it used to block forever)
        done = subprocess.run(
            [sys.executable, "-c", reader, str(data_folder)],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert int(done.stdout) >= 1
    finally:
        writer.kill()
        writer.wait()


_FILLER = """
import json, os, sys
from memoryos_core import MemoryOS
from memoryos_core.embeddings.fake import HashingEmbedder
disk = sys.argv[1]
memory = MemoryOS(data_storage_path=os.path.join(disk, "data"), embedder=HashingEmbedder(), background=False)
memory.add_memory("I grow tomatoes.", "Nice.")
filler = os.path.join(disk, "filler")
with open(filler, "wb", buffering=0) as file:  # fill the disk to the last byte
    try:
        while True:
            file.write(b"x" * 65536)
    except OSError:
        pass
errors = []
calls = [lambda: memory.add_memory("big " * 5000, "ok")] * 3 + [lambda: memory.retrieve_memory("tomatoes")]
for call in calls:
    try:
        call()
        errors.append("ok")
    except Exception as exc:
        errors.append(type(exc).__name__)
os.remove(filler)
memory.add_memory("I also grow basil.", "Lovely.")  # room again: the same instance carries on
print(json.dumps({"errors": errors, "pages": [p.user_input for p in memory.recent_pages()]}))
"""


def test_a_full_disk_is_a_storage_error_and_the_store_carries_on_after(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], check=False)
    if mounted.returncode != 0:
        pytest.skip("needs a small tmpfs (mount as root) to fill a disk")
    try:
        done = subprocess.run(
            [sys.executable, "-c", _FILLER, str(disk)],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=120,  # Chroma's client used to hang for good on its retry after a full disk
        )
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["errors"][:3] == ["StorageError"] * 3
    assert result["errors"][3] in ("ok", "StorageError")
    assert {"I grow tomatoes.", "I also grow basil."} <= set(result["pages"])
