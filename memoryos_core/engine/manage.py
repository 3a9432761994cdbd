"""MemoryOS's data-management calls: update, delete, export, import, listings, profile views, stats."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from memoryos_core._exceptions import InvalidInputError, NotFoundError
from memoryos_core._types import AddResult, Cost, MemoryStats, Page, UserProfile
from memoryos_core._validation import check_id, check_meta, check_text
from memoryos_core.engine import admin as _admin
from memoryos_core.engine import importer as _import
from memoryos_core.engine.consolidation import UserState
from memoryos_core.engine.lease import LEASE_TTL_S
from memoryos_core.engine.promotion import load_profile
from memoryos_core.engine.records import page_from_record, page_record, source_ids
from memoryos_core.llm.usage import measure
from memoryos_core.policy.heat import HeatState, is_hot
from memoryos_core.policy.long_term import render_profile


class ManageMixin:
    """Mixed into MemoryOS: every call here validates ids, opens the store and holds the user's locks."""

    # Defined by MemoryOS.
    store: Any
    embedder: Any
    config: Any
    promoter: Any
    _indexes: Any
    _leases: Any
    _locks_guard: Any
    _visits: Any
    _short_counts: Any
    _registered: Any
    _session_cost: Any
    _ids: Any
    _ready: Any
    _lock: Any
    _now_s: Any
    _clock: Any
    _account: Any
    _register: Any
    _schedule: Any
    _prepare: Any
    _settled: Any

    def list_users(self) -> list[str]:
        """Every user with memory in this store, sorted."""
        self._settled()
        return sorted({str(r.metadata["user_id"]) for r in self.store.get("state", where={"key": "user"})})

    def update_memory(
        self,
        page_id: str,
        *,
        user_input: str | None = None,
        agent_response: str | None = None,
        meta_data: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> AddResult:
        """Change a stored page in place: same id, order and tier; it is embedded again.

        Fields left as None keep their value. Summaries already derived from the page are
        not rewritten (delete the page to remove what was derived from it).

        Raises:
            NotFoundError: no such page for this user.
            InvalidInputError: bad texts or meta_data (nothing is changed).
        """
        user = self._ids(user_id)[0]
        page_id = check_id(page_id, "page_id")
        self._settled()
        with measure() as tally, self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S):
            found = self.store.get("pages", ids=[page_id], where={"user_id": user})
            if not found or found[0].metadata.get("user_id") != user:
                raise NotFoundError(f"no page {page_id!r} for user {user!r}")
            old = found[0]
            page = page_from_record(old)
            limit = self.config.max_text_chars
            new_input = page.user_input if user_input is None else check_text(user_input, "user_input", limit)
            new_response = (
                page.agent_response
                if agent_response is None
                else check_text(agent_response, "agent_response", limit)
            )
            if not new_input.strip() and not new_response.strip():
                raise InvalidInputError("a page needs a non-empty user_input or agent_response")
            sources = source_ids(old)
            new_meta = page.meta_data
            if meta_data is not None:
                meta_json, sources = check_meta(meta_data, self.config.max_meta_bytes)
                new_meta = json.loads(meta_json)
            page = replace(page, user_input=new_input, agent_response=new_response, meta_data=new_meta)
            vector = self.embedder.embed([page.text])[0]
            self._indexes.forget(user)
            self.store.upsert(
                "pages",
                [
                    page_record(
                        page,
                        vector,
                        ts_s=float(old.metadata.get("ts_s", 0.0)),
                        source_ids=sources,
                        chain_prev=str(old.metadata.get("chain_prev", "")),
                    )
                ],
            )
        self._account(user, tally.cost)
        return AddResult(page.id, user, page.assistant_id, tally.cost)

    def recent_pages(self, limit: int | None = None, *, user_id: str | None = None) -> list[Page]:
        """The user's newest pages, oldest first: short-term memory and any not yet consolidated.

        Args:
            limit: at most this many of the newest (default: the short-term capacity plus
                whatever is still pending consolidation).
        """
        user = self._ids(user_id)[0]
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidInputError("limit must be a positive int")
        self._settled()
        records = self.store.get("pages", where={"user_id": user, "tier": "short_term"})
        if limit is not None and len(records) < limit:
            records = self.store.get("pages", where={"user_id": user})  # reach into older tiers
        records.sort(key=lambda r: int(r.metadata["created_ns"]))
        return [page_from_record(r) for r in (records[-limit:] if limit else records)]

    def get_user_profile(self, user_id: str | None = None) -> UserProfile:
        """The user's profile traits and knowledge, with provenance."""
        user = self._ids(user_id)[0]
        self._settled()
        return _admin.user_profile(self.store, user)

    def get_user_profile_summary(self, user_id: str | None = None) -> str:
        """The profile as text (the reference's call)."""
        user = self._ids(user_id)[0]
        self._settled()
        return render_profile(load_profile(self.store, user))

    def get_assistant_knowledge_summary(
        self, user_id: str | None = None, assistant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Assistant knowledge as ``{"knowledge", "timestamp", "page_ids"}`` dicts (the reference's call)."""
        user, assistant = self._ids(user_id, assistant_id)
        self._settled()
        return _admin.assistant_knowledge(self.store, user, assistant)

    def get_memory_stats(self, user_id: str | None = None) -> MemoryStats:
        """Counts per tier, pending work and cumulative cost for one user."""
        user = self._ids(user_id)[0]
        self._settled()
        pages = self.store.get("pages", where={"user_id": user})
        tiers = Counter(str(p.metadata.get("tier")) for p in pages)
        segments = self.promoter.active_segments(user)
        now = self._now_s()
        hot = sum(
            1
            for s in segments
            if s.pending_page_ids
            and is_hot(HeatState(s.n_visit, s.l_interaction, s.last_access_s), now, self.config.mid_term)
        )
        knowledge = self.store.get("knowledge", where={"user_id": user})
        kinds = Counter(str(k.metadata.get("kind")) for k in knowledge)
        state = UserState(self.store, user).data
        stored = Cost(**state["cost"])
        session = self._session_cost.get(user, Cost())
        short = tiers["short_term"]
        return MemoryStats(
            user_id=user,
            short_term_pages=min(short, self.config.short_term.capacity),
            pending_pages=max(0, short - self.config.short_term.capacity),
            mid_term_pages=tiers["mid_term"],
            archived_pages=tiers["archive"],
            segments=len(segments),
            user_knowledge=kinds["user"],
            assistant_knowledge=kinds["assistant"],
            profile_traits=len(load_profile(self.store, user)),
            hot_segments=hot,
            skipped_llm_steps=int(state["skipped_llm_steps"]),
            llm_fallbacks=int(state["llm_fallbacks"]),
            cost=Cost(stored.llm_calls, stored.prompt_tokens, stored.completion_tokens, session.ms),
            truncated_replies=int(state["truncated_replies"]),
        )

    def delete_memory(
        self, page_id: str | None = None, *, user_id: str | None = None, everything: bool = False
    ) -> int:
        """Delete one page (with what was derived from it) or, with ``everything=True``, all of a user.

        Returns the number of pages deleted.

        Raises:
            NotFoundError: no such page for this user.
            InvalidInputError: neither ``page_id`` nor ``everything=True`` was given.
        """
        user = self._ids(user_id)[0]
        if page_id is None and not everything:
            raise InvalidInputError("give a page_id, or everything=True to delete all of the user's memory")
        self._settled()
        with self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S):
            if everything:
                with self._locks_guard:
                    self._visits.pop(user, None)
                    self._short_counts.pop(user, None)
                self._registered.discard(user)
                self._indexes.forget(user)
                return _admin.delete_user(self.store, user)
            self._indexes.forget(user)
            return _admin.delete_page(
                self.store, self.embedder, self.config, user, check_id(page_id, "page_id")
            )

    def export_memory(self, user_id: str | None = None) -> dict[str, Any]:
        """Everything of one user as JSON-ready data: pages (each exactly once, with its tier),
        segments, profile, user_knowledge, assistant_knowledge."""
        user = self._ids(user_id)[0]
        self._settled()
        with self._lock(user):
            return _admin.export_user(self.store, user)

    def _prepare_pages(
        self, pages: Sequence[Mapping[str, Any]], page_ids: Sequence[str], user: str, label: str
    ) -> list[tuple[Page, float, tuple[str, ...]]]:
        """Validate pages as ``add_memories`` does, under the given ids; nothing is stored.

        Raises:
            InvalidInputError: the first bad page, named as ``label item N``.
        """
        prepared = []
        for number, (item, page_id) in enumerate(zip(pages, page_ids, strict=True), 1):
            try:
                page, ts_s, sources = self._prepare(item, user, self.assistant_id)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{label} item {number}: {exc}") from exc
            prepared.append((replace(page, id=check_id(page_id, "page_id")), ts_s, sources))
        return prepared

    def _store_pages_once(
        self,
        user: str,
        prepared: Sequence[tuple[Page, float, tuple[str, ...]]],
        chunk_pages: int = 64,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> int:
        """Store the prepared pages whose ids the user does not hold yet; returns how many were new.

        Pages already stored are left as they are (their tier, segment and chain stay), so storing
        the same pages again changes nothing. Written ``chunk_pages`` at a time (one embedding batch
        each); ``on_chunk(pages handled, pages new)`` is called after each chunk.
        """
        self._settled()
        stored, renewed = 0, time.monotonic()
        with measure() as tally, self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S) as renew:
            for start in range(0, len(prepared), max(1, chunk_pages)):
                chunk = prepared[start : start + max(1, chunk_pages)]
                ids = [page.id for page, _, _ in chunk]
                held = {r.id for r in self.store.get("pages", ids=ids, where={"user_id": user})}
                new = [entry for entry in chunk if entry[0].id not in held]
                if new:
                    vectors = self.embedder.embed([page.text for page, _, _ in new])
                    records = [
                        page_record(page, vector, ts_s=ts_s, source_ids=sources)
                        for (page, ts_s, sources), vector in zip(new, vectors)
                    ]
                    self.store.upsert("pages", records)
                    self._indexes.add(user, records)
                    stored += len(new)
                if time.monotonic() - renewed > LEASE_TTL_S / 3:  # a long file must not let it expire
                    renew()
                    renewed = time.monotonic()
                if on_chunk is not None:
                    on_chunk(len(chunk), len(new))
        self._account(user, tally.cost)
        if stored:
            self._register(user)
            self._schedule(user, added=stored)
        return stored

    def import_memory(self, data: Mapping[str, Any], *, user_id: str | None = None) -> int:
        """Load an export into ``user_id``, or else into this instance's user; returns pages imported.

        Without ``user_id``, an export of another user (its ``"user_id"``) is refused: a file must not
        be able to choose whose memory it writes. Pass ``user_id=`` to import it as that user. Every
        value is validated before anything is written. Pages keep their ids, so importing the same
        export twice stores nothing twice.

        Raises:
            InvalidInputError: another user's export without ``user_id=``, or any malformed value
                (nothing is written).
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("pages", []), list):
            raise InvalidInputError("import_memory takes the dict returned by export_memory")
        owner = data.get("user_id")
        if owner is not None:
            owner = check_id(owner, "user_id of the export")
        if user_id is None and owner is not None and owner != self.user_id:
            raise InvalidInputError(
                f"this export holds the memory of user {owner!r}, and this MemoryOS's user is "
                f"{self.user_id!r}: pass user_id={owner!r} (or another user) to import it as that user"
            )
        user = self._ids(user_id)[0]
        self._settled()
        with self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S):
            count = _import.import_user(self.store, self.embedder, self.config, user, data, self._clock())
            self._indexes.forget(user)
        self._register(user)
        self._schedule(user)
        return count
