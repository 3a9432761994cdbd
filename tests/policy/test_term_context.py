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
    # The first page has one neighbour: it counts twice (as the last page's would).
    window = lengths + 0.5 * (np.r_[lengths[1], lengths[:-1]] + np.r_[lengths[1:], lengths[-2]])
    norm = K1 * (1 - B + B * window / window.mean())
    weight = math.log1p((5 - 1 + 0.5) / (1 + 0.5))  # one page holds "sister"
    expected = [weight * tf * (K1 + 1) / (tf + n) if tf else 0.0 for tf, n in zip([1, 1, 0.5, 0, 0], norm)]
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
    padded = np.vstack([counts[1:2], counts, counts[-2:-1]])  # at the ends, the one neighbour twice
    window = counts + share * (padded[:-2] + padded[2:])
    merged = lengths + share * (np.r_[lengths[1], lengths[:-1]] + np.r_[lengths[1:], lengths[-2]])
    norm = K1 * (1 - B + B * merged / merged.mean())
    weights = np.array([term_context.idf(len(where), count) for where, _ in postings])
    expected = (weights * window * (K1 + 1) / (window + norm[:, None])).sum(axis=1)
    assert np.allclose(got, expected) and (np.diff(postings[0][0]) == 1).any()
    held = {int(p) for where, _ in postings for p in where}
    assert {1, count - 2} & held  # an end page reads a neighbour that holds a query word


def test_identical_pages_read_alike_at_the_ends_of_the_conversation() -> None:
    documents = ["tomatoes in my garden"] * 6
    _, postings, lengths = _signals(documents, "garden tomatoes")
    around = term_context.neighbour_bm25(postings, lengths, 0.5, K1, B)
    assert np.allclose(around, around[0])


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
    assert np.array_equal(plain, bm25)  # both signals off: the page index's BM25 itself
    only = term_context.Weights(coverage=1.0, neighbour_text=0.0)
    scaled = term_context.lexical(bm25, postings, lengths, k1=K1, b=B, weights=only)
    expected = bm25 * (1 + term_context.coverage(postings, len(bm25)))
    # On BM25's mean and spread: the same z-scores as the scaled BM25's.
    assert np.allclose(
        (scaled - bm25.mean()) / bm25.std(), (expected - expected.mean()) / expected.std(), atol=1e-5
    )
    assert scaled[1] > scaled[0]


def test_neighbour_text_lifts_a_match_whose_neighbours_hold_the_other_query_words() -> None:
    """Two pages say "trail"; only one sits in an exchange about the mountain."""
    documents = [
        *[f"small talk about chess game {n}" for n in range(6)],
        "which trail did you take",
        "the northern one, up the mountain ridge",
        *[f"more small talk about chess game {n}" for n in range(6)],
        "that trail",
        *[f"and more small talk about chess game {n}" for n in range(6)],
    ]
    bm25, postings, lengths = _signals(documents, "trail mountain")
    plain, elsewhere = 6, 14
    assert bm25[elsewhere] > bm25[plain]  # the shorter page: BM25 alone puts it first
    score = term_context.lexical(bm25, postings, lengths, k1=K1, b=B)
    assert score[plain] > score[elsewhere]
    off = term_context.Weights(coverage=1.0, neighbour_text=0.0)
    unshared = term_context.lexical(bm25, postings, lengths, k1=K1, b=B, weights=off)
    assert unshared[elsewhere] > unshared[plain]


def test_neighbour_text_leaves_pages_without_a_query_word_alone() -> None:
    """A chat that changes subject every turn: the match's neighbours must not rise above the rest."""
    documents = [
        f"topic {n} talk about {word}" for n, word in enumerate("cats rain ramen cello tokyo".split())
    ]
    bm25, postings, lengths = _signals(documents, "ramen food")
    score = term_context.lexical(bm25, postings, lengths, k1=K1, b=B)
    assert np.argmax(score) == 2
    others = np.delete(score, 2)
    assert np.allclose(others, others[0])  # the neighbours (1 and 3) score as the far pages do
    around = term_context.neighbour_bm25(postings, lengths, 0.5, K1, B)
    assert around[1] > 0 and around[3] > 0  # though their window holds the word


def test_no_page_or_no_matching_word_leaves_the_scores_alone() -> None:
    empty = np.zeros(0, dtype=np.float32)
    assert term_context.lexical(empty, [], empty, k1=K1, b=B).shape == (0,)
    bm25, postings, lengths = _signals(["alpha beta", "gamma"], "zeta")
    assert postings == []
    assert np.array_equal(term_context.lexical(bm25, postings, lengths, k1=K1, b=B), bm25)
    same, postings, lengths = _signals(["tomato garden"] * 5, "garden")
    # nothing tells them apart
    assert np.array_equal(term_context.lexical(same, postings, lengths, k1=K1, b=B), same)


def test_matches_leaves_out_pages_added_after_the_snapshot() -> None:
    index = _index(["apple pie", "apple tart"])
    count, _, _ = index.snapshot(["appl"])
    index.add("late", "apple crumble", 3.0)
    postings, lengths = index.matches(["appl", "appl", "pie"], count)
    assert sorted(p[0].tolist() for p in postings) == [[0], [0, 1]] and len(lengths) == 2


