"""``MemoryOSRetriever``: MemoryOS recall as a LlamaIndex retriever, one node per recalled unit."""

from __future__ import annotations

from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from memoryos_core import MemoryOS, RetrievedContext

_HIDDEN_FROM_LLM = ["page_ids", "source_ids", "user_id", "unit_id"]


class MemoryOSRetriever(BaseRetriever):
    """Retrieve a user's memory (all tiers, ranked) as ``NodeWithScore`` with provenance metadata.

    Each node's metadata holds ``tier``, ``timestamp``, ``page_ids``, ``source_ids``, ``user_id`` and
    ``unit_id``; the LLM sees only ``tier`` and ``timestamp`` next to the text. The profile, when
    there is one, comes first as a node of tier ``profile`` with score 1.0.

    Args:
        memory: The MemoryOS to recall from.
        user_id: Whose memory (default: the MemoryOS's default user).
        k: At most this many units, best first (the profile is extra); None keeps all recalled.
        assistant_id: Which assistant's knowledge (default: the MemoryOS's default assistant).
        include_profile: Add the profile node.

    Example:
        >>> from llama_index.core.chat_engine import ContextChatEngine
        >>> retriever = MemoryOSRetriever(memory=memory, user_id="alice", k=5)
        >>> nodes = retriever.retrieve("Do I have pets?")
        >>> engine = ContextChatEngine.from_defaults(retriever=retriever, llm=llm)
    """

    def __init__(
        self,
        memory: MemoryOS,
        user_id: str | None = None,
        k: int | None = None,
        *,
        assistant_id: str | None = None,
        include_profile: bool = True,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        super().__init__(callback_manager=callback_manager, verbose=verbose)
        self.memory = memory
        self.user_id = user_id or memory.user_id
        self.assistant_id = assistant_id
        self.k = k
        self.include_profile = include_profile

    def _scope(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "assistant_id": self.assistant_id, "top_k": self.k}

    def _nodes(self, context: RetrievedContext) -> list[NodeWithScore]:
        units = context.all_units[: self.k]
        nodes = []
        if self.include_profile and context.profile:
            nodes.append(NodeWithScore(node=self._node(context, "profile", context.profile), score=1.0))
        for unit in units:
            node = self._node(
                context, unit.tier, unit.text, timestamp=unit.timestamp, page_ids=list(unit.page_ids),
                source_ids=list(unit.source_ids), unit_id=unit.id,
            )  # fmt: skip
            nodes.append(NodeWithScore(node=node, score=unit.score))
        return nodes

    @staticmethod
    def _node(context: RetrievedContext, tier: str, text: str, **metadata: Any) -> TextNode:
        return TextNode(
            text=text,
            metadata={"tier": tier, "user_id": context.user_id, **metadata},
            excluded_llm_metadata_keys=list(_HIDDEN_FROM_LLM),
            excluded_embed_metadata_keys=["tier", "timestamp", *_HIDDEN_FROM_LLM],
        )

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Recall for ``query_bundle.query_str``."""
        context = self.memory.retrieve_memory(query_bundle.query_str, **self._scope())
        return self._nodes(context)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """Async :meth:`_retrieve`."""
        context = await self.memory.aretrieve_memory(query_bundle.query_str, **self._scope())
        return self._nodes(context)
