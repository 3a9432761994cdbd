"""Fixtures of the reliability suite: store locations as specs (for child processes) and a private
`chroma run` server that a test may kill and restart."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from memoryos_core.bench.reliability_child import StoreSpec
from tests._workers import ChromaServer
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


@pytest.fixture
def private_chroma(tmp_path: Path) -> Iterator[ChromaServer]:
    """A started private Chroma server this test owns (stopped at the end)."""
    server = ChromaServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
