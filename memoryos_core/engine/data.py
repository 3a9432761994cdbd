"""MemoryOS's data management: update, delete (with what was derived), export, import, listings,
profile views and stats. Every call opens the store; every change holds the user's lock and lease."""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from memoryos_core._exceptions import InvalidInputError, NotFoundError
from memoryos_core._types import AddResult, Cost, MemoryStats, Page, SegmentInfo, UserProfile
from memoryos_core._validation import check_id, check_meta, check_text
from memoryos_core.engine import erasure, transfer
from memoryos_core.engine.lease import LeaseBusyError
from memoryos_core.engine.lexical_shared import PageIndexes
from memoryos_core.engine.pending import journal_folder
from memoryos_core.engine.records import page_from_record, page_record, segment_from_record, segment_record
from memoryos_core.engine.records import source_ids as record_source_ids
from memoryos_core.engine.repository import Repository
from memoryos_core.engine.runtime import Runtime
from memoryos_core.engine.scheduler import Scheduler
from memoryos_core.llm.usage import measure
from memoryos_core.policy import text as text_policy
from memoryos_core.policy.heat import HeatState, heat
from memoryos_core.policy.long_term import hot_segments, render_profile
from memoryos_core.storage.base import KINDS, ErasableStore, Record

logger = logging.getLogger("memoryos")


