"""Fixtures of the reliability suite: store locations as specs (for child processes) and a private
`chroma run` server that a test may kill and restart."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryos_core.bench.reliability_child import StoreSpec
from tests._workers import wait_for_chroma
from tests.conftest import drop_test_collections


@pytest.fixture(params=["embedded", "server"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    """A fresh store location a child process can open too: a folder, or the shared server + a prefix
    (its collections dropped after the test)."""
    prefix = f"r{uuid.uuid4().hex[:10]}_"
    if request.param == "embedded":
        yield StoreSpec(path=str(tmp_path / "chroma"), prefix=prefix)
        return
    url = request.getfixturevalue("chroma_server_url")
    yield StoreSpec(url=url, prefix=prefix)
    drop_test_collections(url, prefix)


class ChromaServer:
    """A private `chroma run` on 127.0.0.1 that can be SIGKILLed and restarted on the same path and port."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> None:
        exe = shutil.which("chroma") or str(Path(sys.executable).parent / "chroma")
        command = [
            exe,
            "run",
            "--path",
            str(self.path / "db"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        with open(self.path / "server.log", "ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
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


@pytest.fixture
def private_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A started private Chroma server this test owns (stopped at the end)."""
    server = ChromaServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
