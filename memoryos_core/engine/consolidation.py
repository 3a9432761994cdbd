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
    segment_from_record,
    segment_record,
    state_record,
)
from memoryos_core.engine.repository import EventSink, Repository, UserState
from memoryos_core.llm import prompts as _prompts
from memoryos_core.llm.base import LLM
from memoryos_core.llm.parsing import complete_json
from memoryos_core.llm.usage import measure
from memoryos_core.policy import mid_term
from memoryos_core.policy.mid_term import SegmentState, Topic
from memoryos_core.policy.text import mean_vector
from memoryos_core.storage.base import Record

logger = logging.getLogger("memoryos")


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

        ``on_batch`` is called after each batch (the caller renews its lease there).
        """
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
            self._apply(user_id, self._plan(user_id, [with_vectors[i] for i in ids if i in with_vectors]))
            moved += len(batch)
            if on_batch is not None:
                on_batch()
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
        topic_vectors = self._topic_vectors(topics, dict(zip(ids, vectors)))
        segments = self._assign(user_id, topics, topic_vectors)
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

    def _topic_vectors(self, topics: list[Topic], vectors: dict[str, list[float]]) -> list[list[float]]:
        llm_topics = [t for t in topics if t.source == "llm"]
        embedded = iter(self.embedder.embed([t.summary for t in llm_topics]) if llm_topics else [])
        return [
            next(embedded) if t.source == "llm" else mean_vector([vectors[p] for p in t.page_ids])
            for t in topics
        ]

    def _assign(
        self, user_id: str, topics: list[Topic], topic_vectors: list[list[float]]
    ) -> dict[str, tuple[SegmentState, list[str], str]]:
        """segment id -> (segment after this batch, page ids it gained, summary source)."""
        touched: dict[str, tuple[SegmentState, list[str], str]] = {}
        now = self.now_s()
        for topic, vector in zip(topics, topic_vectors):
            found = self.store.query(
                "segments",
                vector,
                where={"user_id": user_id, "status": "active"},
                n_results=self.config.retrieval.top_segments,
                with_embeddings=True,
            )
            candidates = {r.id: segment_from_record(r) for r, _ in found}
            candidates |= {sid: entry[0] for sid, entry in touched.items()}
            best = mid_term.choose_segment(
                vector, topic.keywords, list(candidates.values()), self.config.mid_term.similarity_threshold
            )
            if best is None:
                segment = mid_term.new_segment(f"seg_{uuid.uuid4().hex}", topic, vector, now)
                touched[segment.id] = (segment, list(topic.page_ids), topic.source)
            else:
                segment = mid_term.merge_into(best, topic, vector, now, self.config.mid_term)
                gained = touched.get(best.id, (None, [], ""))[1]
                touched[best.id] = (segment, [*gained, *topic.page_ids], topic.source)
        return touched

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
