"""``sparse.fuse_sparse``: the engine's fusion, computed on the pages that differ, gives ``ranking.fuse``'s
scores, ranking and score parts."""

from __future__ import annotations

import numpy as np
import pytest

from memoryos_core.policy import ranking
from memoryos_core.policy.sparse import SPARSE_FROM, Sparse, dense_sparse, fuse_query, fuse_sparse, sizes


def _case(seed: int, count: int) -> tuple[Sparse, dict[int, float], np.ndarray]:
    """Lexical scores held by some pages (the others share ``rest``), dense candidates, page times with
    sessions of varied lengths (and, for some seeds, every page at one time: one session)."""
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(count, int(rng.integers(0, count + 1)), replace=False))
    rest = float(rng.choice([0.0, 0.4]))
    lexical = Sparse(held, (rest + 0.1 + rng.random(len(held)) * 5).astype(np.float32), rest, count)
    candidates = rng.choice(count, min(count, int(rng.integers(0, 60))), replace=False)
    known = {int(p): float(s) for p, s in zip(candidates, rng.random(len(candidates)))}
    times = np.cumsum(rng.random(count) * float(rng.choice([300.0, 3_000.0, 20_000.0])))
    if seed % 5 == 0:
        times = np.full(count, 1e9)
    return lexical, known, times


@pytest.mark.parametrize("seed", range(40))
def test_fuse_sparse_gives_fuses_scores_ranking_and_parts(seed: int) -> None:
    count = [2, 3, 17, 400, 9_000][seed % 5]
    lexical, known, times = _case(seed, count)
    window = (float(times[count // 3]), float(times[count // 2])) if seed % 2 else None
    weights = ranking.Weights(adaptive=seed % 3 != 0, when=0.7 if seed % 4 == 0 else 0.0)
    timed = np.random.default_rng(seed).random(count) < 0.2
    expected_parts: dict[str, ranking.Part] = {}
    parts: dict[str, ranking.Part] = {}
    expected = ranking.fuse(
        lexical.full(), ranking.dense_z(count, known), times, window,
        timed=timed, when=True, weights=weights, trace=expected_parts, session=ranking.sessions(times),
    )  # fmt: skip
    fused = fuse_sparse(
        lexical, dense_sparse(count, known), times, window,
        session_sizes=sizes(ranking.sessions(times)), timed=timed, when=True, weights=weights, trace=parts,
    )  # fmt: skip
    assert fused.dtype == expected.dtype
    np.testing.assert_allclose(fused, expected, rtol=0, atol=2e-5)  # (the z-scales' mean and spread rounded)
    ordered = np.argsort(-expected, kind="stable")
    assert np.all(np.diff(fused[ordered]) <= 2e-5)  # the same order, up to that rounding
    for position in range(0, count, max(1, count // 9)):
        got, want = ranking.score_parts(parts, position), ranking.score_parts(expected_parts, position)
        assert got.keys() == want.keys()
        assert all(abs(got[key] - want[key]) < 2e-5 for key in want), (position, got, want)
        assert abs(sum(got.values()) - float(fused[position])) < 1e-4  # the parts add up to the score


@pytest.mark.parametrize("seed", range(12))
def test_zscore_and_peak_of_the_held_values_are_those_of_all_scores(seed: int) -> None:
    lexical, _, _ = _case(seed, [1, 5, 12, 3_000][seed % 4])
    full = lexical.full()
    np.testing.assert_allclose(lexical.zscore().full(), ranking.zscore(full), rtol=0, atol=1e-5)
    assert abs(lexical.peak() - float(ranking.peak(full))) < 1e-6
    assert abs(lexical.zscore().peak() - float(ranking.peak(ranking.zscore(full)))) < 1e-5


def test_equal_scores_have_no_spread() -> None:
    flat = Sparse(np.array([1, 3]), np.array([2.0, 2.0], np.float32), 2.0, 5)
    assert not flat.zscore().full().any() and flat.peak() == 0.0


def test_dense_sparse_is_dense_z() -> None:
    known = {7: 0.9, 2: 0.1, 40: 0.5}
    sparse = dense_sparse(50, known)
    assert sparse.at.tolist() == [2, 7, 40]  # (ascending, as ``Sparse`` needs)
    np.testing.assert_array_equal(sparse.full(), ranking.dense_z(50, known))
    assert not dense_sparse(4, {}).full().any()


def test_take_reads_held_and_other_positions() -> None:
    scores = Sparse(np.array([2, 5, 9]), np.array([1.5, -2.0, 3.0], np.float32), 0.25, 12)
    assert scores.take(np.array([9, 0, 5, 2, 11])).tolist() == [3.0, 0.25, -2.0, 1.5, 0.25]
    assert scores[5] == -2.0 and scores[6] == 0.25
    assert Sparse(np.zeros(0, np.int64), np.zeros(0, np.float32), 1.0, 3).take(np.array([0, 2])).tolist() == [
        1,
        1,
    ]


def test_top_ranks_the_held_values_then_the_newest_others() -> None:
    scores = Sparse(np.array([1, 4, 6]), np.array([0.5, 2.0, 1.0], np.float32), 0.0, 8)
    assert scores.top(2) == [4, 6]
    assert scores.top(5) == [4, 6, 1, 7, 5]  # (fewer held than asked: the last pages, newest first)
    assert scores.top(20) == [4, 6, 1, 7, 5, 3, 2, 0]


def test_sizes_counts_each_sessions_pages() -> None:
    assert sizes(ranking.sessions(np.array([0.0, 10.0, 9_000.0, 9_100.0, 9_200.0, 50_000.0]))).tolist() == [
        2,
        3,
        1,
    ]


@pytest.mark.parametrize("count", [300, SPARSE_FROM])
def test_fuse_query_gives_fuses_scores_and_parts_at_every_size(count: int) -> None:
    lexical, known, times = _case(3, count)
    session = ranking.sessions(times)
    expected_parts: dict[str, ranking.Part] = {}
    parts: dict[str, ranking.Part] = {}
    expected = ranking.fuse(
        lexical.full(), ranking.dense_z(count, known), times, None, trace=expected_parts, session=session
    )
    fused = fuse_query(
        lexical, known, times, None, session=session, session_sizes=sizes(session), trace=parts
    )
    np.testing.assert_allclose(fused, expected, rtol=0, atol=2e-5)
    if count < SPARSE_FROM:  # (below it, ``ranking.fuse`` itself)
        np.testing.assert_array_equal(fused, expected)
    for position in (0, count // 2, count - 1):
        got, want = ranking.score_parts(parts, position), ranking.score_parts(expected_parts, position)
        assert all(abs(got[key] - want[key]) < 2e-5 for key in want)
