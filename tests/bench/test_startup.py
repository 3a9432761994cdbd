"""``memoryos bench startup`` runs and reports its fields (a benchmark, so no figure is asserted)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memoryos_core.bench.cli import bench_app
from memoryos_core.bench.startup import FIELDS


@pytest.mark.slow  # ~9 fresh processes that each import chromadb: about 30 s
def test_bench_startup_reports_medians_and_ratios(tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    scratch_before = set(Path(tempfile.gettempdir()).glob("memoryos-startup-*"))

    done = CliRunner().invoke(bench_app, ["startup", "--runs", "2", "--out", str(out)])

    assert done.exit_code == 0, done.output
    data = json.loads(out.read_text())
    assert set(FIELDS) <= set(data) and data["runs"] == 2
    assert all(data[field] > 0 for field in FIELDS)
    assert data["add_memory_ratio"] == pytest.approx(data["add_memory_s"] / data["baseline_s"], abs=0.02)
    assert {name: len(values) for name, values in data["samples"].items()} == {
        "baseline_s": 2,
        "add_memory_s": 2,
        "stats_s": 2,
    }
    assert "first add_memory" in done.output and "memoryos stats" in done.output  # the table
    assert set(Path(tempfile.gettempdir()).glob("memoryos-startup-*")) == scratch_before  # cleaned up
