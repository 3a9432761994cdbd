"""``memoryos bench startup`` runs and reports its fields (a benchmark, so no figure is asserted), and what a
fresh process imports for ``memoryos stats`` and a first ``add_memory``."""

from __future__ import annotations

import json
import subprocess
import sys
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
    assert all(data["cpu"][field] > 0 for field in FIELDS)  # the same figures in CPU seconds
    assert data["add_memory_ratio"] == pytest.approx(data["add_memory_s"] / data["baseline_s"], abs=0.02)
    assert {name: len(values) for name, values in data["samples"].items()} == {
        "baseline_s": 2,
        "add_memory_s": 2,
        "stats_s": 2,
    }
    assert "first add_memory" in done.output and "cpu x baseline" in done.output  # the table
    assert set(Path(tempfile.gettempdir()).glob("memoryos-startup-*")) == scratch_before  # cleaned up


# Modules that a command which neither ranks text nor calls an LLM has no use for. (PyStemmer's `Stemmer`
# is not among them: ~1 ms to import, and the word index's file checks the stems it holds when it opens.)
HEAVY = (
    "onnxruntime",
    "onnx",
    "tokenizers",
    "safetensors",
    "torch",
    "sentence_transformers",
    "openai",
    "tiktoken",
    "langchain_core",
    "llama_index",
    "memoryos_langchain",
    "memoryos_llamaindex",
    "mcp",
)


def _imported_after(code: str, tmp_path: Path) -> set[str]:
    probe = f"import sys\n{code}\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "data")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return set(done.stdout.split()) & set(HEAVY)


def test_stats_and_a_first_add_memory_import_only_what_they_use(tmp_path: Path) -> None:
    add = (
        "from memoryos_core import MemoryOS\n"
        "memory = MemoryOS(data_storage_path=sys.argv[1])\n"
        "memory.add_memory('I adopted a cat called Pixel.', 'Lovely name!', user_id='u')\n"
        "memory.close()"
    )
    stats = (
        "from memoryos_core.app.cli import main\n"
        "sys.argv = ['memoryos', 'stats', '--data', sys.argv[1], '--user', 'u']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code"
    )

    assert _imported_after(add, tmp_path) == {"onnxruntime", "tokenizers"}  # the embedder, nothing more
    assert _imported_after(stats, tmp_path) == set()
