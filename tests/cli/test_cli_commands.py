"""The `memoryos` commands, run as a user would, on temporary stores (hashing embedder, no LLM)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memoryos_core.app.cli import app
from memoryos_core.app.settings import CONFIG_ENV, ENVIRONMENT
from memoryos_core.testing import FakeOpenAIServer
from tests.conftest import Prestart

SCRUBBED: dict[str, str | None] = {name: None for name in [*ENVIRONMENT.values(), CONFIG_ENV]}
"""The developer's own key or store must never leak into a test."""

TURNS = [
    {
        "user_input": "I adopted a cat called Pixel.",
        "agent_response": "Lovely name!",
        "meta_data": {"message_id": "m1"},
    },
    {
        "user_input": "I work as a nurse in Porto.",
        "agent_response": "Demanding work!",
        "timestamp": "2025-03-01",
    },
    {"user_input": "My sister Ana visits in May.", "agent_response": "Have fun together."},
]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def invoke(*args: str, input: str | None = None, env: dict[str, str | None] | None = None) -> Any:
    """Run a command in-process; the store options come from the arguments."""
    return CliRunner().invoke(app, list(args), input=input, env=SCRUBBED | (env or {}))


def store(tmp_path: Path, user: str = "alice") -> list[str]:
    return ["--data", str(tmp_path / "data"), "--embedding", "hash", "--user", user]


def stats(tmp_path: Path, user: str = "alice") -> dict[str, Any]:
    result = invoke("stats", "--json", *store(tmp_path, user))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_error_line(result: Any, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


def _ingest_then_recall(folder: Path, environ: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """``memoryos ingest``, a recall and a recall for a bad user id, as console scripts on one store."""
    exe = shutil.which("memoryos") or str(Path(sys.executable).parent / "memoryos")
    env = {k: v for k, v in environ.items() if k not in SCRUBBED} | {"COLUMNS": "100"}
    turns = write_jsonl(folder / "turns.jsonl", TURNS)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, env=env)

    return [
        run("ingest", str(turns), *store(folder)),
        run("recall", "What is the name of my cat?", *store(folder)),
        run("recall", "cat", *store(folder, user="../eve")),
    ]


def prestart(items: list[pytest.Item], submit: Callable[[str, Callable[..., Any]], None]) -> None:
    """The console-script runs start when collection ends (tests/conftest.py's ``Prestart``) and run
    beside the other tests: fresh processes on a store of their own, one after another, as before."""
    if any(
        getattr(item, "originalname", "") == "test_ingest_then_recall_as_console_scripts" for item in items
    ):
        submit("cli:ingest-recall", _ingest_then_recall)


def test_ingest_then_recall_as_console_scripts(prestarted: Prestart) -> None:
    done, recalled, bad = prestarted.result("cli:ingest-recall")
    assert done.returncode == 0, done.stderr
    assert "ingested 3 pages" in done.stdout and "3 for alice" in done.stdout
    assert recalled.returncode == 0, recalled.stderr
    assert "User: I adopted a cat called Pixel." in recalled.stdout
    assert "from m1" in recalled.stdout  # provenance: the message id the page came from
    assert bad.returncode == 1 and bad.stderr.startswith("error: invalid user_id")
    assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_recall_json_has_the_reference_shape(tmp_path: Path) -> None:
    assert invoke("ingest", str(write_jsonl(tmp_path / "t.jsonl", TURNS)), *store(tmp_path)).exit_code == 0
    result = invoke("recall", "nurse in Porto", "--json", *store(tmp_path))
    assert result.exit_code == 0, result.output
    recalled = json.loads(result.stdout)
    assert recalled["user_id"] == "alice" and recalled["status"] == "success"
    assert "I work as a nurse in Porto." in [page["user_input"] for page in recalled["short_term_memory"]]


def test_ingest_messages_pairs_user_and_assistant(tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "I play the cello.", "message_id": "u1"},
        {"role": "assistant", "content": "Since when?", "message_id": "a1"},
        {"role": "user", "content": "Since I was ten."},
    ]
    result = invoke("ingest", str(write_jsonl(tmp_path / "chat.jsonl", messages)), *store(tmp_path))
    assert result.exit_code == 0, result.output
    pages = json.loads(invoke("export", *store(tmp_path)).stdout)["pages"]
    assert [(p["user_input"], p["agent_response"]) for p in pages] == [
        ("I play the cello.", "Since when?"),
        ("Since I was ten.", ""),
    ]
    assert pages[0]["source_ids"] == ["u1", "a1"]


def locomo_sample(sample_id: str, word: str) -> dict[str, Any]:
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": "Caroline",
            "speaker_b": "Melanie",
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [
                {"speaker": "Caroline", "dia_id": "D1:1", "text": f"I went to a {word} group yesterday."},
                {"speaker": "Melanie", "dia_id": "D1:2", "text": "How did it go?"},
                {"speaker": "Caroline", "dia_id": "D1:3", "text": "", "blip_caption": "a rainbow flag"},
            ],
        },
        "qa": [{"question": "When?", "answer": "7 May 2023", "category": 2}],
    }


