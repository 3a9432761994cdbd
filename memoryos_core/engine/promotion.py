"""Mid-term to long-term: hot segments analysed into profile and knowledge; coldest archived."""

from __future__ import annotations

import logging
import time
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
    record_from_json,
    record_to_json,
    segment_from_record,
    segment_record,
    source_ids,
)
from memoryos_core.engine.repository import PROMOTION_JOURNAL, EventSink, Repository, UserState
from memoryos_core.llm import prompts as _prompts
from memoryos_core.llm.base import LLM
from memoryos_core.llm.parsing import complete_json
from memoryos_core.llm.usage import measure
from memoryos_core.policy import heat as heat_policy
from memoryos_core.policy import long_term
from memoryos_core.policy.mid_term import SegmentState
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")

MAX_PAGES_PER_ANALYSIS = 32
"""Pages sent in one promotion call (the prompt budget): a longer backlog is analysed in
successive calls, oldest page first, a big segment split across them; none is left out."""
MAX_ANALYSIS_FAILURES = 3
"""Unparseable replies for one segment before its pending pages are given up (logged, counted)."""


class Promoter:
    """Analyses every hot segment of a user with the LLM; archives segments over capacity.

    Each analysis is journaled in the user's state record together with its counters (one
    write), then applied with absolute upserts and removals of the analysed page ids only, so
    a crash at any point resumes it (``resume``) and every page is analysed exactly once.
    """

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

    def promote(self, user_id: str, *, force: bool = False, tail: bool = True) -> int:
        """Analyse hot segments (all with new pages when ``force``); returns segments analysed.

        Without ``tail`` (the background worker), a last call of fewer than MAX_PAGES_PER_ANALYSIS
        pages waits for more pages, as a partial consolidation batch does, unless its oldest page
        has waited ``short_term.max_wait_s``: fewer, fuller calls.
        """
        self.resume(user_id)
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
        return self._analyse_backlog(self.llm, user_id, hot, tail=tail or force)

    def _analyse_backlog(
        self, llm: LLM, user_id: str, segments: Sequence[SegmentState], *, tail: bool = True
    ) -> int:
        """Every pending page of ``segments``, oldest first, in calls of MAX_PAGES_PER_ANALYSIS
        pages; a segment whose call fails waits for the next run. Returns segments analysed."""
        by_id = {s.id: s for s in segments}
        segment_of = {pid: s.id for s in segments for pid in s.pending_page_ids}
        order = {pid: i for i, pid in enumerate(segment_of)}
        queue = self.store.get("pages", ids=list(segment_of), where={"user_id": user_id})
        queue.sort(key=lambda r: (int(r.metadata.get("created_ns", 0)), order[r.id]))
        gone: dict[str, list[str]] = {}
        for pid in set(segment_of) - {r.id for r in queue}:  # deleted meanwhile: nothing to analyse
            gone.setdefault(segment_of[pid], []).append(pid)
        if gone:
            self._remove_pending(user_id, gone)
        failed: set[str] = set()
        while queue := [r for r in queue if segment_of[r.id] not in failed]:
            chunk, queue = queue[:MAX_PAGES_PER_ANALYSIS], queue[MAX_PAGES_PER_ANALYSIS:]
            if not tail and len(chunk) < MAX_PAGES_PER_ANALYSIS:
                # Wall time, as consolidation waits (pages are ordered by wall-clock created_ns).
                waited = time.time() - int(chunk[0].metadata.get("created_ns", 0)) / 1e9
                if waited < self.config.short_term.max_wait_s:
                    failed |= {segment_of[r.id] for r in chunk}  # not failed: waiting for more
                    break
            chosen = [by_id[sid] for sid in dict.fromkeys(segment_of[r.id] for r in chunk)]
            if not self._analyse(llm, user_id, chunk, chosen, segment_of):
                failed |= {s.id for s in chosen}
        return len([s for s in segments if s.id not in failed])  # segments with nothing left

    def _analyse(
        self,
        llm: LLM,
        user_id: str,
        chunk: Sequence[Record],
        segments: Sequence[SegmentState],
        segment_of: dict[str, str],
    ) -> bool:
        """One promotion call on ``chunk`` (pages of ``segments``); False if its reply was unusable."""
        page_ids = [r.id for r in chunk]
        pages = {r.id: r for r in chunk}
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
            state.data["promotion_pages_given_up"] += self._after_failure(user_id, segments)
            self.store.upsert("state", [state.record()])
            return False

        def refs(indexes: tuple[int, ...]) -> tuple[str, ...]:
            return tuple(page_ids[i - 1] for i in indexes) or tuple(page_ids)

        traits = [ProfileTrait(name, value, refs(ix), now) for name, value, ix in parsed.traits]
        profile, applied = long_term.merge_profile(profile, traits, self.config.long_term.profile_capacity)
        knowledge: tuple[tuple[KnowledgeKind, list[tuple[str, tuple[int, ...]]]], ...] = (
            ("user", parsed.user_knowledge),
            ("assistant", parsed.assistant_knowledge),
        )
        upserts: list[Record] = []
        deletes: list[str] = []
        for kind, facts in knowledge:
            kept, dropped = self._plan_knowledge(
                user_id, assistant_id, kind, [(t, refs(ix)) for t, ix in facts], pages, now
            )
            upserts += kept
            deletes += dropped
        analysed: dict[str, list[str]] = {}
        for pid in page_ids:
            analysed.setdefault(segment_of[pid], []).append(pid)
        # One write makes the analysis happen: its journal and its counters together. A crash
        # after it resumes the journal; a crash before it analyses these pages again.
        state.data["promoted_pages"] += len(page_ids)
        state.data[PROMOTION_JOURNAL] = {
            "profile": record_to_json(profile_record(user_id, profile)),
            "knowledge": [record_to_json(r) for r in upserts],
            "dropped": deletes,
            "analysed": analysed,
        }
        self.store.upsert("state", [state.record()])
        self._apply(user_id, state)
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
        return True

    def _apply(self, user_id: str, state: UserState) -> None:
        """Apply the journaled analysis in ``state``; every write is absolute or a removal of
        the analysed page ids, so applying it twice is harmless."""
        plan = state.data[PROMOTION_JOURNAL]
        self.store.upsert("state", [replace(record_from_json(plan["profile"]), embedding=None)])
        if plan["knowledge"]:
            self.store.upsert("knowledge", [record_from_json(r) for r in plan["knowledge"]])
        if plan["dropped"]:
            self.store.delete("knowledge", ids=list(plan["dropped"]), where={"user_id": user_id})
        self._remove_pending(user_id, plan["analysed"])
        del state.data[PROMOTION_JOURNAL]
        self.store.upsert("state", [state.record()])

    def resume(self, user_id: str) -> bool:
        """Finish an analysis interrupted by a crash; True if there was one."""
        state = self.repository.user_state(user_id)
        if PROMOTION_JOURNAL not in state.data:
            return False
        self._apply(user_id, state)
        self.emit("resumed", {"user_id": user_id, "step": "promotion"})
        return True

    def _remove_pending(self, user_id: str, analysed: dict[str, list[str]]) -> None:
        """Take ``analysed`` (segment id -> page ids) out of the segments' pending pages. The paper
        resets N_visit and L_interaction once a segment has been analysed: when none is left."""
        records = self.store.get(
            "segments", ids=list(analysed), where={"user_id": user_id}, with_embeddings=True
        )
        updated = []
        for record in records:
            segment = segment_from_record(record)
            done = set(analysed[record.id])
            pending = tuple(p for p in segment.pending_page_ids if p not in done)
            segment = replace(segment, pending_page_ids=pending)
            if not pending:
                segment = replace(segment, n_visit=0, l_interaction=0)
            status, source = (
                str(record.metadata.get("status", "active")),
                str(record.metadata.get("source", "")),
            )
            updated.append(segment_record(user_id, segment, status=status, source=source))
        if updated:
            self.store.upsert("segments", updated)

    def _after_failure(self, user_id: str, segments: Sequence[SegmentState]) -> int:
        """Count a failed analysis; after MAX_ANALYSIS_FAILURES the pending pages are given up.
        Returns the number of pages given up."""
        records = self.store.get(
            "segments", ids=[s.id for s in segments], where={"user_id": user_id}, with_embeddings=True
        )
        updated = []
        given_up = 0
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
                given_up += len(segment.pending_page_ids)
                segment, failures = replace(segment, n_visit=0, l_interaction=0, pending_page_ids=()), 0
            record = segment_record(user_id, segment)
            updated.append(replace(record, metadata=record.metadata | {"analysis_failures": failures}))
        self.store.upsert("segments", updated)
        return given_up

    def _plan_knowledge(
        self,
        user_id: str,
        assistant_id: str,
        kind: KnowledgeKind,
        facts: list[tuple[str, tuple[str, ...]]],
        pages: dict[str, Record],
        now: float,
    ) -> tuple[list[Record], list[str]]:
        """The knowledge records to write for ``facts`` and the ids dropped over capacity."""
        if not facts:
            return [], []
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

        return [knowledge_record(user_id, assistant_id, with_sources(item)) for item in keep], [
            item.id for item in dropped
        ]

    def evict(self, user_id: str) -> int:
        """Archive the coldest segments beyond capacity; their pages stay, in the archive tier.
        Pages of theirs never analysed are analysed first when an LLM is configured."""
        segments = self.repository.active_segments(user_id)
        excess = len(segments) - self.config.mid_term.capacity
        if excess <= 0:
            return 0
        states = {s.id: heat_policy.HeatState(s.n_visit, s.l_interaction, s.last_access_s) for s in segments}
        cold = set(heat_policy.coldest(states, self.now_s(), self.config.mid_term, excess))
        backlog = [s for s in segments if s.id in cold and s.pending_page_ids]
        if backlog and self.llm is not None:  # every consolidated page is analysed once, hot or not
            self._analyse_backlog(self.llm, user_id, backlog)
            segments = self.repository.active_segments(user_id)
        for segment in (s for s in segments if s.id in cold):
            pages = self.store.get(
                "pages", where={"user_id": user_id, "segment_id": segment.id}, with_embeddings=True
            )
            self.store.upsert("pages", [replace(p, metadata=p.metadata | {"tier": "archive"}) for p in pages])
            self.store.upsert("segments", [segment_record(user_id, segment, status="archived")])
        self.emit("evicted", {"user_id": user_id, "segments": len(cold)})
        return len(cold)
