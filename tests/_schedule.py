"""The order in which test files are handed to the pytest-xdist workers: longest first (a plugin of the run,
named in ``tests/conftest.py``'s ``pytest_plugins``).

pytest-xdist's ``--dist loadfile`` hands whole files out in the order they were collected, by default after
sorting them by their number of tests: a file of two long tests (``bench scale``, the demo command) came
last, and one worker ran it alone while the other had finished. Each run records how long each file's
tests took (setup, call and teardown, summed) in pytest's cache (``.pytest_cache``, key
``memoryos/file_seconds``); the next run sorts the files by those times, longest first, so the run ends on
short files and the workers finish together. A file not timed yet counts as ``UNKNOWN_S``. The addopts
hold ``--no-loadscope-reorder`` so pytest-xdist keeps this order. Without the cache (``-p
no:cacheprovider``) nothing changes.
"""

from __future__ import annotations

from collections import defaultdict

import pytest

KEY = "memoryos/file_seconds"
UNKNOWN_S = 10.0  # a new file goes early rather than into the run's tail


def _file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(trylast=True)  # after the markers are set; the same order in every worker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cache = getattr(config, "cache", None)
    if cache is None:
        return
    seconds: dict[str, float] = cache.get(KEY, {})
    position = {item: index for index, item in enumerate(items)}
    first_index: dict[str, int] = {}
    for item in items:
        first_index.setdefault(_file(item.nodeid), position[item])

    def key(item: pytest.Item) -> tuple[float, int, int]:
        name = _file(item.nodeid)
        return -float(seconds.get(name, UNKNOWN_S)), first_index[name], position[item]

    items.sort(key=key)


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
    if _TIMES:
        cache.set(KEY, cache.get(KEY, {}) | {name: round(value, 2) for name, value in _TIMES.items()})
