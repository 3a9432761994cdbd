"""Late interaction: a recall's best pages re-ranked by how well their words, read in context, cover the
query's (BERTScore's recall, Zhang et al. 2020).

The embedder keeps each page's wordpieces' vectors (the encoder's last hidden state, before pooling); a
page's late score for a query is the mean, over the query's wordpieces weighted by their idf among the
user's pages, of each one's best cosine to any of the page's. Pooling a page into one vector loses which
words matched; this keeps them, so "adopt" in the query finds "adoption agency" in a page whose vector
is about something else. Stop words (``text.STOPWORDS``), punctuation and the page's template (the
``[timestamp]`` head a page is rendered with) are left out on both sides: they match everywhere.

Only the fused ranking's first ``RetrievalConfig.late_pages`` pages are re-ranked: each gets
``late_weight * z(late)`` added (z over those pages) and they stay above the rest. Measured on LoCoMo with
leave-one-conversation-out (``memoryos bench fusion --late``, its "engine" rows, which run this code;
README): +0.9 R@10 held out at the shipped weight, 7 of 10 conversations better.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import cast

import numpy as np

from memoryos_core.policy.text import STOPWORDS

MIN_SPREAD = 0.05
"""The least spread :func:`lift` divides by. Pages that say the same thing (the same words at other
dates) differ in late score by a few thousandths: divided by their own spread, that noise would become a
full z-score and outweigh what ranks them (their dates). Over a recall's 100 best LoCoMo pages the spread
is 0.07 at its 1st percentile (0.13 median), so this floor leaves such recalls as they were."""
UNKNOWN = "[UNK]"
"""The tokenizer's piece for what its vocabulary lacks (emoji, many CJK characters): one id for all, so a
query's would match any page with any unknown character. A page keeps its own (in context, they still say
something of the words around them, and a page of them only would otherwise have nothing to match)."""
_HEAD = re.compile(r"\[[^\]\n]*\] ")
"""The head ``render_page`` gives a page with a timestamp."""


def unit(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to length 1 (zero rows stay zero)."""
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    out: np.ndarray = x / np.where(norms > 0, norms, 1.0)
    return out


def kept(tokens: Sequence[str], offsets: np.ndarray, text: str, *, page: bool) -> np.ndarray:
    """Which wordpieces take part: not punctuation, not a whole stop word, and (``page``) not in the
    page's ``[timestamp]`` head, or (a query) not ``[UNK]``. A query left with none is not re-ranked: the
    pages keep no stop words to match its own."""
    count = len(tokens)
    mask = np.array(
        [(page or t != UNKNOWN) and any(c.isalnum() for c in t.removeprefix("##")) for t in tokens],
        dtype=bool,
    )
    for i, token in enumerate(tokens):
        whole = not token.startswith("##") and (i + 1 == count or not tokens[i + 1].startswith("##"))
        if whole and token.lower() in STOPWORDS:
            mask[i] = False
    if page:
        head = _HEAD.match(text)
        if head is not None and count:
            mask &= np.asarray(offsets, dtype=np.int64).reshape(count, 2)[:, 0] >= head.end()
    return mask


def idf(df: np.ndarray, pages: int) -> np.ndarray:
    """Inverse document frequency of wordpieces held by ``df`` of ``pages`` pages (smoothed, >= 0)."""
    out: np.ndarray = np.maximum(np.log((pages + 1.0) / (np.asarray(df, dtype=np.float64) + 1.0)), 0.0)
    return out


def maxima(query: np.ndarray, pages: Sequence[np.ndarray]) -> np.ndarray:
    """Each query wordpiece's best cosine to each page's wordpieces: shape (query rows, pages), for pages
    (unit rows) holding at least one wordpiece. What :func:`recall` weighs; it does not depend on the
    weights, so a recall can compute it for some pages before it knows them.

    Each page is compared in a product of its own: a page's column is the same, to the bit, whichever
    pages it is compared with (one product over many pages rounds a page's cosines differently by where
    it falls in it, so a recall that compared some pages early would score them unlike one that did not).

    Raises:
        ValueError: a page holds no wordpiece.
    """
    query = np.asarray(query, dtype=np.float32)
    best = np.empty((len(query), len(pages)), dtype=np.float32)
    for column, page in enumerate(pages):
        if not len(page):
            raise ValueError("maxima needs pages holding at least one wordpiece")
        np.max(query @ np.asarray(page, dtype=np.float32).T, axis=1, out=best[:, column])
    return best


def recall(
    query: np.ndarray,
    weights: np.ndarray,
    pages: Sequence[np.ndarray | None],
    known: Sequence[np.ndarray | None] | None = None,
) -> np.ndarray:
    """Each page's late score: over the query's wordpieces (unit rows of ``query``), weighted by
    ``weights``, the mean of each one's best cosine to the page's (unit rows). A page without vectors
    (None) scores NaN; one without wordpieces -1; with no weight on any query piece, every page 0.
    ``known``: for each page, its column of :func:`maxima` for this query if already computed, or None."""
    out = np.full(len(pages), np.nan)
    sizes = np.fromiter((-1 if p is None else len(p) for p in pages), dtype=np.int64, count=len(pages))
    weights = np.asarray(weights, dtype=np.float64)
    if not (sizes >= 0).any():
        return out
    if not weights.sum() > 0:
        out[sizes >= 0] = 0.0
        return out
    out[sizes == 0] = -1.0
    filled = np.flatnonzero(sizes > 0)
    if len(filled):
        columns = [None if known is None else known[i] for i in filled.tolist()]
        todo = [i for i, column in zip(filled.tolist(), columns) if column is None]
        best = maxima(query, [cast(np.ndarray, pages[i]) for i in todo])
        if len(todo) < len(filled):
            computed = iter(best.T)
            best = np.stack([next(computed) if c is None else c for c in columns], axis=1)
        out[filled] = (weights @ best) / weights.sum()
    return out


def lift(late: np.ndarray, weight: float) -> np.ndarray:
    """What each re-ranked page gains: ``weight`` times its late score's z over the pages, the spread
    taken as at least ``MIN_SPREAD`` (a page without a score, NaN, gains 0)."""
    scored = ~np.isnan(late)
    out = np.zeros(len(late))
    if scored.sum() < 2:
        return out
    values = late[scored]
    out[scored] = weight * (values - values.mean()) / max(float(values.std()), MIN_SPREAD)
    return out


def rerank_top(
    scores: np.ndarray, top: np.ndarray, gains: np.ndarray, others_best: float | None = None
) -> float:
    """Add ``gains`` to the scores at positions ``top`` (the best of ``scores``, in place) and keep those
    pages above the others: when the lowest of them falls to ``others_best`` (the best score of the
    others; by default bounded by the lowest of ``top`` before), the others are shifted down together,
    their order kept. Returns the shift (0 when none was needed). Works on the whole array at once,
    without gathering the others (100k pages)."""
    before = scores[top]
    lifted = before + gains
    best = float(before.min()) if others_best is None else others_best
    shift = 0.0
    if len(top) < len(scores) and best >= lifted.min():
        shift = float(best - lifted.min() + 1.0)
        scores -= shift
    scores[top] = lifted
    return shift
