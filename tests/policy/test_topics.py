"""Topic segments: nearest-page joins, splitting by the segment's own clustering, distinctive keywords."""

from __future__ import annotations

import numpy as np

from memoryos_core import HashingEmbedder
from memoryos_core.bench.segment_figures import conversation_figures
from memoryos_core.policy import topics

EMBED = HashingEmbedder(64)
HIKING = ["hiking boots trail mountain", "trail summit hiking boots", "mountain trail hiking map"]
COOKING = ["pasta tomato sauce basil", "basil pasta sauce recipe", "tomato sauce pasta dinner"]


def test_a_recurring_topic_joins_the_segment_of_its_nearest_pages_not_the_biggest() -> None:
    big = [("big", v) for v in EMBED.embed(COOKING * 5)]
    small = [("hike", v) for v in EMBED.embed(HIKING[:2])]
    vector = EMBED.embed(["hiking trail boots again"])[0]
    chosen = topics.nearest_segment(vector, ("hiking",), big + small, {"big": (), "hike": ("hiking",)}, 0.3)
    assert chosen == "hike"


def test_no_segment_close_enough_opens_a_new_one_and_unknown_segments_are_ignored() -> None:
    neighbours = [("cook", v) for v in EMBED.embed(COOKING)] + [("gone", EMBED.embed(["quantum physics"])[0])]
    vector = EMBED.embed(["quantum physics lecture"])[0]
    assert topics.nearest_segment(vector, (), neighbours, {"cook": ()}, 0.6) is None


def test_two_interleaved_topics_split_into_their_topics() -> None:
    texts = [HIKING[i % 3] if i % 2 == 0 else COOKING[i % 3] for i in range(12)]
    groups = topics.split_pages(EMBED.embed(texts), max_pages=8)
    assert len(groups) == 2 and 0 in groups[0]
    assert {frozenset(texts[i] in HIKING for i in g) for g in groups} == {
        frozenset({True}),
        frozenset({False}),
    }


def test_a_segment_within_its_cap_is_not_split_and_an_oversized_one_ends_within_it() -> None:
    vectors = EMBED.embed([f"{HIKING[i % 3]} day {i}" for i in range(30)])
    assert topics.split_pages(vectors[:10], max_pages=10) == [list(range(10))]
    groups = topics.split_pages(vectors, max_pages=7)
    assert all(len(g) <= 7 for g in groups)
    assert sorted(i for g in groups for i in g) == list(range(30))


def test_keywords_prefer_words_distinctive_within_the_user() -> None:
    texts = ["caroline went hiking on the trail", "caroline bought hiking boots"]
    others = [("caroline", "pasta"), ("caroline", "painting"), ("caroline", "guitar")]
    words = topics.distinctive_keywords(texts, others, 3)
    assert words[0] == "hiking" and "caroline" not in words[:2]


def test_coherence_is_positive_for_topics_and_near_zero_for_a_random_cut() -> None:
    hike, cook = EMBED.embed(HIKING), EMBED.embed(COOKING)
    margin = topics.coherence([hike, cook])
    assert margin is not None and margin > 0.2
    mixed = topics.coherence([[hike[0], cook[0], hike[2]], [cook[1], hike[1], cook[2]]])
    assert mixed is not None and mixed < margin
    assert topics.coherence([hike]) is None


def test_segment_figures_of_one_conversation() -> None:
    groups = [EMBED.embed(HIKING), EMBED.embed(COOKING[:2]), [np.ones(64).tolist()]]
    figures = conversation_figures(groups)
    assert figures["segments"] == 3 and figures["pages"] == 6
    assert figures["biggest_share"] == 50.0 and figures["median_size"] == 2.0
