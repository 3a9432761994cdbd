"""Retrieval across tiers: short-term pages, segments then their pages, knowledge, profile."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from memoryos_core._config import MemoryConfig
from memoryos_core._policy import retrieval as ranking
from memoryos_core._policy.long_term import render_profile
from memoryos_core._policy.text import content_words
from memoryos_core._promotion import load_profile
from memoryos_core._records import knowledge_from_record, source_ids
from memoryos_core._types import ContextUnit
from memoryos_core.storage.base import MemoryStore, Record


@dataclass(frozen=True)
class Recall:
    units: tuple[ContextUnit, ...]
    profile: str
    visited_segments: tuple[str, ...]


def page_unit(record: Record, tier: str, score: float) -> ContextUnit:
    m = record.metadata
    return ContextUnit(
        id=record.id,
        tier=tier,
        text=record.document,
        score=score,  # type: ignore[arg-type]
        timestamp=str(m.get("timestamp", "")),
        page_ids=(record.id,),
        source_ids=source_ids(record),
        meta_data={
            "user_input": m.get("user_input", ""),
            "agent_response": m.get("agent_response", ""),
            "chain_overview": m.get("chain_overview", ""),
            "segment_id": m.get("segment_id", ""),
            "created_ns": int(m.get("created_ns", 0)),
            "meta_data": json.loads(str(m.get("meta_json") or "{}")),
        },
    )


class Retriever:
    """Reads a user's memory for a query; never writes (visits are returned to the caller)."""

    def __init__(self, store: MemoryStore, config: MemoryConfig) -> None:
        self.store, self.config = store, config

    def recall(
        self, user_id: str, assistant_id: str, query: str, query_vector: Sequence[float], top_k: int | None
    ) -> Recall:
        config = self.config.retrieval
        k = top_k or config.top_pages
        query_words = content_words(query)
        qv = np.asarray(query_vector, dtype=np.float32)

        short = self.store.get(
            "pages", where={"user_id": user_id, "tier": "short_term"}, with_embeddings=True
        )
        short.sort(key=lambda r: int(r.metadata["created_ns"]))
        recent = short[-self.config.short_term.capacity :]
        recent_ids = {r.id for r in recent}

        segments = self.store.query(
            "segments",
            query_vector,
            where={"user_id": user_id, "status": "active"},
            n_results=config.top_segments,
        )
        segment_scores = {
            record.id: ranking.segment_relevance(similarity, query_words, record)
            for record, similarity in segments
        }
        found = self.store.query(
            "pages", query_vector, where={"user_id": user_id}, n_results=max(config.candidate_pages, k)
        )
        candidates = [(r, s) for r, s in found if r.id not in recent_ids]
        scored = ranking.rank_pages(candidates, segment_scores)[:k]
        units = [page_unit(r, "short_term", _cosine(qv, r.embedding)) for r in recent]
        units += [page_unit(r, str(r.metadata.get("tier", "mid_term")), score) for r, score in scored]
        visited = tuple(
            dict.fromkeys(
                str(r.metadata["segment_id"])
                for r, _ in scored
                if r.metadata.get("segment_id") in segment_scores
            )
        )

        for kind, tier in (("user", "user_knowledge"), ("assistant", "assistant_knowledge")):
            where = {"user_id": user_id, "kind": kind} | (
                {"assistant_id": assistant_id} if kind == "assistant" else {}
            )
            for record, similarity in self.store.query(
                "knowledge", query_vector, where=where, n_results=config.top_knowledge
            ):
                item = knowledge_from_record(record)
                units.append(
                    ContextUnit(
                        id=item.id,
                        tier=tier,
                        text=item.text,
                        score=similarity,  # type: ignore[arg-type]
                        timestamp=_iso(item.updated_s),
                        page_ids=item.page_ids,
                        source_ids=source_ids(record),
                    )
                )
        units.sort(key=lambda u: u.score, reverse=True)
        return Recall(tuple(units), render_profile(load_profile(self.store, user_id)), visited)


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if epoch_s else ""


def _cosine(query: np.ndarray, vector: Sequence[float] | None) -> float:
    if vector is None or len(vector) == 0:
        return 0.0
    v = np.asarray(vector, dtype=np.float32)
    denominator = float(np.linalg.norm(query) * np.linalg.norm(v))
    return float(query @ v) / denominator if denominator else 0.0
