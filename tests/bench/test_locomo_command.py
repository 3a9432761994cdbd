"""``memoryos bench locomo`` end to end on a tiny file: the JSON shape, provenance, costs, --answer."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from memoryos_core.bench.cli import bench_app
from memoryos_core.testing import FakeOpenAIServer
from tests.bench.conftest import tiny_locomo

KEYS = ["1", "2", "3", "4", "5", "1-4", "all"]
COST_KEYS = {
    "ingest_s",
    "query_ms_p50",
    "query_ms_p95",
    "llm_calls",
    "llm_prompt_tokens",
    "llm_completion_tokens",
    "llm_calls_per_100_pages",
    "promotion_coverage",
}


def _run(*args: str) -> Any:
    result = CliRunner().invoke(bench_app, ["locomo", "--embedder", "hash", "--no-progress", *args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def _check_scores(block: dict[str, Any], ks: list[int]) -> None:
    assert list(block["recall"]) == [str(k) for k in ks]
    assert list(block["hit"]) == [str(k) for k in ks]
    for k in ks:
        recall, hit = block["recall"][str(k)], block["hit"][str(k)]
        assert list(recall) == KEYS and list(hit) == ["all"]
        assert recall["3"] is not None  # every category of the tiny file has a question
        for value in [*recall.values(), hit["all"]]:
            assert 0.0 <= value <= 100.0 and round(value, 1) == value
        assert hit["all"] >= recall["all"]
    # Recall can only grow with the budget.
    assert [block["recall"][str(k)]["all"] for k in ks] == sorted(block["recall"][str(k)]["all"] for k in ks)


def test_command_writes_the_benchmark_json(locomo_file: Callable[..., Path], tmp_path: Path) -> None:
    out, details = tmp_path / "result.json", tmp_path / "details.jsonl"
    result = _run("--data", str(locomo_file()), "--out", str(out), "--k", "2,5,10", "--details", str(details))
    data = json.loads(out.read_text())
    assert list(data) == [
        "dataset",
        "conversations",
        "questions",
        "skipped",
        "k",
        "llm",
        "embedder",
        "systems",
    ]
    assert (data["dataset"], data["conversations"], data["questions"], data["skipped"]) == (
        "tiny_locomo.json",
        2,
        8,
        2,
    )
    assert (data["k"], data["llm"], data["embedder"]) == ([2, 5, 10], "none", "hashing-384")
    systems = data["systems"]
    assert list(systems) == ["memoryos", "bm25", "dense"]
    assert set(systems["memoryos"]) == {"recall", "hit", "segments"} | COST_KEYS
    segments = systems["memoryos"]["segments"]
    assert set(segments["pooled"]) == {
        "segments_per_conversation",
        "biggest_share_max",
        "median_size",
        "coherence",
    }
    assert all(0 <= f["biggest_share"] <= 100 for f in segments["conversations"].values())
    for name in ("bm25", "dense"):
        assert set(systems[name]) == {"recall", "hit", "query_ms_p50"}
    for block in systems.values():
        _check_scores(block, [2, 5, 10])
    memoryos = systems["memoryos"]
    assert memoryos["llm_calls"] == 0 and memoryos["llm_calls_per_100_pages"] == 0.0
    assert memoryos["promotion_coverage"] is None  # no LLM: nothing is analysed, by design
    assert memoryos["ingest_s"] > 0 and memoryos["query_ms_p95"] >= memoryos["query_ms_p50"] > 0
    # With at most 10 turns per conversation, a budget of 10 retrieves everything.
    assert systems["bm25"]["recall"]["10"]["all"] == 100.0
    assert memoryos["recall"]["10"]["all"] == 100.0
    assert "memoryos" in result.output and "bm25" in result.output and "costs" in result.output

    records = [json.loads(line) for line in details.read_text().splitlines()]
    assert len(records) == 8
    turn_ids = {
        sample["sample_id"]: {
            t["dia_id"] for k, v in sample["conversation"].items() if k[-1].isdigit() for t in v
        }
        for sample in tiny_locomo()
    }
    for record in records:
        # Provenance: every unit the engine returns names the turns it came from.
        assert all(unit[2] for unit in record["memoryos_units"])
        assert set(record["memoryos"]) <= turn_ids[record["sample_id"]]
        assert len(record["memoryos"]) == len(set(record["memoryos"])) <= 10


def test_fake_llm_costs_are_counted(locomo_file: Callable[..., Path], tmp_path: Path) -> None:
    sample = tiny_locomo()[0]
    # 20 more pages, so pages overflow short-term memory and consolidation calls the LLM.
    sample["conversation"]["session_3_date_time"] = "6:00 pm on 25 May, 2023"
    sample["conversation"]["session_3"] = [
        {"speaker": "Ann" if i % 2 else "Bob", "dia_id": f"D3:{i}", "text": f"I love hiking trail {i}."}
        for i in range(1, 41)
    ]
    out = tmp_path / "fake.json"
    _run("--data", str(locomo_file([sample])), "--out", str(out), "--k", "5", "--llm", "fake")
    data = json.loads(out.read_text())
    memoryos = data["systems"]["memoryos"]
    assert data["llm"] == "fake" and data["conversations"] == 1 and data["questions"] == 6
    assert memoryos["llm_calls"] >= 1
    assert memoryos["llm_prompt_tokens"] > memoryos["llm_completion_tokens"] > 0
    assert memoryos["llm_calls_per_100_pages"] == round(100 * memoryos["llm_calls"] / 26, 2)  # 26 pages
    # Pages of hot segments are all analysed; here two pages sit in segments too cold to analyse yet.
    assert 50.0 < memoryos["promotion_coverage"] <= 100.0


def test_answer_scores_f1_and_bleu_against_a_fake_endpoint(
    locomo_file: Callable[..., Path], tmp_path: Path
) -> None:
    gold = {
        q["question"]: q.get("answer", "")
        for sample in tiny_locomo()
        for q in sample["qa"]
        if q["category"] != 5
    }

    def reply(request: dict[str, Any]) -> str:
        question = request["messages"][-1]["content"]
        assert "<recalled_memory>" in request["messages"][0]["content"]
        return gold.get(question, "Not mentioned in the conversation")

    out = tmp_path / "answer.json"
    with FakeOpenAIServer(reply) as server:
        _run(
            "--data",
            str(locomo_file()),
            "--out",
            str(out),
            "--k",
            "5",
            "--answer",
            "--api-key",
            "test-key",
            "--base-url",
            server.base_url,
            "--model",
            "fake-model",
        )
        asked = server.requests_to("/chat/completions")
    assert len(asked) == 8  # one answer per scored question, none for consolidation (--llm none)
    answer = json.loads(out.read_text())["systems"]["memoryos"]["answer"]
    assert answer["f1"] == dict.fromkeys(KEYS, 100.0)
    assert answer["bleu1"] == dict.fromkeys(KEYS, 100.0)
    assert (answer["llm_calls"], answer["answer_k"], answer["model"]) == (8, 10, "openai:fake-model")
    assert answer["llm_prompt_tokens"] > 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--llm", "gpt"], "--llm"),
        (["--embedder", "bert"], "--embedder"),
        (["--k", "5,x"], "--k"),
        (["--k", "0"], "--k"),
        (["--answer"], "OPENAI_API_KEY"),
    ],
)
def test_bad_options_are_refused(
    locomo_file: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = CliRunner().invoke(bench_app, ["locomo", "--data", str(locomo_file()), *args])
    assert result.exit_code != 0
    assert message in result.output
