"""The public surface of memoryos_langchain: sorted, complete, lazy, and built on public core names only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import memoryos_langchain
from memoryos_core import MissingDependencyError

PACKAGE = Path(memoryos_langchain.__file__).parent


def test_all_is_sorted_and_every_name_resolves() -> None:
    assert memoryos_langchain.__all__ == sorted(memoryos_langchain.__all__)
    assert set(memoryos_langchain.__all__) == {
        "LangChainLLM",
        "MemoryOSChatMessageHistory",
        "MemoryOSMemory",
        "MemoryOSMiddleware",
        "MemoryOSRetriever",
        "MemoryOSStore",
    }
    for name in memoryos_langchain.__all__:
        assert getattr(memoryos_langchain, name).__name__ == name
    with pytest.raises(AttributeError):
        memoryos_langchain.NotAName  # noqa: B018


def test_adapters_import_only_the_public_core_package() -> None:
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            private = [m for m in modules if m.startswith("memoryos_core") and m != "memoryos_core"]
            assert not private, f"{path.name} imports {private}"


def test_a_missing_langchain_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langgraph.store.base", None)
    monkeypatch.delitem(sys.modules, "memoryos_langchain.store", raising=False)
    monkeypatch.delattr(memoryos_langchain, "MemoryOSStore", raising=False)
    with pytest.raises(MissingDependencyError, match=r"memoryos-py\[langchain\]") as caught:
        memoryos_langchain.MemoryOSStore  # noqa: B018 - the lazy import is the point
    assert caught.value.package == "langgraph"
