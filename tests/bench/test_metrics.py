"""Scoring: provenance expansion under a turn budget, recall/hit per category, F1 and BLEU-1."""

from __future__ import annotations

import math

import pytest

from memoryos_core.bench.metrics import (
    AnswerTable,
    RecallTable,
    bleu1,
    expand_turns,
    normalize_answer,
    percent,
    percentile,
    recall,
    score_answer,
    token_f1,
    units_within,
)

UNITS = [
    ("D1:1", "D1:2"),  # a page: two turns
    (),  # a unit without provenance costs nothing
    ("D1:2", "D5:1"),  # D1:2 was already retrieved: only D5:1 is new
    ("D7:1", "D7:2", "D7:3", "D7:4"),  # knowledge citing four turns
    ("D9:1",),
]


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        (1, ["D1:1"]),  # the literal cut takes the first turns of an overflowing unit
        (2, ["D1:1", "D1:2"]),
        (3, ["D1:1", "D1:2", "D5:1"]),
        (5, ["D1:1", "D1:2", "D5:1", "D7:1", "D7:2"]),
        (7, ["D1:1", "D1:2", "D5:1", "D7:1", "D7:2", "D7:3", "D7:4"]),
        (50, ["D1:1", "D1:2", "D5:1", "D7:1", "D7:2", "D7:3", "D7:4", "D9:1"]),
    ],
)
def test_expand_turns_in_rank_order_cut_at_the_budget(budget: int, expected: list[str]) -> None:
    assert expand_turns(UNITS, budget) == expected


def test_each_k_is_a_prefix_of_the_largest_expansion() -> None:
    largest = expand_turns(UNITS, 50)
    for k in range(1, 9):
        assert expand_turns(UNITS, k) == largest[:k]


@pytest.mark.parametrize(("budget", "units"), [(1, 1), (2, 1), (3, 3), (4, 4), (7, 4), (8, 5), (50, 5)])
def test_units_within_counts_the_units_that_fit(budget: int, units: int) -> None:
    assert units_within(UNITS, budget) == units


def test_recall_and_percentiles() -> None:
    assert recall(["D1:1", "D2:2"], ["D2:2", "D9:9"]) == 0.5
    assert recall(["D1:1", "D1:1"], ["D1:1"]) == 1.0
    assert recall([], ["D1:1"]) == 0.0
    assert percent([1.0, 0.0, 0.0]) == 33.3
    assert percent([]) is None
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    assert percentile(list(map(float, range(1, 101))), 0.95) == 95.0
    assert percentile([], 0.95) == 0.0


def test_recall_table_pools_categories_and_counts_hits() -> None:
    table = RecallTable(ks=[1, 2])
    ranked = ["A", "B", "C"]
    table.add(1, ["A", "Z"], ranked)  # R@1 .5, R@2 .5
    table.add(2, ["B"], ranked)  # R@1 0, R@2 1
    table.add(4, ["Z"], ranked)  # never found
    table.add(5, ["A"], ranked)  # adversarial: in "all", not in "1-4"
    summary = table.summary()
    assert summary["recall"]["1"] == {
        "1": 50.0,
        "2": 0.0,
        "3": None,
        "4": 0.0,
        "5": 100.0,
        "1-4": round(100 * 0.5 / 3, 1),
        "all": round(100 * 1.5 / 4, 1),
    }
    assert summary["recall"]["2"]["1-4"] == 50.0
    assert summary["recall"]["2"]["all"] == 62.5
    assert summary["hit"] == {"1": {"all": 50.0}, "2": {"all": 75.0}}


def test_recall_table_keeps_unknown_categories() -> None:
    table = RecallTable(ks=[1])
    table.add(7, ["A"], ["A"])
    assert list(table.summary()["recall"]["1"]) == ["1", "2", "3", "4", "5", "7", "1-4", "all"]


def test_answer_normalisation_f1_and_bleu1() -> None:
    assert normalize_answer("The  Blue, bowl!") == "blue bowl"
    assert normalize_answer(2022) == "2022"
    assert token_f1("A blue bowl.", "the blue bowl") == 1.0
    assert token_f1("blue", "blue bowl") == pytest.approx(2 / 3)
    assert token_f1("red cup", "blue bowl") == 0.0
    assert token_f1("", "blue") == 0.0
    # BLEU-1: clipped unigram precision times the brevity penalty exp(1 - r/c) when shorter.
    assert bleu1("blue bowl", "blue bowl") == 1.0
    assert bleu1("blue", "blue bowl") == pytest.approx(math.exp(1 - 2 / 1))
    assert bleu1("blue blue blue", "blue bowl") == pytest.approx(1 / 3)
    assert bleu1("", "blue") == 0.0


def test_adversarial_answers_score_by_admitting_ignorance() -> None:
    assert score_answer("Not mentioned in the conversation", "a golden retriever", 5) == (1.0, 1.0)
    assert score_answer("A golden retriever", "a golden retriever", 5) == (0.0, 0.0)
    assert score_answer("a golden retriever", "a golden retriever", 4) == (1.0, 1.0)


def test_answer_table_per_category() -> None:
    table = AnswerTable()
    table.add(4, "Biscuit", "Biscuit")
    table.add(1, "red", "blue")
    table.add(5, "no information available", "x")
    summary = table.summary()
    assert summary["f1"]["4"] == 100.0 and summary["f1"]["1"] == 0.0 and summary["f1"]["5"] == 100.0
    assert summary["f1"]["1-4"] == 50.0 and summary["f1"]["all"] == 66.7
    assert summary["bleu1"]["2"] is None
