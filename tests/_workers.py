"""How the test run uses processes: work started in other processes (``Prestart``), and what the
pytest-xdist workers share (the run's folder, a file lock, one `chroma run` server, built ONNX graphs)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest


def xdist_worker() -> str | None:
    """This process's pytest-xdist worker id (``gw0``...), or None when pytest runs the tests itself."""
    return os.environ.get("PYTEST_XDIST_WORKER")


class Prestart:
    """Work done in other processes (README blocks, notebook kernels), started early and run beside the tests.

    A module takes part by defining ``prestart(items, submit)``: ``items`` are its selected tests,
    ``submit(key, job)`` queues ``job(folder, environ)``, whose result ``prestarted.result(key)`` waits
    for. Each job gets an empty folder of its own and the environment as it was when collection ended: what
    tests meanwhile patch in this process (``os.environ``, ``tempfile.tempdir``, the working directory)
    never reaches it.

    In one pytest process the jobs start as soon as collection ends, on the cores the process leaves free.
    Under pytest-xdist every worker collects every test but runs only the files sent to it, and the workers
    already fill the cores: a module's jobs start (``deferred``) when its first test starts on a worker.
    """

    def __init__(self, workers: int, *, deferred: bool = False) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prestart")
        self._futures: dict[str, Future[Any]] = {}
        self._deferred = deferred
        self._waiting: dict[str, list[tuple[str, Callable[[Path, dict[str, str]], Any]]]] = {}
        self._group_of: dict[str, str] = {}
        self._environ = dict(os.environ)
        self._root = Path(tempfile.mkdtemp(prefix="memoryos-prestart-"))

    def submit(self, key: str, job: Callable[[Path, dict[str, str]], Any], group: str = "") -> None:
        if self._deferred:
            self._waiting.setdefault(group, []).append((key, job))
            self._group_of[key] = group
            return
        self._start(key, job)

    def _start(self, key: str, job: Callable[[Path, dict[str, str]], Any]) -> None:
        folder = self._root / f"job{len(self._futures)}"
        folder.mkdir()
        self._futures[key] = self._pool.submit(job, folder, dict(self._environ))

    def start_group(self, group: str) -> None:
        """Start the deferred jobs of ``group`` (a module's path), once."""
        for key, job in self._waiting.pop(group, []):
            self._start(key, job)

    def result(self, key: str) -> Any:
        """The job's result (its exception raised again); a job never queued raises KeyError."""
        if key not in self._futures and key in self._group_of:
            self.start_group(self._group_of[key])
        return self._futures[key].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        shutil.rmtree(self._root, ignore_errors=True)


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


def run_folder(factory: pytest.TempPathFactory) -> Path:
    """The test run's base folder: under pytest-xdist the controller's, which holds each worker's own."""
    base = factory.getbasetemp()
    return base.parent if xdist_worker() is not None else base


@contextlib.contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Held by one process of the run at a time (pytest-xdist workers wait for each other)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        yield


_GRAPH_BUILDS = {
    "fp32": "local.prepare(precision='fp32')",
    "int8": "local.prepare(precision='int8')",
    "hidden": "onnx_folder.bert_hidden_graph_path(local._package_folder())",
}


def build_graphs(folder: Path, wanted: tuple[str, ...]) -> None:
    """Build the default model's graphs ``wanted`` (names of ``_GRAPH_BUILDS``) into ``folder`` once per
    run, in a child process (the build's memory, about 1 GB, goes back when it exits)."""
    marks = folder.with_name(folder.name + "-lock")  # and one empty file per graph built
    with run_lock(marks):
        missing = [name for name in wanted if not (marks / f"built-{name}").exists()]
        if missing:
            code = "from memoryos_core.embeddings import local, onnx_folder\n"
            code += "\n".join(_GRAPH_BUILDS[name] for name in missing)
            env = os.environ | {"MEMORYOS_CACHE_DIR": str(folder)}
            subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=600)
            for name in missing:
                (marks / f"built-{name}").touch()


def start_chroma(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A `chroma run` on a free port of 127.0.0.1, its data and log in ``folder``; not waited for yet.

    Its HNSW index cache keeps Chroma's default size (65,536 indexes), so the shared server grows with the
    run (dropped collections' indexes stay cached in Chroma 1.5): a bounded cache (`chroma run CONFIG` with
    ``segment_manager.hnsw_index_pool_cache_config.memory.capacity: 64``) held it near 0.3 GB, but an index
    evicted before Chroma persisted it is lost ("Error creating hnsw segment reader: Nothing found on
    disk"), which failed 8 tests of a run."""
    exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
    port = _free_port()
    with open(folder / "server.log", "wb") as log:
        proc = subprocess.Popen(
            [exe, "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return proc, f"http://127.0.0.1:{port}"


# Under pytest-xdist the workers share one server: the first worker that needs it starts it (under a file
# lock, in the run's base folder, which holds every worker's own), the controller stops it at the end.
_SHARED_SERVER_DIR = "chroma-server-shared"
_SHARED_SERVERS: list[subprocess.Popen[bytes]] = []  # started by this worker; kept so none is collected


def shared_chroma(base: Path) -> str:
    folder = base / _SHARED_SERVER_DIR
    url_file = folder / "url"
    with run_lock(folder):
        if not url_file.exists():
            proc, url = start_chroma(folder)
            (folder / "pid").write_text(str(proc.pid))
            _SHARED_SERVERS.append(proc)
            wait_for_chroma(url, 60, proc)
            url_file.write_text(url)
    return url_file.read_text()


def stop_shared_chroma(base: Path) -> None:
    """Stop the server the workers shared, if one started it (the controller, once the workers are done)."""
    pid_file = base / _SHARED_SERVER_DIR / "pid"
    if not pid_file.exists():
        return
    pid = int(pid_file.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return
            if state == "Z":  # exited; its parent (the worker) is gone or reaps it
                return
            time.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
