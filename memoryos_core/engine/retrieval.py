"""Retrieval across tiers: every page scored on one scale (BM25 + dense, shared along the
conversation); the short-term pages apart, then the best older pages and user and assistant
knowledge in one ranked list of at most ``top_k``, and the profile."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import cast

import numpy as np

from memoryos_core._config import MemoryConfig
from memoryos_core._types import ContextUnit, Tier
from memoryos_core.engine.lexical import K1, REFRESH_S, B, PageIndex, tokens
from memoryos_core.engine.lexical_shared import PageIndexes
from memoryos_core.engine.records import knowledge_from_record, source_ids
from memoryos_core.engine.repository import Repository
from memoryos_core.policy import ranking, term_context
from memoryos_core.policy.dates import asks_when, query_window
from memoryos_core.policy.long_term import render_profile
from memoryos_core.policy.text import cosine
from memoryos_core.storage.base import Record


@dataclass(frozen=True)
class Recall:
    units: tuple[ContextUnit, ...]
    profile: str
    visited_segments: tuple[str, ...]
    short_term: tuple[ContextUnit, ...] = ()


def page_unit(
    record: Record, tier: Tier, score: float, parts: Mapping[str, float] | None = None
) -> ContextUnit:
    m = record.metadata
    return ContextUnit(
        id=record.id,
        tier=tier,
        text=record.document,
        score=score,
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
        score_parts=dict(parts or {}),
    )


class Retriever:
    """Reads a user's memory for a query; never writes (visits are returned to the caller)."""

    def __init__(
        self,
        repository: Repository,
        config: MemoryConfig,
        indexes: PageIndexes,
        pending: Callable[[str], list[Record]] = lambda user_id: [],
    ) -> None:
        self.repository, self.store = repository, repository.store
        self.config, self.indexes = config, indexes
        self.pending = pending  # the user's new pages not yet written to the store

    def index(self, user_id: str) -> PageIndex:
        """The user's page index: this process's, kept up to date with the shared file beside an
        embedded store (loaded from it in a new process), and built from the store when missing,
        or when the store holds pages it lacks (counted at first use and every ``REFRESH_S``)."""
        index = self.indexes.get(user_id)
        if index is not None and time.monotonic() - index.checked_at < REFRESH_S:
            return index
        if index is not None:
            stored = self.store.count("pages", where={"user_id": user_id})
            if self.indexes.file is not None:
                # The shared index also holds pages other processes have journaled but not yet
                # stored, and pages go out of it before they leave the store: fewer is stale.
                is_current = len(index) >= stored
            else:
                is_current = stored + len(self.pending(user_id)) == len(index)
            if is_current:
                index.checked_at = time.monotonic()
                return index
        return self.indexes.rebuild(user_id, lambda: self.store.get("pages", where={"user_id": user_id}))

    def recall(
        self, user_id: str, assistant_id: str, query: str, query_vector: Sequence[float], top_k: int | None
    ) -> Recall:
        config = self.config.retrieval
        k = top_k or config.top_pages
        capacity = self.config.short_term.capacity
        index = self.index(user_id)
        records: dict[str, Record] = {}
        known: dict[int, float] = {}
        found = self.store.query(
            "pages",
            query_vector,
            where={"user_id": user_id},
            n_results=max(config.candidate_pages, k),
            ids_only=True,  # the few pages kept are fetched below
        )
        pending = self.pending(user_id)
        # A handful of pages waiting to be written: compared with the query here (with write-behind,
        # the pending pages not embedded yet were embedded by ``pending``: they rank as once stored).
        found += [(r, cosine(query_vector, r.embedding or [0.0] * len(query_vector))) for r in pending]
        records.update((r.id, r) for r in pending)
        unseen = [r.id for r, _ in found if r.id not in index.position]
        if unseen:  # pending pages, or pages another process wrote since the index was built
            to_fetch = [i for i in unseen if i not in records]
            if to_fetch:
                records.update(
                    (r.id, r) for r in self.store.get("pages", ids=to_fetch, where={"user_id": user_id})
                )
            for page_id in unseen:
                if page_id in records:
                    record = records[page_id]
                    index.add(page_id, record.document, float(record.metadata.get("ts_s", 0.0)))
        for record, similarity in found:
            if record.id in index.position:  # (deleted meanwhile otherwise)
                known[index.position[record.id]] = similarity
        terms = tokens(query)
        count, lexical, times = index.snapshot(terms)  # other threads may add pages meanwhile
        if not count:
            return self._finish(user_id, assistant_id, query_vector, [], [], known, top_k)
        lexical = term_context.lexical(lexical, *index.matches(terms, count), k1=K1, b=B)
        asks = bool(ranking.DEFAULT.when) and asks_when(query)  # the "when" boost is off by default
        trace: dict[str, np.ndarray] = {}  # the parts of each score, read for the units kept only
        scores = ranking.fuse(
            lexical,
            ranking.dense_z(count, known),
            times,
            query_window(query),
            timed=index.timed_pages(count) if asks else None,
            when=asks,
            trace=trace,
        )
        # The newest pages hold short-term memory (and pages waiting for consolidation).
        newest = list(range(max(0, count - capacity - self.config.short_term.batch_pages), count))
        best = ranking.top_positions(scores, k + capacity)

        def fetch(positions: list[int]) -> None:
            missing = [index.ids[p] for p in dict.fromkeys(positions) if index.ids[p] not in records]
            found = self.store.get("pages", ids=missing, where={"user_id": user_id})
            records.update((r.id, r) for r in found)

        # Only the pages used are read (Chroma's reads cost per record): the short-term pages are
        # the newest, so when the last ``capacity`` all are, older ones waiting for consolidation
        # are not read; of the best, the first ``k`` not short-term (more if one was deleted).
        fetch([*best[:k], *newest[-capacity:]])
        if not all(
            index.ids[p] in records and records[index.ids[p]].metadata.get("tier") == "short_term"
            for p in newest[-capacity:]
        ):
            fetch(newest)
        short = [
            p
            for p in newest
            if index.ids[p] in records and records[index.ids[p]].metadata.get("tier") == "short_term"
        ][-capacity:]
        recent = [
            page_unit(records[index.ids[p]], "short_term", float(scores[p]), ranking.score_parts(trace, p))
            for p in short
        ]
        short_set = set(short)
        rest = [p for p in best if p not in short_set]
        fetch(rest[:k])
        if sum(index.ids[p] in records for p in rest[:k]) < min(k, len(rest)):
            fetch(rest)
        chosen = [p for p in rest if index.ids[p] in records][:k]
        units = [
            page_unit(
                records[index.ids[p]],
                cast(Tier, records[index.ids[p]].metadata.get("tier", "mid_term")),
                float(scores[p]),
                ranking.score_parts(trace, p),
            )
            for p in chosen
        ]
        return self._finish(user_id, assistant_id, query_vector, recent, units, known, top_k)

    def _finish(
        self,
        user_id: str,
        assistant_id: str,
        query_vector: Sequence[float],
        recent: list[ContextUnit],
        units: list[ContextUnit],
        known: dict[int, float],
        top_k: int | None,
    ) -> Recall:
        """Add knowledge (scored on the pages' dense scale) and the profile; rank pages and knowledge.

        A ``top_k`` given by the caller caps the ranked list (pages and knowledge together); by
        default it holds ``top_pages`` pages and up to ``top_knowledge`` items of each knowledge base.
        ``recent`` (the short-term pages, oldest first) stays apart and is never counted.
        """
        mean, std = ranking.dense_scale(known)
        found = self.store.query(
            "knowledge",
            query_vector,
            where={"user_id": user_id},
            n_results=2 * self.config.retrieval.top_knowledge,
        )
        per_kind = {"user": 0, "assistant": 0}
        for record, similarity in found:
            item = knowledge_from_record(record)
            if item.kind == "assistant" and record.metadata.get("assistant_id") != assistant_id:
                continue
            if per_kind.get(item.kind, 99) >= self.config.retrieval.top_knowledge:
                continue
            per_kind[item.kind] += 1
            dense = (similarity - mean) / std  # knowledge is scored by its dense z-score alone
            units.append(
                ContextUnit(
                    id=item.id,
                    tier="user_knowledge" if item.kind == "user" else "assistant_knowledge",
                    text=item.text,
                    score=dense,
                    timestamp=_iso(item.updated_s),
                    page_ids=item.page_ids,
                    source_ids=item.source_ids,
                    score_parts={"dense": dense},
                )
            )
        units.sort(key=lambda u: u.score, reverse=True)
        kept = units[:top_k]
        # Only the segments of the pages kept count as visited (heat's N_visit).
        visited = tuple(
            dict.fromkeys(
                str(unit.meta_data["segment_id"]) for unit in kept if unit.meta_data.get("segment_id")
            )
        )
        profile = render_profile(self.repository.profile(user_id))
        return Recall(tuple(kept), profile, visited, tuple(recent))


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if epoch_s else ""
