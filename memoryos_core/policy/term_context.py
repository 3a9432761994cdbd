"""Lexical signals beyond a page's own BM25: how much of the query a page covers, and the page's
words read together with its neighbours'.

BM25 saturates each term, so a page that repeats one query word can outrank one that matches
every word once; and in a conversation the words of a question and of its answer are often split
between a page and the next. Two signals address these, both from the postings of the query's
terms (no second index, no English rules):

- coverage: the share of the query's distinct idf mass that a page matches (1 when it holds every
  query term), which scales the page's BM25 by ``1 + COVERAGE_WEIGHT * coverage``;
- neighbour text: for a page holding at least one query word, BM25 of its words plus
  ``NEIGHBOUR_TEXT_SHARE`` of the previous and next pages' (term counts and lengths alike), z-scaled
  and added with ``NEIGHBOUR_TEXT_WEIGHT`` to the page's own z-scaled BM25. A page holding none gets
  nothing from it: in a chat that changes subject every turn, the neighbours of a match would
  otherwise outrank the page the embedder finds (the reply after a match is already lifted by
  ``ranking``'s score shares).

Cross-validated by conversation on LoCoMo (``memoryos bench fusion``, README). Pseudo-relevance
feedback (RM3 on words, Rocchio on vectors) and a query-likelihood score were measured the same
way and not kept.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from memoryos_core.policy.sparse import Sparse

COVERAGE_WEIGHT = 1.0
"""A page matching all of the query's idf mass has its BM25 scaled by 1 + this (0: off)."""
NEIGHBOUR_TEXT_SHARE = 0.5
"""Share of the previous and next pages' term counts (and lengths) read with a page's own."""
NEIGHBOUR_TEXT_WEIGHT = 1.0
"""Weight of the neighbour-text BM25's z-score against the page's own BM25's (0: off)."""

RESCORE_PAGES = 2000
"""At most this many pages, the best by their own (coverage-scaled) BM25, are read with their neighbours'
words: a second-stage rescoring of the lexical candidates, so that its work does not grow with a store of
100k pages whose query words are common (a conversation of LoCoMo's size is read whole)."""

Posting = tuple[np.ndarray, np.ndarray]
"""One query term's pages (positions, ascending) and its count in each."""


@dataclass(frozen=True)
class Weights:
    """The weights of :func:`lexical`; the defaults are the module's constants."""

    coverage: float = COVERAGE_WEIGHT
    neighbour_share: float = NEIGHBOUR_TEXT_SHARE
    neighbour_text: float = NEIGHBOUR_TEXT_WEIGHT


DEFAULT = Weights()


def idf(frequency: np.ndarray | int, count: int) -> np.ndarray:
    """BM25's idf of terms found in ``frequency`` of ``count`` pages (as the page index weighs them)."""
    df = np.asarray(frequency, dtype=np.float64)
    weight: np.ndarray = np.log1p((count - df + 0.5) / (df + 0.5))
    return weight


def coverage(postings: Sequence[Posting], count: int) -> np.ndarray:
    """Each page's share of the query terms' idf mass (terms given once each; 0 when none matches).

    A term no page holds adds no mass: it cannot tell pages apart.
    """
    share = np.zeros(count, dtype=np.float64)
    weights = [float(idf(len(where), count)) if len(where) else 0.0 for where, _ in postings]
    total = sum(weights)
    if total > 0:  # each term's share added where it is (no pass over the pages to divide them)
        for (where, _), weight in zip(postings, weights):
            if len(where):
                np.add.at(share, where, weight / total)  # (positions are distinct: as +=, and faster)
    return share


