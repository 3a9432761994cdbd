"""Ranking: lexical and dense scores fused on one scale, relevance shared along the conversation.

Measured on LoCoMo (see the README): BM25 over pages beats dense, their z-score fusion beats
both, and a page next to a strong match often holds the answer (the match asks, the next page
replies), so each page also takes a share of its neighbours' scores. The dense ranking's weight
adapts to each query: the more its top stands out against the lexical ranking's, the more it counts,
so a weaker or stronger embedder is weighed by what its own scores show rather than by a constant.

Every function works along the last axis: one query's scores (shape ``(pages,)``) as the engine
ranks them, or many queries' at once (``(queries, pages)``) as ``memoryos bench fusion`` evaluates them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

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
WHEN_BOOST = 0.0
"""Added to pages that place something in time ("yesterday", "last week") for a "when" question.

Off: keyed on English phrasing, and without it R@10 held out over LoCoMo's conversations was
0.2 points higher (``memoryos bench fusion``, ablation)."""
DATE_BOOST = 0.5
"""Added (in z units) to pages whose time falls in the period the query names."""
DATE_GRACE_S = 14 * 86_400.0
"""Events are often told up to two weeks after they happen ("last week")."""
PEAK_DEPTH = 10
"""A ranking's peak: its best z-score minus its PEAK_DEPTH-th best (how far its top stands out)."""
ADAPTIVE_RANGE = 1.5
"""The adaptive dense weight stays within DENSE_WEIGHT / 1.5 and DENSE_WEIGHT * 1.5 (of 1.5, 2, 3, 4
and 8 on LoCoMo, 1.5 gave the best R@10 and R@50 with both all-MiniLM-L6-v2 and the hashing embedder)."""


@dataclass(frozen=True)
class Weights:
    """The weights of :func:`fuse`; the defaults are the module's constants."""

    dense: float = DENSE_WEIGHT
    session: float = SESSION_SHARE
    previous: float = PREVIOUS_SHARE
    next: float = NEXT_SHARE
    when: float = WHEN_BOOST
    date: float = DATE_BOOST
    adaptive: bool = True
    """Scale ``dense`` per query by how peaked the dense ranking is against the lexical one."""


DEFAULT = Weights()


class _Scores(Protocol):
    """One value per page, read one page at a time (``sparse.Sparse``, which holds few of them)."""

    ndim: int

    def __getitem__(self, position: int) -> Any: ...


Part: TypeAlias = "np.ndarray | _Scores"
"""One part of the pages' scores in a ``trace``: an array (0-d: the same for every page) or one value per
page read at a position."""


RELATIVE_SPREAD = 1e-5
"""A spread below this share of the mean is rounding: the values count as equal."""


def zscore(values: np.ndarray) -> np.ndarray:
    """``values`` centred and scaled along the last axis (zeros where they are all equal)."""
    mean = values.mean(axis=-1, keepdims=True)
    std = values.std(axis=-1, keepdims=True)
    # Equal float32 values leave a rounding spread (~1e-7 of their size), not a real one.
    spread = std > RELATIVE_SPREAD * np.abs(mean)  # (so std > 0 as well)
    scaled: np.ndarray = np.divide(values - mean, std, out=np.zeros_like(values), where=spread)
    return scaled


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


def peak(z: np.ndarray, depth: int = PEAK_DEPTH) -> np.ndarray:
    """How far the top of each ranking stands out: best z minus the ``depth``-th best (0 if flat)."""
    depth = min(depth, z.shape[-1])
    if depth < 2:
        return np.zeros(z.shape[:-1])
    floor = _top_floor(z, depth)
    if floor is not None:  # the same top values, partitioned among the few that can hold them
        z = z[z >= floor]
    top = -np.partition(-z, (0, depth - 1), axis=-1)
    spread: np.ndarray = top[..., 0] - top[..., depth - 1]
    return spread


def dense_weight(lexical_z: np.ndarray, dense: np.ndarray, base: float = DENSE_WEIGHT) -> np.ndarray:
    """The dense ranking's weight for each query: ``base`` times how much more peaked its top is
    than the lexical ranking's, within ``base / ADAPTIVE_RANGE`` and ``base * ADAPTIVE_RANGE``.

    A query whose words match one page clearly leans on BM25; one whose words match nothing (or
    everything alike) leans on the embedder, and so does an embedder whose rankings stand out more.
    """
    lexical_peak, dense_peak = peak(lexical_z), peak(dense)
    ratio = np.divide(
        dense_peak, lexical_peak, out=np.full_like(dense_peak, ADAPTIVE_RANGE), where=lexical_peak > 0
    )
    weight: np.ndarray = base * np.clip(ratio, 1.0 / ADAPTIVE_RANGE, ADAPTIVE_RANGE)
    return weight