def test_lexical_is_the_two_z_scores_on_bm25s_mean_and_spread() -> None:
    """Computed over the matching pages only; checked here against the whole-array formula."""
    rng = np.random.default_rng(8)
    words = ["river", "boat", "fish", "bread", "oven", "kite", "wind", "snow", "ski", "tea"]
    documents = [" ".join(rng.choice(words, size=int(rng.integers(1, 7)))) for _ in range(60)]
    bm25, postings, lengths = _signals(documents, "river boat wind")
    assert 0 < np.count_nonzero(bm25) < len(bm25)
    got = term_context.lexical(bm25, postings, lengths, k1=K1, b=B)

    def z(values: np.ndarray) -> np.ndarray:
        scaled: np.ndarray = (values - values.mean()) / values.std()
        return scaled

    scaled = bm25 * (1 + term_context.coverage(postings, len(bm25)))
    around = np.where(bm25 > 0, term_context.neighbour_bm25(postings, lengths, 0.5, K1, B), 0.0)
    expected = bm25.mean() + bm25.std() * (z(scaled) + z(around))
    assert np.allclose(got, expected, atol=1e-4)
    at = np.flatnonzero(bm25)
    assert np.allclose(term_context.neighbour_bm25(postings, lengths, 0.5, K1, B, at=at), around[at])


def test_neighbour_text_reads_only_the_best_candidates_of_a_large_store(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past RESCORE_PAGES matching pages, only the best by their own BM25 are read with their neighbours;
    the others score as if their neighbours' words were not there (a second-stage rescoring)."""
    rng = np.random.default_rng(3)
    words = ["river", "boat", "fish", "bread", "oven", "kite"]
    documents = [" ".join(rng.choice(words, size=int(rng.integers(1, 6)))) for _ in range(80)]
    bm25, postings, lengths = _signals(documents, "river boat")
    held = np.flatnonzero(bm25)
    assert len(held) > 5
    whole = term_context.lexical(bm25, postings, lengths, k1=K1, b=B)
    monkeypatch.setattr(term_context, "RESCORE_PAGES", 5)
    capped = term_context.lexical(bm25, postings, lengths, k1=K1, b=B)
    assert not np.allclose(capped, whole)
    scaled = bm25 * (1 + term_context.coverage(postings, len(bm25)))
    chosen = term_context._best(scaled[held], 5)  # (ties at the cut may go either way)
    best = held[chosen]
    others = np.delete(scaled[held], chosen)
    assert len(best) == 5 and scaled[best].min() >= others.max()
    around = np.zeros(len(bm25))
    around[best] = term_context.neighbour_bm25(postings, lengths, 0.5, K1, B, at=np.sort(best))

    def z(values: np.ndarray) -> np.ndarray:
        scaled_values: np.ndarray = (values - values.mean()) / values.std()
        return scaled_values

    expected = bm25.mean() + bm25.std() * (z(scaled) + z(around))
    assert np.allclose(capped, expected, atol=1e-4)


def _looked_up(
    where: np.ndarray, counts: np.ndarray, at: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """A term's counts in pages ``at`` and in their two neighbours, one search per page looked at."""
    before, after = term_context._neighbours(at, count)
    own = term_context._counts(where, counts, at)
    return own, term_context._counts(where, counts, before) + term_context._counts(where, counts, after)


@pytest.mark.parametrize("count", [1, 2, 3, 10, 200])
def test_window_counts_read_a_page_and_its_neighbours_as_looking_each_one_up(count: int) -> None:
    """Each term alone, and terms in turn at the same pages (one scratch array: what a term wrote must
    be gone for the next, whether it held a few pages or most of them)."""
    rng = np.random.default_rng(count)
    at = np.flatnonzero(rng.random(count) < 0.6) if count > 2 else np.arange(count)
    shared = term_context._Pages(at, count)
    for share in (0.05, 0.5, 1.0, 0.05, 0.02, 0.7):
        where = np.flatnonzero(rng.random(count) < share)
        if not len(where):
            where = np.array([count - 1])
        counts = rng.integers(1, 5, len(where)).astype(np.float32)
        expected_own, expected_beside = _looked_up(where, counts, at, count)
        for pages in (None, shared):
            own, beside = term_context._window_counts(where, counts, at, count, pages)
            assert np.array_equal(own, expected_own) and np.array_equal(beside, expected_beside)


@pytest.mark.parametrize("levels", [0, 5, 50])
def test_best_keeps_the_highest_and_the_latest_of_those_tied_at_the_cut(levels: int) -> None:
    rng = np.random.default_rng(levels)
    for size, limit in [(100_000, 2000), (20_000, 100), (50, 1), (3000, 2000), (40_000, 2000)]:
        score = rng.random(size)
        if levels:  # many equal scores, as a store of near-identical pages gives
            score = np.round(score * levels) / levels
        if size == 40_000:  # the sample (every 5th) misleads: fewer than the limit are above its floor
            score[::5][-800:] = 2.0
        expected = np.sort(np.lexsort((-np.arange(size), -score))[:limit])
        assert np.array_equal(term_context._best(score, limit), expected)
