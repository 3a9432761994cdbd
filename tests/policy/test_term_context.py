"""Query-term coverage and neighbour text (policy/term_context.py), on the engine's own page index."""

from __future__ import annotations

import math

import numpy as np
import pytest

from memoryos_core.engine.lexical import K1, B, PageIndex, tokens
from memoryos_core.policy import term_context


def _index(documents: list[str]) -> PageIndex:
    index = PageIndex()
    for position, text in enumerate(documents):
        index.add(f"p{position}", text, float(position))
    return index


def _signals(documents: list[str], query: str) -> tuple[np.ndarray, list[term_context.Posting], np.ndarray]:
    index = _index(documents)
    terms = tokens(query)
    count, bm25, _ = index.snapshot(terms)
    postings, lengths = index.matches(terms, count)
    return bm25, postings, lengths


def test_coverage_is_the_share_of_the_query_idf_mass_a_page_holds() -> None:
    documents = ["lemon cake recipe", "lemon tree", "the garden", "lemon juice", "chess opening"]
    _, postings, _ = _signals(documents, "lemon cake and a unicorn")  # no page says unicorn
    share = term_context.coverage(postings, len(documents))
    lemon, cake = term_context.idf(3, 5), term_context.idf(1, 5)
    assert share[0] == pytest.approx(1.0)  # every query term a page holds: unicorn adds no mass
    assert share[1] == pytest.approx(lemon / (lemon + cake))
    assert share[2] == share[4] == 0.0
    assert cake > lemon  # the rarer word weighs more


def test_neighbour_bm25_without_a_share_is_the_page_indexs_bm25() -> None:
    documents = ["hiking trip to the lake", "the lake was cold", "we cooked pasta", "lake lake lake", "pasta"]
    bm25, postings, lengths = _signals(documents, "cold lake pasta")
    assert np.allclose(term_context.neighbour_bm25(postings, lengths, 0.0, K1, B), bm25, atol=1e-5)


def test_neighbour_bm25_reads_a_page_with_half_of_each_neighbours_words() -> None:
    documents = ["where did you go", "Paris with my sister", "nice", "unrelated chess talk", "more chess"]
    _, postings, lengths = _signals(documents, "sister")
    got = term_context.neighbour_bm25(postings, lengths, 0.5, K1, B)
    window = lengths + 0.5 * (np.r_[0.0, lengths[:-1]] + np.r_[lengths[1:], 0.0])
    norm = K1 * (1 - B + B * window / window.mean())
    weight = math.log1p((5 - 1 + 0.5) / (1 + 0.5))  # one page holds "sister"
    expected = [weight * tf * (K1 + 1) / (tf + n) if tf else 0.0 for tf, n in zip([0.5, 1, 0.5, 0, 0], norm)]
    assert np.allclose(got, expected)
    assert got[0] > 0 and got[2] > 0 and got[3] == got[4] == 0  # the neighbours share it, no further


def test_neighbour_bm25_equals_bm25_over_the_pages_merged_with_their_neighbours() -> None:
    """Terms in adjacent pages (a page next to two holders, holders next to each other)."""
    rng = np.random.default_rng(4)
    words = ["red", "blue", "green", "cat", "dog", "tree", "sun", "rain"]
    documents = [" ".join(rng.choice(words, size=int(rng.integers(1, 6)))) for _ in range(30)]
    _, postings, lengths = _signals(documents, "red cat rain")
    count, share = len(documents), 0.5
    got = term_context.neighbour_bm25(postings, lengths, share, K1, B)
    counts = np.zeros((count, len(postings)))
    for column, (where, freqs) in enumerate(postings):
        counts[where, column] = freqs
    padded = np.vstack([np.zeros((1, len(postings))), counts, np.zeros((1, len(postings)))])
    window = counts + share * (padded[:-2] + padded[2:])
    merged = lengths + share * (np.r_[0.0, lengths[:-1]] + np.r_[lengths[1:], 0.0])
    norm = K1 * (1 - B + B * merged / merged.mean())
    weights = [term_context.idf(len(where), count) for where, _ in postings]
    expected = (weights * window * (K1 + 1) / (window + norm[:, None])).sum(axis=1)
    assert np.allclose(got, expected) and (np.diff(postings[0][0]) == 1).any()


def test_coverage_lifts_the_page_holding_every_query_word_over_one_repeating_a_word() -> None:
    documents = [
        "lemon lemon lemon lemon",
        "lemon with basil",
        *[f"basil note {n}" for n in range(6)],  # basil is common: lemon weighs about twice as much
        *[f"filler page about weather number {n}" for n in range(4)],
    ]
    bm25, postings, lengths = _signals(documents, "lemon basil")
    assert bm25[0] > bm25[1]  # BM25 alone prefers the page repeating one word
    plain = term_context.lexical(bm25, postings, lengths, k1=K1, b=B, weights=term_context.Weights(0, 0.5, 0))
    assert plain is bm25  # both signals off: the page index's BM25 itself
    only = term_context.Weights(coverage=1.0, neighbour_text=0.0)
    scaled = term_context.lexical(bm25, postings, lengths, k1=K1, b=B, weights=only)
    assert np.allclose(scaled, bm25 * (1 + term_context.coverage(postings, len(bm25))))
    assert scaled[1] > scaled[0]


def test_neighbour_text_lifts_the_answer_after_the_question() -> None:
    """A question split across pages: its words in one page, the answer (no query word) in the next."""
    documents = [
        *[f"small talk about chess game {n}" for n in range(6)],
        "which trail did you take up the mountain",
        "the northern ridge, very steep",
        "the mountain cabin had no heating",
        *[f"more small talk about chess game {n}" for n in range(6)],
    ]
    bm25, postings, lengths = _signals(documents, "trail up the mountain")
    score = term_context.lexical(bm25, postings, lengths, k1=K1, b=B)
    reply = 7
    assert bm25[reply] == 0.0 and score[reply] > np.median(score)
    assert score[reply] > score[0]
    off = term_context.Weights(coverage=1.0, neighbour_text=0.0)
    assert np.argsort(-term_context.lexical(bm25, postings, lengths, k1=K1, b=B, weights=off))[
        :2
    ].tolist() == [
        6,
        8,
    ]


def test_no_page_or_no_matching_word_leaves_the_scores_alone() -> None:
    empty = np.zeros(0, dtype=np.float32)
    assert term_context.lexical(empty, [], empty, k1=K1, b=B).shape == (0,)
    bm25, postings, lengths = _signals(["alpha beta", "gamma"], "zeta")
    assert postings == []
    assert np.array_equal(term_context.lexical(bm25, postings, lengths, k1=K1, b=B), np.zeros(2))


def test_matches_leaves_out_pages_added_after_the_snapshot() -> None:
    index = _index(["apple pie", "apple tart"])
    count, _, _ = index.snapshot(["appl"])
    index.add("late", "apple crumble", 3.0)
    postings, lengths = index.matches(["appl", "appl", "pie"], count)
    assert sorted(p[0].tolist() for p in postings) == [[0], [0, 1]] and len(lengths) == 2