def sessions(page_times: np.ndarray) -> np.ndarray:
    """Session number of every page: a new session starts after a gap of SESSION_GAP_S."""
    if not len(page_times):
        return np.zeros(0, dtype=np.int64)
    starts = np.abs(np.diff(page_times)) > SESSION_GAP_S
    return np.concatenate(([0], np.cumsum(starts))).astype(np.int64)


def session_prior(score: np.ndarray, session: np.ndarray) -> np.ndarray:
    """Each page's session's best score, z-scaled across sessions (zeros for a single session).

    ``session`` numbers pages in conversation order (as :func:`sessions` does: never decreasing).
    """
    if not len(session):
        return np.zeros_like(score)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(session)) + 1))  # (diff's prepend= is slow)
    best = np.maximum.reduceat(score, starts, axis=-1)
    # session i's value over its run of pages: np.repeat, ~10x quicker than indexing by ``session``
    prior: np.ndarray = np.repeat(zscore(best), np.diff(np.append(starts, len(session))), axis=-1)
    return prior


def neighbour_shares(score: np.ndarray, previous: float, following: float) -> np.ndarray:
    """``score`` plus shares of the previous and the next page's score (the lowest score at the ends)."""
    if score.shape[-1] < 2 or not (previous or following):
        return score
    floor = score.min(axis=-1, keepdims=True)
    before = np.concatenate((floor, score[..., :-1]), axis=-1)
    after = np.concatenate((score[..., 1:], floor), axis=-1)
    shared: np.ndarray = score + previous * before + following * after
    return shared


def fuse(
    lexical: np.ndarray,
    dense: np.ndarray,
    page_times: np.ndarray,
    window: tuple[float, float] | np.ndarray | None,
    *,
    timed: np.ndarray | None = None,
    when: bool | np.ndarray = False,
    weights: Weights = DEFAULT,
    trace: dict[str, np.ndarray] | None = None,
    session: np.ndarray | None = None,
) -> np.ndarray:
    """One score per page, in conversation order: z(BM25) + dense z, with its session's best
    score, shared with neighbours.

    ``session``: ``sessions(page_times)``, when the caller keeps it (the engine's page index does, per
    page count: at 100k pages it is a few passes over the times saved per query).

    ``timed`` marks pages that place something in time, boosted when the query asks ``when``.
    For many queries at once, ``when`` holds one flag per query and ``window`` one
    ``(start, end)`` row per query (NaN where the query names no period).

    ``trace``, a dict, receives the terms the score was added up from (the arrays computed anyway,
    no copy; the result is the same with or without it); :func:`score_parts` reads one page's
    breakdown from them.
    """
    lexical_z = zscore(lexical)
    if weights.adaptive:
        dense_term = dense_weight(lexical_z, dense, weights.dense)[..., None] * dense
    else:
        dense_term = weights.dense * dense
    score = lexical_z + dense_term
    session_term: np.ndarray | float = 0.0
    if score.shape[-1] > 1 and weights.session:
        session_term = weights.session * session_prior(
            score, sessions(page_times) if session is None else session
        )
        score = score + session_term
    when_term: np.ndarray | float = 0.0
    if timed is not None and weights.when:
        asks = np.asarray(when, dtype=bool)[..., None] if np.ndim(when) else bool(when)
        when_term = weights.when * (timed & asks)
        score = score + when_term
    shared = score  # what the neighbours share
    score = neighbour_shares(score, weights.previous, weights.next)
    date_term: np.ndarray | float = 0.0
    if window is not None and weights.date:
        period = np.asarray(window, dtype=np.float64)
        start, end = period[..., 0:1], period[..., 1:2] + DATE_GRACE_S
        if period.ndim == 1:
            start, end = period[0], period[1] + DATE_GRACE_S
        date_term = weights.date * ((page_times >= start) & (page_times < end))
        score = score + date_term
    if trace is not None:
        terms = {"lexical": lexical_z, "dense": dense_term, "session": session_term}
        terms |= {"when": when_term, "shared": shared, "date": date_term}
        trace.update({key: np.asarray(value) for key, value in terms.items()})
        trace["shares"] = np.asarray([weights.previous, weights.next], dtype=np.float64)
        trace["floor"] = shared.min(axis=-1) if shared.shape[-1] else np.asarray(0.0)  # the ends' neighbour
    fused: np.ndarray = score
    return fused


