"""Dialogue chains, topic grouping, segment choice (cosine + Jaccard >= theta) and merging."""

from __future__ import annotations

import pytest

from memoryos_core import HashingEmbedder, MidTermConfig
from memoryos_core.policy import mid_term, text
from memoryos_core.policy.mid_term import SegmentState, Topic

EMBED = HashingEmbedder(64)


def _segment(summary: str, keywords: tuple[str, ...], **kwargs: object) -> SegmentState:
    defaults = dict(
        id="s1",
        summary=summary,
        keywords=keywords,
        embedding=tuple(EMBED.embed([summary])[0]),
        page_count=2,
        n_visit=1,
        l_interaction=2,
        last_access_s=0.0,
        created_s=0.0,
    )
    return SegmentState(**(defaults | kwargs))  # type: ignore[arg-type]


def test_continuity_runs_split_where_similarity_drops() -> None:
    vectors = EMBED.embed(
        ["hiking boots trail", "hiking trail mountain boots", "pasta tomato sauce", "pasta sauce"]
    )
    flags = mid_term.chain_breaks(vectors, previous=None, threshold=0.3)
    assert flags == [False, True, False, True]
    assert mid_term.group_by_continuity(flags) == [[0, 1], [2, 3]]


def test_first_page_of_a_batch_continues_the_previous_batch() -> None:
    previous = EMBED.embed(["pasta tomato sauce"])[0]
    flags = mid_term.chain_breaks(EMBED.embed(["pasta sauce basil", "python code"]), previous, 0.3)
    assert flags == [True, False]


def test_extractive_topics_quote_only_what_was_said() -> None:
    texts = ["hiking boots trail", "hiking trail mountain boots", "pasta tomato sauce"]
    vectors = EMBED.embed(texts)
    flags = mid_term.chain_breaks(vectors, None, 0.3)
    topics = mid_term.extractive_topics(["a", "b", "c"], texts, vectors, flags, MidTermConfig())
    assert [t.page_ids for t in topics] == [("a", "b"), ("c",)]
    for topic, group in zip(topics, ([0, 1], [2])):
        assert all(word in " ".join(texts[i] for i in group) for word in topic.summary.split())
        assert topic.source == "extractive"
    assert "hiking" in topics[0].keywords


@pytest.mark.parametrize(("theta", "joins"), [(0.6, True), (2.5, False)])
def test_segment_choice_uses_cosine_plus_jaccard_against_theta(theta: float, joins: bool) -> None:
    segment = _segment("hiking boots trail mountain", ("hiking", "trail"))
    vector = EMBED.embed(["hiking trail boots"])[0]
    chosen = mid_term.choose_segment(vector, ("hiking", "trail"), [segment], theta)
    assert (chosen is segment) is joins
    expected = text.cosine(vector, segment.embedding) + 1.0  # identical keyword sets: Jaccard 1
    assert mid_term.segment_score(vector, ("hiking", "trail"), segment) == pytest.approx(expected)


def test_merge_refreshes_summary_keywords_embedding_and_counters() -> None:
    segment = _segment("hiking boots trail", ("hiking", "boots"))
    topic = Topic(("p3", "p4"), "alpine lake swim", ("lake", "swim"), "overview", "llm")
    vector = EMBED.embed(["alpine lake swim"])[0]
    merged = mid_term.merge_into(segment, topic, vector, now_s=50.0, config=MidTermConfig())
    assert "alpine lake swim" in merged.summary and "hiking" in merged.summary
    assert merged.keywords[:2] == ("lake", "swim") and "hiking" in merged.keywords
    assert merged.embedding != segment.embedding
    assert text.cosine(merged.embedding, vector) > text.cosine(segment.embedding, vector)
    assert (merged.page_count, merged.l_interaction, merged.last_access_s) == (4, 4, 50.0)
    assert merged.pending_page_ids == ("p3", "p4")


def test_merged_summary_stays_bounded_and_keeps_the_newest_topic() -> None:
    config = MidTermConfig(summary_max_chars=80)
    segment = _segment("old " * 30, ("old",))
    topic = Topic(("p",), "the newest topic summary", ("newest",), "", "llm")
    merged = mid_term.merge_into(segment, topic, EMBED.embed(["newest"])[0], 0.0, config)
    assert len(merged.summary) <= 80
    assert merged.summary.endswith("the newest topic summary")
