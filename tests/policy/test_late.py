"""The late rerank's pure parts: which wordpieces count, BERTScore recall, the lift."""

from __future__ import annotations

import numpy as np
import pytest

from memoryos_core.policy import late


def _offsets(text: str, tokens: list[str]) -> np.ndarray:
    """Character spans of ``tokens`` found left to right in ``text`` (``##`` pieces continue a word)."""
    spans, at = [], 0
    for token in tokens:
        piece = token.removeprefix("##")
        start = text.lower().index(piece, at)
        spans.append((start, start + len(piece)))
        at = start + len(piece)
    return np.array(spans, dtype=np.int32)


def test_kept_drops_punctuation_whole_stop_words_and_the_page_head() -> None:
    text = "[1:56 pm on 8 May, 2023] User: I adopted the puppy!"
    tokens = [
        "[",
        "1",
        ":",
        "56",
        "pm",
        "on",
        "8",
        "may",
        ",",
        "2023",
        "]",
        "user",
        ":",
        "i",
        "adopted",
        "the",
        "pup",
        "##py",
        "!",
    ]
    mask = late.kept(tokens, _offsets(text, tokens), text, page=True)
    assert [t for t, k in zip(tokens, mask) if k] == ["adopted", "pup", "##py"]


def test_kept_keeps_a_stop_word_that_is_only_the_start_of_a_word() -> None:
    text = "the isle"
    tokens = ["the", "is", "##le"]  # "is" is a stop word, not when "##le" continues it
    assert list(late.kept(tokens, _offsets(text, tokens), text, page=False)) == [False, True, True]


def test_a_query_keeps_its_head_and_only_its_content_words() -> None:
    text = "[kiwi] what is it?"
    tokens = ["[", "kiwi", "]", "what", "is", "it", "?"]
    mask = late.kept(tokens, _offsets(text, tokens), text, page=False)
    assert [t for t, k in zip(tokens, mask) if k] == ["kiwi"]
    stop = ["what", "is", "it", "?"]
    assert not late.kept(stop, _offsets("what is it?", stop), "what is it?", page=False).any()


def test_idf_falls_as_more_pages_hold_a_wordpiece_and_never_goes_negative() -> None:
    weights = late.idf(np.array([0, 1, 10, 99, 150]), 99)
    assert np.all(np.diff(weights) < 0) or np.all(np.diff(weights[:4]) < 0)
    assert weights[3] == pytest.approx(0.0) and weights[4] == 0.0


def _unit_rows(*rows: list[float]) -> np.ndarray:
    return late.unit(np.array(rows, dtype=np.float32))


def test_recall_is_the_weighted_mean_of_each_query_pieces_best_match() -> None:
    query = _unit_rows([1, 0, 0], [0, 1, 0])
    pages = [
        _unit_rows([1, 0, 0], [0, 1, 0], [0, 0, 1]),  # holds both: 1
        _unit_rows([1, 0, 0]),  # the first only: (3 * 1 + 1 * 0) / 4
        _unit_rows([0, 0, 1]),  # neither
        None,  # no vectors stored
        np.zeros((0, 3), dtype=np.float32),  # no wordpieces
    ]
    scores = late.recall(query, np.array([3.0, 1.0]), pages)
    assert scores[:3] == pytest.approx([1.0, 0.75, 0.0])
    assert np.isnan(scores[3]) and scores[4] == -1.0


def test_recall_uses_the_maxima_known_for_some_pages_and_computes_the_others() -> None:
    query = _unit_rows([1, 0, 0], [0, 1, 0])
    second = _unit_rows([1, 0, 0])
    pages = [_unit_rows([1, 0, 0], [0, 1, 0]), second, None, _unit_rows([0, 0, 1])]
    weights = np.array([3.0, 1.0])
    known = late.maxima(query, [second])  # (query rows, 1)
    assert known[:, 0] == pytest.approx([1.0, 0.0])
    both = late.recall(query, weights, pages, [None, known[:, 0], None, None])
    assert np.array_equal(both[[0, 1, 3]], late.recall(query, weights, pages)[[0, 1, 3]])
    made_up = late.recall(query, weights, pages, [None, np.array([0.5, 0.5]), None, None])
    assert made_up[1] == pytest.approx(0.5) and np.isnan(made_up[2])  # the known column is what counts


