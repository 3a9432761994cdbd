"""`memoryos demo` runs offline on the embedded defaults and recalls with provenance."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_demo_runs_as_a_console_script(tmp_path: Path) -> None:
    exe = shutil.which("memoryos") or str(Path(sys.executable).parent / "memoryos")
    done = subprocess.run(
        [exe, "demo", "--data", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"COLUMNS": "160"},
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Memory of demo_user" in out
    assert (
        "golden retriever called Biscuit"
        in out.split("recall: What is my dog's name?")[1].split("recall:")[0]
    )
    assert "demo-2" in out  # provenance: the message id the page came from
    assert "spark.executor.memory" in out.split("recall: How did I fix the Spark problem?")[1]
    again = subprocess.run(
        [exe, "demo", "--data", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=300,
        env=os.environ | {"COLUMNS": "160"},
    )
    assert again.returncode == 0, again.stderr
    assert _first_stats_row(again.stdout) == _first_stats_row(out)  # a rerun starts the demo user afresh


def _first_stats_row(text: str) -> list[str]:
    """The tier counts the demo prints first (the rows of its stats table)."""
    table = text.split("Memory of demo_user")[1].split("recall:")[0]
    rows = [line for line in table.splitlines() if line.startswith("│")]
    assert any(line.split("│")[-2].strip().isdigit() for line in rows), table
    return rows


def test_errors_are_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    exe = shutil.which("memoryos") or str(Path(sys.executable).parent / "memoryos")
    done = subprocess.run([exe, "demo", "--user", "../bad"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "error:" in done.stderr and "invalid user_id" in done.stderr
