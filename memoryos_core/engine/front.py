"""MemoryOS's sync calls: ids resolved and checked here, the work done by the collaborators.

The collaborators, each owning its state:
``Runtime`` (backends, clock, locks, leases, the opened store), ``Repository`` (store reads and
writes shared by the others), ``WritePath`` (adding pages), ``Retriever`` (recall),
``Scheduler`` (background consolidation, flush, heat visits) and ``DataManager`` (update,
delete, export, import, views). :class:`memoryos_core.engine.memory.MemoryOS` adds the async twins.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import InvalidInputError, LLMNotConfiguredError, LLMOutputError
from memoryos_core._types import (
    AddResult,
    Cost,
    MemoryStats,
    Page,
    ResponseResult,
    RetrievedContext,
    SegmentInfo,
    UserProfile,
)
from memoryos_core._validation import check_id, check_text
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine import lookup as _lookup
from memoryos_core.engine.consolidation import Consolidator
from memoryos_core.engine.data import DataManager
from memoryos_core.engine.late import LateIndex
from memoryos_core.engine.lexical_shared import PageIndexes
from memoryos_core.engine.promotion import Promoter
from memoryos_core.engine.registry import make_embedder, make_llm, make_store
from memoryos_core.engine.repository import Repository
from memoryos_core.engine.retrieval import Retriever
from memoryos_core.engine.runtime import Runtime, close_at_exit
from memoryos_core.engine.scheduler import Scheduler
from memoryos_core.engine.writer import PreparedPage, WritePath
from memoryos_core.llm import prompts as _prompts
from memoryos_core.llm.base import LLM
from memoryos_core.llm.tokens import default_counter
from memoryos_core.llm.usage import CountingLLM, carrying, measure
from memoryos_core.storage.base import MemoryStore


class SyncMemoryOS:
    """The sync half of :class:`~memoryos_core.MemoryOS` (whose docstring describes the arguments)."""

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
        self._late = LateIndex(self.embedder, self.config.retrieval, lambda: self.store.local_path)
        self._runtime = Runtime(
            self.store,
            self.embedder,
            self.llm,
            self.config,
            clock=clock,
            on_event=on_event,
            is_write_behind=background,
            on_open=lambda: self._scheduler.schedule_pending_work(),
            late=self._late,
            check=lambda user, records: self._data.erase_if_deleted(user, records),
        )
        runtime = self._runtime
        self._repository = Repository(self.store)
        self._indexes = PageIndexes(folder=lambda: self.store.local_path)  # the shared lexical index
        backends = (self.embedder, self.llm, self.config, runtime.now_s, runtime.emit)
        self._scheduler = Scheduler(
            runtime,
            self._repository,
            Consolidator(self._repository, *backends),
            Promoter(self._repository, *backends),
            background=background,
        )
        self._retriever = Retriever(
            self._repository, self.config, self._indexes, runtime.embedded_pending_of, self._late
        )
        self._writer = WritePath(runtime, self._repository, self._indexes, self._scheduler)
        self._data = DataManager(runtime, self._repository, self._indexes, self._scheduler)
        close_at_exit(self)  # if the caller does not close it

    def _user(self, user_id: str | None) -> str:
        return self.user_id if user_id is None else check_id(user_id, "user_id")

    def _assistant(self, assistant_id: str | None) -> str:
        return self.assistant_id if assistant_id is None else check_id(assistant_id, "assistant_id")

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
        page = {
            "user_input": user_input,
            "agent_response": agent_response,
            "timestamp": timestamp,
            "meta_data": meta_data,
        }
        return self.add_memories([page], user_id=user_id, assistant_id=assistant_id)[0]

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
        user, assistant = self._user(user_id), self._assistant(assistant_id)
        return self._writer.add_memories(pages, user, assistant)

    def _prepare_pages(
        self, pages: Sequence[Mapping[str, Any]], page_ids: Sequence[str], user: str, label: str
    ) -> list[PreparedPage]:
        """For ``app.ingest``: :meth:`WritePath.prepare_pages` for this instance's assistant."""
        return self._writer.prepare_pages(pages, page_ids, user, self.assistant_id, label)

    def _store_pages_once(
        self,
        user: str,
        prepared: Sequence[PreparedPage],
        chunk_pages: int = 64,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> int:
        """For ``app.ingest``: :meth:`WritePath.store_pages_once`."""
        return self._writer.store_pages_once(user, prepared, chunk_pages, on_chunk)

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
        user, assistant = self._user(user_id), self._assistant(assistant_id)
        query = check_text(query, "query", self.config.max_text_chars)
        if top_k is not None and (
            not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 1000
        ):
            raise InvalidInputError("top_k must be an int from 1 to 1000")
        self._runtime.ready(warm=True)
        with measure() as tally:
            # Embedded in a thread of the recall while this one scores the pages' words.
            probe = self._late.probe(query)  # the query's vector, and its wordpieces for the late rerank
            recall = self._retriever.recall(user, assistant, query, carrying(probe.vector), top_k, probe)
        if update_heat and recall.visited_segments:
            self._scheduler.record_visits(user, recall.visited_segments)
        self._runtime.account(user, tally.cost)
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
        user, assistant = self._user(user_id), self._assistant(assistant_id)
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

    # --- stored memory ----------------------------------------------------------------------
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
            StorageError: the store failed, or the old text's wordpiece vectors (the late rerank's)
                could not be erased (nothing is changed then).
        """
        return self._data.update_memory(
            self._user(user_id),
            page_id,
            user_input=user_input,
            agent_response=agent_response,
            meta_data=meta_data,
        )

    def recent_pages(self, limit: int | None = None, *, user_id: str | None = None) -> list[Page]:
        """The user's newest pages, oldest first: short-term memory and any not yet consolidated.

        Args:
            limit: at most this many of the newest (default: the short-term capacity plus
                whatever is still pending consolidation).
        """
        return self._data.recent_pages(self._user(user_id), limit)

    def get_pages(self, page_ids: Sequence[str], *, user_id: str | None = None) -> list[Page]:
        """The user's pages with these ids, in the order asked (each once), from every tier and
        including new pages not yet written to the store; ids the user does not hold are left out.

        Raises:
            InvalidInputError: ``page_ids`` is not a list of valid ids (a lone str included).
        """
        user = self._user(user_id)
        ids = _lookup.check_page_ids(page_ids)
        if not ids:
            return []
        self._runtime.ready()
        return _lookup.get_pages(self.store, user, ids, self._runtime.pending_of(user))

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
        user = self._user(user_id)
        wanted = _lookup.check_meta_query(meta)
        most = _lookup.check_limit(limit)
        self._runtime.ready()
        return _lookup.find_pages(self.store, user, wanted, self._runtime.pending_of(user), most)

    def list_users(self) -> list[str]:
        """Every user with memory in this store, sorted."""
        return self._data.list_users()

    def get_user_profile(self, user_id: str | None = None) -> UserProfile:
        """The user's profile traits and knowledge, with provenance."""
        return self._data.user_profile(self._user(user_id))

    def get_user_profile_summary(self, user_id: str | None = None) -> str:
        """The profile as text (the reference's call)."""
        return self._data.profile_summary(self._user(user_id))

    def get_assistant_knowledge_summary(
        self, user_id: str | None = None, assistant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Assistant knowledge as ``{"knowledge", "timestamp", "page_ids"}`` dicts (the reference's call)."""
        return self._data.assistant_knowledge(self._user(user_id), self._assistant(assistant_id))

    def get_memory_stats(self, user_id: str | None = None) -> MemoryStats:
        """Counts per tier, pending work and cumulative cost for one user."""
        return self._data.stats(self._user(user_id))

    def get_segments(self, *, user_id: str | None = None) -> list[SegmentInfo]:
        """The user's mid-term topic segments with their heat now, hottest first (see ``SegmentInfo``)."""
        return self._data.segments(self._user(user_id))

    def delete_memory(
        self, page_id: str | None = None, *, user_id: str | None = None, everything: bool = False
    ) -> int:
        """Delete one page (with what was derived from it) or, with ``everything=True``, all of a user.

        Returns the number of pages deleted.

        Raises:
            NotFoundError: no such page for this user.
            InvalidInputError: neither ``page_id`` nor ``everything=True`` was given.
            StorageError: the store failed, or the pages' wordpiece vectors (the late rerank's)
                could not be erased (the pages are kept then).
        """
        return self._data.delete_memory(self._user(user_id), page_id, everything=everything)

    def delete_knowledge(self, knowledge_id: str, *, user_id: str | None = None) -> None:
        """Delete one user or assistant knowledge item (a ``KnowledgeEntry.id``); its pages stay.

        Raises:
            NotFoundError: the user has no such item.
        """
        self._data.delete_knowledge(self._user(user_id), knowledge_id)

    def delete_trait(self, name: str, *, user_id: str | None = None) -> None:
        """Delete one profile trait, named as in ``ProfileTrait.name`` (any case); its pages stay.

        Raises:
            NotFoundError: the user's profile has no such trait.
        """
        self._data.delete_trait(self._user(user_id), name)

    def export_memory(self, user_id: str | None = None) -> dict[str, Any]:
        """Everything of one user as JSON-ready data: pages (each exactly once, with its tier),
        segments, profile, user_knowledge, assistant_knowledge, and the format's ``version``."""
        return self._data.export_memory(self._user(user_id))

    def import_memory(self, data: Mapping[str, Any], *, user_id: str | None = None) -> int:
        """Load an export into ``user_id``, or else into this instance's user; returns pages imported.

        Without ``user_id``, an export of another user (its ``"user_id"``) is refused: a file must not
        be able to choose whose memory it writes. Pass ``user_id=`` to import it as that user. Every
        value is validated before anything is written. Pages keep their ids, so importing the same
        export twice stores nothing twice.

        Raises:
            InvalidInputError: another user's export without ``user_id=``, an export ``version``
                this MemoryOS does not read, or any malformed value (nothing is written).
        """
        return self._data.import_memory(data, user_id, default_user=self.user_id)

    # --- consolidation ----------------------------------------------------------------------
    def flush(self, user_id: str | None = None, *, timeout_s: float | None = None) -> Cost:
        """Consolidate everything pending now (partial batches too) and wait for it.

        Args:
            user_id: only this user; by default every user this instance has written to
                or found pending work for.
            timeout_s: how long to wait for the background worker first.

        Raises:
            LLMError: the LLM failed after its retries; the work stays pending.
        """
        user = None if user_id is None else check_id(user_id, "user_id")
        return self._scheduler.flush(user, timeout_s=timeout_s)

    def force_mid_term_analysis(self, user_id: str | None = None) -> Cost:
        """Consolidate all pending pages, then analyse every segment with new pages into long-term memory.

        Raises:
            LLMNotConfiguredError: No LLM (nothing is consolidated then).
            LeaseBusyError: Another process held the user's consolidation past the lease's time (a
                ``MemoryOSError``, from ``memoryos_core.engine.lease``).
        """
        return self._scheduler.force_analysis(self._user(user_id))

    # --- lifecycle --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the background worker, write journaled pages and pending heat visits; pages
        waiting for consolidation stay in the store and are consolidated at the next start."""
        self._runtime.stop_adopting()
        self._scheduler.stop()
        self._retriever.close()
        self._runtime.close_journal()
        if self._runtime.is_open:
            self._scheduler.save_visits()
        self._indexes.close()  # empties the shared lexical index's log
        self._late.close()
