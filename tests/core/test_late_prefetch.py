"""A recall reads the late rerank's rows of the pages its words rank first while its query is embedded
(``LateIndex.prefetch``), and compares them with the query's wordpieces once it is embedded; ``lift`` then
reads and compares only the rows it lacks, and all again when the user's basis changed in between. The
gains are the same as from one read."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memoryos_core import MemoryOS
from memoryos_core._config import RetrievalConfig
from memoryos_core.engine.late import PREFETCH_CHUNK, LateIndex, Prefetched, Probe
from memoryos_core.engine.late_store import FIT_PAGES, View, WordpieceFile
from memoryos_core.policy import late as late_policy

DIM = 384


def _pages(count: int, start: int = 0) -> list[tuple[str, np.ndarray, np.ndarray]]:
    out = []
    for i in range(start, start + count):
        vectors = np.random.default_rng(i).normal(size=(6, DIM))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        out.append((f"p{i:03d}", np.array([(i * 7 + k) % 50 for k in range(6)], np.int32), vectors))
    return out


@pytest.fixture
def index(tmp_path: Path, local_embedder: Any) -> Iterator[LateIndex]:
    made = LateIndex(local_embedder, RetrievalConfig(), lambda: str(tmp_path))
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
def probe(local_embedder: Any) -> Probe:
    made = Probe(local_embedder, "We adopted a puppy from the shelter", wordpieces=True)
    made.vector()
    assert made.rows is not None
    return made


def _file(index: LateIndex) -> WordpieceFile:
    assert index.file is not None
    return index.file


def _recording(index: LateIndex, monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    asked: list[list[str]] = []
    file = _file(index)
    read = file.read

    def recorded(user: str, page_ids: Sequence[str], query_ids: np.ndarray) -> View:
        asked.append(list(page_ids))
        return read(user, page_ids, query_ids)

    monkeypatch.setattr(file, "read", recorded)
    return asked


def test_lift_reads_only_the_rows_not_prefetched_and_gains_the_same(
    index: LateIndex, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    _file(index).add("u", _pages(40))
    ids = [f"p{i:03d}" for i in range(40)]
    fresh = index.lift("u", ids, probe)
    read = index.prefetch("u", ids[:30])
    assert read is not None and sorted(read.view.pages) == ids[:30] and not read.maxima
    asked = _recording(index, monkeypatch)

    again = index.lift("u", ids, probe, read)

    assert asked == [ids[30:]]
    assert fresh is not None and again is not None and np.array_equal(again, fresh)


def test_a_basis_fitted_between_the_reads_makes_lift_read_every_row_again(
    index: LateIndex, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    _file(index).add("u", _pages(20))
    ids = [f"p{i:03d}" for i in range(20)]
    read = index.prefetch("u", ids)  # in the embedder's space: no basis below FIT_PAGES pages
    assert read is not None and read.view.basis is None
    _file(index).add("u", _pages(FIT_PAGES, start=20))  # the basis is fitted; every row moves into it
    fresh = index.lift("u", ids, probe)
    asked = _recording(index, monkeypatch)

    again = index.lift("u", ids, probe, read)

    assert asked == [[], ids]  # what it lacked (nothing), then all of them in the new space
    assert fresh is not None and again is not None and np.array_equal(again, fresh)


def test_prefetch_stops_between_chunks_once_the_search_is_back(index: LateIndex) -> None:
    _file(index).add("u", _pages(3 * PREFETCH_CHUNK))
    ids = [f"p{i:03d}" for i in range(3 * PREFETCH_CHUNK)]
    answers = iter([False, True])

    read = index.prefetch("u", ids, until=lambda: next(answers))

    assert read is not None and sorted(read.view.pages) == ids[:PREFETCH_CHUNK]
    assert index.prefetch("u", ids, until=lambda: True) is None


def test_an_unreadable_file_makes_prefetch_read_nothing(
    index: LateIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    _file(index).add("u", _pages(5))

    def broken(*_: Any) -> View:
        raise OSError("disk gone")

    monkeypatch.setattr(_file(index), "read", broken)
    assert index.prefetch("u", ["p000", "p001"]) is None


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_a_recall_whose_query_is_still_embedding_hands_the_prefetched_rows_to_lift(
    puppy_memory: MemoryOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = puppy_memory
    vector = Probe.vector

    def slow(self: Probe) -> list[float]:
        time.sleep(0.3)  # the words are scored first: the rows are read meanwhile
        return vector(self)

    handed: list[Prefetched | None] = []
    lift = LateIndex.lift

    def recorded(
        self: LateIndex, user: str, ids: Sequence[str], probe: Probe | None, read: Prefetched | None = None
    ) -> Any:
        handed.append(read)
        return lift(self, user, ids, probe, read)

    monkeypatch.setattr(Probe, "vector", slow)
    monkeypatch.setattr(LateIndex, "lift", recorded)
    context = memory.retrieve_memory("Which puppy did they adopt?", update_heat=False)

    assert len(handed) == 1 and handed[0] is not None and len(handed[0].view.pages) == 3
    assert any(u.score_parts.get("late", 0.0) for u in context.all_units)


def _maxima_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many pages each call of ``policy.late.maxima`` compared with the query."""
    calls: list[int] = []
    maxima = late_policy.maxima

    def recorded(query: np.ndarray, pages: Sequence[np.ndarray]) -> np.ndarray:
        calls.append(len(pages))
        return maxima(query, pages)

    monkeypatch.setattr(late_policy, "maxima", recorded)
    return calls


