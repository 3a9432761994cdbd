"""Mid-term to long-term: hot segments analysed into profile and knowledge; coldest archived."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import LLMOutputError
from memoryos_core._types import KnowledgeEntry, KnowledgeKind, ProfileTrait
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine.records import (
    knowledge_from_record,
    knowledge_record,
    profile_record,
    segment_from_record,
    segment_record,
    source_ids,
)
from memoryos_core.engine.repository import EventSink, Repository
from memoryos_core.llm import prompts as _prompts
from memoryos_core.llm.base import LLM
from memoryos_core.llm.parsing import complete_json
from memoryos_core.llm.usage import measure
from memoryos_core.policy import heat as heat_policy
from memoryos_core.policy import long_term
from memoryos_core.policy.mid_term import SegmentState
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")

MAX_PAGES_PER_ANALYSIS = 24
"""Pages sent in one promotion call; more wait for the next call."""
MAX_ANALYSIS_FAILURES = 3
"""Unparseable replies for one segment before its pending pages are given up (logged)."""


class Promoter:
    """Analyses every hot segment of a user with the LLM; archives segments over capacity."""

    def __init__(
        self,
        repository: Repository,
        embedder: Embedder,
        llm: LLM | None,
        config: MemoryConfig,
        now_s: Callable[[], float],
        emit: EventSink,
    ) -> None:
        self.repository, self.store = repository, repository.store
        self.embedder, self.llm, self.config = embedder, llm, config
        self.now_s, self.emit = now_s, emit

    def promote(self, user_id: str, *, force: bool = False) -> int:
        """Analyse hot segments (all with new pages when ``force``); returns segments analysed."""
        segments = self.repository.active_segments(user_id)
        hot = (
            [s for s in segments if s.pending_page_ids]
            if force
            else long_term.hot_segments(segments, self.now_s(), self.config.mid_term)
        )
        if not hot:
            return 0
        if self.llm is None:
            state = self.repository.user_state(user_id)
            state.data["skipped_llm_steps"] += 1
            self.store.upsert("state", [state.record()])
            self.emit("llm_skipped", {"user_id": user_id, "step": "promotion", "hot_segments": len(hot)})
            return 0
        analysed = 0
        while hot:
            chosen: list[SegmentState] = []
            budget = MAX_PAGES_PER_ANALYSIS
            while hot and (not chosen or len(hot[0].pending_page_ids) <= budget):
                budget -= len(hot[0].pending_page_ids)
                chosen.append(hot.pop(0))
            self._analyse(self.llm, user_id, chosen)
            analysed += len(chosen)
        return analysed

    def _analyse(self, llm: LLM, user_id: str, segments: Sequence[SegmentState]) -> None:
        page_ids = [pid for s in segments for pid in s.pending_page_ids][-MAX_PAGES_PER_ANALYSIS:]
        pages = {r.id: r for r in self.store.get("pages", ids=page_ids, where={"user_id": user_id})}
        page_ids = [pid for pid in page_ids if pid in pages]
        if not page_ids:
            return
        # Assistant knowledge belongs to the assistant of the pages it came from.
        assistant_id = str(pages[page_ids[-1]].metadata.get("assistant_id", ""))
        profile = self.repository.profile(user_id)
        state = self.repository.user_state(user_id)
        messages = _prompts.promotion_messages(
            long_term.render_profile(profile), [pages[p].document for p in page_ids]
        )
        with measure() as tally:
            try:
                reply, raws = complete_json(llm, messages, required_keys=())
                state.count_truncated(raws, self.emit, "promotion")
                parsed = _prompts.parse_promotion(reply, len(page_ids))
            except LLMOutputError as exc:
                parsed = None
                logger.warning("promotion reply unusable for user %s: %s", user_id, exc)
                self.emit("llm_fallback", {"user_id": user_id, "step": "promotion", "error": str(exc)})
        state.add_cost(tally.cost)
        now = self.now_s()
        if parsed is None:
            state.data["llm_fallbacks"] += 1
            self._after_failure(user_id, segments)
            self.store.upsert("state", [state.record()])
            return

        def refs(indexes: tuple[int, ...]) -> tuple[str, ...]:
            return tuple(page_ids[i - 1] for i in indexes) or tuple(page_ids)

        traits = [ProfileTrait(name, value, refs(ix), now) for name, value, ix in parsed.traits]
        profile, applied = long_term.merge_profile(profile, traits, self.config.long_term.profile_capacity)
        # Order matters for crashes: the counters are reset last, so an interrupted analysis
        # simply runs again (its knowledge then merges into the duplicates it left).
        self.store.upsert("state", [profile_record(user_id, profile), state.record()])
        knowledge: tuple[tuple[KnowledgeKind, list[tuple[str, tuple[int, ...]]]], ...] = (
            ("user", parsed.user_knowledge),
            ("assistant", parsed.assistant_knowledge),
        )
        for kind, facts in knowledge:
            self._store_knowledge(user_id, assistant_id, kind, [(t, refs(ix)) for t, ix in facts], pages, now)
        # The paper resets N_visit and L_interaction once a segment has been analysed.
        reset = [replace(s, n_visit=0, l_interaction=0, pending_page_ids=()) for s in segments]
        self.store.upsert("segments", [segment_record(user_id, s) for s in reset])
        self.emit(
            "promoted",
            {
                "user_id": user_id,
                "segments": len(segments),
                "segment_ids": [s.id for s in segments],
                "traits": len(applied),
                "user_knowledge": len(parsed.user_knowledge),
                "assistant_knowledge": len(parsed.assistant_knowledge),
            },
        )

    def _after_failure(self, user_id: str, segments: Sequence[SegmentState]) -> None:
        """Count a failed analysis; after MAX_ANALYSIS_FAILURES the pending pages are given up."""
        records = self.store.get(
            "segments", ids=[s.id for s in segments], where={"user_id": user_id}, with_embeddings=True
        )
        updated = []
        for record in records:
            failures = int(record.metadata.get("analysis_failures", 0)) + 1
            segment = segment_from_record(record)
            if failures >= MAX_ANALYSIS_FAILURES:
                logger.warning(
                    "segment %s of user %s could not be analysed %d times; its pages stay in "
                    "mid-term memory only",
                    segment.id,
                    user_id,
                    failures,
                )
                segment, failures = replace(segment, n_visit=0, l_interaction=0, pending_page_ids=()), 0
            record = segment_record(user_id, segment)
            updated.append(replace(record, metadata=record.metadata | {"analysis_failures": failures}))
        self.store.upsert("segments", updated)

    def _store_knowledge(
        self,
        user_id: str,
        assistant_id: str,
        kind: KnowledgeKind,
        facts: list[tuple[str, tuple[str, ...]]],
        pages: dict[str, Record],
        now: float,
    ) -> None:
        if not facts:
            return
        where = {"user_id": user_id, "kind": kind} | (
            {"assistant_id": assistant_id} if kind == "assistant" else {}
        )
        existing = [
            knowledge_from_record(r) for r in self.store.get("knowledge", where=where, with_embeddings=True)
        ]
        vectors = self.embedder.embed([text for text, _ in facts])
        changed: dict[str, KnowledgeEntry] = {}
        for (text, page_ids), vector in zip(facts, vectors):
            pool = [changed.get(item.id, item) for item in existing] + [
                item for item in changed.values() if item.id not in {e.id for e in existing}
            ]
            duplicate = long_term.find_duplicate(vector, pool, self.config.long_term.duplicate_threshold)
            if duplicate is not None:
                merged_pages = tuple(dict.fromkeys([*duplicate.page_ids, *page_ids]))
                changed[duplicate.id] = replace(
                    duplicate, text=text, page_ids=merged_pages, updated_s=now, embedding=tuple(vector)
                )
            else:
                item = KnowledgeEntry(f"kn_{uuid.uuid4().hex}", kind, text, page_ids, (), now, tuple(vector))
                changed[item.id] = item
        all_items = {item.id: item for item in existing} | changed
        dropped = long_term.over_capacity(list(all_items.values()), self.config.long_term.knowledge_capacity)
        keep = [item for item in changed.values() if item.id not in {d.id for d in dropped}]

        def with_sources(item: KnowledgeEntry) -> KnowledgeEntry:
            found = [s for pid in item.page_ids if pid in pages for s in source_ids(pages[pid])]
            return replace(item, source_ids=tuple(dict.fromkeys(found)))

        self.store.upsert(
            "knowledge", [knowledge_record(user_id, assistant_id, with_sources(item)) for item in keep]
        )
        if dropped:
            self.store.delete("knowledge", ids=[item.id for item in dropped], where={"user_id": user_id})

    def evict(self, user_id: str) -> int:
        """Archive the coldest segments beyond capacity; their pages stay, in the archive tier."""
        segments = self.repository.active_segments(user_id)
        excess = len(segments) - self.config.mid_term.capacity
        if excess <= 0:
            return 0
        states = {s.id: heat_policy.HeatState(s.n_visit, s.l_interaction, s.last_access_s) for s in segments}
        cold = set(heat_policy.coldest(states, self.now_s(), self.config.mid_term, excess))
        for segment in (s for s in segments if s.id in cold):
            pages = self.store.get(
                "pages", where={"user_id": user_id, "segment_id": segment.id}, with_embeddings=True
            )
            self.store.upsert("pages", [replace(p, metadata=p.metadata | {"tier": "archive"}) for p in pages])
            self.store.upsert("segments", [segment_record(user_id, segment, status="archived")])
        self.emit("evicted", {"user_id": user_id, "segments": len(cold)})
        return len(cold)
