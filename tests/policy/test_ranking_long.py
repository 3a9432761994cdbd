"""On long rankings (100k pages) the top pages and peaks are found among the few scores that can
hold them: the results must be exactly those of a partition of the whole array, ties included."""

from __future__ import annotations

import numpy as np

from memoryos_core.policy import ranking


def full_top(scores: np.ndarray, count: int, exclude: list[int]) -> list[int]:
    masked = scores.copy()
    if exclude:
        masked[np.asarray(exclude, dtype=np.int64)] = -np.inf
    count = min(count, int(np.isfinite(masked).sum()))
    best = np.argpartition(-masked, count - 1)[:count]
    return [int(i) for i in best[np.argsort(-masked[best], kind="stable")]]


def full_peak(z: np.ndarray, depth: int = ranking.PEAK_DEPTH) -> float:
    top = -np.partition(-z, (0, depth - 1), axis=-1)
    return float(top[..., 0] - top[..., depth - 1])


def rankings(pages: int = 100_000) -> list[np.ndarray]:
    rng = np.random.default_rng(17)
    spread = rng.standard_normal(pages).astype(np.float32)
    tied = rng.integers(0, 12, pages).astype(np.float32)  # many equal scores, at the cut too
    dense = np.full(pages, -1.2, dtype=np.float32)  # dense_z: 50 candidates, the rest at the floor
    dense[rng.choice(pages, 50, replace=False)] = rng.standard_normal(50).astype(np.float32)
    recent = np.zeros(pages, dtype=np.float32)  # all of the top among the newest pages
    recent[-40:] = rng.standard_normal(40).astype(np.float32)
    top_tie = spread.copy()
    top_tie[rng.choice(pages, 4, replace=False)] = spread.max()
    return [spread, tied, dense, recent, top_tie]


def test_top_pages_and_peaks_of_long_rankings_equal_a_full_partition() -> None:
    for scores in rankings():
        for count, exclude in [(14, []), (1, []), (30, [5, 99_999, 12_345]), (64, [0])]:
            assert ranking.top_positions(scores, count, exclude) == full_top(scores, count, exclude)
        assert float(ranking.peak(scores)) == full_peak(scores)


def test_the_narrowed_search_is_taken_when_the_top_is_distinct() -> None:
    spread = rankings()[0]
    assert ranking._distinct_top(spread.copy(), 14) is not None  # the quick path, not the fallback
    assert ranking._distinct_top(rankings()[1].copy(), 14) is None  # ties: the full partition decides
