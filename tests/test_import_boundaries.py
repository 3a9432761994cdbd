"""Import boundaries, read from the source (ast) of every .py file, lazy imports included:

* the adapters (``memoryos_langchain``, ``memoryos_llamaindex``) use only the public ``memoryos_core``
  API, ``from memoryos_core import <name in __all__>``, and not each other;
* ``memoryos_core/policy`` (pure decisions) imports only pure standard modules, numpy, itself and the
  shared value modules (whose own module-level imports obey the same rule): no storage, embeddings,
  LLM backends, engine, app, Chroma, nor os / file / network modules.

A new import outside these lists fails here: use the public API, or add a pure module to ``PURE``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import memoryos_core

ROOT = Path(__file__).resolve().parents[1]
ADAPTERS = ("memoryos_langchain", "memoryos_llamaindex")
PURE = frozenset(
    {
        "__future__", "abc", "bisect", "calendar", "collections", "copy", "dataclasses", "datetime",
        "decimal", "enum", "fractions", "functools", "heapq", "itertools", "json", "math", "numbers",
        "operator", "re", "statistics", "string", "textwrap", "types", "typing", "typing_extensions",
        "unicodedata",
        "numpy",
    }
)  # fmt: skip
"""Top-level modules ``policy`` may import: computation only, no I/O."""
SHARED = frozenset(
    {
        "memoryos_core._config",
        "memoryos_core._exceptions",
        "memoryos_core._types",
        "memoryos_core._validation",
    }
)
"""Core modules of plain values ``policy`` may import (their module-level imports are checked too)."""


@dataclass(frozen=True)
class Import:
    where: str
    module: str
    names: tuple[str, ...]
    top_level: bool  # run when the module is imported (not inside a function)

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.where}: {self.module}{names}"


def imports(path: Path, root: Path = ROOT) -> Iterator[Import]:
    """Every import in ``path`` (a file under ``root``): statements, relative ones resolved, and
    ``import_module("...")`` / ``__import__("...")`` calls."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    parts = path.relative_to(root).with_suffix("").parts
    package = ".".join(parts[:-1])  # (an __init__'s own package too)
    where = "/".join(parts) + ".py"
    nested = {
        id(node)
        for scope in ast.walk(tree)
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for node in ast.walk(scope)
        if node is not scope
    }
    for node in ast.walk(tree):
        top = id(node) not in nested
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(f"{where}:{node.lineno}", alias.name, (), top)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            yield Import(f"{where}:{node.lineno}", module, tuple(a.name for a in node.names), top)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                yield Import(f"{where}:{node.lineno}", node.args[0].value, (), top)


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


def adapter_violations(path: Path, adapter: str, public: frozenset[str], root: Path = ROOT) -> list[str]:
    """Imports in an adapter file that reach past ``memoryos_core``'s public API or into the other adapter."""
    found = []
    for item in imports(path, root):
        root = item.module.split(".")[0]
        if item.module == "memoryos_core":
            private = [n for n in item.names if n not in public]
            if private:
                found.append(f"{item}: not in memoryos_core.__all__: {', '.join(private)}")
        elif root == "memoryos_core":
            found.append(f"{item}: a private module; import the name from memoryos_core")
        elif root in ADAPTERS and root != adapter:
            found.append(f"{item}: another adapter")
    return found


def _pure(module: str) -> bool:
    is_policy = module == "memoryos_core.policy" or module.startswith("memoryos_core.policy.")
    return module.split(".")[0] in PURE or module in SHARED or is_policy


def policy_violations(paths: list[Path], root: Path = ROOT) -> list[str]:
    """Imports in ``paths`` (all of them) and in the shared modules they reach (module level) that are
    not pure: anything outside ``PURE``, ``SHARED`` and ``memoryos_core.policy``. (``from memoryos_core
    import ...`` is refused: the package root loads every backend.)"""
    found, seen = [], set()
    todo = [(path, root, False) for path in paths]
    while todo:
        path, base, is_shared = todo.pop()
        for item in imports(path, base):
            if is_shared and not item.top_level:
                continue  # a shared module's lazy import does not run when policy imports it
            if not _pure(item.module):
                found.append(f"{item}: not a pure module (policy does no I/O)")
            elif item.module in SHARED and item.module not in seen:
                seen.add(item.module)
                todo.append((ROOT / (item.module.replace(".", "/") + ".py"), ROOT, True))
    return found


@pytest.mark.parametrize("adapter", ADAPTERS)
def test_adapters_use_only_the_public_core_api(adapter: str) -> None:
    files = _files(adapter)
    assert len(files) >= 5
    public = frozenset(memoryos_core.__all__)
    assert [v for path in files for v in adapter_violations(path, adapter, public)] == []


def test_policy_imports_nothing_that_does_io() -> None:
    files = _files("memoryos_core.policy")
    assert len(files) >= 7
    assert policy_violations(files) == []


# --- the checks themselves catch what they are for ---------------------------------------------------
@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("from memoryos_core import MemoryOS, Page\n", False),
        ("from memoryos_core import _validation\n", True),
        ("from memoryos_core.engine.memory import MemoryOS\n", True),
        ("import memoryos_core.storage.chroma\n", True),
        ("def f():\n    from memoryos_core._types import Page\n", True),  # lazy imports count
        ("import importlib\nimportlib.import_module('memoryos_core.engine.lookup')\n", True),
        ("from memoryos_llamaindex import MemoryOSMemory\n", True),
        ("from memoryos_langchain._common import message_text\n", False),  # its own package
    ],
)
def test_the_adapter_check_flags_private_imports(tmp_path: Path, source: str, flagged: bool) -> None:
    path = tmp_path / "memoryos_langchain" / "probe.py"
    path.parent.mkdir()
    path.write_text(source)
    found = adapter_violations(path, "memoryos_langchain", frozenset(memoryos_core.__all__), tmp_path)
    assert bool(found) is flagged, found


@pytest.mark.parametrize(
    ("source", "flagged"),
    [
        ("import math\nimport numpy as np\nfrom memoryos_core.policy import text\n", False),
        ("from memoryos_core._config import MidTermConfig\n", False),
        ("import os\n", True),
        ("from pathlib import Path\n", True),
        ("def f():\n    import socket\n", True),
        ("import chromadb\n", True),
        ("from memoryos_core import MemoryOS\n", True),  # the package root loads every backend
        ("from memoryos_core.storage.base import Record\n", True),
        ("from memoryos_core.engine import records\n", True),
        ("from memoryos_core.llm.openai import OpenAILLM\n", True),
        ("from memoryos_core.embeddings import fake\n", True),
        ("from memoryos_core.app import cli\n", True),
        ("from . import heat\nfrom .text import keywords\n", False),
    ],
)
def test_the_policy_check_flags_io_imports(tmp_path: Path, source: str, flagged: bool) -> None:
    folder = tmp_path / "memoryos_core" / "policy"
    folder.mkdir(parents=True)
    path = folder / "probe.py"
    path.write_text(source)
    found = policy_violations([path], tmp_path)
    assert bool(found) is flagged, found
