"""Every ```python block of README.md runs as written, alone, in an empty folder, offline, with no key.

Each block runs in its own process (a fresh interpreter, as a reader would paste it into a file), with
an empty temporary folder as the working directory, the network guard on (loopback only), and no
``OPENAI_API_KEY`` or ``MEMORYOS_*`` settings from the caller's environment.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import Prestart

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK_TIMEOUT_S = 240
# Fence languages the README may use; a python block written as ```py or ```python3 would not be run.
KNOWN_LANGUAGES = frozenset({"python", "bash", "json", "text", ""})
# The model cache is where a reader's installed package keeps its converted model: keep it.
KEPT_SETTINGS = frozenset({"MEMORYOS_CACHE_DIR"})
# Runs the block as __main__ after turning the network guard on (as tests/conftest.py does).
RUNNER = (
    "import runpy, sys\n"
    "from memoryos_core.testing import block_network\n"
    "block_network()\n"
    "runpy.run_path(sys.argv[1], run_name='__main__')\n"
)
_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """``(line number of the opening fence, language, code)`` of every fenced block, in order."""
    blocks: list[tuple[int, str, str]] = []
    opened: tuple[int, str] | None = None
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE.match(line.strip())
        if opened is None:
            if match:
                opened, lines = (number, match.group(1).lower()), []
        elif line.strip() == "```":
            blocks.append((opened[0], opened[1], "\n".join(lines) + "\n"))
            opened = None
        else:
            lines.append(line)
    if opened is not None:
        raise AssertionError(f"README.md:{opened[0]}: a fenced block is never closed")
    return blocks


def python_blocks() -> list[tuple[int, str]]:
    blocks = fenced_blocks(README.read_text())
    return [(line, code) for line, language, code in blocks if language == "python"]


def block_params() -> list[pytest.ParameterSet]:
    """One case per block, named by the line of its opening fence (``line-42``)."""
    return [pytest.param(line, code, id=f"line-{line}") for line, code in python_blocks()]


def block_env(tmp: Path, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The caller's environment without keys or MemoryOS settings; this checkout first on the path."""
    env = {
        key: value
        for key, value in environ.items()
        if not key.startswith(("OPENAI_", "MEMORYOS_")) or key in KEPT_SETTINGS
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    env["TMPDIR"] = str(tmp)  # anything the block makes with tempfile goes where pytest cleans up
    env["PYTHONUNBUFFERED"] = "1"
    return env


def test_readme_fences_are_known() -> None:
    """A block in an unexpected language (```py, ```python3) would escape the test below."""
    blocks = fenced_blocks(README.read_text())
    unknown = [(line, language) for line, language, _ in blocks if language not in KNOWN_LANGUAGES]
    assert not unknown, f"README.md fences in unknown languages (line, language): {unknown}"
    assert len(python_blocks()) >= 10, "the README's python blocks were not found"


def run_block(
    line: int, code: str, tmp_path: Path, environ: Mapping[str, str] = os.environ
) -> subprocess.CompletedProcess[str]:
    """Run one block as a reader would: its own fresh interpreter, in an empty folder."""
    work = tmp_path / "work"
    work.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    script = tmp_path / f"readme_line_{line}.py"
    script.write_text(code)
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(script)],
        cwd=work,
        env=block_env(scratch, environ),
        capture_output=True,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )


def prestart(items: list[pytest.Item], submit: Callable[[str, Callable[..., Any]], None]) -> None:
    """Start the selected blocks as soon as collection ends (tests/conftest.py's ``Prestart``): each is
    still a fresh interpreter in an empty folder of its own, only it runs beside the other tests."""
    for item in items:
        if isinstance(item, pytest.Function) and item.originalname == "test_readme_block_runs":
            line, code = cast(int, item.callspec.params["line"]), cast(str, item.callspec.params["code"])
            submit(f"readme:{line}", functools.partial(run_block, line, code))


@pytest.mark.parametrize(("line", "code"), block_params())
def test_readme_block_runs(line: int, code: str, prestarted: Prestart) -> None:
    result: subprocess.CompletedProcess[str] = prestarted.result(f"readme:{line}")
    if result.returncode != 0:
        pytest.fail(
            f"README.md:{line}: the python block exited with {result.returncode}\n"
            f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}",
            pytrace=False,
        )
