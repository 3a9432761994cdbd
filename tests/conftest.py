"""Shared fixtures: no network, real Chroma (embedded and a `chroma run` server), fixed clocks."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests._bytecode import use_bytecode_cache

use_bytecode_cache()  # before the imports below: they are most of what each process of the run compiles

from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS  # noqa: E402
from memoryos_core.testing import block_network  # noqa: E402
from tests._workers import (  # noqa: E402
    Prestart,
    build_graphs,
    own_chroma,
    renew_own_chroma_if_large,
    resident_bytes,
    run_folder,
    stop_left_servers,
    stop_own_chroma,
    wait_for_chroma,
    xdist_worker,
)

if TYPE_CHECKING:
    from memoryos_core.bench.reliability_child import StoreSpec

pytest_plugins = ["tests._schedule"]  # the order files are handed to the workers: longest first
_PRESTART = pytest.StashKey[Prestart]()


# The terminal size variables as pytest's own process has them in os.environ. Its C-level environment can
# differ (a library there sets COLUMNS=80 LINES=24), and that is what pytest-xdist's workers start with: the
# CLI's rich console would then stay 80 columns wide whatever COLUMNS a test passes.
_TERMINAL_VARS = ("COLUMNS", "LINES")


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:  # pytest-xdist's controller, before it starts a worker
    node.workerinput["memoryos_terminal"] = {name: os.environ.get(name) for name in _TERMINAL_VARS}


def pytest_configure(config: pytest.Config) -> None:
    wanted = getattr(config, "workerinput", {}).get("memoryos_terminal")
    for name, value in (wanted or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def pytest_collection_finish(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return
    if xdist_worker() is None:
        # One worker per core beyond the one pytest's process uses (at least one, at most three).
        prestart = Prestart(workers=max(1, min(3, (os.cpu_count() or 1) - 1)))
    else:
        prestart = Prestart(workers=1, deferred=True)
    session.config.stash[_PRESTART] = prestart
    by_module: dict[Callable[..., None], list[pytest.Item]] = {}
    for item in session.items:
        start = getattr(getattr(item, "module", None), "prestart", None)
        if start is not None:
            by_module.setdefault(start, []).append(item)
    for start, items in by_module.items():
        group = str(items[0].path)
        start(items, functools.partial(prestart.submit, group=group))
    # What collection imported (~430k objects: the libraries, the test modules) lives as long as the run:
    # moved out of the collector's reach, a full collection (automatic, or the per-file one below) scans only
    # what the tests made since, ~0.25 s less each, ~20 of them per worker.
    gc.collect()
    gc.freeze()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    prestart = item.config.stash.get(_PRESTART, None)
    if prestart is not None:
        prestart.start_group(str(item.path))


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


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After a test file's last test (its module fixtures torn down too): renew this process's Chroma server
    if it grew (``tests._workers.RENEW_ABOVE``), drop the onnxruntime sessions, collect garbage and give the
    allocator's free memory back to the system (glibc's ``malloc_trim``, ~10 ms).

    Stores and MemoryOS instances in reference cycles (with their Chroma clients) wait for a full
    collection, and freed Chroma, onnxruntime and Python memory otherwise stays in the process's heap
    arenas: a worker's RSS only grew (by a quarter over a few files). A full ``gc.collect()`` scanned
    ~430k objects (0.26 s) before collection's were frozen (``pytest_collection_finish``); it still runs
    only when the RSS grew by ``_GROWTH`` since the last one; otherwise the young generations are collected.
    """
    yield
    if nextitem is not None and nextitem.path == item.path:
        return
    renew_own_chroma_if_large()
    # The default model's session (its fp32 graph and the batch one, ~185 MB with their arenas) stayed for
    # the worker's life once a file had used it; loading it again in a later file costs ~0.1 s of CPU.
    drop_model_sessions(keep_default=False)
    full = resident_bytes() - _LAST_FULL[0] > _GROWTH  # (0 off Linux: young generations only)
    gc.collect(2 if full else 1)
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
    if full:
        _LAST_FULL[0] = resident_bytes()


_GROWTH = 48 * 2**20
_LAST_FULL = [0]  # the RSS after the last full collection


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None


_MALLOC_TRIM = _malloc_trim()


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


@pytest.fixture(autouse=True)
def _release_model_sessions() -> Iterator[None]:
    """After each test, drop the onnxruntime sessions the process keeps (``local._RUNTIMES``,
    ``onnx_folder._SESSIONS``) except the default model's at its default precision and threads, which the
    file's next test likely uses again (after the file's last test that one goes too: see
    ``pytest_runtest_teardown``).

    Each keeps its weights in memory (~90 MB) for the process's lifetime, keyed by model folder: the folders
    tests lay out are never used again, and they took a pytest worker past 1.5 GB.
    """
    yield
    drop_model_sessions(keep_default=True)


