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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COVERAGE_WEIGHT = 1.0
"""A page matching all of the query's idf mass has its BM25 scaled by 1 + this (0: off)."""
NEIGHBOUR_TEXT_SHARE = 0.5
"""Share of the previous and next pages' term counts (and lengths) read with a page's own."""
NEIGHBOUR_TEXT_WEIGHT = 1.0
"""Weight of the neighbour-text BM25's z-score against the page's own BM25's (0: off)."""

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
    covered = np.zeros(count, dtype=np.float64)
    total = 0.0
    for where, _ in postings:
        if len(where):
            weight = float(idf(len(where), count))
            covered[where] += weight
            total += weight
    share: np.ndarray = covered / total if total > 0 else covered
    return share


def _with_neighbours(values: np.ndarray, share: float) -> np.ndarray:
    """``values`` plus ``share`` of the previous and next values; at either end the one neighbour
    counts twice, so that the first and last pages are read like the others."""
    if len(values) < 2:
        alone: np.ndarray = values.copy()
        return alone
    before = np.concatenate((values[1:2], values[:-1]))
    after = np.concatenate((values[1:], values[-2:-1]))
    spread: np.ndarray = values + share * (before + after)
    return spread


def neighbour_bm25(
    postings: Sequence[Posting], lengths: np.ndarray, share: float, k1: float, b: float
) -> np.ndarray:
    """BM25 of every page read as its own words plus ``share`` of the previous and next page's (the
    first and last pages read their one neighbour twice, as ``_with_neighbours`` does).

    ``lengths`` holds every page's length in conversation order (its size is the page count); a
    term keeps its idf over the pages themselves.
    """
    count = len(lengths)
    scores = np.zeros(count, dtype=np.float64)
    if not count:
        return scores
    window_lengths = _with_neighbours(lengths.astype(np.float64), share)
    norm = k1 * (1 - b + b * window_lengths / max(float(window_lengths.mean()), 1e-9))
    window = np.zeros(count + 2, dtype=np.float64)  # padded: page p at p + 1
    for where, counts in postings:
        if not len(where):
            continue
        # Positions are distinct and ascending, so each += below touches a page once (no np.add.at).
        window[where + 1] += counts
        window[where] += share * counts
        window[where + 2] += share * counts
        if count > 1:  # the ends: their one neighbour twice
            window[1] += share * float(counts[where == 1].sum())
            window[count] += share * float(counts[where == count - 2].sum())
        pages = np.concatenate((where - 1, where, where + 1))
        pages = pages[(pages >= 0) & (pages < count)]
        tf = window[pages + 1]
        # A page listed twice (next to two holders) gets the same value twice: a buffered += adds it once.
        scores[pages] += float(idf(len(where), count)) * tf * (k1 + 1) / (tf + norm[pages])
        window[pages + 1] = 0.0
        window[0] = window[-1] = 0.0
    return scores


def _z(values: np.ndarray) -> np.ndarray:
    """z-scores; zeros when all values are equal (exactly: their rounded spread is not a signal)."""
    if not len(values) or values.max() == values.min():
        return np.zeros_like(values)
    scaled: np.ndarray = (values - values.mean()) / values.std()
    return scaled


def lexical(
    bm25: np.ndarray,
    postings: Sequence[Posting],
    lengths: np.ndarray,
    *,
    k1: float,
    b: float,
    weights: Weights = DEFAULT,
) -> np.ndarray:
    """The lexical score of every page: its BM25 (``bm25``) scaled by its query-term coverage, z-scaled,
    plus the z-scaled BM25 of its words with its neighbours' where it holds a query word itself;
    given back on BM25's own mean and spread (so that a breakdown of the score reads it as BM25),
    and ``bm25`` itself when neither signal tells the pages apart (or both weights are 0).

    ``postings`` holds each distinct query term's pages among the ``len(bm25)`` pages in
    conversation order, ``lengths`` their lengths (the words BM25 counted), ``k1`` and ``b``
    the page index's BM25 parameters.
    """
    count = len(bm25)
    if not count or not (weights.coverage or weights.neighbour_text):
        return bm25
    score = bm25.astype(np.float64)
    if weights.coverage:
        score = score * (1.0 + weights.coverage * coverage(postings, count))
    combined = _z(score)
    if weights.neighbour_text:
        around = neighbour_bm25(postings, lengths[:count], weights.neighbour_share, k1, b)
        combined = combined + weights.neighbour_text * _z(np.where(bm25 > 0, around, 0.0))
    if not combined.any():
        return bm25
    spread = float(np.std(bm25, dtype=np.float64))
    rescaled: np.ndarray = (float(np.mean(bm25, dtype=np.float64)) + (spread or 1.0) * combined).astype(
        np.float32
    )
    return rescaled
