"""MemoryOS: the public class; its sync calls come from ``front.SyncMemoryOS``, its async twins are here.

Every twin runs its sync namesake in a worker thread (``asyncio.to_thread``): one implementation,
and no event loop of the library's own (notebooks already run one).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

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
from memoryos_core.engine.front import SyncMemoryOS


class MemoryOS(SyncMemoryOS):
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

    def __enter__(self) -> MemoryOS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> MemoryOS:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- async twins: each awaits its sync namesake in a worker thread -------------------------
    async def aadd_memory(
        self,
        user_input: str,
        agent_response: str,
        timestamp: str | datetime | None = None,
        meta_data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> AddResult:
        """:meth:`add_memory` in a worker thread."""
        return await asyncio.to_thread(
            self.add_memory,
            user_input,
            agent_response,
            timestamp,
            meta_data,
            user_id=user_id,
            assistant_id=assistant_id,
        )

    async def aadd_memories(
        self,
        pages: Iterable[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> list[AddResult]:
        """:meth:`add_memories` in a worker thread."""
        return await asyncio.to_thread(self.add_memories, pages, user_id=user_id, assistant_id=assistant_id)

    async def aretrieve_memory(
        self,
        query: str,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
        top_k: int | None = None,
        update_heat: bool = True,
    ) -> RetrievedContext:
        """:meth:`retrieve_memory` in a worker thread."""
        return await asyncio.to_thread(
            self.retrieve_memory,
            query,
            user_id=user_id,
            assistant_id=assistant_id,
            top_k=top_k,
            update_heat=update_heat,
        )

    async def agenerate_response(
        self,
        query: str,
        relationship_with_user: str = "friend",
        style_hint: str = "",
        user_conversation_meta_data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> ResponseResult:
        """:meth:`generate_response` in a worker thread."""
        return await asyncio.to_thread(
            self.generate_response,
            query,
            relationship_with_user,
            style_hint,
            user_conversation_meta_data,
            user_id=user_id,
            assistant_id=assistant_id,
        )

    async def aget_response(
        self,
        query: str,
        relationship_with_user: str = "friend",
        style_hint: str = "",
        user_conversation_meta_data: Mapping[str, Any] | None = None,
        *,
        user_id: str | None = None,
        assistant_id: str | None = None,
    ) -> str:
        """:meth:`get_response` in a worker thread."""
        return await asyncio.to_thread(
            self.get_response,
            query,
            relationship_with_user,
            style_hint,
            user_conversation_meta_data,
            user_id=user_id,
            assistant_id=assistant_id,
        )

    async def aupdate_memory(
        self,
        page_id: str,
        *,
        user_input: str | None = None,
        agent_response: str | None = None,
        meta_data: Mapping[str, Any] | None = None,
        user_id: str | None = None,
    ) -> AddResult:
        """:meth:`update_memory` in a worker thread."""
        return await asyncio.to_thread(
            self.update_memory,
            page_id,
            user_input=user_input,
            agent_response=agent_response,
            meta_data=meta_data,
            user_id=user_id,
        )

    async def arecent_pages(self, limit: int | None = None, *, user_id: str | None = None) -> list[Page]:
        """:meth:`recent_pages` in a worker thread."""
        return await asyncio.to_thread(self.recent_pages, limit, user_id=user_id)

    async def aget_pages(self, page_ids: Sequence[str], *, user_id: str | None = None) -> list[Page]:
        """:meth:`get_pages` in a worker thread."""
        return await asyncio.to_thread(self.get_pages, page_ids, user_id=user_id)

    async def afind_pages(
        self,
        meta: Mapping[str, str | int | float | bool],
        *,
        user_id: str | None = None,
        limit: int | None = None,
    ) -> list[Page]:
        """:meth:`find_pages` in a worker thread."""
        return await asyncio.to_thread(self.find_pages, meta, user_id=user_id, limit=limit)

    async def alist_users(self) -> list[str]:
        """:meth:`list_users` in a worker thread."""
        return await asyncio.to_thread(self.list_users)

    async def aget_user_profile(self, user_id: str | None = None) -> UserProfile:
        """:meth:`get_user_profile` in a worker thread."""
        return await asyncio.to_thread(self.get_user_profile, user_id)

    async def aget_user_profile_summary(self, user_id: str | None = None) -> str:
        """:meth:`get_user_profile_summary` in a worker thread."""
        return await asyncio.to_thread(self.get_user_profile_summary, user_id)

    async def aget_assistant_knowledge_summary(
        self, user_id: str | None = None, assistant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """:meth:`get_assistant_knowledge_summary` in a worker thread."""
        return await asyncio.to_thread(self.get_assistant_knowledge_summary, user_id, assistant_id)

    async def aget_memory_stats(self, user_id: str | None = None) -> MemoryStats:
        """:meth:`get_memory_stats` in a worker thread."""
        return await asyncio.to_thread(self.get_memory_stats, user_id)

    async def aget_segments(self, *, user_id: str | None = None) -> list[SegmentInfo]:
        """:meth:`get_segments` in a worker thread."""
        return await asyncio.to_thread(self.get_segments, user_id=user_id)

    async def adelete_memory(
        self, page_id: str | None = None, *, user_id: str | None = None, everything: bool = False
    ) -> int:
        """:meth:`delete_memory` in a worker thread."""
        return await asyncio.to_thread(self.delete_memory, page_id, user_id=user_id, everything=everything)

    async def adelete_knowledge(self, knowledge_id: str, *, user_id: str | None = None) -> None:
        """:meth:`delete_knowledge` in a worker thread."""
        await asyncio.to_thread(self.delete_knowledge, knowledge_id, user_id=user_id)

    async def adelete_trait(self, name: str, *, user_id: str | None = None) -> None:
        """:meth:`delete_trait` in a worker thread."""
        await asyncio.to_thread(self.delete_trait, name, user_id=user_id)

    async def aexport_memory(self, user_id: str | None = None) -> dict[str, Any]:
        """:meth:`export_memory` in a worker thread."""
        return await asyncio.to_thread(self.export_memory, user_id)

    async def aimport_memory(self, data: Mapping[str, Any], *, user_id: str | None = None) -> int:
        """:meth:`import_memory` in a worker thread."""
        return await asyncio.to_thread(self.import_memory, data, user_id=user_id)

    async def aflush(self, user_id: str | None = None, *, timeout_s: float | None = None) -> Cost:
        """:meth:`flush` in a worker thread."""
        return await asyncio.to_thread(self.flush, user_id, timeout_s=timeout_s)

    async def aforce_mid_term_analysis(self, user_id: str | None = None) -> Cost:
        """:meth:`force_mid_term_analysis` in a worker thread."""
        return await asyncio.to_thread(self.force_mid_term_analysis, user_id)

    async def aclose(self) -> None:
        """:meth:`close` in a worker thread."""
        await asyncio.to_thread(self.close)


Memoryos = MemoryOS
"""The reference implementation's class name."""
