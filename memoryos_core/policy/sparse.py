"""Fusion over a large store in the work of the pages that match: ``ranking.fuse`` for one query whose
lexical and dense scores are each one value for most pages.

At 100k pages a query's words are in a share of them (a median of 27k for LoCoMo's questions over its
messages) and the embedder's search returns a hundred: every other page has the lexical score of a page
without a query word and the dense score of a page outside the candidates. ``fuse`` computes every step
over every page (~15 passes over the scores: 1-2 ms at 100k); :func:`fuse_sparse` computes the steps on
the pages that differ, per session for the others, and gives the same scores (up to float32 rounding of
the z-scales' mean and spread) in a few passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from memoryos_core.policy import ranking


@dataclass(frozen=True)
class Sparse:
    """``count`` float32 scores: ``values`` at the positions ``at`` (distinct, ascending), ``rest`` at
    every other position."""

    at: np.ndarray
    values: np.ndarray
    rest: float
    count: int

    ndim = 1  # (read as a score part: ``ranking.score_parts``)

    def __getitem__(self, position: int) -> float:
        """The score at ``position`` (from :meth:`full`, made at the first read: a recall reads a few
        dozen when it explains the scores of the units it returns)."""
        return float(self._full[position])

    @cached_property
    def _full(self) -> np.ndarray:
        return self.full()

    def top(self, count: int) -> list[int]:
        """Positions of the ``count`` best scores, best first: of ``values`` (``rest`` below them all, as
        for the lexical scores) and, when fewer, the last other positions."""
        best = [int(self.at[i]) for i in ranking.top_positions(self.values, count)]
        held = set(best)
        position = self.count - 1  # (fewer than ``count`` held: at most ``2 * count`` steps)
        while len(best) < min(count, self.count) and position >= 0:
            if position not in held:
                best.append(position)
            position -= 1
        return best

    def full(self) -> np.ndarray:
        out = np.full(self.count, self.rest, dtype=np.float32)
        out[self.at] = self.values
        return out

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The scores at ``positions`` (ascending or not), float32."""
        if not len(self.at):
            return np.full(len(positions), self.rest, dtype=np.float32)
        found = np.minimum(np.searchsorted(self.at, positions), len(self.at) - 1)
        taken: np.ndarray = np.where(self.at[found] == positions, self.values[found], np.float32(self.rest))
        return taken.astype(np.float32, copy=False)

    def zscore(self) -> Sparse:
        """``ranking.zscore`` of the full scores, computed from the values that differ."""
        values = self.values.astype(np.float64)
        others = self.count - len(values)
        mean = (float(values.sum()) + others * self.rest) / self.count
        var = (float(np.square(values - mean).sum()) + others * (self.rest - mean) ** 2) / self.count
        mean32, std32 = np.float32(mean), np.float32(np.sqrt(var))
        if not std32 > ranking.RELATIVE_SPREAD * abs(mean32):
            return Sparse(self.at, np.zeros(len(self.at), np.float32), 0.0, self.count)
        return Sparse(
            self.at,
            (self.values - mean32) / std32,
            float((np.float32(self.rest) - mean32) / std32),
            self.count,
        )

    def peak(self, depth: int = ranking.PEAK_DEPTH) -> float:
        """``ranking.peak`` of the full scores (a float32 value)."""
        depth = min(depth, self.count)
        if depth < 2:
            return 0.0
        values = self.values
        if len(values) > depth:
            values = -np.partition(-values, depth - 1)[:depth]
        rest = np.full(min(depth, self.count - len(self.values)), self.rest, dtype=np.float32)
        top = np.sort(np.concatenate((values, rest)))[::-1]
        return float(top[0] - top[depth - 1])


def dense_sparse(count: int, known: dict[int, float]) -> Sparse:
    """``ranking.dense_z(count, known)`` as a :class:`Sparse`."""
    if not known:
        return Sparse(np.zeros(0, np.int64), np.zeros(0, np.float32), 0.0, count)
    at = np.fromiter(known.keys(), dtype=np.int64)
    sims = np.fromiter(known.values(), dtype=np.float32)
    order = np.argsort(at)
    mean, std = ranking.dense_scale(known)
    floor = np.float32(sims.min())
    return Sparse(at[order], (sims[order] - mean) / std, float((floor - mean) / std), count)


