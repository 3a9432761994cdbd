"""Ranking of retrieved units: segment relevance and its fusion into page scores."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from memoryos_core._policy.text import jaccard

SEGMENT_WEIGHT = 0.25
"""How much a page's segment relevance adds to its own similarity."""


def segment_relevance(similarity: float, query_words: Sequence[str], record: Any) -> float:
    """The paper's segment score against the query: cosine + keyword Jaccard."""
    keywords = json.loads(str(record.metadata.get("keywords_json") or "[]"))
    return similarity + jaccard(query_words, keywords)


def rank_pages(
    candidates: Sequence[tuple[Any, float]], segment_scores: dict[str, float]
) -> list[tuple[Any, float]]:
    """Pages by their similarity plus a share of their segment's relevance, best first."""
    scored = [
        (
            record,
            similarity + SEGMENT_WEIGHT * segment_scores.get(str(record.metadata.get("segment_id", "")), 0.0),
        )
        for record, similarity in candidates
    ]
    return sorted(scored, key=lambda item: item[1], reverse=True)
