"""MemoryOS: the shell that orders I/O (store, embed, LLM) around the pure policies."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from memoryos_core import _admin, _prompts
from memoryos_core._config import MemoryConfig
from memoryos_core._consolidation import Consolidator, UserState
from memoryos_core._exceptions import (
    InvalidInputError,
    LLMNotConfiguredError,
    LLMOutputError,
    MemoryOSError,
    NotFoundError,
)
from memoryos_core._lease import LEASE_TTL_S, LeaseBusyError, Leases
from memoryos_core._lexical import PageIndexes
from memoryos_core._policy.heat import HeatState, is_hot
from memoryos_core._policy.long_term import render_profile
from memoryos_core._promotion import Promoter, load_profile
from memoryos_core._records import (
    page_from_record,
    page_record,
    segment_from_record,
    segment_record,
    source_ids,
)
from memoryos_core._registry import make_embedder, make_llm, make_store
from memoryos_core._retrieval import Retriever
from memoryos_core._tokens import default_counter
from memoryos_core._types import (
    AddResult,
    Cost,
    MemoryStats,
    Page,
    ResponseResult,
    RetrievedContext,
    UserProfile,
)
from memoryos_core._usage import CountingLLM, measure
from memoryos_core._validation import check_id, check_meta, check_text, parse_timestamp
from memoryos_core._worker import Worker
from memoryos_core.embeddings.base import Embedder
from memoryos_core.llm.base import LLM
from memoryos_core.storage.base import MemoryStore

logger = logging.getLogger("memoryos")


class MemoryOS:
    """A tiered memory for chat agents: short-term pages, mid-term segments, long-term persona.

    Args:
        user_id: default user of every call (each call may pass its own ``user_id=``).
        openai_api_key, openai_base_url, llm_model: an OpenAI-compatible LLM; without a key
            (and without ``llm=``) the engine runs offline: it stores, consolidates
            extractively and retrieves, and skips the steps that need an LLM.
        data_storage_path: folder of the embedded Chroma store (default ``./memoryos_data``).
        assistant_id: default assistant of every call.
        short_term_capacity ... embedding_model_name: the reference's tunables (see MemoryConfig).
        config: every tunable at once; the flat parameters above override it.
        llm, embedder, store: backends as objects (they win over the parameters above).
        chroma_url: a ``chroma run`` server instead of the embedded store (or MEMORYOS_CHROMA_URL).
        clock: returns the current time (injected in tests).
        on_event: called with (event name, details) for consolidation, promotion, fallbacks.
        background: consolidate in a background thread (default); False runs it inline in
            ``flush()`` only, which suits scripts and tests that want full control.

    Example:
        >>> memo = MemoryOS(user_id="demo_user", data_storage_path="./data")
        >>> memo.add_memory("I love hiking.", "Nice! Where do you go?")
        >>> memo.retrieve_memory("What are my hobbies?").units[0].text
    """

    def __init__(
        self,
        user_id: str = "default_user",
        openai_api_key: str | None = None,
        openai_base_url: str | None = None,
        data_storage_path: str | os.PathLike[str] | None = None,
        assistant_id: str = "default_assistant",
        llm_model: str = "gpt-4o-mini",
        short_term_capacity: int | None = None,
        mid_term_capacity: int | None = None,
        long_term_knowledge_capacity: int | None = None,
        retrieval_queue_capacity: int | None = None,
        mid_term_heat_threshold: float | None = None,
        mid_term_similarity_threshold: float | None = None,
        embedding_model_name: str | None = None,
        *,
        config: MemoryConfig | None = None,
        llm: LLM | None = None,
        embedder: Embedder | None = None,
        store: MemoryStore | None = None,
        chroma_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
        background: bool = True,
    ) -> None:
        self.config = (config or MemoryConfig()).with_reference_params(
            short_term_capacity=short_term_capacity,
            mid_term_capacity=mid_term_capacity,
            long_term_knowledge_capacity=long_term_knowledge_capacity,
            retrieval_queue_capacity=retrieval_queue_capacity,
            mid_term_heat_threshold=mid_term_heat_threshold,
            mid_term_similarity_threshold=mid_term_similarity_threshold,
        )
        self.user_id = check_id(user_id, "user_id")
        self.assistant_id = check_id(assistant_id, "assistant_id")
        self.data_storage_path = data_storage_path
        inner_llm = llm if llm is not None else make_llm(openai_api_key, openai_base_url, llm_model)
        self.llm = CountingLLM(inner_llm, default_counter()) if inner_llm is not None else None
        self.embedder = (
            embedder
            if embedder is not None
            else make_embedder(embedding_model_name, api_key=openai_api_key, base_url=openai_base_url)
        )
        self.store = (
            store
            if store is not None
            else make_store(data_storage_path, chroma_url, self.config.collection_prefix)
        )
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._on_event = on_event
        self._background = background
        self._opened = False
        self._open_lock = threading.Lock()
        self._user_locks: dict[str, threading.RLock] = {}
        self._locks_guard = threading.Lock()
        self._visits: dict[str, Counter[str]] = {}
        self._touched: set[str] = set()
        self._short_counts: dict[str, int] = {}
        self._registered: set[str] = set()
        self._session_cost: dict[str, Cost] = {}
        self._last_ns = 0
        self.consolidator = Consolidator(
            self.store, self.embedder, self.llm, self.config, self._now_s, self._emit
        )
        self.promoter = Promoter(self.store, self.embedder, self.llm, self.config, self._now_s, self._emit)
        self._indexes = PageIndexes()
        self.retriever = Retriever(self.store, self.config, self._indexes)
        self._leases = Leases(self.store)
        self._worker = Worker(self._background_run, recheck_s=max(0.5, self.config.short_term.max_wait_s))

    # --- plumbing ---------------------------------------------------------------------------
    def _now_s(self) -> float:
        return self._clock().timestamp()

    def _emit(self, event: str, details: dict[str, Any]) -> None:
        logger.debug("event %s %s", event, details)
        if self._on_event is not None:
            try:
                self._on_event(event, details)
            except Exception:  # a broken hook must not break memory
                logger.exception("on_event hook failed for %s", event)

    def _ready(self) -> None:
        if self._opened:
            return
        with self._open_lock:
            if self._opened:
                return
            self.store.open(dim=self.embedder.dim, embedder_name=self.embedder.name)
            self._opened = True
        for user in _admin.users_with_pending_work(self.store, self.config.short_term.capacity):
            self._schedule(user)

    def _lock(self, user_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._user_locks.setdefault(user_id, threading.RLock())

    def _ids(self, user_id: str | None, assistant_id: str | None = None) -> tuple[str, str]:
        user = self.user_id if user_id is None else check_id(user_id, "user_id")
        assistant = self.assistant_id if assistant_id is None else check_id(assistant_id, "assistant_id")
        return user, assistant

    def _schedule(self, user_id: str, added: int = 0) -> None:
        """Wake the worker when a batch is due; otherwise once, after ``max_wait_s``.

        The short-term count is kept in memory (read from the store once per user), so the
        write path does not query the store and the worker is not woken for every page.
        """
        self._touched.add(user_id)
        if not self._background:
            return
        with self._locks_guard:
            known = self._short_counts.get(user_id)
        if known is None:
            known = self.store.count("pages", where={"user_id": user_id, "tier": "short_term"}) - added
        count = known + added
        with self._locks_guard:
            self._short_counts[user_id] = count
        short = self.config.short_term
        if added == 0 or count >= short.capacity + short.batch_pages:
            self._worker.notify(user_id)
        elif count > short.capacity:
            self._worker.notify(user_id, short.max_wait_s)

    def _register(self, user_id: str) -> None:
        """Make sure the user has a state record, so ``list_users`` finds them (once per process)."""
        if user_id in self._registered:
            return
        if not self.store.get("state", ids=[f"user:{user_id}"]):
            self.store.upsert("state", [UserState(self.store, user_id).record()])
        self._registered.add(user_id)

    def list_users(self) -> list[str]:
        """Every user with memory in this store, sorted."""
        self._ready()
        return sorted({str(r.metadata["user_id"]) for r in self.store.get("state", where={"key": "user"})})

    def _account(self, user_id: str, cost: Cost) -> None:
        self._session_cost[user_id] = self._session_cost.get(user_id, Cost()) + cost

    def _next_ns(self) -> int:
        # Strictly increasing within this process, so pages added in one batch keep their order.
        with self._locks_guard:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    # --- write path -------------------------------------------------------------------------
    def add_memory(
        self,
        user_input: str,
        agent_response: str,
        timestamp: str | datetime | None = None,
        meta_data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> AddResult:
        """Store one page durably and return; consolidation happens in the background.

        Raises:
            InvalidInputError: bad ids, texts, timestamp or meta_data (nothing is stored).
            StorageError, EmbeddingError: the page could not be stored.
        """
        return self.add_memories(
            [
                {
                    "user_input": user_input,
                    "agent_response": agent_response,
                    "timestamp": timestamp,
                    "meta_data": meta_data,
                }
            ],
            user_id=user_id,
            assistant_id=assistant_id,
        )[0]

    def add_memories(
        self,
        pages: Iterable[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> list[AddResult]:
        """Store several pages at once (one embedding batch, one write), in order.

        Each item has ``user_input``, ``agent_response`` and optionally ``timestamp`` and ``meta_data``.
        All items are validated before anything is stored.
        """
        user, assistant = self._ids(user_id, assistant_id)
        with measure() as tally:
            prepared = [self._prepare(item, user, assistant) for item in pages]
            if not prepared:
                return []
            self._ready()
            vectors = self.embedder.embed([p[0].text for p in prepared])
            records = [
                page_record(page, vector, ts_s=ts_s, source_ids=sources)
                for (page, ts_s, sources), vector in zip(prepared, vectors)
            ]
            self.store.upsert("pages", records)
            self._indexes.add(user, records)
        self._account(user, tally.cost)
        self._register(user)
        self._schedule(user, added=len(prepared))
        share = Cost(ms=tally.cost.ms / len(prepared))
        return [AddResult(page.id, user, assistant, share) for page, _, _ in prepared]

    def _prepare(
        self, item: Mapping[str, Any], user: str, assistant: str
    ) -> tuple[Page, float, tuple[str, ...]]:
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"each page must be a mapping, not {type(item).__name__}")
        limit = self.config.max_text_chars
        user_input = check_text(item.get("user_input"), "user_input", limit)
        agent_response = check_text(item.get("agent_response"), "agent_response", limit)
        if not user_input.strip() and not agent_response.strip():
            raise InvalidInputError("a page needs a non-empty user_input or agent_response")
        meta_json, sources = check_meta(item.get("meta_data"), self.config.max_meta_bytes)
        stamp, ts_s = parse_timestamp(item.get("timestamp"), self._clock())
        page = Page(
            id=f"pg_{uuid.uuid4().hex}",
            user_id=user,
            assistant_id=assistant,
            user_input=user_input,
            agent_response=agent_response,
            timestamp=stamp,
            tier="short_term",
            meta_data=json.loads(meta_json),
            created_ns=self._next_ns(),
        )
        return page, ts_s, sources

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
        self._ready()
        with measure() as tally, self._lock(user):
            found = self.store.get("pages", ids=[page_id])
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

    # --- background and flush -----------------------------------------------------------------
    def _background_run(self, user_id: str) -> bool:
        """One worker pass for a user; True if a partial batch is still waiting (or another
        process holds the user's lease: then it is simply tried again later)."""
        try:
            self._run_user(user_id, force=False, wait_s=0.0)
        except LeaseBusyError:
            return True
        return bool(self.consolidator.due_pages(user_id, force=True))

    def _run_user(self, user_id: str, *, force: bool, wait_s: float = LEASE_TTL_S) -> Cost:
        self._ready()
        with measure() as tally, self._lock(user_id), self._leases.hold(user_id, wait_s=wait_s) as renew:
            moved = self.consolidator.consolidate(user_id, force=force, on_batch=renew)
            with self._locks_guard:
                if user_id in self._short_counts:
                    self._short_counts[user_id] = max(0, self._short_counts[user_id] - moved)
            self._apply_visits(user_id)
            self.promoter.promote(user_id, force=False)
            self.promoter.evict(user_id)
        return tally.cost

    def _apply_visits(self, user_id: str) -> None:
        with self._locks_guard:
            visits = self._visits.pop(user_id, None)
        if not visits:
            return
        now = self._now_s()
        records = self.store.get("segments", ids=list(visits), with_embeddings=True)
        updated = []
        for record in records:
            segment = segment_from_record(record)
            segment = replace(segment, n_visit=segment.n_visit + visits[record.id], last_access_s=now)
            updated.append(
                segment_record(
                    user_id,
                    segment,
                    status=str(record.metadata.get("status", "active")),
                    source=str(record.metadata.get("source", "")),
                )
            )
        self.store.upsert("segments", updated)

    def flush(self, user_id: str | None = None, *, timeout_s: float | None = None) -> Cost:
        """Consolidate everything pending now (partial batches too) and wait for it.

        Args:
            user_id: only this user; by default every user this instance has written to
                or found pending work for.
            timeout_s: how long to wait for the background worker first.

        Raises:
            LLMError: the LLM failed after its retries; the work stays pending.
        """
        self._ready()
        self._worker.wait_idle(timeout_s)
        users = [self._ids(user_id)[0]] if user_id is not None else sorted(self._touched)
        total = Cost()
        for user in users:
            cost = self._run_user(user, force=True)
            self._account(user, cost)
            total = total + cost
        return total

    def force_mid_term_analysis(self, user_id: str | None = None) -> Cost:
        """Consolidate all pending pages, then analyse every segment with new pages into long-term memory."""
        user = self._ids(user_id)[0]
        self._ready()
        with measure() as tally, self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S) as renew:
            self.consolidator.consolidate(user, force=True, on_batch=renew)
            self._apply_visits(user)
            if self.llm is None:
                raise LLMNotConfiguredError("mid-term analysis needs an LLM: pass openai_api_key= or llm=")
            self.promoter.promote(user, force=True)
        self._account(user, tally.cost)
        return tally.cost

    # --- read path --------------------------------------------------------------------------
    def retrieve_memory(
        self,
        query: str,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
        top_k: int | None = None,
        update_heat: bool = True,
    ) -> RetrievedContext:
        """Recall the user's memory for ``query``: one ranked list of units across tiers.

        Args:
            query: what to recall for.
            top_k: how many pages beyond the short-term ones (default ``retrieval.top_pages``).
            update_heat: count this recall as a visit of the segments it drew on (the paper's
                N_visit). Pass False for repeated recalls within one turn (e.g. a tool loop).
        """
        user, assistant = self._ids(user_id, assistant_id)
        query = check_text(query, "query", self.config.max_text_chars)
        if top_k is not None and (
            not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 1000
        ):
            raise InvalidInputError("top_k must be an int from 1 to 1000")
        self._ready()
        with measure() as tally:
            vector = self.embedder.embed([query])[0]
            recall = self.retriever.recall(user, assistant, query, vector, top_k)
        if update_heat and recall.visited_segments:
            with self._locks_guard:
                self._visits.setdefault(user, Counter()).update(recall.visited_segments)
            if self._background:  # heat counters need not be written at once: batch them
                self._worker.notify(user, self.config.short_term.max_wait_s)
        self._account(user, tally.cost)
        return RetrievedContext(query, user, recall.units, recall.profile, tally.cost)

    def generate_response(
        self,
        query: str,
        relationship_with_user: str = "friend",
        style_hint: str = "",
        user_conversation_meta_data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> ResponseResult:
        """Answer ``query`` from recalled memory with one LLM call, then store the turn.

        Raises:
            LLMNotConfiguredError: no LLM is configured.
            LLMError: the LLM failed; nothing is stored.
        """
        if self.llm is None:
            raise LLMNotConfiguredError("get_response needs an LLM: pass openai_api_key= or llm=")
        user, assistant = self._ids(user_id, assistant_id)
        with measure() as tally:
            context = self.retrieve_memory(query, user_id=user, assistant_id=assistant)
            messages = _prompts.answer_messages(
                query, context, relationship=relationship_with_user, style_hint=style_hint
            )
            answer = self.llm.complete(messages).strip()
            if not answer:
                raise LLMOutputError("the LLM returned an empty answer", backend=self.llm.name)
            added = self.add_memory(
                query, answer, meta_data=user_conversation_meta_data, user_id=user, assistant_id=assistant
            )
        return ResponseResult(answer, context, added.page_id, tally.cost)

    def get_response(
        self,
        query: str,
        relationship_with_user: str = "friend",
        style_hint: str = "",
        user_conversation_meta_data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> str:
        """The reference's call: :meth:`generate_response` returning only the answer text."""
        return self.generate_response(
            query,
            relationship_with_user,
            style_hint,
            user_conversation_meta_data,
            user_id=user_id,
            assistant_id=assistant_id,
        ).text

    def recent_pages(self, limit: int | None = None, *, user_id: str | None = None) -> list[Page]:
        """The user's newest pages, oldest first: short-term memory and any not yet consolidated.

        Args:
            limit: at most this many of the newest (default: the short-term capacity plus
                whatever is still pending consolidation).
        """
        user = self._ids(user_id)[0]
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
            raise InvalidInputError("limit must be a positive int")
        self._ready()
        records = self.store.get("pages", where={"user_id": user, "tier": "short_term"})
        if limit is not None and len(records) < limit:
            records = self.store.get("pages", where={"user_id": user})  # reach into older tiers
        records.sort(key=lambda r: int(r.metadata["created_ns"]))
        return [page_from_record(r) for r in (records[-limit:] if limit else records)]

    def get_user_profile(self, user_id: str | None = None) -> UserProfile:
        """The user's profile traits and knowledge, with provenance."""
        user = self._ids(user_id)[0]
        self._ready()
        return _admin.user_profile(self.store, user)

    def get_user_profile_summary(self, user_id: str | None = None) -> str:
        """The profile as text (the reference's call)."""
        user = self._ids(user_id)[0]
        self._ready()
        return render_profile(load_profile(self.store, user))

    def get_assistant_knowledge_summary(
        self, user_id: str | None = None, assistant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Assistant knowledge as ``{"knowledge", "timestamp", "page_ids"}`` dicts (the reference's call)."""
        user, assistant = self._ids(user_id, assistant_id)
        self._ready()
        return _admin.assistant_knowledge(self.store, user, assistant)

    def get_memory_stats(self, user_id: str | None = None) -> MemoryStats:
        """Counts per tier, pending work and cumulative cost for one user."""
        user = self._ids(user_id)[0]
        self._ready()
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
        )

    # --- delete, export, import -------------------------------------------------------------
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
        self._ready()
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
        self._ready()
        with self._lock(user):
            return _admin.export_user(self.store, user)

    def import_memory(self, data: Mapping[str, Any], *, user_id: str | None = None) -> int:
        """Load an export (into ``user_id``, or the user it was exported from); returns pages imported.

        Pages keep their ids, so importing the same export twice stores nothing twice.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("pages", []), list):
            raise InvalidInputError("import_memory takes the dict returned by export_memory")
        user = self._ids(user_id if user_id is not None else data.get("user_id"))[0]
        self._ready()
        with self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S):
            count = _admin.import_user(self.store, self.embedder, self.config, user, data, self._clock())
            self._indexes.forget(user)
        self._register(user)
        self._schedule(user)
        return count

    # --- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background worker and write pending heat visits; pending pages stay on disk
        and are consolidated at the next start."""
        self._worker.stop()
        if self._opened:
            for user in list(self._visits):
                try:
                    with self._lock(user):
                        self._apply_visits(user)
                except MemoryOSError as exc:  # counters only: the pages themselves are safe
                    logger.warning("could not save heat visits of user %s at close: %s", user, exc)

    def __enter__(self) -> MemoryOS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- async twins: the same implementation, run in a worker thread -----------------------
    async def aadd_memory(self, *args: Any, **kwargs: Any) -> AddResult:
        return await asyncio.to_thread(self.add_memory, *args, **kwargs)

    async def aadd_memories(self, *args: Any, **kwargs: Any) -> list[AddResult]:
        return await asyncio.to_thread(self.add_memories, *args, **kwargs)

    async def aretrieve_memory(self, *args: Any, **kwargs: Any) -> RetrievedContext:
        return await asyncio.to_thread(self.retrieve_memory, *args, **kwargs)

    async def agenerate_response(self, *args: Any, **kwargs: Any) -> ResponseResult:
        return await asyncio.to_thread(self.generate_response, *args, **kwargs)

    async def aget_response(self, *args: Any, **kwargs: Any) -> str:
        return await asyncio.to_thread(self.get_response, *args, **kwargs)

    async def arecent_pages(self, *args: Any, **kwargs: Any) -> list[Page]:
        return await asyncio.to_thread(self.recent_pages, *args, **kwargs)

    async def aupdate_memory(self, *args: Any, **kwargs: Any) -> AddResult:
        return await asyncio.to_thread(self.update_memory, *args, **kwargs)

    async def alist_users(self) -> list[str]:
        return await asyncio.to_thread(self.list_users)

    async def aget_user_profile(self, *args: Any, **kwargs: Any) -> UserProfile:
        return await asyncio.to_thread(self.get_user_profile, *args, **kwargs)

    async def aget_memory_stats(self, *args: Any, **kwargs: Any) -> MemoryStats:
        return await asyncio.to_thread(self.get_memory_stats, *args, **kwargs)

    async def aflush(self, *args: Any, **kwargs: Any) -> Cost:
        return await asyncio.to_thread(self.flush, *args, **kwargs)

    async def aforce_mid_term_analysis(self, *args: Any, **kwargs: Any) -> Cost:
        return await asyncio.to_thread(self.force_mid_term_analysis, *args, **kwargs)

    async def adelete_memory(self, *args: Any, **kwargs: Any) -> int:
        return await asyncio.to_thread(self.delete_memory, *args, **kwargs)

    async def aexport_memory(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self.export_memory, *args, **kwargs)

    async def aimport_memory(self, *args: Any, **kwargs: Any) -> int:
        return await asyncio.to_thread(self.import_memory, *args, **kwargs)


Memoryos = MemoryOS
"""The reference implementation's class name."""
