"""Ranking: lexical and dense scores fused on one scale, relevance shared along the conversation.

Measured on LoCoMo (see the README): BM25 over pages beats dense, their z-score fusion beats
both, and a page next to a strong match often holds the answer (the match asks, the next page
replies), so each page also takes a share of its neighbours' scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DENSE_WEIGHT = 0.85
"""Weight of the dense z-score against the lexical one."""
PREVIOUS_SHARE = 0.3
"""Share of the previous page's score a page receives (the answer follows the question)."""
NEXT_SHARE = 0.3
"""Share of the next page's score a page receives."""
SESSION_SHARE = 0.3
"""Weight of the session's best page score (z-scaled across sessions) added to each of its pages."""
SESSION_GAP_S = 3_600.0
"""Pages more than an hour apart belong to different sessions."""
WHEN_BOOST = 0.5
"""Added to pages that place something in time ("yesterday", "last week") for a "when" question."""
DATE_BOOST = 0.5
"""Added (in z units) to pages whose time falls in the period the query names."""
DATE_GRACE_S = 14 * 86_400.0
"""Events are often told up to two weeks after they happen ("last week")."""


def zscore(values: np.ndarray) -> np.ndarray:
    std = float(values.std())
    return (values - float(values.mean())) / std if std > 0 else np.zeros_like(values)


def dense_scale(known: dict[int, float]) -> tuple[float, float]:
    """Mean and spread of the candidates' dense similarities: the scale every dense score is put on."""
    if not known:
        return 0.0, 1.0
    sims = np.fromiter(known.values(), dtype=np.float32)
    return float(sims.mean()), float(sims.std()) or 1.0


def dense_z(count: int, known: dict[int, float]) -> np.ndarray:
    """Dense scores of all pages when only the nearest candidates are known.

    Pages outside the candidates get the lowest candidate similarity; the scale is the
    candidates' own mean and spread (measured within 0.2 points of exact statistics).
    """
    if not known:
        return np.zeros(count, dtype=np.float32)
    sims = np.fromiter(known.values(), dtype=np.float32)
    mean, std = dense_scale(known)
    scores = np.full(count, float(sims.min()), dtype=np.float32)
    scores[np.fromiter(known.keys(), dtype=np.int64)] = sims
    return (scores - mean) / std


def sessions(page_times: np.ndarray) -> np.ndarray:
    """Session number of every page: a new session starts after a gap of SESSION_GAP_S."""
    if not len(page_times):
        return np.zeros(0, dtype=np.int64)
    starts = np.abs(np.diff(page_times)) > SESSION_GAP_S
    return np.concatenate(([0], np.cumsum(starts))).astype(np.int64)


def session_prior(score: np.ndarray, session: np.ndarray) -> np.ndarray:
    """Each page's session's best score, z-scaled across sessions (zeros for a single session)."""
    best = np.full(int(session[-1]) + 1, -np.inf)
    np.maximum.at(best, session, score)
    prior: np.ndarray = zscore(best)[session]
    return prior


def fuse(
    lexical: np.ndarray,
    dense: np.ndarray,
    page_times: np.ndarray,
    window: tuple[float, float] | None,
    *,
    timed: np.ndarray | None = None,
    when: bool = False,
) -> np.ndarray:
    """One score per page, in conversation order: z(BM25) + dense z, with its session's best
    score, shared with neighbours.

    ``timed`` marks pages that place something in time, boosted when the query asks ``when``.
    """
    score = zscore(lexical) + DENSE_WEIGHT * dense
    if len(score) > 1:
        score = score + SESSION_SHARE * session_prior(score, sessions(page_times))
    if when and timed is not None:
        score = score + WHEN_BOOST * timed
    if len(score) > 1:
        floor = float(score.min())
        previous = np.concatenate(([floor], score[:-1]))
        following = np.concatenate((score[1:], [floor]))
        score = score + PREVIOUS_SHARE * previous + NEXT_SHARE * following
    if window is not None:
        inside = (page_times >= window[0]) & (page_times < window[1] + DATE_GRACE_S)
        score = score + DATE_BOOST * inside
    return score


def top_positions(scores: np.ndarray, count: int, exclude: Sequence[int] = ()) -> list[int]:
    """Positions of the ``count`` best scores, best first, leaving out ``exclude``."""
    masked = scores.copy()
    if len(exclude):
        masked[np.asarray(exclude, dtype=np.int64)] = -np.inf
    count = min(count, int(np.isfinite(masked).sum()))
    if count <= 0:
        return []
    best = np.argpartition(-masked, count - 1)[:count]
    return [int(i) for i in best[np.argsort(-masked[best], kind="stable")]]
