"""Shared fixtures: no network, real Chroma (embedded and a `chroma run` server), fixed clocks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS
from memoryos_core.testing import block_network


class Prestart:
    """Work done in other processes (README blocks, notebook kernels), started as soon as collection ends.

    It runs on the cores pytest's own process leaves free while the in-process tests run; each test then
    checks its result. A module takes part by defining ``prestart(items, submit)``: ``items`` are its
    selected tests, ``submit(key, job)`` queues ``job(folder, environ)``, whose result
    ``prestarted.result(key)`` waits for. Each job gets an empty folder of its own and the environment as
    it was when collection ended: what tests meanwhile patch in this process (``os.environ``,
    ``tempfile.tempdir``, the working directory) never reaches it.
    """

    def __init__(self, workers: int) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prestart")
        self._futures: dict[str, Future[Any]] = {}
        self._environ = dict(os.environ)
        self._root = Path(tempfile.mkdtemp(prefix="memoryos-prestart-"))

    def submit(self, key: str, job: Callable[[Path, dict[str, str]], Any]) -> None:
        folder = self._root / f"job{len(self._futures)}"
        folder.mkdir()
        self._futures[key] = self._pool.submit(job, folder, dict(self._environ))

    def result(self, key: str) -> Any:
        """The job's result (its exception raised again); a job never queued raises KeyError."""
        return self._futures[key].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._root, ignore_errors=True)


_PRESTART = pytest.StashKey[Prestart]()


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    # One worker per core beyond the one pytest's process uses (at least one, at most three).
    prestart = Prestart(workers=max(1, min(3, (os.cpu_count() or 1) - 1)))
    session.config.stash[_PRESTART] = prestart
    by_module: dict[Callable[..., None], list[pytest.Item]] = {}
    for item in session.items:
        start = getattr(getattr(item, "module", None), "prestart", None)
        if start is not None:
            by_module.setdefault(start, []).append(item)
    for start, items in by_module.items():
        start(items, prestart.submit)


def pytest_sessionfinish(session: pytest.Session) -> None:
    prestart = session.config.stash.get(_PRESTART, None)
    if prestart is not None:
        prestart.close()


@pytest.fixture(scope="session")
def prestarted(request: pytest.FixtureRequest) -> Prestart:
    return request.config.stash[_PRESTART]


@pytest.fixture(autouse=True, scope="session")
def _no_network() -> Iterator[None]:
    undo = block_network()
    yield
    undo()


@pytest.fixture(autouse=True)
def _release_unused_folders() -> Iterator[None]:
    """After each test, close the embedded Chroma folders no live store uses any more.

    The process keeps one client per folder (``storage._folder``) for its lifetime; a test session opens
    hundreds of folders, ~10 MB each, which took the pytest process past 3 GB. A folder whose stores are
    all gone (a module fixture's store is still alive, so its folder stays) is closed and forgotten.
    """
    yield
    from memoryos_core.storage import _folder

    with _folder._FOLDERS_LOCK:
        unused = [key for key, folder in _folder._FOLDERS.items() if not len(folder._listeners)]
        released = [_folder._FOLDERS.pop(key) for key in unused]
    for folder in released:
        with contextlib.suppress(Exception):  # best effort: the test itself has passed or failed already
            if folder._client is not None:
                folder._client.close()
            folder._lock_file.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_chroma(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until a Chroma server answers its heartbeat; fail loudly if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"chroma run exited with code {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no Chroma server answered at {url} within {timeout_s}s")


