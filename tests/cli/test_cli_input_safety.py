"""The CLI's input paths as a user meets them: unknown embedder names, idempotent ingest, guarded import."""

from __future__ import annotations

import http.server
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from memoryos_core._settings import CONFIG_ENV, ENVIRONMENT

SCRUBBED = {*ENVIRONMENT.values(), CONFIG_ENV, "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"}


class _Recorder(http.server.BaseHTTPRequestHandler):
    paths: ClassVar[list[str]]

    def do_GET(self) -> None:
        self.paths.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_hub() -> Iterator[tuple[str, list[str]]]:
    """A Hugging Face endpoint on 127.0.0.1 that records every request (and has no models)."""
    seen: list[str] = []
    handler = type("Recorder", (_Recorder,), {"paths": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


def run(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("memoryos") or str(Path(sys.executable).parent / "memoryos")
    base = {k: v for k, v in os.environ.items() if k not in SCRUBBED} | {"COLUMNS": "200"}
    return subprocess.run(
        [exe, *args], capture_output=True, text=True, timeout=180, env=base | (env or {}), input=stdin
    )


def one_error_line(done: subprocess.CompletedProcess[str], *fragments: str) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_an_unknown_embedding_is_one_config_error_and_no_download(
    tmp_path: Path, fake_hub: tuple[str, list[str]]
) -> None:
    endpoint, requests = fake_hub
    env = {"HF_ENDPOINT": endpoint, "HF_HOME": str(tmp_path / "hf")}
    done = run("recall", "cat", "--data", str(tmp_path / "data"), "--embedding", "no-such-model", env=env)
    one_error_line(done, "unknown embedding 'no-such-model'", "all-MiniLM-L6-v2", "hash")
    assert requests == []  # the hub was never asked
    assert not (tmp_path / "data").exists()
    done = run("stats", "--data", str(tmp_path / "data"), env=env | {"MEMORYOS_EMBEDDING": "hash:x"})
    one_error_line(done, "MEMORYOS_EMBEDDING", "hash:DIM")
