"""Long-term decisions: which segments to analyse, profile merging, knowledge de-duplication."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from memoryos_core._config import MidTermConfig
from memoryos_core._types import KnowledgeEntry, ProfileTrait
from memoryos_core.policy.heat import HeatState, is_hot
from memoryos_core.policy.mid_term import SegmentState

# A trait value like these carries no information: the LLM saying it knows nothing.
_EMPTY_VALUES = frozenset({"", "none", "null", "unknown", "n/a", "na", "not specified", "not mentioned", "-"})


def hot_segments(segments: Sequence[SegmentState], now_s: float, config: MidTermConfig) -> list[SegmentState]:
    """Every segment whose heat reaches the threshold and has new pages to analyse."""
    return [
        s
        for s in segments
        if s.pending_page_ids
        and is_hot(HeatState(s.n_visit, s.l_interaction, s.last_access_s), now_s, config)
    ]


def merge_profile(
    profile: dict[str, ProfileTrait], updates: Sequence[ProfileTrait], capacity: int
) -> tuple[dict[str, ProfileTrait], list[ProfileTrait]]:
    """The profile with ``updates`` applied one trait at a time; returns (profile, applied).

    Nothing is ever replaced by an empty or placeholder value, so a bad reply can at worst
    add a wrong trait, never wipe the profile.
    """
    merged = dict(profile)
    applied = []
    for trait in updates:
        name = " ".join(trait.name.split())[:80]
        value = " ".join(trait.value.split())[:500]
        if not name or value.lower().strip(".") in _EMPTY_VALUES:
            continue
        key = name.lower()
        previous = merged.get(key)
        page_ids = tuple(dict.fromkeys([*(previous.page_ids if previous else ()), *trait.page_ids]))
        merged[key] = ProfileTrait(name, value, page_ids, trait.updated_s)
        applied.append(merged[key])
    if len(merged) > capacity:
        keep = sorted(merged.values(), key=lambda t: t.updated_s, reverse=True)[:capacity]
        merged = {t.name.lower(): t for t in keep}
    return merged, applied


def find_duplicate(
    vector: Sequence[float], existing: Sequence[KnowledgeEntry], threshold: float
) -> KnowledgeEntry | None:
    """The existing item closest to ``vector`` if their cosine reaches ``threshold``."""
    if not existing:
        return None
    matrix = np.asarray([item.embedding for item in existing], dtype=np.float32)
    scores = matrix @ np.asarray(vector, dtype=np.float32)
    best = int(np.argmax(scores))
    return existing[best] if float(scores[best]) >= threshold else None


def over_capacity(items: Sequence[KnowledgeEntry], capacity: int) -> list[KnowledgeEntry]:
    """Items beyond ``capacity``, least recently updated first: the ones to drop."""
    if len(items) <= capacity:
        return []
    return sorted(items, key=lambda item: item.updated_s)[: len(items) - capacity]


def render_profile(profile: dict[str, ProfileTrait]) -> str:
    """The profile as one line per trait, oldest first."""
    return "\n".join(f"- {t.name}: {t.value}" for t in sorted(profile.values(), key=lambda t: t.updated_s))