def drop_model_sessions(*, keep_default: bool) -> None:
    local = sys.modules.get("memoryos_core.embeddings.local")
    if local is not None:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        kept = (local._package_folder(), threads, local.DEFAULT_PRECISION) if keep_default else None
        with local._RUNTIMES_LOCK:
            for key in [key for key in local._RUNTIMES if key != kept]:
                del local._RUNTIMES[key]
    onnx_folder = sys.modules.get("memoryos_core.embeddings.onnx_folder")
    if onnx_folder is not None:
        with onnx_folder._SESSIONS_LOCK:
            onnx_folder._SESSIONS.clear()


@pytest.fixture(scope="module")
def private_onnx_cache(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Built ONNX graphs go to this test run's cache folder, not the home folder (``MEMORYOS_CACHE_DIR``).

    The default model's graphs a module needs (its ``PREBUILT_GRAPHS``, default ``("int8",)``, the default
    precision's; also ``"fp32"`` and ``"hidden"``: the token-vector graph) are built there once per run,
    by a child process, so the build's memory (about 1 GB) is returned when it exits, and shared by every
    module and worker.
    Tests of the building itself point ``MEMORYOS_CACHE_DIR`` at a folder of their own.
    """
    path = run_folder(tmp_path_factory) / "onnx-cache"
    build_graphs(path, tuple(getattr(request.module, "PREBUILT_GRAPHS", ("int8",))))
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


def pytest_unconfigure(config: pytest.Config) -> None:
    factory = getattr(config, "_tmp_path_factory", None)  # pytest's own, as pytest-xdist uses it
    if config.pluginmanager.has_plugin("dsession") and factory is not None:  # the xdist controller
        stop_left_servers(factory.getbasetemp())


@pytest.fixture(scope="session")
def chroma_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The server .ci/run started (MEMORYOS_TEST_CHROMA_URL), or this process's own (``own_chroma``:
    renewed empty between test files when it grew); never skipped.

    Tests on it must not collide with tests running at the same time in another process: each uses a
    collection prefix or user of its own."""
    url = os.environ.get("MEMORYOS_TEST_CHROMA_URL")
    if url:
        wait_for_chroma(url, 30)
        yield url
        return
    try:
        yield own_chroma(run_folder(tmp_path_factory))
    finally:
        stop_own_chroma()


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


def drop_test_collections(url: str, prefix: str) -> None:
    """After a test, drop its collections (its prefix is its own) from the server: other tests list its
    collections. (Dropping does not free the server's memory: Chroma 1.5 keeps dropped indexes cached;
    ``tests._workers.RENEW_ABOVE`` does.)"""
    from memoryos_core.bench._cleanup import drop_server_collections

    with contextlib.suppress(Exception):  # best effort: the test itself has passed or failed already
        drop_server_collections(url, prefix)


def child_store_spec(request: pytest.FixtureRequest, tmp_path: Path, letter: str) -> Iterator[StoreSpec]:
    """For a fixture with params ``embedded`` / ``server``: a fresh store location (a ``StoreSpec``) a child
    process can open too, a folder or the test server plus a prefix starting with ``letter`` (its
    collections dropped after the test)."""
    from memoryos_core.bench.reliability_child import StoreSpec

    prefix = f"{letter}{uuid.uuid4().hex[:10]}_"
    if request.param == "embedded":
        yield StoreSpec(path=str(tmp_path / "chroma"), prefix=prefix)
        return
    url = request.getfixturevalue("chroma_server_url")
    yield StoreSpec(url=url, prefix=prefix)
    drop_test_collections(url, prefix)


@pytest.fixture(params=["embedded", "server"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], ChromaStore]]:
    """Makes stores on one place: a folder (embedded) or a server with a prefix unique to the test."""
    prefix = f"t{uuid.uuid4().hex[:10]}_"
    made: list[ChromaStore] = []
    url = request.getfixturevalue("chroma_server_url") if request.param == "server" else None

    def make() -> ChromaStore:
        if url is None:
            store = ChromaStore(path=str(tmp_path / "chroma"), prefix=prefix)
        else:
            store = ChromaStore(url=url, prefix=prefix)
        made.append(store)
        return store

    yield make
    # MemoryOS.close() leaves the store it was given open (it is the caller's): a server store's HTTP client
    # stayed registered in chromadb's process-wide SharedSystemClient cache for the worker's life (about
    # 1 MB each, hundreds per run), an embedded one kept its folder from being released.
    for store in made:
        with contextlib.suppress(Exception):  # best effort: the test itself has passed or failed already
            store.close()
    if url is not None:
        drop_test_collections(url, prefix)


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
