"""``MemoryOSRetriever``: MemoryOS recall as a LangChain retriever."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from memoryos_core import MemoryOS, RetrievedContext
from memoryos_langchain._common import unit_metadata


class MemoryOSRetriever(BaseRetriever):
    """Recalls one user's memory across tiers as ranked Documents.

    Each Document is one recalled unit (a short-term or mid-term page, a knowledge item); its
    metadata holds ``tier``, ``score``, ``timestamp``, ``page_ids`` and ``source_ids`` (provenance:
    the pages and the caller's message ids it came from), plus the page fields the core reports.

    Args:
        memory: the MemoryOS instance.
        user_id: whose memory to search (default: the instance's default user).
        k: how many Documents to return (``invoke(query, k=...)`` overrides it per call).
        tiers: only units of these tiers (for example ``("mid_term", "user_knowledge")`` when the
            recent turns already reach the prompt through a chat history).

    Example:
        >>> retriever = MemoryOSRetriever(memory=memory, user_id="alice", k=5)
        >>> docs = retriever.invoke("Do I have pets?")
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    memory: MemoryOS
    user_id: str | None = None
    k: int = Field(default=4, ge=1, le=1000)
    tiers: Sequence[str] | None = None

    def _documents(self, context: RetrievedContext, k: int) -> list[Document]:
        units = [u for u in context.all_units if self.tiers is None or u.tier in self.tiers]
        return [
            Document(page_content=unit.text, metadata=unit_metadata(unit, context.user_id), id=unit.id)
            for unit in units[:k]
        ]

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        context = self.memory.retrieve_memory(query, user_id=self.user_id, top_k=k)
        return self._documents(context, k)

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        k = int(kwargs.get("k", self.k))
        context = await self.memory.aretrieve_memory(query, user_id=self.user_id, top_k=k)
        return self._documents(context, k)