class DataManager:
    """The calls on stored memory other than adding and recalling (ids are resolved by the caller)."""

    def __init__(
        self, runtime: Runtime, repository: Repository, indexes: PageIndexes, scheduler: Scheduler
    ) -> None:
        self._runtime, self._repository = runtime, repository
        self._indexes, self._scheduler = indexes, scheduler

    # --- reads --------------------------------------------------------------------------------
    def list_users(self) -> list[str]:
        self._runtime.settled()
        return self._repository.users()

    def recent_pages(self, user: str, limit: int | None) -> list[Page]:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidInputError("limit must be a positive int")
        self._runtime.settled()
        store = self._runtime.store
        records = store.get("pages", where={"user_id": user, "tier": "short_term"})
        if limit is not None and len(records) < limit:
            records = store.get("pages", where={"user_id": user})  # reach into older tiers
        records.sort(key=lambda r: int(r.metadata["created_ns"]))
        return [page_from_record(r) for r in (records[-limit:] if limit else records)]

    def user_profile(self, user: str) -> UserProfile:
        self._runtime.settled()
        return self._repository.user_profile(user)

    def profile_summary(self, user: str) -> str:
        self._runtime.settled()
        return render_profile(self._repository.profile(user))

    def assistant_knowledge(self, user: str, assistant: str) -> list[dict[str, Any]]:
        self._runtime.settled()
        return self._repository.assistant_knowledge(user, assistant)

    def stats(self, user: str) -> MemoryStats:
        runtime, config = self._runtime, self._runtime.config
        runtime.settled()
        # Counted, not read: reading every page to count its tier took 1 s of a 10k-page stats call.
        count = runtime.store.count
        short = count("pages", where={"user_id": user, "tier": "short_term"})
        archived = count("pages", where={"user_id": user, "tier": "archive"})
        mid = count("pages", where={"user_id": user}) - short - archived  # a page's tier is one of the three
        segments = self._repository.active_segments(user)
        now = runtime.now_s()
        hot = len(hot_segments(segments, now, config.mid_term))
        knowledge = runtime.store.get("knowledge", where={"user_id": user})
        kinds = Counter(str(k.metadata.get("kind")) for k in knowledge)
        state = self._repository.user_state(user).data
        stored = Cost(**state["cost"])
        session = runtime.session_cost(user)
        return MemoryStats(
            user_id=user,
            short_term_pages=min(short, config.short_term.capacity),
            pending_pages=max(0, short - config.short_term.capacity),
            mid_term_pages=mid,
            archived_pages=archived,
            segments=len(segments),
            user_knowledge=kinds["user"],
            assistant_knowledge=kinds["assistant"],
            profile_traits=len(self._repository.profile(user)),
            hot_segments=hot,
            skipped_llm_steps=int(state["skipped_llm_steps"]),
            llm_fallbacks=int(state["llm_fallbacks"]),
            cost=Cost(stored.llm_calls, stored.prompt_tokens, stored.completion_tokens, session.ms),
            truncated_replies=int(state["truncated_replies"]),
        )

    def segments(self, user: str) -> list[SegmentInfo]:
        """The user's active segments with their heat now, hottest first (see ``SegmentInfo``).

        Visits counted by this process but not written yet are included as the worker would
        write them now (``n_visit`` raised, last access now), so ``heat`` and ``is_hot`` are
        what a consolidation pass starting now would see.
        """
        runtime, config = self._runtime, self._runtime.config.mid_term
        runtime.settled()
        now = runtime.now_s()
        visits = self._scheduler.unsaved_visits(user)
        segments = [
            replace(s, n_visit=s.n_visit + visits[s.id], last_access_s=now) if visits.get(s.id) else s
            for s in self._repository.active_segments(user)
        ]
        hot = {s.id for s in hot_segments(segments, now, config)}
        pages: dict[str, list[tuple[int, str]]] = {}
        for record in runtime.store.get("pages", where={"user_id": user, "tier": "mid_term"}):
            segment_id = str(record.metadata.get("segment_id") or "")
            pages.setdefault(segment_id, []).append((int(record.metadata.get("created_ns", 0)), record.id))
        found = [
            SegmentInfo(
                id=s.id,
                summary=s.summary,
                keywords=s.keywords,
                page_ids=tuple(page_id for _, page_id in sorted(pages.get(s.id, []))),
                n_visit=s.n_visit,
                l_interaction=s.l_interaction,
                last_access_s=s.last_access_s,
                created_s=s.created_s,
                heat=heat(HeatState(s.n_visit, s.l_interaction, s.last_access_s), now, config),
                is_hot=s.id in hot,
                pending_pages=len(s.pending_page_ids),
            )
            for s in segments
        ]
        return sorted(found, key=lambda info: (-info.heat, info.id))

    def export_memory(self, user: str) -> dict[str, Any]:
        self._runtime.settled()
        with self._runtime.lock(user):
            return transfer.export_user(self._repository, user)

    # --- changes ------------------------------------------------------------------------------
    def update_memory(
        self,
        user: str,
        page_id: str,
        *,
        user_input: str | None,
        agent_response: str | None,
        meta_data: Mapping[str, Any] | None,
    ) -> AddResult:
        runtime, config = self._runtime, self._runtime.config
        page_id = check_id(page_id, "page_id")
        runtime.settled()
        with measure() as tally, runtime.hold(user):
            old = self._repository.page(user, page_id)
            page = page_from_record(old)
            limit = config.max_text_chars
            new_input = page.user_input if user_input is None else check_text(user_input, "user_input", limit)
            new_response = (
                page.agent_response
                if agent_response is None
                else check_text(agent_response, "agent_response", limit)
            )
            if not new_input.strip() and not new_response.strip():
                raise InvalidInputError("a page needs a non-empty user_input or agent_response")
            sources = record_source_ids(old)
            new_meta = page.meta_data
            if meta_data is not None:
                meta_json, sources = check_meta(meta_data, config.max_meta_bytes)
                new_meta = json.loads(meta_json)
            page = replace(page, user_input=new_input, agent_response=new_response, meta_data=new_meta)
            vector = runtime.late.embed([page.text])[0]
            runtime.late.remove(user, [page.id])  # the old text's wordpieces, erased before it is replaced
            record = page_record(
                page,
                vector,
                ts_s=float(old.metadata.get("ts_s", 0.0)),
                source_ids=sources,
                chain_prev=str(old.metadata.get("chain_prev", "")),
            )
            runtime.store.upsert("pages", [record])
            self._indexes.update(user, [record])  # its words replaced in place (and the old erased)
            runtime.late.add(user, [record])  # the new text's wordpieces
        runtime.account(user, tally.cost)
        return AddResult(page.id, user, page.assistant_id, tally.cost)

    def delete_memory(self, user: str, page_id: str | None, *, everything: bool) -> int:
        if page_id is None and not everything:
            raise InvalidInputError("give a page_id, or everything=True to delete all of the user's memory")
        runtime = self._runtime
        runtime.settled()
        with runtime.hold(user):
            if everything:
                runtime.late.drop(user)  # first: a file that cannot be written stops it before anything goes
                if journal_folder(runtime.store) is not None:  # other processes may have pages in flight
                    erasure.mark(runtime.store, user, time.time_ns())  # (before anything is removed)
                self._indexes.forget(user)
                self._scheduler.forget(user)
                self._repository.unregister(user)
                deleted = self._delete_user(user)
                runtime.late.drop(user)  # again: adds take no user lock, and one may have written meanwhile
                self._erase_deleted()
                return deleted
            deleted = self._delete_pages(user, [check_id(page_id, "page_id")])
            self._erase_deleted()
            return deleted

    def erase_if_deleted(self, user: str, records: Sequence[Record]) -> list[Record]:
        """Erase the pages of ``records`` (just written to the store from a page journal) that were
        accepted before the user's memory was deleted, by another process, while they waited: the
        delete found them in no store. Called after the write, it sees the note that delete writes
        before it removes anything, so a page is either removed by the delete or erased here.

        Returns the pages it must erase and cannot now (another thread or process is changing the
        user's memory: it does not wait), for the caller to keep journaled and pass again.

        Raises:
            StorageError: the store failed (the caller keeps them all).
        """
        erased_ns = erasure.erased_ns(self._runtime.store, user)
        if erased_ns is None:
            return []
        stale = [r for r in records if int(r.metadata.get("created_ns", 0)) <= erased_ns]
        if not stale:
            return []
        try:
            with self._runtime.hold(user, wait_s=None):  # (the writer's thread would hold up every flush)
                # (missing: the delete removed it, or it was deleted since)
                self._delete_pages(user, [r.id for r in stale], missing_ok=True)
        except LeaseBusyError:
            return stale
        self._erase_deleted()
        logger.info("erased %d pages of user %s accepted before their memory was deleted", len(stale), user)
        return []

    def delete_knowledge(self, user: str, knowledge_id: str) -> None:
        """Delete one user or assistant knowledge item; its pages stay."""
        knowledge_id = check_id(knowledge_id, "knowledge_id")
        runtime = self._runtime
        runtime.settled()
        with runtime.hold(user):
            if not runtime.store.get("knowledge", ids=[knowledge_id], where={"user_id": user}):
                raise NotFoundError(f"no knowledge item {knowledge_id!r} for user {user!r}")
            runtime.store.delete("knowledge", ids=[knowledge_id], where={"user_id": user})
            self._erase_deleted()

    def delete_trait(self, user: str, name: str) -> None:
        """Delete one profile trait by name (any case); its pages stay."""
        if not isinstance(name, str) or not name.strip():
            raise InvalidInputError("name must be a trait's name (a non-empty str)")
        runtime = self._runtime
        runtime.settled()
        with runtime.hold(user):
            profile = self._repository.profile(user)
            key = name.strip().lower()
            if key not in profile:
                raise NotFoundError(f"no profile trait named {name!r} for user {user!r}")
            del profile[key]
            self._repository.save_profile(user, profile)
            self._erase_deleted()

    def import_memory(self, data: Mapping[str, Any], user_id: str | None, *, default_user: str) -> int:
        if not isinstance(data, Mapping) or not isinstance(data.get("pages", []), list):
            raise InvalidInputError("import_memory takes the dict returned by export_memory")
        owner = data.get("user_id")
        if owner is not None:
            owner = check_id(owner, "user_id of the export")
        if user_id is None and owner is not None and owner != default_user:
            raise InvalidInputError(
                f"this export holds the memory of user {owner!r}, and this MemoryOS's user is "
                f"{default_user!r}: pass user_id={owner!r} (or another user) to import it as that user"
            )
        user = default_user if user_id is None else check_id(user_id, "user_id")
        runtime = self._runtime
        runtime.settled()
        with runtime.hold(user):
            count = transfer.import_user(
                self._repository,
                runtime.embedder,
                runtime.config,
                user,
                data,
                runtime.now(),
                embed_pages=runtime.late.embed,
                on_stored=runtime.late.add,
            )
            self._indexes.forget(user)
        self._repository.register(user)
        self._scheduler.schedule(user)
        return count

    # --- deletion -----------------------------------------------------------------------------
    def _delete_user(self, user: str) -> int:
        """Remove every record of the user from every collection (not erased yet: see
        ``_erase_deleted``); returns pages removed."""
        store = self._runtime.store
        pages = len(store.get("pages", where={"user_id": user}))
        for kind in KINDS:
            if kind != "state":
                store.delete(kind, where={"user_id": user})
                continue
            # All but the user's lease, which the delete holds until it is over (``hold`` gives it back):
            # gone now, another process could take it while the delete still erases.
            keys = {str(r.metadata.get("key")) for r in store.get("state", where={"user_id": user})}
            if keys - {"lease"}:
                store.delete("state", where={"user_id": user, "key": sorted(keys - {"lease"})})
        return pages

    def _delete_pages(self, user: str, page_ids: list[str], *, missing_ok: bool = False) -> int:
        """Delete pages with what was derived from them (``_delete_page``): their wordpieces erased
        first, then their words, before the store deletes them; returns how many were deleted.

        Raises:
            NotFoundError: the user has no such page (unless ``missing_ok``).
        """
        self._runtime.late.remove(user, page_ids)
        self._indexes.remove(user, page_ids)
        deleted = 0
        for page_id in page_ids:
            try:
                deleted += self._delete_page(user, page_id)
            except NotFoundError:
                if not missing_ok:
                    raise
        return deleted

    def _delete_page(self, user: str, page_id: str) -> int:
        """Delete one page and what was derived from it: its segment is rebuilt from the pages
        left (or deleted), and knowledge and profile traits citing it are deleted (not erased yet:
        see ``_erase_deleted``)."""
        store = self._runtime.store
        page = self._repository.page(user, page_id)
        store.delete("pages", ids=[page_id], where={"user_id": user})
        segment_id = str(page.metadata.get("segment_id") or "")
        if segment_id:
            self._rebuild_segment(user, segment_id, page_id)
        linked = store.get("pages", where={"user_id": user, "chain_prev": page_id}, with_embeddings=True)
        store.upsert("pages", [replace(p, metadata=p.metadata | {"chain_prev": ""}) for p in linked])
        cited = [
            r.id
            for r in store.get("knowledge", where={"user_id": user})
            if page_id in json.loads(str(r.metadata.get("page_ids_json") or "[]"))
        ]
        store.delete("knowledge", ids=cited, where={"user_id": user})
        profile = self._repository.profile(user)
        kept = {key: t for key, t in profile.items() if page_id not in t.page_ids}
        if len(kept) != len(profile):
            self._repository.save_profile(user, kept)
        state = self._repository.user_state(user)
        if state.data["cursor"] == page_id:
            state.data["cursor"] = ""
            store.upsert("state", [state.record()])
        return 1

    def _rebuild_segment(self, user: str, segment_id: str, page_id: str) -> None:
        store, config = self._runtime.store, self._runtime.config
        records = store.get("segments", ids=[segment_id], where={"user_id": user}, with_embeddings=True)
        rest = store.get("pages", where={"user_id": user, "segment_id": segment_id}, with_embeddings=True)
        if not records:
            return
        if not rest:
            store.delete("segments", ids=[segment_id], where={"user_id": user})
            return
        # The old summary may quote the deleted page: rebuild it from the pages left, extractively.
        segment = segment_from_record(records[0])
        texts, vectors = [p.document for p in rest], [list(p.embedding or ()) for p in rest]
        rebuilt = replace(
            segment,
            summary=text_policy.extractive_summary(texts, vectors, config.mid_term.summary_max_chars),
            keywords=tuple(text_policy.keywords(texts, config.mid_term.max_keywords)),
            embedding=tuple(text_policy.mean_vector(vectors)),
            page_count=len(rest),
            pending_page_ids=tuple(p for p in segment.pending_page_ids if p != page_id),
        )
        status = str(records[0].metadata.get("status"))
        store.upsert("segments", [segment_record(user, rebuilt, status=status, source="extractive")])
        # The pages' chain overviews may quote the deleted page too: they take the rebuilt one.
        overview = text_policy.clip(rebuilt.summary, 240)
        store.upsert("pages", [replace(p, metadata=p.metadata | {"chain_overview": overview}) for p in rest])

    def _erase_deleted(self) -> None:
        """Deleting is erasure: a store that keeps deleted text in its files (Chroma's log, freed
        pages) removes it now (an ``ErasableStore``, e.g. ``ChromaStore.erase_deleted``)."""
        store = self._runtime.store
        if isinstance(store, ErasableStore):
            store.erase_deleted()
