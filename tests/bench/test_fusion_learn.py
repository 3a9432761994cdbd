"""``bench fusion --learn``: the features add up to the ranking; the learners find what is planted."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from memoryos_core.bench import fusion, fusion_learn
from memoryos_core.bench.fusion_data import ConversationFeatures
from memoryos_core.policy import ranking
from tests.bench.test_fusion import _features


def _conversation(seed: int) -> ConversationFeatures:
    """Small random features with three sessions and, for half the questions, a named period."""
    f = _features(questions=10, pages=24, seed=seed)
    times = np.arange(24, dtype=np.float64) * 600.0 + np.repeat([0.0, 86_400.0, 10 * 86_400.0], 8)
    window = np.full((10, 2), np.nan)
    window[::2] = [times[8], times[15]]
    return replace(f, times=times, window=window)


def test_at_the_shipped_weights_the_features_add_up_to_the_engines_ranking() -> None:
    evaluation = fusion.Evaluation([_conversation(seed) for seed in (1, 2)])
    for position, f in enumerate(evaluation.features):
        shipped = fusion.scores(f, fusion.Variant())
        assert np.ptp(fusion_learn.candidate_features(evaluation, position)[..., -1]) == 1  # dates named
        for extras in (False, True):
            x = fusion_learn.candidate_features(evaluation, position, extras)
            assert x.shape == (*shipped.shape, len(fusion_learn.FEATURES) + extras * len(fusion_learn.EXTRAS))
            summed = x @ fusion_learn.shipped_weights(extras)
            # (the first and last pages' missing neighbour is each term's lowest, not the sum's)
            assert np.allclose(summed[:, 1:-1], shipped[:, 1:-1], atol=1e-4)
        assert np.ptp(ranking.session_prior(shipped, ranking.sessions(f.times))) > 0  # sessions apart


def _planted(seed: int, truth: np.ndarray) -> fusion_learn.Lists:
    """Lists of 30 random pages whose best under ``truth`` is the relevant one."""
    rng = np.random.default_rng(seed)
    lists = []
    for _ in range(300):
        x = rng.normal(size=(30, len(truth)))
        y = np.zeros(30)
        y[np.argmax(x @ truth)] = 1.0
        lists.append((x, y))
    return lists


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_pairwise_and_listwise_learners_recover_a_planted_ranking() -> None:
    truth = np.array([1.0, 2.0, -1.0, 0.0])
    lists = _planted(7, truth)
    for learned in (fusion_learn.pairwise_logistic(lists, 1.0), fusion_learn.listwise(lists, 0.01)):
        assert _cosine(learned, truth) > 0.95
        assert abs(learned[3]) < 0.2 * np.abs(learned).max()  # the useless feature stays small
    weak = fusion_learn.pairwise_logistic(lists, 1e4)  # regularisation shrinks the weights
    assert np.linalg.norm(weak) < 0.1 * np.linalg.norm(fusion_learn.pairwise_logistic(lists, 1.0))


def test_coordinate_ascent_climbs_keeps_the_first_weight_and_stops_on_a_plateau() -> None:
    target = np.array([1.0, 0.3, -0.2])

    def objective(w: np.ndarray) -> float:
        return -float(np.square(w - target).sum())

    start = np.array([1.0, 0.0, 0.0])
    found = fusion_learn.coordinate_ascent(objective, start)
    assert found[0] == 1.0 and np.allclose(found, target, atol=1e-9)
    flat = fusion_learn.coordinate_ascent(lambda w: 0.5 + 1e-5 * float(w.sum()), start)
    assert np.array_equal(flat, start)  # gains below ``least`` move nothing


def test_agreement_and_reciprocal_ranks() -> None:
    first = np.array([[5.0, 4.0, 3.0, 2.0, 1.0, 0.0]])
    second = np.array([[5.0, 0.0, 3.0, 2.0, 1.0, 4.0]])
    assert fusion_learn.overlap(first, second, depth=2).tolist() == [0.5]  # page 0 in both top 2
    assert fusion_learn.overlap(first, first, depth=3).tolist() == [1.0]
    rr = fusion_learn.reciprocal_rank(second, top=3)
    offset = fusion_learn.RANK_OFFSET
    assert rr[0].tolist() == [1.0, 0.0, offset / (offset + 2), 0.0, 0.0, offset / (offset + 1)]


def test_the_table_scores_every_learner_held_out_against_the_shipped_ranking() -> None:
    evaluation = fusion.Evaluation([_conversation(seed) for seed in (1, 2, 3)], ks=(5, 10))
    result = fusion_learn.learn_table(evaluation)
    names = [row["name"] for row in result["rows"]]
    assert names == [
        *fusion_learn.METHODS,
        *(f"{method} + extras" for method in fusion_learn.METHODS),
        "agreement-scaled dense weight",
    ]
    for row in result["rows"]:
        assert len(row["gain"]) == 2 and all(g["better"] + g["worse"] <= 3 for g in row["gain"])
        assert set(row["held_out"]) == {"5", "10"}
    assert list(result["weights"]["pairwise"]) == list(fusion_learn.FEATURES)
    assert result["weights"]["coordinate ascent"]["lexical"] == 1.0
    assert len(result["agreement_chosen"]) == 3
    assert result["shipped"] == fusion_learn.shipped_weights().tolist()
