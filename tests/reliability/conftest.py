"""Fixtures of the reliability suite: store locations as specs (for child processes) and a private
`chroma run` server that a test may kill and restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryos_core.bench.reliability_child import StoreSpec
from tests._workers import ChromaServer
from tests.conftest import child_store_spec


@pytest.fixture(params=["embedded", "server"])
def store_spec(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreSpec]:
    """A fresh store location a child process can open too: a folder, or the shared server + a prefix
    (its collections dropped after the test)."""
    yield from child_store_spec(request, tmp_path, "r")


@pytest.fixture
def private_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A started private Chroma server this test owns (stopped at the end)."""
    server = ChromaServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
