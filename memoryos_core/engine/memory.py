"""MemoryOS: the shell that orders I/O (store, embed, LLM) around the pure policies."""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import (
    InvalidInputError,
    LLMNotConfiguredError,
    LLMOutputError,
    MemoryOSError,
)
from memoryos_core._types import (
    AddResult,
    Cost,
    Page,
    ResponseResult,
    RetrievedContext,
)
from memoryos_core._validation import check_id, check_meta, check_text, parse_timestamp
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine import admin as _admin
from memoryos_core.engine import lookup as _lookup
from memoryos_core.engine.async_twins import AsyncTwins
from memoryos_core.engine.background import BackgroundMixin
from memoryos_core.engine.consolidation import Consolidator, UserState
from memoryos_core.engine.lease import Leases
from memoryos_core.engine.lexical import PageIndexes
from memoryos_core.engine.manage import ManageMixin
from memoryos_core.engine.pending import PendingPages, journal_folder, replay_journals
from memoryos_core.engine.promotion import Promoter
from memoryos_core.engine.records import page_record
from memoryos_core.engine.registry import make_embedder, make_llm, make_store
from memoryos_core.engine.retrieval import Retriever
from memoryos_core.engine.worker import Worker
from memoryos_core.llm import prompts as _prompts
from memoryos_core.llm.base import LLM
from memoryos_core.llm.tokens import default_counter
from memoryos_core.llm.usage import CountingLLM, measure
from memoryos_core.storage.base import MemoryStore, Record

logger = logging.getLogger("memoryos")


class MemoryOS(ManageMixin, BackgroundMixin, AsyncTwins):
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
        >>> page = memo.add_memory("I love hiking.", "Nice! Where do you go?")
        >>> print(memo.retrieve_memory("What are my hobbies?").short_term[0].text)
        [...] User: I love hiking.
        Assistant: Nice! Where do you go?
        >>> memo.close()
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
        self._pending: PendingPages | None = None
        self.retriever = Retriever(self.store, self.config, self._indexes, self._pending_of)
        self._leases = Leases(self.store)
        self._worker = Worker(self._background_run, recheck_s=max(0.5, self.config.short_term.max_wait_s))
        _LIVE.add(self)  # closed at interpreter exit if the caller did not (see _close_at_exit)

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
            folder = journal_folder(self.store)
            if self._background and self.config.write_behind_s > 0 and folder is not None:
                pending = PendingPages(
                    self.store, folder, self.config.write_behind_s, is_fsync=self.config.durability == "fsync"
                )
                pending.start()
                self._pending = pending
            elif folder is not None:  # pages journaled by a process that died, with write-behind on
                replay_journals(self.store, folder)
            self._opened = True
        for user in _admin.users_with_pending_work(self.store, self.config.short_term.capacity):
            self._schedule(user)

    def _settled(self) -> None:
        """Open the store and write any pages still waiting in the journal (before reading pages)."""
        self._ready()
        if self._pending is not None:
            self._pending.flush()

    def _pending_of(self, user_id: str) -> list[Record]:
        return self._pending.of(user_id) if self._pending is not None else []

    def _lock(self, user_id: str) -> threading.RLock:
        with self._locks_guard:
            return self._user_locks.setdefault(user_id, threading.RLock())

    def _ids(self, user_id: str | None, assistant_id: str | None = None) -> tuple[str, str]:
        user = self.user_id if user_id is None else check_id(user_id, "user_id")
        assistant = self.assistant_id if assistant_id is None else check_id(assistant_id, "assistant_id")
        return user, assistant

    def _register(self, user_id: str) -> None:
        """Make sure the user has a state record, so ``list_users`` finds them (once per process)."""
        if user_id in self._registered:
            return
        if not self.store.get("state", ids=[f"user:{user_id}"]):
            self.store.upsert("state", [UserState(self.store, user_id).record()])
        self._registered.add(user_id)

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
            if self._pending is not None:  # journaled now, written to Chroma in a batch shortly
                self._pending.add(user, records)
            else:
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
        """Recall the user's memory for ``query``: the short-term pages, and one ranked list across tiers.

        Args:
            query: what to recall for.
            top_k: most units in the ranked list (older pages and knowledge; default
                ``retrieval.top_pages``); the short-term pages come apart, in ``short_term``.
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
        return RetrievedContext(query, user, recall.units, recall.profile, tally.cost, recall.short_term)

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

    # --- pages by id and by meta_data ------------------------------------------------------------
    def get_pages(self, page_ids: Sequence[str], *, user_id: str | None = None) -> list[Page]:
        """The user's pages with these ids, in the order asked (each once), from every tier and
        including new pages not yet written to the store; ids the user does not hold are left out.

        Raises:
            InvalidInputError: ``page_ids`` is not a list of valid ids (a lone str included).
        """
        user = self._ids(user_id)[0]
        ids = _lookup.check_page_ids(page_ids)
        if not ids:
            return []
        self._ready()
        return _lookup.get_pages(self.store, user, ids, self._pending_of(user))

    def find_pages(
        self,
        meta: Mapping[str, str | int | float | bool],
        *,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[Page]:
        """The user's pages whose ``meta_data`` holds every given pair (top-level keys; ``True`` is
        not ``1``), oldest first, from every tier and including pages not yet written to the store.

        Args:
            meta: the pairs to match; ``{}`` matches every page.
            limit: keep only the newest ``limit`` matches.

        Raises:
            InvalidInputError: ``meta`` is not a mapping of str to str, int, finite float or bool
                values, or ``limit`` is not a positive int.
        """
        user = self._ids(user_id)[0]
        wanted = _lookup.check_meta_query(meta)
        most = _lookup.check_limit(limit)
        self._ready()
        return _lookup.find_pages(self.store, user, wanted, self._pending_of(user), most)

    async def aget_pages(self, page_ids: Sequence[str], *, user_id: str | None = None) -> list[Page]:
        """Async twin of :meth:`get_pages` (in a worker thread)."""
        return await asyncio.to_thread(self.get_pages, page_ids, user_id=user_id)

    async def afind_pages(
        self,
        meta: Mapping[str, str | int | float | bool],
        *,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[Page]:
        """Async twin of :meth:`find_pages` (in a worker thread)."""
        return await asyncio.to_thread(self.find_pages, meta, user_id=user_id, limit=limit)

    # --- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background worker, write journaled pages and pending heat visits; pages
        waiting for consolidation stay in the store and are consolidated at the next start."""
        self._worker.stop()
        if self._pending is not None:
            self._pending.close()
        if self._opened:
            for user in list(self._visits):
                try:
                    with self._lock(user), self._leases.hold(user, wait_s=5.0):
                        self._apply_visits(user)
                except MemoryOSError as exc:  # counters only (a busy lease included): pages are safe
                    logger.warning("could not save heat visits of user %s at close: %s", user, exc)

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread."""
        await asyncio.to_thread(self.close)

    def __enter__(self) -> MemoryOS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MemoryOS:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_LIVE: weakref.WeakSet[MemoryOS] = weakref.WeakSet()


def _close_at_exit() -> None:
    """Close every instance still open, so no background thread is inside Chroma (or writing a
    journal) when the interpreter ends its daemon threads; ``storage.chroma.close_at_exit``
    (registered earlier, so it runs after this) then closes the clients."""
    for memory in list(_LIVE):
        try:
            memory.close()
        except Exception:  # one broken instance must not keep the others open
            logger.exception("closing a MemoryOS instance at exit failed")


atexit.register(_close_at_exit)


Memoryos = MemoryOS
"""The reference implementation's class name."""
