"""The command line as a person uses it: version, users, readable recall, exports that say when there is
nothing, reading commands that create nothing, chat prompts free of log lines, tables that fit."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from pathlib import Path
from typing import Any

import click.testing
import pytest
import typer.main

import memoryos_core
from memoryos_core.app.cli import app
from memoryos_core.testing import FakeOpenAIServer
from tests.cli.test_cli_commands import SCRUBBED, assert_one_error_line, invoke, store, write_jsonl

NARROW = {"COLUMNS": "80", "LINES": "40"}


def ingest(tmp_path: Path, pages: list[dict[str, Any]], user: str = "alice") -> None:
    result = invoke("ingest", str(write_jsonl(tmp_path / f"{user}.jsonl", pages)), *store(tmp_path, user))
    assert result.exit_code == 0, result.output


def garden(count: int) -> list[dict[str, Any]]:
    return [
        {
            "user_input": f"Garden note {i}: the tomatoes and basil need water.",
            "agent_response": "Noted.",
            "timestamp": f"2025-03-{i + 1:02d} 19:00:00",
            "meta_data": {"message_id": f"g{i}"},
        }
        for i in range(count)
    ]


def test_version_prints_the_package_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"memoryos {memoryos_core.__version__}"


def test_users_lists_every_user_with_its_page_count(tmp_path: Path) -> None:
    ingest(tmp_path, garden(3), "alice")
    ingest(tmp_path, garden(1), "bob")
    data = ["--data", str(tmp_path / "data"), "--embedding", "hash"]
    result = invoke("users", *data)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["alice  3 pages", "bob  1 page"]
    listed = json.loads(invoke("users", "--json", *data).stdout)
    assert listed == [{"user_id": "alice", "pages": 3}, {"user_id": "bob", "pages": 1}]
    invoke("recall", "tomatoes", *store(tmp_path, "mallory"))  # looking up a user does not create one
    assert json.loads(invoke("users", "--json", *data).stdout) == listed


def test_recall_shows_page_ids_relevance_iso_times_and_respects_top_k(tmp_path: Path) -> None:
    pages = garden(12)
    pages[10]["timestamp"] = "1:56 pm on 8 May, 2023"  # LoCoMo's format, on a short-term page
    ingest(tmp_path, pages)  # 7 short-term pages, 5 older ones
    result = invoke("recall", "tomatoes basil water", "--top-k", "2", *store(tmp_path), env=NARROW)
    assert result.exit_code == 0, result.output
    out = result.stdout
    recent, ranked = out.split("recent conversation")[1].split("older pages and knowledge")
    assert len(re.findall(r"^- relevance", recent, re.M)) == 7  # short-term: its own section, all of it
    assert len(re.findall(r"^\d+\. relevance", ranked, re.M)) == 2  # --top-k 2
    shown = re.findall(r"page (pg_\w+)", out)
    exported = json.loads(invoke("export", *store(tmp_path)).stdout)["pages"]
    assert len(shown) == 9 and set(shown) <= {p["id"] for p in exported}
    assert all(0 <= int(r) <= 100 for r in re.findall(r"relevance (-?\d+)", out))
    assert "2023-05-08T13:56:00Z" in out and "2025-03-12T19:00:00Z" in out
    assert "1:56 pm" not in out and not re.search(r"\d{2}:\d{2}:\d{2}(?!Z)", out)  # ISO 8601 only
    assert "50 = a typical page" in out  # the scale is explained
    deleted = invoke("delete", shown[-1], *store(tmp_path))  # an id shown is an id delete takes
    assert deleted.exit_code == 0 and "deleted 1 page(s)" in deleted.stdout


def test_recall_json_keeps_the_raw_score_beside_the_relevance(tmp_path: Path) -> None:
    ingest(tmp_path, garden(10))
    result = invoke("recall", "tomatoes", "--top-k", "1", "--json", *store(tmp_path))
    assert result.exit_code == 0, result.output
    recalled = json.loads(result.stdout)
    assert len(recalled["short_term_memory"]) == 7 and len(recalled["retrieved_pages"]) == 1
    for entry in recalled["short_term_memory"] + recalled["retrieved_pages"]:
        assert isinstance(entry["score"], float) and 0 <= entry["relevance"] <= 100
        assert re.fullmatch(r"2025-03-\d\dT19:00:00Z", entry["iso_time"])
        assert entry["timestamp"].startswith("2025-03-")  # the reference's field, as stored


def test_profile_and_export_give_iso_times_and_the_export_still_imports(tmp_path: Path) -> None:
    backup = {
        "user_id": "alice",
        "pages": [
            {"id": "pg_1", "user_input": "I am a nurse.", "agent_response": "Nice.", "tier": "short_term"}
        ],
        "profile": [{"name": "occupation", "value": "nurse", "page_ids": ["pg_1"], "updated_s": 1.7e9}],
        "user_knowledge": [{"id": "kn_1", "text": "Works nights.", "page_ids": ["pg_1"], "updated_s": 1.7e9}],
    }
    (tmp_path / "backup.json").write_text(json.dumps(backup))
    assert invoke("import", str(tmp_path / "backup.json"), *store(tmp_path)).exit_code == 0
    shown = invoke("profile", *store(tmp_path)).stdout
    assert "occupation: nurse  (pages pg_1; updated 2023-11-14T22:13:20Z)" in shown
    profile = json.loads(invoke("profile", "--json", *store(tmp_path)).stdout)
    assert profile["traits"][0]["updated_at"] == "2023-11-14T22:13:20Z"
    assert profile["user_knowledge"][0]["updated_at"] == "2023-11-14T22:13:20Z"
    exported = json.loads(invoke("export", *store(tmp_path)).stdout)
    assert exported["user_knowledge"][0]["updated_at"] == "2023-11-14T22:13:20Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", exported["pages"][0]["iso_time"])
    (tmp_path / "again.json").write_text(json.dumps(exported))
    elsewhere = ["--data", str(tmp_path / "copy"), "--embedding", "hash", "--user", "alice"]
    assert invoke("import", str(tmp_path / "again.json"), *elsewhere).exit_code == 0
    copied = json.loads(invoke("export", *elsewhere).stdout)
    assert copied["pages"] == exported["pages"] and copied["profile"] == exported["profile"]


def test_export_of_an_unknown_or_empty_user_says_so_and_writes_nothing(tmp_path: Path) -> None:
    ingest(tmp_path, garden(1))
    target = tmp_path / "out.json"
    assert_one_error_line(invoke("export", str(target), *store(tmp_path, "nobody")), "no user nobody")
    (page,) = json.loads(invoke("export", *store(tmp_path)).stdout)["pages"]
    assert invoke("delete", page["id"], *store(tmp_path)).exit_code == 0  # alice stays, with nothing
    assert_one_error_line(invoke("export", str(target), *store(tmp_path)), "alice has no memory to export")
    assert invoke("delete", "--all", "--yes", *store(tmp_path)).exit_code == 0  # now alice is gone too
    assert_one_error_line(invoke("export", str(target), *store(tmp_path)), "no user alice")
    assert not target.exists()


@pytest.mark.parametrize(
    "command",
    [
        ["recall", "anything"],
        ["profile"],
        ["stats"],
        ["segments"],
        ["export"],
        ["users"],
        ["delete", "--all", "--yes"],
    ],
)
def test_reading_commands_on_a_missing_store_create_nothing(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "missing"
    args = [*command, "--data", str(missing), "--embedding", "hash"]
    assert_one_error_line(invoke(*args), "no memory store in", str(missing))
    assert not missing.exists()
    config = tmp_path / "memoryos.json"  # the folder named by a config file is checked the same way
    config.write_text(json.dumps({"data_storage_path": "elsewhere", "embedding_model_name": "hash"}))
    assert_one_error_line(invoke(*command, "--config", str(config)), "no memory store in")
    assert list(tmp_path.iterdir()) == [config]


class _SlowStdin(io.BytesIO):
    """Standard input whose first read happens while the prompt waits: a background thread logs then."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.logged = False

    def _wait(self, size: int | None) -> None:
        if size != 0 and not self.logged:  # (click probes the stream with read(0))
            self.logged = True
            worker = threading.Thread(
                target=logging.getLogger("memoryos").warning, args=("consolidation for user alice failed",)
            )
            worker.start()
            worker.join()

    def read(self, size: int | None = -1) -> bytes:
        self._wait(size)
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        self._wait(size)
        return super().read1(size)


