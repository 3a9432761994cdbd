"""``memoryos bench embed`` runs and reports its fields (a benchmark, so no speed is asserted), its FLOP
count and the turns it embeds."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from memoryos_core.bench.cli import bench_app
from memoryos_core.bench.embed import forward_flops, locomo_turns, print_report


def test_flops_of_a_bert_forward_pass_by_hand() -> None:
    # One layer, hidden 2, intermediate 3, 5 tokens: Q, K, V, O are 5x2 @ 2x2 (4 x 5*2*2 multiply-adds),
    # the feed-forward 5x2 @ 2x3 and 5x3 @ 3x2 (2 x 5*2*3), scores and weighted sum 5x5 per hidden unit.
    by_hand = 2 * (4 * 5 * 2 * 2 + 2 * 5 * 2 * 3 + 2 * 5 * 5 * 2)

    assert forward_flops(5, hidden=2, layers=1, intermediate=3) == by_hand
    assert forward_flops(5, hidden=2, layers=6, intermediate=3) == 6 * by_hand
    # all-MiniLM-L6-v2 on a 37-token turn: about 0.8 GFLOP
    assert 0.7e9 < forward_flops(37, hidden=384, layers=6, intermediate=1536) < 0.9e9


def test_turns_are_speaker_and_text_and_a_limit_draws_a_seeded_sample(
    locomo_file: Callable[..., Path],
) -> None:
    path = locomo_file()

    turns = locomo_turns(path)
    drawn = locomo_turns(path, limit=5)

    assert turns[0] == "Ann: I adopted a golden retriever puppy called Biscuit."
    assert len(turns) == 14
    assert drawn == locomo_turns(path, limit=5) and len(drawn) == 5
    assert drawn == [turn for turn in turns if turn in drawn]  # in file order


@pytest.mark.slow  # builds both graphs into a fresh cache: ~10 s of CPU
def test_bench_embed_reports_both_precisions(
    locomo_file: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEMORYOS_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "embed.json"

    options = ["--turns", "0", "--rounds", "1", "--singles", "3", "--out", str(out)]
    done = CliRunner().invoke(bench_app, ["embed", "--data", str(locomo_file()), *options])

    assert done.exit_code == 0, done.output
    data = json.loads(out.read_text())
    assert data["turns"] == 14 and data["rounds"] == 1 and data["singles"] == 3
    assert list(data["precisions"]) == ["fp32", "int8"]
    for row in data["precisions"].values():
        assert row["turns_per_s"] > 0 and row["cpu_s"] > 0 and row["gflops"] > 0 and row["one_ms_p50"] > 0
        assert row["gflops"] == pytest.approx(data["gflop_per_turn"] * row["turns_per_s"], rel=0.05)
    assert 0.95 < data["cosine_int8_fp32"]["min"] <= data["cosine_int8_fp32"]["mean"] <= 1.0
    assert len(data["load_avg_start"]) == 3
    assert "turns/s" in done.output and "cosine" in done.output  # the table and its line


def test_the_table_fits_an_80_column_terminal_without_cutting_a_header() -> None:
    figures = {"turns_per_s": 538.5, "turns_per_cpu_s": 274.0, "gflops": 428.0, "gflops_per_cpu_s": 217.8}
    row = figures | {"one_ms_p50": 4.85, "one_gflops": 151.2}
    result = {
        "turns": 1000,
        "dataset": "locomo10.json",
        "tokens_mean": 36.7,
        "batch_size": 32,
        "threads": 2,
        "rounds": 3,
        "precisions": {"fp32": row, "int8": row},
        "cosine_int8_fp32": {"mean": 0.9969, "p1": 0.9939, "min": 0.9908},
        "int8_speedup": 2.75,
        "int8_cpu_speedup": 2.75,
        "load_avg_start": [1.0],
        "load_avg_end": [1.2],
        "cpus": 2,
    }
    console = Console(width=80, record=True)

    print_report(console, result)

    text = console.export_text()
    assert "…" not in text
    assert max(map(len, text.splitlines())) <= 80
    assert "538.5" in text and "217.8" in text
