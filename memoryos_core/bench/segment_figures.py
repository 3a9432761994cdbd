"""Topic segment figures of ``memoryos bench locomo``: how the mid-term tier divides a conversation."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from memoryos_core.policy.topics import coherence
from memoryos_core.storage.base import MemoryStore


def conversation_figures(groups: Sequence[Sequence[Sequence[float]]]) -> dict[str, Any]:
    """Segments, the biggest one's share of pages (%), median size and coherence of one user."""
    sizes = [len(g) for g in groups if len(g)]
    pages = sum(sizes)
    margin = coherence(groups)
    return {
        "segments": len(sizes),
        "pages": pages,
        "biggest_share": round(100.0 * max(sizes) / pages, 1) if pages else 0.0,
        "median_size": float(statistics.median(sizes)) if sizes else 0.0,
        "coherence": None if margin is None else round(margin, 3),
    }


def segment_figures(store: MemoryStore, users: Sequence[str]) -> dict[str, Any]:
    """Per user (conversation) and pooled: the consolidated pages grouped by their segment."""
    per_user: dict[str, Any] = {}
    for user in users:
        by_segment: dict[str, list[list[float]]] = defaultdict(list)
        for page in store.get("pages", where={"user_id": user, "tier": "mid_term"}, with_embeddings=True):
            by_segment[str(page.metadata.get("segment_id", ""))].append(list(page.embedding or ()))
        per_user[user] = conversation_figures(list(by_segment.values()))
    figures = list(per_user.values())
    margins = [f["coherence"] for f in figures if f["coherence"] is not None]
    pooled = {
        "segments_per_conversation": round(statistics.fmean(f["segments"] for f in figures), 1)
        if figures
        else 0.0,
        "biggest_share_max": max((f["biggest_share"] for f in figures), default=0.0),
        "median_size": float(statistics.median([f["median_size"] for f in figures])) if figures else 0.0,
        "coherence": round(statistics.fmean(margins), 3) if margins else None,
    }
    return {"pooled": pooled, "conversations": per_user}