@pytest.fixture(scope="module")
def private_onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built ONNX graphs go to a folder of this test module, not the home folder (``MEMORYOS_CACHE_DIR``)."""
    path = tmp_path_factory.mktemp("onnx-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MEMORYOS_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Fresh process-wide LocalEmbedder runtimes for this test, and a list that grows by one per fp32 graph
    build (an int8 graph is quantised from a fresh fp32 build, so it counts one too)."""
    from memoryos_core.embeddings import local

    monkeypatch.setattr(local, "_RUNTIMES", {})
    builds: list[int] = []
    original = local._build_onnx

    def counting(spec: Any) -> bytes:
        builds.append(1)
        return original(spec)

    monkeypatch.setattr(local, "_build_onnx", counting)
    return builds


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server .ci/run started (MEMORYOS_TEST_CHROMA_URL), or one started here; never skipped."""
    url = os.environ.get("MEMORYOS_TEST_CHROMA_URL")
    if url:
        wait_for_chroma(url, 30)
        yield url
        return
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = _free_port()
    path = tmp_path_factory.mktemp("chroma-server")
    log = open(path / "server.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [exe, "run", "--path", str(path / "db"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_chroma(url, 60, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


# Modules whose tests exercise MemoryOS's own logic (ranking, consolidation, promotion, the adapters) through
# the store, not the store itself: their `server` variant repeats the `embedded` one over HTTP, so it runs
# with the slow tests (`pytest -m slow`, a step of .ci/run) and the everyday command runs `embedded`. The
# store's own behaviour on a server (collections, persistence, leases, scoping, deletion, the reliability
# suite) keeps its `server` variant in the everyday run.
SERVER_VARIANT_SLOW = (
    "tests/adapters/",
    "tests/core/test_async_and_background.py",
    "tests/core/test_consolidation.py",
    "tests/core/test_promotion.py",
    "tests/core/test_response.py",
    "tests/core/test_retrieval.py",
    "tests/core/test_truncated_replies.py",
)
# ...except where the test is about the store after all (another instance reading what one wrote).
SERVER_VARIANT_KEPT = ("tests/core/test_retrieval.py::test_pages_written_by_another_instance_are_found",)
_ROOT = Path(__file__).resolve().parents[1]


@pytest.hookimpl(tryfirst=True)  # before `-m 'not slow'` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if not isinstance(item, pytest.Function) or callspec is None:
            continue
        if callspec.params.get("store_factory") != "server":
            continue
        where = item.path.resolve().relative_to(_ROOT).as_posix()
        kept = f"{where}::{item.originalname}" in SERVER_VARIANT_KEPT
        if where.startswith(SERVER_VARIANT_SLOW) and not kept:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(params=["embedded", "server"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], ChromaStore]:
    """Makes stores on one place: a folder (embedded) or a server with a prefix unique to the test."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    if request.param == "embedded":
        return lambda: ChromaStore(path=str(tmp_path / "chroma"), prefix=prefix)
    url = request.getfixturevalue("chroma_server_url")
    return lambda: ChromaStore(url=url, prefix=prefix)


class Clock:
    """A settable clock for exact heat and recency tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2025, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_memory(store_factory: Callable[[], ChromaStore], clock: Clock) -> Iterator[Callable[..., MemoryOS]]:
    """MemoryOS on the test's store, hashing embedder, inline consolidation unless asked otherwise."""
    made: list[MemoryOS] = []

    def make(**kwargs: Any) -> MemoryOS:
        kwargs.setdefault("embedder", HashingEmbedder(64))
        kwargs.setdefault("background", False)
        kwargs.setdefault("clock", clock)
        kwargs.setdefault("user_id", "alice")
        memory = MemoryOS(store=kwargs.pop("store", None) or store_factory(), **kwargs)
        made.append(memory)
        return memory

    yield make
    for memory in made:
        memory.close()


TOPICS = {
    "hiking": "I went hiking in the mountains with my boots on the alpine trail",
    "cooking": "I cooked pasta with tomato sauce and basil in my kitchen",
    "coding": "I fixed python bugs in my code and wrote unit tests",
}


def topic_pages(topic: str, count: int, start: int = 0) -> list[dict[str, Any]]:
    """``count`` pages about one topic, each with a message id in meta_data."""
    text = TOPICS[topic]
    return [
        {
            "user_input": f"{text} (day {start + i})",
            "agent_response": f"Sounds fun: {text.split()[2]} again.",
            "meta_data": {"message_id": f"{topic}-{start + i}"},
        }
        for i in range(count)
    ]


@pytest.fixture(scope="session")
def local_embedder() -> Any:
    """The real offline all-MiniLM-L6-v2 model (loaded once per test session)."""
    from memoryos_core.embeddings.local import LocalEmbedder

    return LocalEmbedder()
