"""Fusion of lexical and dense scores, sharing along the conversation, date windows, tokens."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pytest

from memoryos_core.engine.lexical import PageIndex, tokens
from memoryos_core.policy import ranking
from memoryos_core.policy.dates import asks_when, places_in_time, query_window


def _day(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("question", "start", "end"),
    [
        ("What did I do in July 2022?", "2022-07-01", "2022-08-01"),
        ("What movie did Joanna watch on 1 May, 2022?", "2022-05-01", "2022-05-02"),
        ("Where was I on December 3rd 2021?", "2021-12-03", "2021-12-04"),
        ("What happened in 2020?", "2020-01-01", "2021-01-01"),
        ("Plans for Sept 2024?", "2024-09-01", "2024-10-01"),
    ],
)
def test_query_windows(question: str, start: str, end: str) -> None:
    assert query_window(question) == (_day(start), _day(end))


@pytest.mark.parametrize("question", ["May I ask what you like?", "What is my name?", "On 31 February 2023?"])
def test_no_window_without_a_dated_period(question: str) -> None:
    window = query_window(question)
    assert window is None or window == (_day("2023-01-01"), _day("2024-01-01"))


def test_tokens_stem_keep_numbers_and_drop_stop_words() -> None:
    assert tokens("The turtles were painting 3 sunrises in 2022!") == [
        "turtl",
        "paint",
        "3",
        "sunris",
        "2022",
    ]


def test_bm25_prefers_rare_terms_and_short_pages() -> None:
    index = PageIndex()
    texts = [
        "cats and dogs",
        "cats",
        "dogs dogs dogs",
        "a long page about cats, birds, fish, horses and goats",
    ]
    for i, text in enumerate(texts):
        index.add(f"p{i}", text, float(i))
    scores = index.bm25(tokens("cats"))
    assert scores[2] == 0.0 and scores[1] > scores[3] > 0
    assert index.bm25(tokens("unknown")).tolist() == [0.0] * 4
    index.add("p1", "ignored: already indexed", 9.0)
    assert len(index) == 4


def test_dense_scores_of_unseen_pages_sit_at_the_candidates_floor() -> None:
    z = ranking.dense_z(5, {1: 0.8, 3: 0.4})
    assert z[1] > z[3] and z[0] == z[2] == z[4] == z[3]
    assert ranking.dense_z(3, {}).tolist() == [0.0, 0.0, 0.0]


def test_fusion_shares_relevance_with_neighbours_and_boosts_the_named_period() -> None:
    lexical = np.array([0, 0, 5, 0, 0, 0], dtype=np.float32)
    dense = np.zeros(6, dtype=np.float32)
    times = np.array([0, 10, 20, 30, 40, 50], dtype=np.float64)
    fused = ranking.fuse(lexical, dense, times, None)
    assert int(np.argmax(fused)) == 2
    assert fused[1] > fused[0] and fused[3] > fused[4]  # the neighbours gain
    dated = ranking.fuse(lexical, dense, times, (40.0, 41.0))
    assert dated[4] - fused[4] == pytest.approx(ranking.DATE_BOOST)
    assert ranking.top_positions(fused, 2) == [2, 3] or ranking.top_positions(fused, 2) == [2, 1]
    assert ranking.top_positions(fused, 2, exclude=[2])[0] in (1, 3)


def test_sessions_split_at_gaps_longer_than_an_hour() -> None:
    hour = ranking.SESSION_GAP_S
    times = np.array([0, 60, 120, hour + 500, hour + 560, 5 * hour], dtype=np.float64)
    assert ranking.sessions(times).tolist() == [0, 0, 0, 1, 1, 2]
    assert ranking.sessions(np.zeros(0)).tolist() == []


def test_the_index_keeps_its_pages_sessions_and_fuse_ranks_alike_with_them() -> None:
    """``PageIndex.sessions`` is ``sessions`` of its times, follows added pages, and given to ``fuse``
    (``session=``) changes no score."""
    hour = ranking.SESSION_GAP_S
    index = PageIndex()
    for i, text in enumerate(["tea at noon", "tea again", "boat trip", "boat home", "tea and boat"]):
        index.add(f"p{i}", text, i * 60.0 + (i // 2) * 2 * hour)
    times = index.snapshot(["tea"])[2]
    assert index.sessions(5).tolist() == ranking.sessions(times).tolist() == [0, 0, 1, 1, 2]
    index.add("p5", "tea later", times[-1] + 3 * hour)
    count, lexical, times = index.snapshot(tokens("tea boat"))
    assert index.sessions(count).tolist() == [0, 0, 1, 1, 2, 3]
    assert index.sessions(count) is index.sessions(count)  # kept for the page count
    dense = np.linspace(-1.0, 1.0, count).astype(np.float32)
    for window in (None, (0.0, 60.0)):
        alone = ranking.fuse(lexical, dense, times, window)
        given = ranking.fuse(lexical, dense, times, window, session=index.sessions(count))
        assert given.tobytes() == alone.tobytes()
    one_session = ranking.fuse(lexical, dense, times, None, session=np.zeros(count, dtype=np.int64))
    assert one_session.tobytes() != ranking.fuse(lexical, dense, times, None).tobytes()  # (it is used)


def test_a_page_in_a_relevant_session_outranks_an_equal_page_elsewhere() -> None:
    hour = ranking.SESSION_GAP_S
    lexical = np.array([0, 0, 0, 6, 0, 0, 2, 2, 2, 0, 0, 0], dtype=np.float32)
    times = np.array([i * 60 + (i // 6) * 2 * hour for i in range(12)], dtype=np.float64)
    lexical[1] = 2  # the same lexical score as pages 6..8, but in the session of the best page
    fused = ranking.fuse(lexical, np.zeros(12, dtype=np.float32), times, None)
    assert fused[1] > fused[7]


def test_when_questions_favour_pages_that_place_things_in_time() -> None:
    assert asks_when("When did Caroline go to the LGBTQ support group?")
    assert asks_when("What year did she move?") and not asks_when("What did she eat?")
    assert places_in_time("[2023-05-08 13:56:00] User: I went there yesterday.")
    assert not places_in_time("[2023-05-08 13:56:00] User: I like pottery.")
    timed = np.array([False, True, False])
    flat = np.zeros(3, dtype=np.float32)
    times = np.arange(3, dtype=np.float64)
    boosted = ranking.Weights(when=0.5)  # off by default since the ablation (bench fusion)
    when = ranking.fuse(flat, flat, times, None, timed=timed, when=True, weights=boosted)
    assert int(np.argmax(when)) == 1
    assert ranking.fuse(flat, flat, times, None, timed=timed, when=False, weights=boosted).tolist() == [
        0.0,
        0.0,
        0.0,
    ]
    assert ranking.fuse(flat, flat, times, None, timed=timed, when=True).tolist() == [0.0, 0.0, 0.0]


def test_pages_that_place_things_in_time_are_flagged_in_the_index() -> None:
    index = PageIndex()
    index.add("p0", "[2023-01-01 10:00:00] User: How are you?", 0.0)
    index.add("p1", "User: Fine.\nAssistant: I went there last week.", 1.0)
    assert index.timed_pages(2).tolist() == [False, True]


def _ranking_with_one_standout(count: int, standout: int, height: float) -> np.ndarray:
    values = np.linspace(0.0, 1.0, count, dtype=np.float32)
    values[standout] = height
    return ranking.zscore(values)


def test_a_peaked_dense_ranking_gets_more_weight_than_a_flat_one() -> None:
    lexical = _ranking_with_one_standout(40, 3, 3.0)
    peaked = _ranking_with_one_standout(40, 7, 30.0)
    flat = ranking.zscore(np.linspace(0.0, 1.0, 40, dtype=np.float32))
    heavy, light = ranking.dense_weight(lexical, peaked), ranking.dense_weight(lexical, flat)
    assert heavy > ranking.DENSE_WEIGHT > light
    low, high = ranking.DENSE_WEIGHT / ranking.ADAPTIVE_RANGE, ranking.DENSE_WEIGHT * ranking.ADAPTIVE_RANGE
    assert low <= light and heavy <= high
    # fuse applies the weight of each query's own rankings: the peaked one counts more.
    times = np.arange(40, dtype=np.float64) * ranking.SESSION_GAP_S * 2
    weights = ranking.Weights(previous=0.0, next=0.0, session=0.0)
    raw_lexical = np.zeros(40, dtype=np.float32)
    raw_lexical[3], raw_lexical[10:20] = 4.0, 1.0
    lexical_z = ranking.zscore(raw_lexical)
    for dense in (peaked, flat):
        fused = ranking.fuse(raw_lexical, dense, times, None, weights=weights)
        assert np.allclose(fused, lexical_z + ranking.dense_weight(lexical_z, dense) * dense)


def test_no_lexical_match_leans_on_the_dense_ranking_and_the_constant_weight_stays_available() -> None:
    dense = _ranking_with_one_standout(20, 5, 2.0)
    nothing = np.zeros(20, dtype=np.float32)
    assert ranking.dense_weight(nothing, dense) == pytest.approx(
        ranking.DENSE_WEIGHT * ranking.ADAPTIVE_RANGE
    )
    times = np.arange(20, dtype=np.float64)
    lexical = np.arange(20, dtype=np.float32)
    constant = ranking.Weights(adaptive=False, session=0.0, previous=0.0, next=0.0, date=0.0)
    fused = ranking.fuse(lexical, dense, times, None, weights=constant)
    assert np.allclose(fused, ranking.zscore(lexical) + ranking.DENSE_WEIGHT * dense)


def test_many_queries_at_once_rank_as_each_query_alone() -> None:
    rng = np.random.default_rng(7)
    hour = ranking.SESSION_GAP_S
    times = np.array([i * 60 + (i // 5) * 3 * hour for i in range(23)], dtype=np.float64)
    lexical = rng.gamma(0.3, 2.0, size=(4, 23)).astype(np.float32)
    lexical[1] = 0.0  # a query that matches no word
    dense = rng.normal(size=(4, 23)).astype(np.float32)
    windows = np.array([[np.nan, np.nan], [times[6], times[6] + 1], [np.nan, np.nan], [0.0, 1.0]])
    when = np.array([True, False, True, False])
    timed = rng.random(23) > 0.5
    weights = ranking.Weights(when=0.5)
    together = ranking.fuse(lexical, dense, times, windows, timed=timed, when=when, weights=weights)
    for row in range(4):
        window = None if np.isnan(windows[row, 0]) else (float(windows[row, 0]), float(windows[row, 1]))
        alone = ranking.fuse(
            lexical[row], dense[row], times, window, timed=timed, when=bool(when[row]), weights=weights
        )
        assert np.allclose(together[row], alone, atol=1e-5)


def test_session_prior_is_each_sessions_best_score_on_one_scale() -> None:
    score = np.array([1.0, 5.0, 2.0, 0.0, 3.0], dtype=np.float64)
    session = np.array([0, 0, 1, 1, 2])
    prior = ranking.session_prior(score, session)
    assert prior[0] == prior[1] and prior[1] > prior[4] > prior[2] == prior[3]
    assert ranking.session_prior(score, np.zeros(5, dtype=np.int64)).tolist() == [0.0] * 5


@pytest.mark.parametrize("window", [None, (100.0, 5_000.0)])
@pytest.mark.parametrize("adaptive", [True, False])
def test_score_parts_add_up_to_the_fused_score_and_tracing_changes_nothing(
    window: tuple[float, float] | None, adaptive: bool
) -> None:
    rng = np.random.default_rng(7)
    count = 40
    lexical = rng.random(count).astype(np.float32) * 3
    dense = rng.standard_normal(count).astype(np.float32)
    times = np.concatenate((np.arange(20) * 60.0, 20_000 + np.arange(20) * 60.0))
    timed = rng.random(count) > 0.5
    weights = ranking.Weights(adaptive=adaptive, when=0.4)
    plain = ranking.fuse(lexical, dense, times, window, timed=timed, when=True, weights=weights)
    trace: dict[str, np.ndarray] = {}
    traced = ranking.fuse(lexical, dense, times, window, timed=timed, when=True, weights=weights, trace=trace)
    assert np.array_equal(plain, traced)  # bit for bit
    for position in (0, 1, 19, 20, count - 1):
        parts = ranking.score_parts(trace, position)
        assert tuple(parts) == ranking.SCORE_PARTS
        assert sum(parts.values()) == pytest.approx(float(plain[position]), abs=1e-4)
    assert any(ranking.score_parts(trace, p)["session"] != 0 for p in range(count))
    dates = [ranking.score_parts(trace, p)["date"] for p in range(count)]
    in_window = [window is not None and window[0] <= t < window[1] + ranking.DATE_GRACE_S for t in times]
    assert dates == pytest.approx([0.4 * asked + 0.5 * inside for asked, inside in zip(timed, in_window)])


def test_score_parts_of_a_single_page_have_no_neighbours() -> None:
    trace: dict[str, np.ndarray] = {}
    fused = ranking.fuse(np.array([2.0]), np.array([0.5]), np.array([0.0]), None, trace=trace)
    parts = ranking.score_parts(trace, 0)
    assert parts["neighbours"] == 0.0 and parts["session"] == 0.0
    assert sum(parts.values()) == pytest.approx(float(fused[0]))


def test_zscore_of_equal_float32_scores_is_zero_not_a_rounding_artefact() -> None:
    # 13 equal float32 values have a mean one ulp off and a std of ~2e-7: dividing by it gave -1 each.
    equal = np.full((2, 13), 3.7, dtype=np.float32)
    assert np.array_equal(ranking.zscore(equal), np.zeros_like(equal))
    spread = np.array([3.7, 3.7, 3.7001], dtype=np.float32)
    assert ranking.zscore(spread)[2] > 1.0  # a real difference, however small, still counts