def test_ingest_locomo_stores_each_sample_for_its_own_user(tmp_path: Path) -> None:
    data = tmp_path / "locomo10.json"
    data.write_text(json.dumps([locomo_sample("conv-1", "support"), locomo_sample("conv-2", "pottery")]))
    result = invoke("ingest", str(data), "--data", str(tmp_path / "data"), "--embedding", "hash")
    assert result.exit_code == 0, result.output
    assert "2 for conv-1, 2 for conv-2" in result.stdout
    exported = json.loads(invoke("export", *store(tmp_path, "conv-2")).stdout)
    first, second = exported["pages"]
    assert first["user_input"] == "Caroline: I went to a pottery group yesterday."
    assert first["agent_response"] == "Melanie: How did it go?"
    assert first["timestamp"] == "1:56 pm on 8 May, 2023"
    assert first["meta_data"] == {"dia_ids": ["D1:1", "D1:2"]}
    assert second["user_input"] == "Caroline: (shares a photo: a rainbow flag)"
    assert second["agent_response"] == ""
    # --user puts every sample into one user.
    assert invoke("ingest", str(data), *store(tmp_path, "merged")).exit_code == 0
    assert stats(tmp_path, "merged")["short_term_pages"] == 4


def test_a_bad_line_stores_nothing(tmp_path: Path) -> None:
    turns = tmp_path / "turns.jsonl"
    turns.write_text(json.dumps(TURNS[0]) + "\n{not json\n", encoding="utf-8")
    assert_one_error_line(invoke("ingest", str(turns), *store(tmp_path)), "line 2", "not valid JSON")
    write_jsonl(turns, [TURNS[0], {"user_input": "hi", "agent_reponse": "typo"}])
    assert_one_error_line(invoke("ingest", str(turns), *store(tmp_path)), "item 2", "agent_reponse")
    write_jsonl(turns, [TURNS[0], {"user_input": " ", "agent_response": ""}])
    assert_one_error_line(invoke("ingest", str(turns), *store(tmp_path)), "item 2", "non-empty")
    if (tmp_path / "data").exists():  # no store at all is nothing stored too (stats would refuse it)
        assert stats(tmp_path)["short_term_pages"] == 0


def test_export_import_round_trip_through_files_and_pipes(tmp_path: Path) -> None:
    assert invoke("ingest", str(write_jsonl(tmp_path / "t.jsonl", TURNS)), *store(tmp_path)).exit_code == 0
    target = tmp_path / "alice.json"
    assert invoke("export", str(target), *store(tmp_path)).exit_code == 0
    original = json.loads(target.read_text())
    other = tmp_path / "elsewhere"
    into_other = ["--data", str(other), "--embedding", "hash"]
    # The file does not choose whose memory it writes (issue 13 item 15): alice's export needs --user alice.
    assert_one_error_line(invoke("import", str(target), *into_other), "'alice'", "--user alice", "--as-user")
    result = invoke("import", str(target), *into_other, "--user", "alice")
    assert result.exit_code == 0 and "imported 3 pages for alice" in result.stdout
    again = invoke("import", "-", *into_other, "--user", "alice", input=target.read_text())  # same ids
    assert again.exit_code == 0, again.output
    copied = json.loads(invoke("export", *into_other, "--user", "alice").stdout)
    assert [(p["id"], p["user_input"], p["source_ids"]) for p in copied["pages"]] == [
        (p["id"], p["user_input"], p["source_ids"]) for p in original["pages"]
    ]
    bad = tmp_path / "bad.json"
    bad.write_text('{"pages": [{"user_input": "x", "tier": "nowhere"}]}')
    assert_one_error_line(invoke("import", str(bad), *into_other, "--user", "bob"), "unknown tier")
    bob = invoke("stats", "--json", *into_other, "--user", "bob")
    assert json.loads(bob.stdout)["short_term_pages"] == 0


def test_delete_one_page_then_everything(tmp_path: Path) -> None:
    assert invoke("ingest", str(write_jsonl(tmp_path / "t.jsonl", TURNS)), *store(tmp_path)).exit_code == 0
    pages = json.loads(invoke("export", *store(tmp_path)).stdout)["pages"]
    cat = next(p["id"] for p in pages if "Pixel" in p["user_input"])
    result = invoke("delete", cat, *store(tmp_path))
    assert result.exit_code == 0 and "deleted 1 page(s) of alice" in result.stdout
    assert "Pixel" not in invoke("recall", "cat Pixel", *store(tmp_path)).stdout
    assert_one_error_line(invoke("delete", cat, *store(tmp_path)), "no page")
    assert_one_error_line(invoke("delete", "--all", *store(tmp_path)), "--yes")
    assert stats(tmp_path)["short_term_pages"] == 2
    assert invoke("delete", "--all", "--yes", *store(tmp_path)).exit_code == 0
    assert stats(tmp_path)["short_term_pages"] == 0


