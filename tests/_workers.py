"""How the test run uses processes: work started in other processes (``Prestart``), what the pytest-xdist
workers share (the run's folder, a file lock, built ONNX graphs) and each one's own `chroma run` server."""

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


def resident_bytes(pid: int | str = "self") -> int:
    """A process's resident memory in bytes, from /proc (0 when it is gone or not on Linux)."""
    try:
        with open(f"/proc/{pid}/statm") as file:
            return int(file.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


# `chroma run` as `python -c` on chromadb's Rust bindings, which the `chroma` script calls after importing the
# whole chromadb package: the server is the same, its process ~70 MB smaller and ~1 s of CPU quicker to start.
_CHROMA_RUN = "import sys, chromadb_rust_bindings; chromadb_rust_bindings.cli(['chroma', *sys.argv[1:]])"


class ChromaServer:
    """A `chroma run` on a free port of 127.0.0.1 with its data and log in ``path``: it can be SIGKILLed and
    started again on the same data and port (``kill``, ``start``), or renewed empty on the same port."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._data = path / "db"

    def start(self, timeout_s: float = 60.0) -> None:
        command = [sys.executable, "-c", _CHROMA_RUN, "run", "--path", str(self._data)]
        command += ["--host", "127.0.0.1", "--port", str(self.port)]
        with open(self.path / "server.log", "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        (self.path / "pid").write_text(str(self.proc.pid))
        wait_for_chroma(self.url, timeout_s, self.proc)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def rss(self) -> int:
        """The server's resident memory in bytes (0 when it is not running or not on Linux)."""
        return resident_bytes(self.proc.pid) if self.proc else 0

    def renew(self) -> None:
        """Stop it, delete its data and start it empty on the same port (clients reconnect by themselves)."""
        self.stop()
        shutil.rmtree(self._data, ignore_errors=True)
        self.start()


# Each process of the run (a pytest-xdist worker, or pytest alone) has a `chroma run` server of its own,
# started by the first test that needs one. Chroma 1.5 keeps every collection's HNSW index cached for the
# server's life, dropped ones included (~2.7 MB per small collection: a server shared by the run's tests grew
# past 0.75 GB), and a bounded cache (`segment_manager.hnsw_index_pool_cache_config`) loses indexes not yet
# persisted ("Nothing found on disk"). So after a test file, when no test of this process uses it, a server
# past ``RENEW_ABOVE`` is renewed: stopped, its data deleted, started empty on the same port (~0.4 s).
RENEW_ABOVE = 100 * 2**20
_SERVERS: list[ChromaServer] = []


def own_chroma(base: Path) -> str:
    """The URL of this process's server (started now if it is not running)."""
    if not _SERVERS:
        folder = base / f"chroma-server-{xdist_worker() or 'main'}"
        folder.mkdir(parents=True, exist_ok=True)
        server = ChromaServer(folder)
        server.start()
        _SERVERS.append(server)
    return _SERVERS[0].url


def renew_own_chroma_if_large() -> None:
    """Between test files: renew this process's server if it grew past ``RENEW_ABOVE``."""
    if _SERVERS and _SERVERS[0].rss() > RENEW_ABOVE:
        _SERVERS[0].renew()


def stop_own_chroma() -> None:
    while _SERVERS:
        _SERVERS.pop().stop()


def stop_left_servers(base: Path) -> None:
    """Stop the servers of the run's processes that did not stop theirs (a crashed worker); the controller's
    last step."""
    for pid_file in base.glob("chroma-server-*/pid"):
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _runs_in(pid, pid_file.parent):  # not a process that got the pid since
                os.kill(pid, signal.SIGKILL)


def _runs_in(pid: int, folder: Path) -> bool:
    try:
        return str(folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
