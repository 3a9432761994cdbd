"""Background consolidation: short-term overflow into segments, hot segments into long-term memory.

Every batch is planned first, written as a journal record, then applied with idempotent
upserts, so a crash at any point resumes without losing or duplicating a page.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import LLMOutputError
from memoryos_core._types import render_page
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine.records import (
    record_from_json,
    record_to_json,
    segment_record,
    state_record,
)
from memoryos_core.engine.repository import EventSink, Repository, UserState
from memoryos_core.llm import prompts as _prompts
from memoryos_core.llm.base import LLM
from memoryos_core.llm.parsing import complete_json
from memoryos_core.llm.usage import measure
from memoryos_core.policy import mid_term
from memoryos_core.policy import text as text_policy
from memoryos_core.policy import topics as topics_policy
from memoryos_core.policy.mid_term import SegmentState, Topic
from memoryos_core.policy.text import mean_vector
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")

NEIGHBOUR_PAGES = 10
"""Consolidated pages nearest a new topic whose segments are its candidates."""


class Consolidator:
    """Moves a user's overflowing short-term pages into mid-term segments, batch by batch."""

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

    # --- short-term -> mid-term ---------------------------------------------------------------
    def due_pages(self, user_id: str, *, force: bool) -> list[Record]:
        """Overflowing short-term pages, oldest first, if a batch is due (or ``force``)."""
        short = self.store.get("pages", where={"user_id": user_id, "tier": "short_term"})
        short.sort(key=lambda r: int(r.metadata["created_ns"]))
        overflow = short[: max(0, len(short) - self.config.short_term.capacity)]
        if not overflow:
            return []
        # Waiting is wall time (pages are ordered by wall-clock created_ns), not the memory clock.
        waited = time.time() - int(overflow[0].metadata["created_ns"]) / 1e9
        if (
            force
            or len(overflow) >= self.config.short_term.batch_pages
            or waited >= self.config.short_term.max_wait_s
        ):
            return overflow
        return []

    def consolidate(
        self, user_id: str, *, force: bool = False, on_batch: Callable[[], None] | None = None
    ) -> int:
        """Consolidate every due batch of ``user_id``; returns the number of pages moved.

        ``on_batch`` is called before the replay of an interrupted batch and before each batch's writes,
        once it is planned (the caller confirms and renews its lease there: what it raises stops the pass
        before those writes).
        """
        if on_batch is not None:
            on_batch()
        self.resume(user_id)
        moved = 0
        overflow = self.due_pages(user_id, force=force)
        short = self.config.short_term
        size = short.batch_pages if self.llm is not None else short.offline_batch_pages
        for start in range(0, len(overflow), size):
            batch = overflow[start : start + size]
            if len(batch) < size and not force and start > 0:
                break  # a partial tail batch waits for more pages unless forced
            ids = [r.id for r in batch]
            with_vectors = {
                r.id: r
                for r in self.store.get("pages", ids=ids, where={"user_id": user_id}, with_embeddings=True)
            }
            plan = self._plan(user_id, [with_vectors[i] for i in ids if i in with_vectors])
            if on_batch is not None:
                on_batch()
            self._apply(user_id, plan)
            moved += len(batch)
        return moved

    def _plan(self, user_id: str, pages: Sequence[Record]) -> dict[str, Any]:
        state = self.repository.user_state(user_id)
        previous = (
            self.store.get(
                "pages", ids=[state.data["cursor"]], where={"user_id": user_id}, with_embeddings=True
            )
            if state.data["cursor"]
            else []
        )
        previous_page = previous[0] if previous else None
        texts = [
            render_page(str(p.metadata.get("user_input", "")), str(p.metadata.get("agent_response", "")))
            for p in pages
        ]
        vectors = [list(p.embedding or ()) for p in pages]
        ids = [p.id for p in pages]
        topics, flags = None, None
        if self.llm is not None:
            try:
                with measure() as tally:
                    topics, flags = self._llm_topics(self.llm, ids, texts, vectors, previous_page, state)
                state.add_cost(tally.cost)
            except LLMOutputError as exc:
                state.add_cost(tally.cost)
                state.data["llm_fallbacks"] += 1
                logger.warning(
                    "consolidation reply unusable for user %s, using extractive summaries: %s", user_id, exc
                )
                self.emit("llm_fallback", {"user_id": user_id, "step": "consolidation", "error": str(exc)})
        if topics is None or flags is None:
            flags = mid_term.chain_breaks(
                vectors,
                previous_page.embedding if previous_page else None,
                self.config.mid_term.continuity_threshold,
            )
            topics = mid_term.extractive_topics(ids, texts, vectors, flags, self.config.mid_term)
        segments, moved = self._assign(user_id, topics, {p: (v, t) for p, v, t in zip(ids, vectors, texts)})
        overview = {pid: t.overview for t in topics for pid in t.page_ids}
        segment_of = {pid: sid for sid, segment in segments.items() for pid in segment[1]}
        chain_prev = {
            pid: (ids[i - 1] if i > 0 else (previous_page.id if previous_page else "")) if flags[i] else ""
            for i, pid in enumerate(ids)
        }
        state.data["cursor"] = ids[-1]
        state.data["consolidated_pages"] += len(ids)
        return {
            "pages": [
                {
                    "id": pid,
                    "segment_id": segment_of[pid],
                    "chain_prev": chain_prev[pid],
                    "chain_overview": overview.get(pid, ""),
                }
                for pid in ids
            ],
            "segments": [
                record_to_json(segment_record(user_id, seg, source=src)) for seg, _, src in segments.values()
            ],
            "moves": moved,
            "state": state.data,
        }

    def _llm_topics(
        self,
        llm: LLM,
        ids: list[str],
        texts: list[str],
        vectors: list[list[float]],
        previous_page: Record | None,
        state: UserState,
    ) -> tuple[list[Topic], list[bool]]:
        messages = _prompts.consolidation_messages(texts, previous_page.document if previous_page else None)
        reply, raws = complete_json(llm, messages, required_keys=("topics",))
        state.count_truncated(raws, self.emit, "consolidation")
        replies, continues, missing = _prompts.parse_consolidation(reply, len(ids))
        flags = [False] * len(ids)
        topics = []
        for topic in replies:
            indexes = [i - 1 for i in topic.indexes]
            for position, index in enumerate(indexes):
                flags[index] = (index == 0 and continues) or (
                    position > 0 and indexes[position - 1] == index - 1
                )
            topics.append(
                Topic(tuple(ids[i] for i in indexes), topic.summary, topic.keywords, topic.overview, "llm")
            )
        if missing:  # pages the model left out are still consolidated, extractively, never dropped
            rest = [i - 1 for i in missing]
            extra_flags = mid_term.chain_breaks(
                [vectors[i] for i in rest], None, self.config.mid_term.continuity_threshold
            )
            topics += mid_term.extractive_topics(
                [ids[i] for i in rest],
                [texts[i] for i in rest],
                [vectors[i] for i in rest],
                extra_flags,
                self.config.mid_term,
            )
            self.emit("llm_partial", {"step": "consolidation", "missing_pages": len(missing)})
        return topics, flags

    def _assign(
        self, user_id: str, topics: list[Topic], pages: dict[str, tuple[list[float], str]]
    ) -> tuple[dict[str, tuple[SegmentState, list[str], str]], dict[str, str]]:
        """(segment id -> (segment after this batch, batch pages it holds, summary source),
        older page id -> the new segment a split moved it to)."""
        touched: dict[str, tuple[SegmentState, list[str], str]] = {}
        moved: dict[str, str] = {}
        config, now = self.config.mid_term, self.now_s()
        active = {s.id: s for s in self.repository.active_segments(user_id)}
        for topic in topics:
            vector = mean_vector([pages[p][0] for p in topic.page_ids])
            if topic.source != "llm":
                others = [s.keywords for sid, s in active.items()]
                texts = [pages[p][1] for p in topic.page_ids]
                topic = replace(
                    topic,
                    keywords=tuple(topics_policy.distinctive_keywords(texts, others, config.max_keywords)),
                )
            found = self.store.query(
                "pages",
                vector,
                where={"user_id": user_id, "tier": "mid_term"},
                n_results=NEIGHBOUR_PAGES,
                with_embeddings=True,
            )
            neighbours = [
                (moved.get(r.id, str(r.metadata.get("segment_id", ""))), list(r.embedding or ()))
                for r, _ in found
            ]
            neighbours += [(sid, pages[p][0]) for sid, entry in touched.items() for p in entry[1]]
            keywords_of = {sid: s.keywords for sid, s in active.items()}
            best = topics_policy.nearest_segment(
                vector, topic.keywords, neighbours, keywords_of, config.similarity_threshold
            )
            if best is None:
                segment = mid_term.new_segment(f"seg_{uuid.uuid4().hex}", topic, vector, now)
                touched[segment.id] = (segment, list(topic.page_ids), topic.source)
            else:
                segment = mid_term.merge_into(active[best], topic, vector, now, config)
                _, gained, source = touched.get(best, (None, [], ""))
                if source == "llm" and topic.source != "llm":  # an LLM's summary outranks a quote
                    segment = replace(segment, summary=active[best].summary)
                else:
                    source = topic.source
                touched[best] = (segment, [*gained, *topic.page_ids], source)
            active[segment.id] = segment
            if segment.page_count > config.max_segment_pages:
                self._split(user_id, segment, touched, moved, pages, active)
        return touched, moved

    def _split(
        self,
        user_id: str,
        segment: SegmentState,
        touched: dict[str, tuple[SegmentState, list[str], str]],
        moved: dict[str, str],
        pages: dict[str, tuple[list[float], str]],
        active: dict[str, SegmentState],
    ) -> None:
        """Split an oversized segment by its own clustering; every part describes its own pages."""
        config, source = self.config.mid_term, touched[segment.id][2]
        batch_ids = touched[segment.id][1]
        stored = self.store.get(
            "pages", where={"user_id": user_id, "segment_id": segment.id}, with_embeddings=True
        )
        moved_in = [p for p, sid in moved.items() if sid == segment.id]
        if moved_in:
            stored += self.store.get("pages", ids=moved_in, where={"user_id": user_id}, with_embeddings=True)
        members = {
            r.id: (
                list(r.embedding or ()),
                render_page(str(r.metadata.get("user_input", "")), str(r.metadata.get("agent_response", ""))),
            )
            for r in stored
            if moved.get(r.id, segment.id) == segment.id
        }
        members |= {p: pages[p] for p in batch_ids}
        ids = list(members)
        groups = topics_policy.split_pages([members[p][0] for p in ids], config.max_segment_pages)
        if len(groups) < 2:
            return
        others = [s.keywords for sid, s in active.items() if sid != segment.id]
        pending = set(segment.pending_page_ids)
        for position, group in enumerate(groups):
            group_ids = [ids[i] for i in group]
            vectors, texts = [members[p][0] for p in group_ids], [members[p][1] for p in group_ids]
            part_pending = tuple(p for p in segment.pending_page_ids if p in set(group_ids))
            part = replace(
                segment,
                id=segment.id if position == 0 else f"seg_{uuid.uuid4().hex}",
                summary=text_policy.extractive_summary(texts, vectors, config.summary_max_chars),
                keywords=tuple(topics_policy.distinctive_keywords(texts, others, config.max_keywords)),
                embedding=tuple(mean_vector(vectors)),
                page_count=len(group_ids),
                n_visit=round(segment.n_visit * len(group_ids) / len(ids)),
                l_interaction=len(part_pending) if pending else 0,
                pending_page_ids=part_pending,
            )
            in_batch = [p for p in group_ids if p in pages]
            touched[part.id] = (part, in_batch, source)
            active[part.id] = part
            for p in group_ids:
                if p not in pages and position > 0:
                    moved[p] = part.id

    def _apply(self, user_id: str, plan: dict[str, Any]) -> None:
        journal = state_record("journal", user_id, plan)
        self.store.upsert("state", [journal])
        self._replay(user_id, plan)
        self.store.delete("state", ids=[journal.id])
        self.emit(
            "consolidated",
            {"user_id": user_id, "pages": len(plan["pages"]), "segments": len(plan["segments"])},
        )

    def _replay(self, user_id: str, plan: dict[str, Any]) -> None:
        """Apply a journal; every write is an absolute upsert, so replaying twice is harmless."""
        self.store.upsert("segments", [record_from_json(s) for s in plan["segments"]])
        changes = {p["id"]: p for p in plan["pages"]}
        pages = self.store.get("pages", ids=list(changes), where={"user_id": user_id}, with_embeddings=True)
        updated = []
        for page in pages:
            change = changes[page.id]
            metadata = page.metadata | {
                "tier": "mid_term",
                "segment_id": change["segment_id"],
                "chain_prev": change["chain_prev"],
                "chain_overview": change["chain_overview"],
            }
            updated.append(replace(page, metadata=metadata))
        moves = plan.get("moves") or {}
        for page in (
            self.store.get("pages", ids=list(moves), where={"user_id": user_id}, with_embeddings=True)
            if moves
            else []
        ):
            updated.append(replace(page, metadata=page.metadata | {"segment_id": moves[page.id]}))
        self.store.upsert("pages", updated)
        self.store.upsert("state", [state_record("user", user_id, plan["state"])])

    def resume(self, user_id: str) -> bool:
        """Finish a batch interrupted by a crash; True if there was one."""
        found = self.store.get("state", ids=[f"journal:{user_id}"])
        if not found:
            return False
        self._replay(user_id, json.loads(found[0].document))
        self.store.delete("state", ids=[found[0].id])
        self.emit("resumed", {"user_id": user_id})
        return True
