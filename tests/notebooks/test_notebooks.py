"""The notebooks in notebooks/ run top to bottom, offline, and show what they claim to show."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager

from tests.conftest import Prestart

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
# In CI the LoCoMo file sits next to the repository (../shared/data); MEMORYOS_LOCOMO names another one.
LOCOMO = Path(os.environ.get("MEMORYOS_LOCOMO") or ROOT.parent / "shared/data/locomo10.json").resolve()
CELL_TIMEOUT_S = 240
# Runs before the notebook's first cell: the notebooks must not need the network.
GUARD = "from memoryos_core.testing import block_network\n\nundo_network_guard = block_network()"


def _kernel(tmp_path: Path) -> KernelManager:
    """A kernel on this interpreter (the .venv's), whatever kernelspecs the machine has."""
    spec_dir = tmp_path / "kernels" / "memoryos-venv"
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": "MemoryOS (.venv)", "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    specs = KernelSpecManager(kernel_dirs=[str(tmp_path / "kernels")], ensure_native_kernel=False)
    # The connection file in the test's folder too, not in tempfile's (a test may patch that meanwhile).
    connection = str(tmp_path / "kernel-connection.json")
    return KernelManager(kernel_name="memoryos-venv", kernel_spec_manager=specs, connection_file=connection)


def run_notebook(
    name: str, tmp_path: Path, environ: Mapping[str, str] = os.environ, **env: str | None
) -> nbformat.NotebookNode:
    """Execute a notebook in notebooks/ (its working directory) and return it with its outputs."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nb.cells.insert(0, nbformat.v4.new_code_cell(GUARD))
    kernel_env = {key: value for key, value in environ.items() if key != "OPENAI_API_KEY"}
    kernel_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    kernel_env["MPLBACKEND"] = "Agg"
    kernel_env["MEMORYOS_DATA"] = str(tmp_path / "memoryos_data")  # never the caller's store
    scratch = tmp_path / "tmp"  # the notebooks' mkdtemp() folders go where pytest cleans up
    scratch.mkdir()
    kernel_env["TMPDIR"] = str(scratch)
    kernel_env.pop("MEMORYOS_LOCOMO", None)
    for key, value in env.items():
        if value is not None:
            kernel_env[key] = value
    client = nbclient.NotebookClient(
        nb,
        km=_kernel(tmp_path),
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    try:
        client.execute(env=kernel_env)  # raises CellExecutionError on the first failing cell
    finally:
        # nbclient leaves a kernel it did not create running: without this each one (300-500 MB) lived
        # until the end of the test session.
        client.km.shutdown_kernel(now=True)
    return nb


# The everyday notebook runs: test name (and ``data`` parameter) -> notebook.
EVERYDAY = {
    ("test_quickstart", None): "01_quickstart.ipynb",
    ("test_langchain_agent", None): "02_langchain_agent.ipynb",
    ("test_llamaindex_agent", None): "03_llamaindex_agent.ipynb",
    ("test_inside_memoryos", "sample"): "04_inside_memoryos.ipynb",
}


def prestart(items: list[pytest.Item], submit: Callable[[str, Callable[..., Any]], None]) -> None:
    """Start the selected everyday notebooks as soon as collection ends (tests/conftest.py's
    ``Prestart``): each still runs top to bottom in a fresh kernel of its own, beside the other tests."""
    for item in items:
        if isinstance(item, pytest.Function):
            callspec = getattr(item, "callspec", None)
            name = EVERYDAY.get((item.originalname, callspec.params.get("data") if callspec else None))
            if name is not None:
                submit(f"notebook:{name}", functools.partial(run_notebook, name))


def notebook(prestarted: Prestart, name: str) -> nbformat.NotebookNode:
    """The executed notebook ``name``, or its failure raised again."""
    result: nbformat.NotebookNode = prestarted.result(f"notebook:{name}")
    return result


def text_of(nb: nbformat.NotebookNode, cell_id: str) -> str:
    """Everything a cell printed or displayed as text."""
    cell = next(c for c in nb.cells if c.get("id") == cell_id)
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def images_of(nb: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in nb.cells
        for output in cell.get("outputs", [])
        if output.output_type == "display_data"
    )


def test_notebooks_are_committed_without_outputs() -> None:
    names = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == [
        "01_quickstart.ipynb",
        "02_langchain_agent.ipynb",
        "03_llamaindex_agent.ipynb",
        "04_inside_memoryos.ipynb",
    ]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        assert code and all(not c.outputs and c.execution_count is None for c in code), name


def test_quickstart(prestarted: Prestart) -> None:
    nb = notebook(prestarted, "01_quickstart.ipynb")

    assert "best match: mid_term ('msg-01',)" in text_of(nb, "recall")  # the cat page, with provenance
    assert "cat called Pixel" in text_of(nb, "render")
    assert "<recalled_memory>" in text_of(nb, "render")
    stats = text_of(nb, "stats")
    assert "short_term_pages     3" in stats and "mid_term_pages       3" in stats
    assert "pages per tier: {'short_term': 3, 'mid_term': 3}" in text_of(nb, "export")


def test_langchain_agent(prestarted: Prestart) -> None:
    nb = notebook(prestarted, "02_langchain_agent.ipynb")

    assert "messages in this thread: 2" in text_of(nb, "session-2")  # nothing from session 1 in the thread
    prompt = text_of(nb, "session-2-prompt")
    assert prompt.startswith("You are a friendly assistant.")
    assert "<recalled_memory>" in prompt and "I adopted a cat called Pixel last week." in prompt
    assert "'What is my cat called?' -> 'Your cat is called Pixel.'" in text_of(nb, "stored")
    assert "My sister Clara lives in Berlin." in text_of(nb, "retriever")
    rag = text_of(nb, "rag")
    assert "Answer from these memories" in rag and "Clara lives in Berlin" in rag.split("system message")[1]


def test_llamaindex_agent(prestarted: Prestart) -> None:
    nb = notebook(prestarted, "03_llamaindex_agent.ipynb")

    session_2 = text_of(nb, "session-2")
    recalled = session_2.split("--- system")[-1]
    assert "<recalled_memory>" in recalled and "I adopted a cat called Pixel." in recalled
    assert session_2.rstrip().endswith("What is my cat called?")
    assert "alice-2  'What is my cat called?'" in text_of(nb, "pages")
    block = text_of(nb, "block")
    assert "<memoryos>" in block and "My sister Clara lives in Berlin." in block


@pytest.mark.parametrize(
    "data",
    [
        pytest.param("sample", id="built-in-sample"),
        pytest.param(
            "locomo",
            id="locomo",
            marks=[
                pytest.mark.slow,  # the whole LoCoMo file through the notebook: about a minute
                pytest.mark.skipif(not LOCOMO.is_file(), reason=f"no LoCoMo file at {LOCOMO}"),
            ],
        ),
    ],
)
def test_inside_memoryos(tmp_path: Path, data: str, prestarted: Prestart) -> None:
    locomo = str(LOCOMO) if data == "locomo" else None
    if locomo:
        nb = run_notebook("04_inside_memoryos.ipynb", tmp_path, MEMORYOS_LOCOMO=locomo)
    else:
        nb = notebook(prestarted, "04_inside_memoryos.ipynb")

    source = text_of(nb, "data")
    assert source.startswith(f"{LOCOMO.name}: " if locomo else "locomo_sample.json: sample-ann")
    ingest = text_of(nb, "ingest")
    assert "'promoted': " in ingest  # promotion ran offline, counted by the on_event hook
    assert "profile_traits=0" not in ingest
    assert "trait " in text_of(nb, "profile")
    heat = text_of(nb, "heat")
    hot = heat.split("hot segments with new pages: ")[1].split()
    assert hot[0] == hot[4]  # get_segments' is_hot agrees with get_memory_stats()
    bench = text_of(nb, "bench")
    assert all(system in bench for system in ("memoryos", "bm25", "dense"))
    assert images_of(nb) == 3  # tiers, heat, recall
