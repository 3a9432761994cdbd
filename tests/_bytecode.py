"""The test run's Python processes read and write bytecode, even where ``PYTHONDONTWRITEBYTECODE`` is set.

With that variable set (container images and this project's machines set it) and no ``__pycache__`` in the
venv (``scripts/setup.sh`` installs with ``--no-compile``), every process of the run compiled every module it
imported from source: the workers' imports and collection, and each of the ~170 child processes (README
blocks, notebooks, ``memoryos`` commands, reliability children), about a fifth of the run's CPU time. The
run instead keeps bytecode in a cache folder of its own (``PYTHONPYCACHEPREFIX``, in pytest's
``.pytest_cache``, outside the source tree, as the variable asks), which the workers and every child inherit
through the environment. A ``PYTHONPYCACHEPREFIX`` set by the caller is kept; without the variable Python
writes ``__pycache__`` beside the sources as usual, and nothing changes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE = Path(__file__).resolve().parents[1] / ".pytest_cache" / "bytecode"


def use_bytecode_cache() -> None:
    """Called before the run imports anything heavy (pytest's process; workers and children inherit it)."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    prefix = os.environ.setdefault("PYTHONPYCACHEPREFIX", str(CACHE))
    sys.dont_write_bytecode = False
    sys.pycache_prefix = prefix