SCORE_PARTS = ("lexical", "dense", "session", "neighbours", "date", "late")
"""The parts of a page's score, as :func:`score_parts` names them (``late``: the engine's late rerank)."""


def score_parts(trace: Mapping[str, Part], position: int) -> dict[str, float]:
    """The parts of one page's score from a single query's ``trace`` (filled by :func:`fuse`), in O(1).

    ``lexical`` is the BM25 z-score, ``dense`` the weighted dense z-score, ``session`` the share of
    the session's best page, ``neighbours`` the shares of the previous and the next page's scores,
    ``date`` the boost for a page in the period the query names (and the "when" boost, off by
    default), ``late`` what the late rerank added (the engine's ``trace["late"]``, 0 without it; a page
    below the re-ranked ones was shifted down by it). They add up to the page's score (up to rounding).
    """

    def at(key: str) -> float:
        value = trace[key]
        return float(value[position]) if value.ndim else float(np.asarray(value))

    shared = np.asarray(trace["shared"])
    previous, following = (float(share) for share in np.asarray(trace["shares"]))
    neighbours = 0.0
    if shared.shape[-1] >= 2 and (previous or following):
        floor = float(np.asarray(trace["floor"]))
        before = float(shared[position - 1]) if position > 0 else floor
        after = float(shared[position + 1]) if position + 1 < shared.shape[-1] else floor
        neighbours = previous * before + following * after
    return {
        "lexical": at("lexical"),
        "dense": at("dense"),
        "session": at("session"),
        "neighbours": neighbours,
        "date": at("date") + at("when"),
        "late": at("late") if "late" in trace else 0.0,
    }


def top_positions(scores: np.ndarray, count: int, exclude: Sequence[int] = ()) -> list[int]:
    """Positions of the ``count`` best scores, best first, leaving out ``exclude``."""
    masked = scores.copy()
    if len(exclude):
        masked[np.asarray(exclude, dtype=np.int64)] = -np.inf
    fast = _distinct_top(masked, count)
    if fast is not None:
        return fast
    count = min(count, int(np.isfinite(masked).sum()))
    if count <= 0:
        return []
    best = np.argpartition(-masked, count - 1)[:count]
    return [int(i) for i in best[np.argsort(-masked[best], kind="stable")]]


_FAST_FROM = 8_192
"""Below this many pages a partition of the whole array is as quick as narrowing it first."""
_CHUNKS = 256
_CHUNK_MIN = 16
"""The fewest values a chunk holds (more chunks for a larger ``depth``: four per value sought)."""


def _top_floor(values: np.ndarray, depth: int) -> float | None:
    """A finite value that at least ``depth`` of the 1-D ``values`` reach (so every one of the
    ``depth`` largest does): the ``depth``-th largest of the maxima of 256 chunks (``4 * depth`` for
    a larger ``depth``). None when not worth it (short or many-row arrays, chunks of fewer than 16
    values) or not found (NaN, too few finite)."""
    chunks = max(_CHUNKS, 4 * depth)
    if values.ndim != 1 or values.shape[0] < max(_FAST_FROM, _CHUNK_MIN * chunks) or depth <= 0:
        return None
    size = values.shape[0] // chunks
    maxima = values[: size * chunks].reshape(chunks, size).max(axis=1)
    floor = float(-np.partition(-maxima, depth - 1)[depth - 1])
    return floor if np.isfinite(floor) else None


def _distinct_top(masked: np.ndarray, count: int) -> list[int] | None:
    """``top_positions`` of a long array among the few scores that can be in its top, when the
    ``count`` best are distinct and above all others (then any method gives the same list);
    None otherwise (ties: the caller's partition of the whole array decides, as it always did)."""
    floor = _top_floor(masked, count)
    if floor is None:
        return None
    candidates = np.flatnonzero(masked >= floor)
    values = masked[candidates]
    best = np.argpartition(-values, count - 1)[:count] if len(values) > count else np.arange(len(values))
    order = best[np.argsort(-values[best], kind="stable")]
    top = values[order]
    rest = np.delete(values, best)
    if np.any(top[1:] >= top[:-1]) or (len(rest) and rest.max() >= top[-1]):
        return None
    return [int(i) for i in candidates[order]]
