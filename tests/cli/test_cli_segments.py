"""`memoryos segments`: each segment's heat, hot mark, pages, keywords and summary, from the engine."""

from __future__ import annotations

import json
from pathlib import Path

from memoryos_core import HashingEmbedder, MemoryOS
from tests.cli.test_cli_commands import assert_one_error_line, invoke, store, write_jsonl
from tests.cli.test_cli_usability import NARROW

TURNS = [
    *(
        {
            "user_input": f"I went hiking in the mountains with my boots on the alpine trail (day {i})",
            "agent_response": "Sounds fun: hiking again.",
        }
        for i in range(4)
    ),
    *(
        {
            "user_input": f"I fixed python bugs in my code and wrote unit tests (day {i})",
            "agent_response": "Sounds fun: python again.",
        }
        for i in range(3)
    ),
    {"user_input": "bye", "agent_response": "see you"},
]


def _ingested(tmp_path: Path) -> list[str]:
    config = tmp_path / "memoryos.json"
    config.write_text(json.dumps({"short_term_capacity": 1}))
    args = [*store(tmp_path), "--config", str(config)]
    result = invoke("ingest", str(write_jsonl(tmp_path / "turns.jsonl", TURNS)), *args)
    assert result.exit_code == 0, result.output
    return args


def test_segments_json_is_get_segments(tmp_path: Path) -> None:
    args = _ingested(tmp_path)
    result = invoke("segments", "--json", *args)
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    memory = MemoryOS(
        user_id="alice", data_storage_path=tmp_path / "data", embedder=HashingEmbedder(), background=False
    )
    try:
        found = memory.get_segments()
        pages = {p.id for p in memory.get_pages([p for s in found for p in s.page_ids])}
    finally:
        memory.close()
    assert [s["id"] for s in shown] == [s.id for s in found] and len(found) == 2
    for item, segment in zip(shown, found):
        assert item["page_ids"] == list(segment.page_ids) and set(item["page_ids"]) <= pages
        assert item["keywords"] == list(segment.keywords) and item["summary"] == segment.summary
        assert item["heat"] >= segment.heat - 1e-6  # the same counters, read a moment earlier
        assert item["last_access_at"].endswith("Z") and isinstance(item["is_hot"], bool)
    assert [len(s["page_ids"]) for s in shown] == [4, 3]  # hottest first: 4 interactions against 3
    assert shown[0]["pending_pages"] == 4


def test_segments_table_fits_the_terminal(tmp_path: Path) -> None:
    args = _ingested(tmp_path)
    shown = json.loads(invoke("segments", "--json", *args).stdout)
    for width in (80, 140):
        result = invoke("segments", *args, env=NARROW | {"COLUMNS": str(width)})
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert all(len(line) <= width for line in lines), result.stdout
        assert "heat" in result.stdout and "hot" in result.stdout and "summary" in result.stdout
        for segment in shown:
            row = next(line for line in lines if segment["id"] in line)  # ids are never cut
            assert f"{segment['heat']:.2f}" in row and f"{len(segment['page_ids'])} (" in row
            assert ("*" in row) == segment["is_hot"]
            assert "User: I " in row  # the start of the summary
            if width == 140:
                assert segment["keywords"][0] in row


def test_segments_of_an_unknown_user_and_a_bad_user(tmp_path: Path) -> None:
    args = _ingested(tmp_path)
    result = invoke("segments", *store(tmp_path, "nobody"))
    assert result.exit_code == 0, result.output
    assert "no segments for nobody" in result.stdout
    assert json.loads(invoke("segments", "--json", *store(tmp_path, "nobody")).stdout) == []
    assert_one_error_line(invoke("segments", *store(tmp_path, "a/b")), "user_id")
    assert args
