"""docs/architecture.md and the README's Layout section match the tree: every module they name exists,
and every engine and policy module is named in the architecture page."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "memoryos_core"
ARCHITECTURE = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = ("engine", "policy", "llm", "embeddings", "storage", "app")


def layout_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Layout\n")
    end = readme.find("\n## ", start + 1)
    return readme[start:] if end == -1 else readme[start:end]


def named_modules(text: str) -> set[Path]:
    """The modules named as ``pkg/name.py`` (``engine/writer.py``, ``storage/chroma.py``, ...)."""
    found: set[Path] = set()
    for match in re.finditer(r"\b(?:(" + "|".join(PACKAGES) + r")/)([a-z_]+\.py)\b", text):
        found.add(CORE / match.group(1) / match.group(2))
    return found


def test_every_module_the_docs_name_exists() -> None:
    named = named_modules(ARCHITECTURE) | named_modules(layout_section())
    assert len(named) >= 20  # the pattern finds the pictures' modules (a broken regex would find none)
    missing = sorted(str(path.relative_to(ROOT)) for path in named if not path.is_file())
    assert missing == []


def test_every_engine_and_policy_module_is_on_the_architecture_page() -> None:
    for package in ("engine", "policy"):
        modules = [p.name for p in (CORE / package).glob("*.py") if p.name != "__init__.py"]
        assert modules
        # engine modules appear as file names, policy modules as words in its list
        wanted = modules if package == "engine" else [name[:-3] for name in modules]
        unnamed = [name for name in wanted if not re.search(rf"\b{re.escape(name)}\b", ARCHITECTURE)]
        assert unnamed == [], f"{package}/ modules missing from docs/architecture.md"


def test_the_layout_names_every_subpackage_of_the_core() -> None:
    layout = layout_section()
    subpackages = [p.name for p in CORE.iterdir() if (p / "__init__.py").is_file()]
    assert set(PACKAGES) <= set(subpackages)
    assert [name for name in subpackages if f"{name}/" not in layout] == []
