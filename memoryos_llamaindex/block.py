"""``MemoryOSMemoryBlock``: MemoryOS as a memory block of LlamaIndex's stock ``Memory``.

``Memory`` hands a block only the messages that overflow its FIFO; they are stored as pages, and
MemoryOS consolidates and promotes them on its own. Reading renders what MemoryOS recalls for the
latest user message.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.memory import BaseMemoryBlock
from llama_index.core.utils import get_tokenizer

from memoryos_core import MemoryOS, RetrievedContext
from memoryos_llamaindex._shared import bind, fold_turns, leftover_pages, query_of, resolve

_KEEP_RENDERED = 32  # recent renderings kept so atruncate can drop the lowest-ranked units


class MemoryOSMemoryBlock(BaseMemoryBlock[str]):
    """Recalled MemoryOS memory for ``llama_index.core.memory.Memory``.

    Args:
        memory: The MemoryOS that holds the data.
        user_id: Whose memory (default: the MemoryOS's default user).
        assistant_id: Which assistant (default: the MemoryOS's default assistant).
        top_k: Older pages and knowledge to recall beyond the short-term pages.
        priority: Truncation priority (0 never truncates; default 1).

    Example:
        >>> from llama_index.core.memory import Memory
        >>> block = MemoryOSMemoryBlock(memory=memory, user_id="alice")
        >>> chat_memory = Memory.from_defaults(session_id="s1", memory_blocks=[block])
    """

    name: str = Field(default="memoryos", description="The name of the memory block.")
    description: str | None = Field(default="What MemoryOS recalls about the user.")
    priority: int = Field(default=1, description="Truncation priority (0 = never truncate).")
    user_id: str = Field(description="The MemoryOS user whose memory this is.")
    assistant_id: str | None = Field(default=None, description="The assistant (default: MemoryOS's).")
    top_k: int | None = Field(default=None, description="Past pages to recall (default: MemoryOS's).")
    memory_key: str = Field(description="Names the MemoryOS instance in this process.")
    _memory: MemoryOS | None = PrivateAttr(default=None)
    _rendered: OrderedDict[str, RetrievedContext] = PrivateAttr(default_factory=OrderedDict)

    def __init__(self, *, memory: MemoryOS | None = None, **data: Any) -> None:
        held = bind(memory, data, "MemoryOSMemoryBlock")
        super().__init__(**data)
        self._memory = held

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> MemoryOSMemoryBlock:
        # Nothing but ids and config to copy; the engine (locks, a store client) is shared.
        return self.model_copy()

    @property
    def memory(self) -> MemoryOS:
        """The MemoryOS instance (looked up by ``memory_key`` after a copy)."""
        self._memory = resolve(self.memory_key, self._memory)
        return self._memory

    async def _aget(self, messages: list[ChatMessage] | None = None, **block_kwargs: Any) -> str:
        """Render what MemoryOS recalls for the latest user message ("" when nothing)."""
        context = await self.memory.aretrieve_memory(
            query_of(messages or []), user_id=self.user_id, assistant_id=self.assistant_id, top_k=self.top_k
        )
        if not context.all_units and not context.profile:
            return ""
        rendered = context.render()
        self._rendered[rendered] = context
        while len(self._rendered) > _KEEP_RENDERED:
            self._rendered.popitem(last=False)
        return rendered

    async def _aput(self, messages: list[ChatMessage]) -> None:
        """Store flushed messages: one page per turn; unanswered user messages as user-only pages."""
        sessions = [m.additional_kwargs.get("session_id") for m in messages]
        meta = {"session_id": str(next((s for s in sessions if s), "")), "source": "llama_index"}
        buffer, pages = fold_turns([], messages, meta)
        pages += leftover_pages(buffer, meta)
        if pages:
            await self.memory.aadd_memories(pages, user_id=self.user_id, assistant_id=self.assistant_id)

    async def atruncate(self, content: str, tokens_to_truncate: int) -> str | None:
        """Shorten by dropping the lowest-ranked recalled units (the profile stays); None if nothing fits."""
        tokenizer = get_tokenizer()
        target = len(tokenizer(content)) - tokens_to_truncate
        context = self._rendered.get(content)
        if context is not None:
            for count in range(len(context.all_units) - 1, -1, -1):
                shorter = context.render(max_units=count)
                if len(tokenizer(shorter)) <= target:
                    return shorter if count or context.profile else None
            return None
        # Text this block did not render (e.g. restored): keep the head that fits.
        keep = int(len(content) * max(target, 0) / max(len(tokenizer(content)), 1))
        return content[:keep].rstrip() + " ..." if keep > 0 else None
