"""A recall reads the late rerank's rows of the pages its words rank first while its query is embedded
(``LateIndex.prefetch``); ``lift`` then reads only the rows it lacks, and reads them all again when the
user's basis changed in between. The gains are the same as from one read."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memoryos_core import MemoryOS
from memoryos_core._config import RetrievalConfig
from memoryos_core.engine.late import PREFETCH_CHUNK, LateIndex, Probe
from memoryos_core.engine.late_store import FIT_PAGES, View, WordpieceFile

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
    assert read is not None and sorted(read.pages) == ids[:30]
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
    assert read is not None and read.basis is None
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

    assert read is not None and sorted(read.pages) == ids[:PREFETCH_CHUNK]
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

    handed: list[View | None] = []
    lift = LateIndex.lift

    def recorded(
        self: LateIndex, user: str, ids: Sequence[str], probe: Probe | None, read: View | None = None
    ) -> Any:
        handed.append(read)
        return lift(self, user, ids, probe, read)

    monkeypatch.setattr(Probe, "vector", slow)
    monkeypatch.setattr(LateIndex, "lift", recorded)
    context = memory.retrieve_memory("Which puppy did they adopt?", update_heat=False)

    assert len(handed) == 1 and handed[0] is not None and len(handed[0].pages) == 3
    assert any(u.score_parts.get("late", 0.0) for u in context.all_units)
