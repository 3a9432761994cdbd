"""Async twins of MemoryOS's public calls: the same implementation, run in a worker thread.

The library never runs an event loop of its own (notebooks already have one), so each twin
hands the sync call to ``asyncio.to_thread``; backends with native async are not involved.
"""

from __future__ import annotations

import asyncio
from typing import Any

from memoryos_core._types import (
    AddResult,
    Cost,
    MemoryStats,
    Page,
    ResponseResult,
    RetrievedContext,
    UserProfile,
)


class AsyncTwins:
    """Mixed into MemoryOS; every method awaits its sync namesake (``aadd_memory`` -> ``add_memory``)."""

    # The sync methods are defined on MemoryOS and its other base.
    add_memory: Any
    add_memories: Any
    retrieve_memory: Any
    generate_response: Any
    get_response: Any
    recent_pages: Any
    update_memory: Any
    list_users: Any
    get_user_profile: Any
    get_memory_stats: Any
    flush: Any
    force_mid_term_analysis: Any
    delete_memory: Any
    export_memory: Any
    import_memory: Any

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