def test_profile_shows_traits_and_knowledge_with_provenance(tmp_path: Path) -> None:
    backup = {
        "user_id": "alice",
        "pages": [
            {"id": "pg_1", "user_input": "I am a nurse.", "agent_response": "Nice.", "tier": "short_term"}
        ],
        "profile": [{"name": "occupation", "value": "nurse", "page_ids": ["pg_1"]}],
        "user_knowledge": [{"id": "kn_1", "text": "Alice works nights at a hospital.", "page_ids": ["pg_1"]}],
    }
    (tmp_path / "backup.json").write_text(json.dumps(backup))
    assert invoke("import", str(tmp_path / "backup.json"), *store(tmp_path)).exit_code == 0
    result = invoke("profile", *store(tmp_path))
    assert result.exit_code == 0, result.output
    assert "occupation: nurse  (pages pg_1)" in result.stdout
    assert "Alice works nights at a hospital.  (pages pg_1)" in result.stdout
    assert json.loads(invoke("profile", "--json", *store(tmp_path)).stdout)["traits"][0]["value"] == "nurse"
    empty = invoke("profile", *store(tmp_path, "nobody"))
    assert empty.exit_code == 0 and "nothing yet" in empty.stdout


def test_a_config_file_and_the_environment_configure_every_command(tmp_path: Path) -> None:
    config = tmp_path / "memoryos.json"
    settings = {"user_id": "carol", "data_storage_path": "store", "embedding_model_name": "hash"}
    config.write_text(json.dumps(settings | {"short_term_capacity": 2}))
    turns = str(write_jsonl(tmp_path / "t.jsonl", TURNS))
    assert invoke("ingest", turns, "--config", str(config)).exit_code == 0
    assert (tmp_path / "store").is_dir()  # a relative path is taken from the config file's folder
    env = {
        "MEMORYOS_DATA": str(tmp_path / "store"),
        "MEMORYOS_EMBEDDING": "hash",
        "MEMORYOS_USER_ID": "carol",
    }
    result = invoke("stats", "--json", env=env)
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert (counts["short_term_pages"], counts["mid_term_pages"]) == (2, 1)  # capacity 2 from the file
    config.write_text(json.dumps({"user_id": "carol", "short_term_capasity": 3}))
    assert_one_error_line(invoke("stats", "--config", str(config)), "unknown key(s) 'short_term_capasity'")


def test_chat_answers_with_the_configured_llm_and_remembers(tmp_path: Path) -> None:
    assert_one_error_line(invoke("chat", *store(tmp_path)), "chat needs an LLM", "OPENAI_API_KEY")
    with FakeOpenAIServer() as server:
        env = {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": server.base_url}
        result = invoke("chat", *store(tmp_path), input="Remember that I love tango.\nexit\n", env=env)
    assert result.exit_code == 0, result.output
    assert "assistant> echo:" in result.stdout
    recalled = invoke("recall", "tango", *store(tmp_path)).stdout
    assert "User: Remember that I love tango." in recalled


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["recall", "x", "--user", "a b"], "invalid user_id"),
        (["ingest", "missing.jsonl"], "No such file"),
        (["delete"], "give a page id"),
        (["stats", "--config", "nowhere.json"], "does not exist"),
        (["stats", "--chroma-url", "ftp://example"], "http://"),
        (["mcp", "--transport", "carrier-pigeon"], "stdio or http"),
        (["mcp", "--chroma-url", "ftp://example"], "http://"),
    ],
)
def test_bad_input_is_one_error_line_and_exit_1(tmp_path: Path, args: list[str], fragment: str) -> None:
    data = ["--data", str(tmp_path / f"d{uuid.uuid4().hex[:6]}"), "--embedding", "hash"]
    assert_one_error_line(invoke(*args, *data), fragment)


def test_the_commands_work_against_a_chroma_server(tmp_path: Path, chroma_server_url: str) -> None:
    user = f"u{uuid.uuid4().hex[:10]}"
    server = ["--chroma-url", chroma_server_url, "--embedding", "hash", "--user", user]
    assert invoke("ingest", str(write_jsonl(tmp_path / "t.jsonl", TURNS)), *server).exit_code == 0
    assert "My sister Ana visits in May." in invoke("recall", "sister visit", *server).stdout
    assert invoke("delete", "--all", "--yes", *server).exit_code == 0
    assert json.loads(invoke("stats", "--json", *server).stdout)["short_term_pages"] == 0


def test_python_dash_m_runs_the_same_cli() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "memoryos_core.app.cli", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "locomo" in done.stdout and "scale" in done.stdout
