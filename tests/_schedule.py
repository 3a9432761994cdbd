"""The order in which test files are handed to the pytest-xdist workers: longest first (a plugin of the run,
named in ``tests/conftest.py``'s ``pytest_plugins``).

pytest-xdist's ``--dist loadfile`` hands whole files out in the order they were collected, by default after
sorting them by their number of tests: a file of two long tests (``bench scale``, the demo command) came
last, and one worker ran it alone while the other had finished. Each run records how long each file's
tests took (setup, call and teardown, summed) in pytest's cache (``.pytest_cache``, key
``memoryos/file_seconds``); the next run sorts the files by those times, longest first, so the run ends on
short files and the workers finish together. A file not timed yet counts as ``UNKNOWN_S``. The files of
a group (``GROUPS``) are handed to one worker together, so two of them never run at the same time. The addopts
hold ``--no-loadscope-reorder`` so pytest-xdist keeps this order. Without the cache (``-p
no:cacheprovider``) nothing changes.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

KEY = "memoryos/file_seconds"
UNKNOWN_S = 10.0  # a new file goes early rather than into the run's tail

# Files one worker runs one after another, as one unit: those that load the embedding model's graphs in the
# worker (each ~0.2-0.5 GB, an int8 build ~1 GB: two such files at once on the two workers were the run's
# peak), and those whose children are whole Python programs (the README's blocks, the notebooks' kernels).
GROUPS = {
    "tests/embeddings/": "onnx",
    "tests/backends/test_local_embedder.py": "onnx",
    "tests/bench/test_fusion_late.py": "onnx",
    "tests/bench/test_fusion_late_engine.py": "onnx",
    "tests/docs/test_readme_blocks.py": "programs",
    "tests/notebooks/": "programs",
}


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def unit(nodeid: str) -> str:
    """What a worker is handed at once: the test's file, or its group."""
    name = _file(nodeid)
    return next((f"group:{group}" for prefix, group in GROUPS.items() if name.startswith(prefix)), name)


@pytest.hookimpl(trylast=True)  # after the markers are set; the same order in every worker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    if cache is None:
        return
    seconds: dict[str, float] = cache.get(KEY, {})
    position = {item: index for index, item in enumerate(items)}
    totals: dict[str, float] = defaultdict(float)
    first_index: dict[str, int] = {}
    for name in dict.fromkeys(_file(item.nodeid) for item in items):
        totals[unit(name)] += float(seconds.get(name, UNKNOWN_S))
    for item in items:
        first_index.setdefault(unit(item.nodeid), position[item])

    def key(item: pytest.Item) -> tuple[float, int, float, int]:
        name = _file(item.nodeid)
        of = unit(name)
        return -totals[of], first_index[of], -float(seconds.get(name, UNKNOWN_S)), position[item]

    items.sort(key=key)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadfile``, with the files of a group handed out together (``unit``)."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling  # type: ignore[import-untyped]

    class GroupedFiles(LoadFileScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return unit(nodeid)

    return GroupedFiles(config, log)


_TIMES: dict[str, float] = defaultdict(float)  # this process's sums, by file


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Sums each file's test times (in pytest's process: under pytest-xdist the workers' reports arrive
    there too)."""
    _TIMES[_file(report.nodeid)] += report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    cache = getattr(config, "cache", None)
    if cache is None or hasattr(config, "workerinput"):  # a worker: pytest's own process records
        return
    option = config.option
    if option.keyword or getattr(option, "lf", False) or any("::" in arg for arg in config.args):
        return  # part of a file's tests ran: its time would be too short
    if _TIMES:
        cache.set(KEY, cache.get(KEY, {}) | {name: round(value, 2) for name, value in _TIMES.items()})