def test_chat_log_lines_never_land_on_the_prompt_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.root, "handlers", [])  # as in a plain process, not pytest's capture
    ingest(tmp_path, garden(1))
    stdin = _SlowStdin(b"Remember that I love tango.\nexit\n")
    with FakeOpenAIServer() as server:
        env = SCRUBBED | {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        # echo_stdin shows the typed line as a terminal does, so lines come out as a person sees them
        command = typer.main.get_command(app)
        result = click.testing.CliRunner(echo_stdin=True).invoke(
            command, ["chat", *store(tmp_path)], input=stdin, env=env
        )
    assert result.exit_code == 0, result.output
    assert stdin.logged
    lines = result.output.splitlines()
    assert "you> Remember that I love tango." in lines  # the prompt line holds only what was typed
    warning = next(i for i, line in enumerate(lines) if "consolidation for user alice failed" in line)
    assert lines[warning] == "warning: consolidation for user alice failed"
    assert warning > lines.index("you> Remember that I love tango.")
    assert any(line.startswith("assistant> echo:") for line in lines)


def test_tables_fit_an_80_column_terminal(tmp_path: Path) -> None:
    ingest(tmp_path, garden(10))
    data = ["--data", str(tmp_path / "data"), "--embedding", "hash"]
    for command in (["stats", "--user", "alice"], ["users"], ["recall", "tomatoes", "--user", "alice"]):
        result = invoke(*command, *data, env=NARROW)
        assert result.exit_code == 0, result.output
        assert "…" not in result.stdout, result.stdout  # nothing cut short
        assert all(len(line) <= 80 for line in result.stdout.splitlines() if line[:1] in "┏┃┡│└┌├"), (
            result.stdout
        )
    stats = invoke("stats", *store(tmp_path), env=NARROW).stdout
    assert re.search(r"short-term pages\s+│\s+7 │", stats) and re.search(r"mid-term pages\s+│\s+3 │", stats)