def fuse_sparse(
    lexical: Sparse,
    dense: Sparse,
    page_times: np.ndarray,
    window: tuple[float, float] | None,
    *,
    session_sizes: np.ndarray,
    timed: np.ndarray | None = None,
    when: bool = False,
    weights: ranking.Weights = ranking.DEFAULT,
    trace: dict[str, ranking.Part] | None = None,
) -> np.ndarray:
    """``ranking.fuse(lexical.full(), dense.full(), page_times, window, session=...)`` for one query:
    the z-scales and the dense weight from the pages where ``lexical`` and ``dense`` differ from their
    ``rest``, then a few passes over the scores. ``session_sizes``: the number
    of pages of each session, in order (``sizes(ranking.sessions(page_times))``). ``trace`` receives the
    same parts as ``fuse``'s."""
    count = lexical.count
    lexical_z = lexical.zscore()
    weight: np.float32 | float = weights.dense
    if weights.adaptive:
        lexical_peak, dense_peak = lexical_z.peak(), dense.peak()
        ratio = np.float32(ranking.ADAPTIVE_RANGE)  # (a flat lexical ranking: as ``ranking.dense_weight``)
        if lexical_peak > 0:
            ratio = np.float32(dense_peak) / np.float32(lexical_peak)
        weight = weights.dense * np.clip(ratio, 1.0 / ranking.ADAPTIVE_RANGE, ranking.ADAPTIVE_RANGE)
    dense_rest = np.float32(weight * np.float32(dense.rest))  # the dense term of a page not found
    dense_values = weight * dense.values
    # lexical z + dense term, as ``fuse`` adds them, written where each differs
    score = np.full(count, np.float32(lexical_z.rest) + dense_rest, dtype=np.float32)
    score[lexical_z.at] = lexical_z.values + dense_rest
    score[dense.at] = lexical_z.take(dense.at) + dense_values
    session_term: np.ndarray | float = 0.0
    if count > 1 and weights.session:
        starts = np.concatenate(([0], np.cumsum(session_sizes)[:-1]))
        best = np.maximum.reduceat(score, starts)
        session_term = np.repeat(weights.session * ranking.zscore(best), session_sizes)
        score += session_term
    when_term: np.ndarray | float = 0.0
    if timed is not None and weights.when:
        when_term = weights.when * (timed & when)
        score = score + when_term
    shared = score  # what the neighbours share
    score = ranking.neighbour_shares(score, weights.previous, weights.next)
    date_term: np.ndarray | float = 0.0
    if window is not None and weights.date:
        start, end = window[0], window[1] + ranking.DATE_GRACE_S
        date_term = weights.date * ((page_times >= start) & (page_times < end))
        score = score + date_term
    if trace is not None:
        # (the lexical and dense parts as they are: a page's is looked up when its score is explained)
        trace |= {"lexical": lexical_z, "dense": Sparse(dense.at, dense_values, float(dense_rest), count)}
        terms = {"session": session_term, "when": when_term, "shared": shared, "date": date_term}
        trace.update({key: np.asarray(value) for key, value in terms.items()})
        trace["shares"] = np.asarray([weights.previous, weights.next], dtype=np.float64)
        trace["floor"] = shared.min() if count else np.asarray(0.0)
    fused: np.ndarray = score
    return fused


SPARSE_FROM = 8_192
"""From this many pages :func:`fuse_query` computes on the pages that differ; below, the passes over every
page cost less than the steps on them (measured at LoCoMo's ~300 pages: ~0.35 ms less per recall)."""


def fuse_query(
    lexical: Sparse,
    known: dict[int, float],
    page_times: np.ndarray,
    window: tuple[float, float] | None,
    *,
    session: np.ndarray,
    session_sizes: np.ndarray,
    timed: np.ndarray | None = None,
    when: bool = False,
    trace: dict[str, ranking.Part] | None = None,
) -> np.ndarray:
    """One query's fused scores (``ranking.fuse``, with ``ranking.dense_z(len, known)``): by
    :func:`fuse_sparse` from ``SPARSE_FROM`` pages, by ``ranking.fuse`` below. ``session``: the pages'
    session numbers (``ranking.sessions``), ``session_sizes`` their :func:`sizes`."""
    count = lexical.count
    if count >= SPARSE_FROM:
        return fuse_sparse(
            lexical,
            dense_sparse(count, known),
            page_times,
            window,
            session_sizes=session_sizes,
            timed=timed,
            when=when,
            trace=trace,
        )
    parts: dict[str, np.ndarray] = {}
    dense_z = ranking.dense_z(count, known)
    fused = ranking.fuse(
        lexical.full(), dense_z, page_times, window, timed=timed, when=when, trace=parts, session=session
    )
    if trace is not None:
        trace.update(parts)
    return fused


def sizes(session: Sequence[int] | np.ndarray) -> np.ndarray:
    """The number of pages of each session, from each page's session number (never decreasing)."""
    return np.bincount(np.asarray(session, dtype=np.int64))
