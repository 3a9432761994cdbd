"""The ``Example:`` blocks in the docstrings of the shipped packages run as doctests, offline.

Each docstring runs in an empty temporary folder with its module's names and three objects a reader of
the API already has (as pytest's ``doctest_namespace`` would give them):

- ``memory``: a ``MemoryOS`` on the offline defaults, in that folder;
- ``model``: a LangChain chat model (``GenericFakeChatModel``, always answering "Hello!");
- ``llm``: a LlamaIndex LLM (``MockFunctionCallingLLM``, echoing the last message).
"""

from __future__ import annotations

import doctest
import importlib
import itertools
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("memoryos_core", "memoryos_langchain", "memoryos_llamaindex")
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    """Every module of the shipped packages with a ``>>>`` line.

    Found from the files: ``llm/`` and ``embeddings/`` have no ``__init__.py``, so ``pkgutil`` skips them.
    """
    names: list[str] = []
    for package_name in PACKAGES:
        for path in sorted((ROOT / package_name).rglob("*.py")):
            if ">>> " not in path.read_text(encoding="utf-8"):
                continue  # importing every module (mcp, the benchmarks) only to find nothing is slow
            parts = path.relative_to(ROOT).with_suffix("").parts
            names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    with warnings.catch_warnings():  # the finder reads pydantic's deprecated attributes while it looks
        warnings.simplefilter("ignore")
        tests = [test for name in module_names() for test in finder.find(importlib.import_module(name))]
    return sorted((test for test in tests if test.examples), key=lambda test: test.name)


def example_params() -> list[Any]:
    return [pytest.param(test, id=test.name) for test in docstring_examples()]


def test_docstring_examples_found() -> None:
    """The finder sees the examples (a typo in the package list would make the test below vacuous)."""
    names = {test.name for test in docstring_examples()}
    expected = {"memoryos_core.engine.memory.MemoryOS", "memoryos_langchain.middleware.MemoryOSMiddleware"}
    assert expected <= names
    assert len(names) >= 17


@pytest.fixture
def namespace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from llama_index.core.llms.mock import MockFunctionCallingLLM

    from memoryos_core import MemoryOS

    monkeypatch.chdir(tmp_path)
    for key in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "MEMORYOS_DATA",
        "MEMORYOS_CHROMA_URL",
        "MEMORYOS_CONFIG",
    ):
        monkeypatch.delenv(key, raising=False)
    memory = MemoryOS(data_storage_path=str(tmp_path / "fixture-memory"))
    try:
        yield {
            "memory": memory,
            "model": GenericFakeChatModel(messages=itertools.repeat("Hello!")),
            "llm": MockFunctionCallingLLM(is_chat_model=True),
        }
    finally:
        memory.close()


@pytest.mark.parametrize("test", example_params())
def test_docstring_example_runs(test: doctest.DocTest, namespace: dict[str, Any]) -> None:
    test.globs = {**test.globs, **namespace}
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    try:
        result = runner.run(test, out=report.append)
    finally:
        test.globs.clear()
    if result.failed:
        pytest.fail(f"{test.filename}:{test.lineno}\n{''.join(report)}", pytrace=False)
