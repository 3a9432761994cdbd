"""Mid-term decisions: dialogue chains, topic grouping, segment choice and merging."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from memoryos_core._config import MidTermConfig
from memoryos_core.policy import text as text_policy


@dataclass(frozen=True)
class Topic:
    """A run of consecutive pages of one batch about one topic."""

    page_ids: tuple[str, ...]
    summary: str
    keywords: tuple[str, ...]
    overview: str
    source: str
    """Who wrote summary and keywords: "llm" or "extractive"."""


@dataclass(frozen=True)
class SegmentState:
    """What the engine keeps of a segment, without its pages."""

    id: str
    summary: str
    keywords: tuple[str, ...]
    embedding: tuple[float, ...]
    page_count: int
    n_visit: int
    l_interaction: int
    last_access_s: float
    created_s: float
    pending_page_ids: tuple[str, ...] = ()
    """Pages added since the segment was last analysed into long-term memory."""


def chain_breaks(
    vectors: Sequence[Sequence[float]], previous: Sequence[float] | None, threshold: float
) -> list[bool]:
    """For each page: does it continue the page before it? (offline continuity check).

    The first page is compared with ``previous`` (the last page before the batch), so the
    chain cursor survives batches and restarts.
    """
    flags: list[bool] = []
    before = previous
    for vector in vectors:
        flags.append(before is not None and text_policy.cosine(vector, before) >= threshold)
        before = vector
    return flags


def group_by_continuity(flags: Sequence[bool]) -> list[list[int]]:
    """Split page indexes into runs: a page that does not continue its predecessor starts a run."""
    groups: list[list[int]] = []
    for index, continues in enumerate(flags):
        if index == 0 or not continues:
            groups.append([index])
        else:
            groups[-1].append(index)
    return groups


def extractive_topics(
    page_ids: Sequence[str],
    texts: Sequence[str],
    vectors: Sequence[Sequence[float]],
    flags: Sequence[bool],
    config: MidTermConfig,
) -> list[Topic]:
    """Topics without an LLM: continuity runs, extractive summaries, frequency keywords."""
    topics = []
    for group in group_by_continuity(flags):
        group_texts = [texts[i] for i in group]
        group_vectors = [vectors[i] for i in group]
        summary = text_policy.extractive_summary(group_texts, group_vectors, config.summary_max_chars)
        topics.append(
            Topic(
                page_ids=tuple(page_ids[i] for i in group),
                summary=summary,
                keywords=tuple(text_policy.keywords(group_texts, config.max_keywords)),
                overview=text_policy.clip(summary, 240),
                source="extractive",
            )
        )
    return topics


def segment_score(
    topic_vector: Sequence[float], topic_keywords: Sequence[str], segment: SegmentState
) -> float:
    """The paper's match score: cosine of summary embeddings + Jaccard of keyword sets."""
    return text_policy.cosine(topic_vector, segment.embedding) + text_policy.jaccard(
        topic_keywords, segment.keywords
    )


def choose_segment(
    topic_vector: Sequence[float],
    topic_keywords: Sequence[str],
    candidates: Sequence[SegmentState],
    theta: float,
) -> SegmentState | None:
    """The best candidate if its score reaches theta, else None (open a new segment)."""
    best, best_score = None, -np.inf
    for segment in candidates:
        score = segment_score(topic_vector, topic_keywords, segment)
        if score > best_score:
            best, best_score = segment, score
    return best if best is not None and best_score >= theta else None


def merge_into(
    segment: SegmentState, topic: Topic, topic_vector: Sequence[float], now_s: float, config: MidTermConfig
) -> SegmentState:
    """The segment after ``topic`` joined it: summary, keywords and embedding refreshed."""
    added = len(topic.page_ids)
    # The newest topic is kept whole; the older summary gives up room first.
    room = config.summary_max_chars - len(topic.summary) - 1
    older = text_policy.clip(segment.summary, room) if room > 20 else ""
    summary = text_policy.clip(f"{older} {topic.summary}".strip(), config.summary_max_chars)
    embedding = text_policy.mean_vector([segment.embedding, topic_vector], [segment.page_count, added])
    return replace(
        segment,
        summary=summary,
        keywords=tuple(text_policy.merge_keywords(segment.keywords, topic.keywords, config.max_keywords)),
        embedding=tuple(embedding),
        page_count=segment.page_count + added,
        l_interaction=segment.l_interaction + added,
        last_access_s=now_s,
        pending_page_ids=(*segment.pending_page_ids, *topic.page_ids),
    )


def new_segment(segment_id: str, topic: Topic, topic_vector: Sequence[float], now_s: float) -> SegmentState:
    return SegmentState(
        id=segment_id,
        summary=topic.summary,
        keywords=topic.keywords,
        embedding=tuple(text_policy.normalise(topic_vector)),
        page_count=len(topic.page_ids),
        n_visit=0,
        l_interaction=len(topic.page_ids),
        last_access_s=now_s,
        created_s=now_s,
        pending_page_ids=topic.page_ids,
    )