def _neighbours(at: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The previous and next page of each page ``at``; at either end the one neighbour stands for
    both, so that the first and last pages are read like the others."""
    if count < 2:
        return at, at
    return np.where(at == 0, 1, at - 1), np.where(at == count - 1, count - 2, at + 1)


def neighbour_bm25(
    postings: Sequence[Posting],
    lengths: np.ndarray,
    share: float,
    k1: float,
    b: float,
    at: np.ndarray | None = None,
) -> np.ndarray:
    """BM25 of the pages ``at`` (all by default) read as their own words plus ``share`` of the previous
    and next page's, term counts and lengths alike (at the ends, the one neighbour twice).

    ``lengths`` holds every page's length in conversation order (its size is the page count); a
    term keeps its idf over the pages themselves. The work is in ``len(at)`` and the postings'
    lengths, plus one scratch array of the page count.
    """
    count = len(lengths)
    at = np.arange(count) if at is None else at
    scores = np.zeros(len(at), dtype=np.float64)
    if not count or not len(at):
        return scores
    before, after = _neighbours(at, count)
    window_lengths = lengths[at].astype(np.float64) + share * (
        lengths[before].astype(np.float64) + lengths[after].astype(np.float64)
    )
    total = float(lengths.sum(dtype=np.float64))  # (word counts: exact in any order)
    if count > 1:  # every window's length summed, the ends' mirrored neighbour included
        first, second, last, before_last = (float(lengths[i]) for i in (0, 1, -1, -2))
        total += share * (2 * total - last + second - first + before_last)
    norm = k1 * (1 - b + b * window_lengths / max(total / count, 1e-9))
    pages = _Pages(at, count)
    for where, counts in postings:
        if not len(where):
            continue
        own, beside = _window_counts(where, counts, at, count, pages)
        tf = own + share * beside
        scores += float(idf(len(where), count)) * tf * (k1 + 1) / (tf + norm)
    return scores


def _counts(where: np.ndarray, counts: np.ndarray, pages: np.ndarray) -> np.ndarray:
    """A term's count in each of ``pages`` (0 where absent), from its posting (``where`` ascending):
    a lookup in the posting, so the work is in ``len(pages)``, not in the page count."""
    found = np.minimum(np.searchsorted(where, pages), len(where) - 1)
    tf: np.ndarray = np.where(where[found] == pages, counts[found].astype(np.float64), 0.0)
    return tf


class _Pages:
    """What ``_window_counts`` reads of the pages ``at`` for every term, made once per query: the
    positions of each page and its two neighbours in a scratch array of the page count (shifted by
    one, so that the neighbours of the first and last page fall on its two zero ends)."""

    def __init__(self, at: np.ndarray, count: int) -> None:
        self.own = at + 1
        self.previous, self.next = at, at + 2
        self.first = np.flatnonzero(at == 0)  # at either end the one neighbour stands for both
        self.last = np.flatnonzero(at == count - 1)
        self.scratch = np.zeros(count + 2, dtype=np.float32)  # zero between terms
        self.inner = self.scratch[1:-1]


def _window_counts(
    where: np.ndarray, counts: np.ndarray, at: np.ndarray, count: int, pages: _Pages | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A term's count in each page ``at`` and the sum of its counts in the page's previous and next
    page (``_neighbours``), from its posting (``where`` ascending, non-empty): the counts are written
    into a zeroed array of the page count and read at the pages and beside them, then zeroed again, so
    the work is in the posting's length and ``len(at)``. ``pages``: ``_Pages(at, count)``, when the
    caller reads several terms at the same pages."""
    if count < 2:
        own = _counts(where, counts, at)
        return own, own + own
    pages = pages or _Pages(at, count)
    pages.inner[where] = counts
    try:
        own = pages.scratch[pages.own].astype(np.float64)
        before = pages.scratch[pages.previous].astype(np.float64)
        after = pages.scratch[pages.next].astype(np.float64)
    finally:  # (zeroed whole when that is less work than zeroing the posting's entries)
        if 8 * len(where) > count:
            pages.scratch.fill(0.0)
        else:
            pages.inner[where] = 0.0
    before[pages.first], after[pages.last] = after[pages.first], before[pages.last]
    beside: np.ndarray = before + after
    return own, beside


def _best(score: np.ndarray, limit: int) -> np.ndarray:
    """Positions (ascending) of the ``limit`` highest of ``score``, the later pages first among scores tied
    at the cut; all of them when there are fewer."""
    if len(score) <= limit:
        return np.arange(len(score))
    above = np.arange(len(score))
    if len(score) > 8 * limit:  # the highest are among a share of them: found from a sample
        stride = len(score) // (4 * limit)
        sample = score[::stride]
        rank = len(sample) - max(1, 2 * limit // stride)  # about twice the limit are above it
        floor = np.partition(sample, rank)[rank]
        candidates = np.flatnonzero(score >= floor)
        if len(candidates) >= limit:  # (else the sample misled: all pages are candidates)
            above = candidates
    values = score[above]
    kth = np.partition(values, len(above) - limit)[len(above) - limit]
    higher = above[values > kth]
    tied = above[values == kth]  # a store of near-identical pages ties many at the cut
    best: np.ndarray = np.concatenate([higher, tied[len(higher) + len(tied) - limit :]])
    best.sort()
    return best


def _z_of_held(values: np.ndarray, count: int) -> tuple[np.ndarray, float]:
    """z-scores of ``count`` values of which ``values`` are given and the others are 0: those of the
    given ones and the one of the rest (all zeros when every value is equal)."""
    rest = count - len(values)
    if values.max() == values.min() and (not rest or values.max() == 0):
        return np.zeros_like(values), 0.0
    mean = float(values.sum()) / count
    spread = math.sqrt((float(np.square(values - mean).sum()) + rest * mean * mean) / count)
    return (values - mean) / spread, -mean / spread


def lexical(
    bm25: np.ndarray,
    postings: Sequence[Posting],
    lengths: np.ndarray,
    *,
    k1: float,
    b: float,
    weights: Weights = DEFAULT,
) -> np.ndarray:
    """:func:`lexical_sparse` as one score per page."""
    return lexical_sparse(bm25, postings, lengths, k1=k1, b=b, weights=weights).full()


def lexical_sparse(
    bm25: np.ndarray,
    postings: Sequence[Posting],
    lengths: np.ndarray,
    *,
    k1: float,
    b: float,
    weights: Weights = DEFAULT,
) -> Sparse:
    """The lexical score of every page (as a :class:`Sparse`: the pages without a query word share one):
    its BM25 (``bm25``) scaled by its query-term coverage, z-scaled,
    plus the z-scaled BM25 of its words with its neighbours' where it holds a query word itself;
    given back on BM25's own mean and spread (so that a breakdown of the score reads it as BM25),
    and ``bm25`` itself when neither signal tells the pages apart (or both weights are 0).

    ``postings`` holds each distinct query term's pages among the ``len(bm25)`` pages in
    conversation order, ``lengths`` their lengths (the words BM25 counted), ``k1`` and ``b``
    the page index's BM25 parameters. Pages without a query word all get one score, so the work
    is in the pages holding one (and one pass over the scores).
    """
    count = len(bm25)
    held = np.flatnonzero(bm25 > 0)
    if not len(held) or not (weights.coverage or weights.neighbour_text):
        return Sparse(held, bm25[held], 0.0, count)  # (``bm25`` itself)
    own = bm25[held].astype(np.float64)
    score = own * (1.0 + weights.coverage * coverage(postings, count)[held]) if weights.coverage else own
    combined, rest = _z_of_held(score, count)
    if weights.neighbour_text:
        best = _best(score, RESCORE_PAGES)  # which of ``held`` are read with their neighbours
        around = neighbour_bm25(postings, lengths[:count], weights.neighbour_share, k1, b, at=held[best])
        # z-scaled among the ``count`` pages, of which the others (held or not) have 0
        around_z, around_rest = _z_of_held(around, count)
        own_z = combined
        combined = own_z + weights.neighbour_text * around_rest
        combined[best] = own_z[best] + weights.neighbour_text * around_z
        rest += weights.neighbour_text * around_rest
    if not combined.any() and not rest:
        return Sparse(held, bm25[held], 0.0, count)
    center = float(own.sum()) / count  # BM25's own mean and spread, from its nonzero scores
    spread = math.sqrt((float(np.square(own - center).sum()) + (count - len(held)) * center**2) / count)
    values = (center + (spread or 1.0) * combined).astype(np.float32)
    return Sparse(held, values, float(np.float32(center + (spread or 1.0) * rest)), count)
