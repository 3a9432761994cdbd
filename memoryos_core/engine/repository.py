"""The store as the engine reads and writes it: per-user state, the profile, segments, provenance views.

Conversions of single records live in :mod:`memoryos_core.engine.records`; this module owns the
reads and writes built on them that several collaborators share.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from memoryos_core._exceptions import NotFoundError
from memoryos_core._types import Cost, ProfileTrait, UserProfile
from memoryos_core.engine.records import (
    knowledge_from_record,
    profile_from_record,
    profile_record,
    segment_from_record,
    state_record,
)
from memoryos_core.llm.parsing import was_truncated
from memoryos_core.policy.long_term import render_profile
from memoryos_core.policy.mid_term import SegmentState
from memoryos_core.storage.base import MemoryStore, Record

logger = logging.getLogger("memoryos")

EventSink = Callable[[str, dict[str, Any]], None]

PROMOTION_JOURNAL = "promotion_journal"
"""The key of an analysis journaled in the user's state record (see ``engine.promotion``)."""


class UserState:
    """Per-user bookkeeping kept in the store: chain cursor, cumulative LLM cost, degradations."""

    def __init__(self, user_id: str, data: Mapping[str, Any] | None = None) -> None:
        self.user_id = user_id
        self.data: dict[str, Any] = dict(data or {})
        self.data.setdefault("cursor", "")
        self.data.setdefault("cost", Cost().to_dict())
        self.data.setdefault("skipped_llm_steps", 0)
        self.data.setdefault("llm_fallbacks", 0)
        self.data.setdefault("truncated_replies", 0)
        self.data.setdefault("consolidated_pages", 0)  # pages moved into mid-term segments
        self.data.setdefault("promoted_pages", 0)  # pages analysed into long-term memory
        self.data.setdefault("promotion_pages_given_up", 0)  # after MAX_ANALYSIS_FAILURES replies

    def count_truncated(self, raws: Sequence[str], emit: EventSink, step: str) -> None:
        """Count a reply the LLM was cut off in (its cut-off value was dropped, see ``llm.parsing``)."""
        if raws and was_truncated(raws[-1]):
            self.data["truncated_replies"] += 1
            logger.warning("%s reply for user %s was cut off; its last value was dropped", step, self.user_id)
            emit("llm_truncated", {"user_id": self.user_id, "step": step})

    def add_cost(self, cost: Cost) -> None:
        total = Cost(**self.data["cost"]) + Cost(
            cost.llm_calls, cost.prompt_tokens, cost.completion_tokens, 0.0
        )
        self.data["cost"] = total.to_dict()

    def record(self) -> Record:
        return state_record("user", self.user_id, self.data)


class Repository:
    """Reads and writes of the store that several collaborators share (see the module docstring)."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self._registered: set[str] = set()  # users known to have a state record (this process)
        self._lock = threading.Lock()

    # --- users ------------------------------------------------------------------------------
    def register(self, user_id: str) -> None:
        """Make sure the user has a state record, so ``list_users`` finds them (once per process)."""
        with self._lock:
            if user_id in self._registered:
                return
        if not self.store.get("state", ids=[f"user:{user_id}"]):
            self.store.upsert("state", [UserState(user_id).record()])
        with self._lock:
            self._registered.add(user_id)

    def unregister(self, user_id: str) -> None:
        """Forget that the user was registered (their records were all deleted)."""
        with self._lock:
            self._registered.discard(user_id)

    def users(self) -> list[str]:
        """Every user with memory in the store, sorted."""
        return sorted({str(r.metadata["user_id"]) for r in self.store.get("state", where={"key": "user"})})

    def users_with_pending_work(self, capacity: int) -> list[str]:
        """Users with an interrupted batch, more short-term pages than ``capacity``, or segments whose
        pages were never analysed (a promotion may have been interrupted)."""
        journals = self.store.get("state", where={"key": "journal"}) + [
            r
            for r in self.store.get("state", where={"key": "user"})
            if PROMOTION_JOURNAL in json.loads(r.document)
        ]
        short = Counter(
            str(r.metadata["user_id"]) for r in self.store.get("pages", where={"tier": "short_term"})
        )
        unanalysed = {
            str(r.metadata["user_id"])
            for r in self.store.get("segments", where={"status": "active"})
            if str(r.metadata.get("pending_json") or "[]") != "[]"
        }
        pending = {str(r.metadata["user_id"]) for r in journals} | {
            u for u, n in short.items() if n > capacity
        }
        return sorted(pending | unanalysed)

    def user_state(self, user_id: str) -> UserState:
        found = self.store.get("state", ids=[f"user:{user_id}"])
        return UserState(user_id, json.loads(found[0].document) if found else None)

    # --- pages and segments -----------------------------------------------------------------
    def page(self, user_id: str, page_id: str) -> Record:
        """The user's stored page ``page_id``.

        Raises:
            NotFoundError: no such page for this user.
        """
        found = self.store.get("pages", ids=[page_id], where={"user_id": user_id})
        if not found or found[0].metadata.get("user_id") != user_id:
            raise NotFoundError(f"no page {page_id!r} for user {user_id!r}")
        return found[0]

    def active_segments(self, user_id: str) -> list[SegmentState]:
        records = self.store.get(
            "segments", where={"user_id": user_id, "status": "active"}, with_embeddings=True
        )
        return [segment_from_record(r) for r in records]

    # --- long-term memory -------------------------------------------------------------------
    def profile(self, user_id: str) -> dict[str, ProfileTrait]:
        """The user's profile traits, keyed by lower-cased name."""
        found = self.store.get("state", ids=[f"profile:{user_id}"])
        return profile_from_record(found[0] if found else None)

    def save_profile(self, user_id: str, profile: Mapping[str, ProfileTrait]) -> None:
        self.store.upsert("state", [profile_record(user_id, profile)])

    def knowledge(self, user_id: str) -> list[Record]:
        """The user's knowledge records (both kinds), least recently updated first."""
        records = self.store.get("knowledge", where={"user_id": user_id})
        return sorted(records, key=lambda r: float(r.metadata["updated_s"]))

    def user_profile(self, user_id: str) -> UserProfile:
        profile = self.profile(user_id)
        entries = [knowledge_from_record(r) for r in self.knowledge(user_id)]
        return UserProfile(
            user_id=user_id,
            summary=render_profile(profile),
            traits=tuple(profile.values()),
            user_knowledge=tuple(e for e in entries if e.kind == "user"),
            assistant_knowledge=tuple(e for e in entries if e.kind == "assistant"),
        )

    def assistant_knowledge(self, user_id: str, assistant_id: str) -> list[dict[str, Any]]:
        records = self.store.get(
            "knowledge", where={"user_id": user_id, "kind": "assistant", "assistant_id": assistant_id}
        )
        items = sorted((knowledge_from_record(r) for r in records), key=lambda i: i.updated_s)
        return [
            {
                "knowledge": i.text,
                "timestamp": datetime.fromtimestamp(i.updated_s).isoformat(timespec="seconds"),
                "page_ids": list(i.page_ids),
            }
            for i in items
        ]
