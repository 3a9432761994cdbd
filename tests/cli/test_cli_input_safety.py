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

from memoryos_core.app.settings import CONFIG_ENV, ENVIRONMENT

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

    from memoryos_core.app.cli import app

    return CliRunner().invoke(app, list(args), input=input, env=dict.fromkeys(SCRUBBED))


def in_process_error(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def pages_of(data: Path, user: str) -> list[dict[str, Any]]:
    """The user's exported pages; [] where export says there is no store, no such user or no memory."""
    result = invoke("export", "--data", str(data), "--embedding", "hash", "--user", user)
    if result.exit_code == 1 and any(
        text in result.stderr
        for text in ("no memory store in", f"no user {user} in", "has no memory to export")
    ):
        return []
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


def turns(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [
        {
            "user_input": f"Fact number {i}: I like colour {i}.",
            "agent_response": f"Noted {i}.",
            "meta_data": {"message_id": f"m{i}"},
        }
        for i in range(start, start + count)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_a_bad_line_101_stores_nothing(tmp_path: Path) -> None:
    rows = turns(150)
    rows[100]["user_input"] = "a NUL \u0000 here"  # valid JSON, refused by the core's checks
    target = ["--data", str(tmp_path / "data"), "--embedding", "hash", "--user", "alice"]
    result = invoke("ingest", str(write_jsonl(tmp_path / "t.jsonl", rows)), *target)
    in_process_error(result, "item 101", "NUL")
    assert pages_of(tmp_path / "data", "alice") == []


def test_ingesting_the_same_file_twice_stores_every_turn_once(tmp_path: Path) -> None:
    target = ["--data", str(tmp_path / "data"), "--embedding", "hash", "--user", "alice"]
    file = write_jsonl(tmp_path / "t.jsonl", [*turns(20), turns(1)[0]])  # the last line repeats the first
    first = invoke("ingest", str(file), *target)
    assert first.exit_code == 0 and "ingested 21 pages" in first.stdout, first.output
    before = pages_of(tmp_path / "data", "alice")
    assert len(before) == 21 and sum(p["tier"] == "mid_term" for p in before) == 14  # consolidated
    again = invoke("ingest", str(file), *target)
    assert again.exit_code == 0 and "ingested 0 pages" in again.stdout and "21 already stored" in again.stdout
    assert pages_of(tmp_path / "data", "alice") == before  # nothing doubled, nothing moved back
    renamed = write_jsonl(tmp_path / "copy.jsonl", [*turns(20), turns(1)[0], *turns(3, start=20)])
    grown = invoke("ingest", str(renamed), *target)
    assert grown.exit_code == 0 and "ingested 3 pages" in grown.stdout, grown.output
    after = pages_of(tmp_path / "data", "alice")
    assert len(after) == 24 and len({p["id"] for p in after}) == 24
    kept = {p["id"]: p for p in after}
    for page in before:  # the same pages, untouched (newer pages may since have pushed some to mid-term)
        moved = ("tier", "segment_id", "chain_overview")
        assert {k: v for k, v in kept[page["id"]].items() if k not in moved} == {
            k: v for k, v in page.items() if k not in moved
        }
        if page["tier"] == "mid_term":
            assert kept[page["id"]]["segment_id"] == page["segment_id"]
