"""Conversation files to pages (LoCoMo, turns, messages) and the settings shared by the CLI and MCP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ConfigError, InvalidInputError
from memoryos_core.app.ingest import load_pages, locomo_pages, messages_to_pages
from memoryos_core.app.settings import load_settings


def turn(speaker: str, dia_id: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"speaker": speaker, "dia_id": dia_id, "text": text, **extra}


def sample(**sessions: Any) -> dict[str, Any]:
    return {"sample_id": "conv-9", "conversation": {"speaker_a": "Ann", "speaker_b": "Bob", **sessions}}


def test_locomo_pairs_a_with_the_next_b_and_keeps_unpaired_turns() -> None:
    pages = locomo_pages(
        sample(
            session_1_date_time="1:00 pm on 1 May, 2023",
            session_1=[
                turn("Bob", "D1:1", "Hi Ann!"),  # B first: a page with an empty user side
                turn("Ann", "D1:2", "Hi!"),
                turn("Bob", "D1:3", "How are you?"),
                turn("Ann", "D1:4", "Tired."),  # A twice in a row: the first has no partner
                turn("Ann", "D1:5", "Look.", blip_caption="a sleepy cat"),
            ],
        )
    )
    assert [(p["user_input"], p["agent_response"], p["meta_data"]["dia_ids"]) for p in pages] == [
        ("", "Bob: Hi Ann!", ["D1:1"]),
        ("Ann: Hi!", "Bob: How are you?", ["D1:2", "D1:3"]),
        ("Ann: Tired.", "", ["D1:4"]),
        ("Ann: Look. (shares a photo: a sleepy cat)", "", ["D1:5"]),
    ]
    assert {p["timestamp"] for p in pages} == {"1:00 pm on 1 May, 2023"}


def test_locomo_sessions_go_in_numeric_order_and_names_are_optional() -> None:
    sessions = {f"session_{i}": [turn("Ann", f"D{i}:1", f"turn {i}")] for i in (10, 2, 1)}
    sessions |= {f"session_{i}_date_time": f"day {i}" for i in (1, 2, 10)}
    pages = locomo_pages(sample(**sessions), speaker_names=False)
    assert [(p["user_input"], p["timestamp"]) for p in pages] == [
        ("turn 1", "day 1"),
        ("turn 2", "day 2"),
        ("turn 10", "day 10"),
    ]


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"sample_id": "x"}, "'conversation' must be an object"),
        (sample(), "no session_N"),
        (sample(session_1=[{"text": "no speaker"}]), "session_1 turn 1"),
    ],
)
def test_locomo_rejects_other_shapes(bad: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidInputError, match=fragment):
        locomo_pages(bad)


def test_messages_pair_into_pages_with_their_ids() -> None:
    pages = messages_to_pages(
        [
            {"role": "assistant", "content": "Welcome!"},
            {"role": "user", "content": "Hi", "timestamp": "2025-01-01", "id": "m1"},
            {"role": "assistant", "content": "Hello", "id": "m2"},
        ]
    )
    assert pages == [
        {"user_input": "", "agent_response": "Welcome!"},
        {
            "user_input": "Hi",
            "agent_response": "Hello",
            "timestamp": "2025-01-01",
            "meta_data": {"message_ids": ["m1", "m2"]},
        },
    ]
    with pytest.raises(InvalidInputError, match="unknown role 'robot'"):
        messages_to_pages([{"role": "robot", "content": "beep"}])


def test_load_pages_reads_every_format(tmp_path: Path) -> None:
    one = sample(session_1=[turn("Ann", "D1:1", "Hi"), turn("Bob", "D1:2", "Yo")])
    (tmp_path / "one.json").write_text(json.dumps(one))
    [batch] = load_pages(tmp_path / "one.json")
    assert (batch.user_id, batch.label, len(batch.pages)) == ("conv-9", "conv-9", 1)
    (tmp_path / "list.json").write_text(json.dumps([{"user_input": "a", "agent_response": "b"}]))
    [batch] = load_pages(tmp_path / "list.json")
    assert batch.user_id is None and batch.pages == [{"user_input": "a", "agent_response": "b"}]
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InvalidInputError, match="no turns"):
        load_pages(tmp_path / "empty.jsonl")
    (tmp_path / "mixed.jsonl").write_text('{"role": "user", "content": "a"}\n{"user_input": "b"}\n')
    with pytest.raises(InvalidInputError, match="item 2: unknown key"):
        load_pages(tmp_path / "mixed.jsonl")


def test_settings_flags_beat_the_config_file_which_beats_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps(
            {
                "user_id": "from_file",
                "openai_api_key": "sk-file",
                "short_term_capacity": 3,
                "mid_term_heat_threshold": 7,
                "data_storage_path": "rel",
                "embedding_model_kwargs": {"use_fp16": True},
            }
        )
    )
    env = {"MEMORYOS_USER_ID": "from_env", "OPENAI_API_KEY": "sk-env", "MEMORYOS_LLM_MODEL": "m-env"}
    settings = load_settings({"user_id": "from_flag"}, config_file=config, environ=env)
    assert (settings.user_id, settings.openai_api_key, settings.llm_model) == (
        "from_flag",
        "sk-file",
        "m-env",
    )
    assert settings.short_term_capacity == 3 and settings.mid_term_heat_threshold == 7.0
    assert settings.data_storage_path == str(tmp_path / "rel")
    by_env = load_settings(environ={"MEMORYOS_CONFIG": str(config), "MEMORYOS_SHORT_TERM_CAPACITY": "9"})
    assert by_env.user_id == "from_file" and by_env.short_term_capacity == 3
    assert load_settings(environ={"MEMORYOS_SHORT_TERM_CAPACITY": "9"}).short_term_capacity == 9
    assert "sk-" not in settings.describe()
    config.write_text('{"openai_api_key": "", "chroma_url": null}')  # the reference template's blanks
    blanks = load_settings(config_file=config, environ={"OPENAI_API_KEY": "sk-env"})
    assert (blanks.openai_api_key, blanks.chroma_url, blanks.user_id) == ("sk-env", None, "default_user")


@pytest.mark.parametrize(
    ("content", "environ", "fragment"),
    [
        ('{"user_id": "a", "colour": "blue"}', {}, "unknown key(s) 'colour'"),
        ('{"short_term_capacity": "seven"}', {}, "short_term_capacity must be an integer"),
        ('{"mid_term_heat_threshold": true}', {}, "mid_term_heat_threshold must be a number"),
        ("[1, 2]", {}, "must hold a JSON object"),
        ("{oops", {}, "is not valid JSON"),
        ("{}", {"MEMORYOS_MID_TERM_CAPACITY": "lots"}, "environment variable MEMORYOS_MID_TERM_CAPACITY"),
    ],
)
def test_bad_settings_are_config_errors_naming_the_source(
    tmp_path: Path, content: str, environ: dict[str, str], fragment: str
) -> None:
    config = tmp_path / "config.json"
    config.write_text(content)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_settings(config_file=config, environ=environ)