def test_pages_prefetched_after_the_query_is_embedded_are_compared_once_with_the_same_gains(
    index: LateIndex, probe: Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    _file(index).add("u", _pages(40))
    ids = [f"p{i:03d}" for i in range(40)]
    fresh = index.lift("u", ids, probe)
    calls = _maxima_calls(monkeypatch)

    read = index.prefetch("u", ids[:30], probe=probe)
    assert read is not None and sorted(read.maxima) == ids[:30] and read.rows is probe.rows
    assert calls == [PREFETCH_CHUNK, 30 - PREFETCH_CHUNK]  # each chunk as it is read
    again = index.lift("u", ids, probe, read)

    assert calls[2:] == [10]  # only the pages it lacked
    assert fresh is not None and again is not None and np.array_equal(again, fresh)  # (to the bit)


def test_what_was_compared_with_another_query_or_before_a_basis_fit_is_not_used(
    index: LateIndex, probe: Probe, local_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _file(index).add("u", _pages(20))
    ids = [f"p{i:03d}" for i in range(20)]
    other = Probe(local_embedder, "The printer jammed again", wordpieces=True)
    other.vector()
    read = index.prefetch("u", ids, probe=other)
    assert read is not None and len(read.maxima) == 20
    calls = _maxima_calls(monkeypatch)
    again, fresh = index.lift("u", ids, probe, read), index.lift("u", ids, probe)
    assert again is not None and fresh is not None and np.array_equal(again, fresh)
    assert calls == [20, 20]  # compared again with this query

    read = index.prefetch("u", ids, probe=probe)  # in the embedder's space: no basis yet
    _file(index).add("u", _pages(FIT_PAGES, start=20))  # the basis is fitted; every row moves into it
    calls.clear()
    again, fresh = index.lift("u", ids, probe, read), index.lift("u", ids, probe)
    assert again is not None and fresh is not None and np.array_equal(again, fresh)
    assert calls == [20, 20]


def test_pages_prefetched_before_the_query_is_embedded_are_compared_by_lift(
    index: LateIndex, local_embedder: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _file(index).add("u", _pages(30))
    ids = [f"p{i:03d}" for i in range(30)]
    pending = Probe(local_embedder, "We adopted a puppy from the shelter", wordpieces=True)
    read = index.prefetch("u", ids, probe=pending)  # (its rows come with the embedding)
    assert read is not None and not read.maxima and read.rows is None
    pending.vector()
    calls = _maxima_calls(monkeypatch)
    assert index.lift("u", ids, pending, read) is not None and calls == [30]