def test_a_pages_maxima_are_the_same_bits_whichever_pages_it_is_compared_with() -> None:
    rng = np.random.default_rng(3)
    query = late.unit(rng.normal(size=(7, 64)).astype(np.float32))
    pages = [late.unit(rng.normal(size=(int(n), 64)).astype(np.float32)) for n in rng.integers(1, 40, 30)]
    together = late.maxima(query, pages)
    for start, end in ((0, 1), (3, 17), (17, 30), (29, 30)):
        assert np.array_equal(late.maxima(query, pages[start:end]), together[:, start:end])
    with pytest.raises(ValueError, match="at least one wordpiece"):
        late.maxima(query, [pages[0], np.zeros((0, 64), dtype=np.float32)])


def test_recall_without_weight_scores_every_stored_page_zero() -> None:
    scores = late.recall(_unit_rows([1, 0]), np.array([0.0]), [_unit_rows([1, 0]), None])
    assert scores[0] == 0.0 and np.isnan(scores[1])


def test_lift_is_the_weighted_z_and_leaves_pages_without_a_score_where_they_were() -> None:
    gains = late.lift(np.array([1.0, np.nan, 3.0]), 2.0)
    assert gains == pytest.approx([-2.0, 0.0, 2.0])
    assert not late.lift(np.array([0.5, 0.5, np.nan]), 2.0).any()
    assert not late.lift(np.array([0.5, np.nan]), 2.0).any()


def test_lift_does_not_blow_up_differences_below_the_least_spread() -> None:
    alike = np.array([0.500, 0.502, 0.498])  # the same words at other dates
    assert np.abs(late.lift(alike, 2.0)).max() < 0.1
    assert late.lift(alike * 100, 2.0) == pytest.approx(2.0 * (alike * 100 - 50) / (alike * 100).std())


def test_rerank_top_keeps_the_reranked_pages_above_the_others_in_their_order() -> None:
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert late.rerank_top(scores, np.array([0, 1, 2]), np.array([-3.0, 0.0, 0.5]), 2.0) == 1.0
    assert scores.tolist() == [2.0, 4.0, 3.5, 1.0, 0.0]  # 2 and 1 shifted below 2.0, apart as before
    kept = np.array([5.0, 4.0, 1.0])
    assert late.rerank_top(kept, np.array([0, 1]), np.array([0.5, -0.5]), 1.0) == 0.0  # 1.0 < 3.5: no shift
    assert kept.tolist() == [5.5, 3.5, 1.0]


def test_a_query_leaves_out_the_unknown_piece_every_emoji_shares_and_a_page_keeps_it() -> None:
    text = "I saw a 🦆 duck 🎉"
    tokens = ["i", "saw", "a", "[UNK]", "duck", "[UNK]"]
    offsets = np.array([(0, 1), (2, 5), (6, 7), (8, 9), (10, 14), (15, 16)], dtype=np.int32)
    assert [t for t, k in zip(tokens, late.kept(tokens, offsets, text, page=False)) if k] == ["saw", "duck"]
    assert list(late.kept(tokens, offsets, text, page=True)) == [False, True, False, True, True, True]
    assert not late.kept(["[UNK]"], offsets[:1], "🦆", page=False).any()  # nothing left to match


def test_rerank_top_without_the_others_best_bounds_it_by_the_lowest_reranked_score_before() -> None:
    scores = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert late.rerank_top(scores, np.array([0, 1, 2]), np.array([-3.0, 0.0, 0.5])) == 2.0  # 3 - 2 + 1
    assert scores.tolist() == [2.0, 4.0, 3.5, 0.0, -1.0]
    assert np.argsort(-scores, kind="stable").tolist() == [1, 2, 0, 3, 4]
