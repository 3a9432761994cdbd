"""`memoryos demo` runs offline on the embedded defaults and recalls with provenance."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Prestart


def _two_demo_runs(folder: Path, environ: dict[str, str]) -> list[subprocess.CompletedProcess[str]]:
    """``memoryos demo`` twice on one data folder, as a person runs it from a shell."""
    exe = shutil.which("memoryos") or str(Path(sys.executable).parent / "memoryos")
    command = [exe, "demo", "--data", str(folder / "data")]
    env = environ | {"COLUMNS": "160"}
    return [subprocess.run(command, capture_output=True, text=True, timeout=300, env=env) for _ in range(2)]


def prestart(items: list[pytest.Item], submit: Callable[[str, Callable[..., Any]], None]) -> None:
    """The two console-script runs start when collection ends (tests/conftest.py's ``Prestart``) and run
    beside the other tests: fresh processes on a folder of their own, as before."""
    if any(getattr(item, "originalname", "") == "test_demo_runs_as_a_console_script" for item in items):
        submit("demo", _two_demo_runs)


def test_demo_runs_as_a_console_script(prestarted: Prestart) -> None:
    done, again = prestarted.result("demo")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Memory of demo_user" in out
    assert (
        "golden retriever called Biscuit"
        in out.split("recall: What is my dog's name?")[1].split("recall:")[0]
    )
    assert "demo-2" in out  # provenance: the message id the page came from
    assert "spark.executor.memory" in out.split("recall: How did I fix the Spark problem?")[1]
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
