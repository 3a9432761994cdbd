"""The CLI's input paths as a user meets them: unknown embedder names, idempotent ingest, guarded import."""

from __future__ import annotations

import http.server
import json
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


def invoke(*args: str, input: str | None = None) -> Any:
    """Run a command in-process (the store options come from the arguments)."""
    from typer.testing import CliRunner

    from memoryos_core.cli import app

    return CliRunner().invoke(app, list(args), input=input, env=dict.fromkeys(SCRUBBED))


def in_process_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def pages_of(data: Path, user: str) -> list[dict[str, Any]]:
    result = invoke("export", "--data", str(data), "--embedding", "hash", "--user", user)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["pages"]


def test_import_names_its_user_on_the_command_line(tmp_path: Path) -> None:
    export = {"user_id": "alice", "pages": [{"id": "pg_1", "user_input": "I sail.", "agent_response": "Ok."}]}
    (tmp_path / "alice.json").write_text(json.dumps(export))
    target = ["--data", str(tmp_path / "data"), "--embedding", "hash"]
    in_process_error(invoke("import", str(tmp_path / "alice.json"), *target, "--user", "bob"),
                     "memory of 'alice', not of 'bob'", "--as-user")  # fmt: skip
    assert pages_of(tmp_path / "data", "bob") == [] and pages_of(tmp_path / "data", "alice") == []
    done = invoke("import", str(tmp_path / "alice.json"), *target, "--user", "bob", "--as-user", "bob")
    assert done.exit_code == 0 and "imported 1 pages for bob" in done.stdout
    assert [p["user_input"] for p in pages_of(tmp_path / "data", "bob")] == ["I sail."]
    assert pages_of(tmp_path / "data", "alice") == []


def test_a_malformed_import_is_one_error_line_and_stores_nothing(tmp_path: Path) -> None:
    export = {
        "user_id": "alice",
        "pages": [{"id": "pg_1", "user_input": "I sail.", "agent_response": "Ok.", "segment_id": "seg_1"}],
        "segments": [{"id": "seg_1", "summary": "Sailing.", "n_visit": 10**40, "page_ids": ["pg_1"]}],
    }
    (tmp_path / "bad.json").write_text(json.dumps(export))
    target = ["--data", str(tmp_path / "data"), "--embedding", "hash", "--user", "alice"]
    in_process_error(invoke("import", str(tmp_path / "bad.json"), *target), "segments[0] n_visit")
    assert pages_of(tmp_path / "data", "alice") == []
