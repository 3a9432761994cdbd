"""The package version, read from the installed distribution's metadata (pyproject.toml is the one source)."""

from __future__ import annotations

import re
from pathlib import Path

from memoryos_core._exceptions import DISTRIBUTION


def package_version() -> str:
    """The installed ``memoryos-py`` version; in a source checkout that was never installed, the version in
    the pyproject.toml beside the package; ``0+unknown`` if neither exists."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            text = pyproject.read_text(encoding="utf-8")
        except OSError:
            return "0+unknown"
        found = re.search(r'^version\s*=\s*"([^"]+)"', text, flags=re.MULTILINE)
        return found.group(1) if found else "0+unknown"
