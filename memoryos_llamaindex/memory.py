"""``MemoryOSMemory``: a LlamaIndex ``BaseMemory`` whose data lives in MemoryOS.

The object holds ids, configuration and the turn in progress (the user's message until its answer
arrives), all of it plain data, so LlamaIndex can copy or serialise it (a reused ``Context`` does)
and the copy still reads and writes the same MemoryOS, found again through its ``memory_key``.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.bridge.pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from llama_index.core.memory import BaseMemory, InsertMethod

from memoryos_core import MemoryOS, RetrievedContext
from memoryos_llamaindex._shared import Page, bind, compose, fold_turns, page_messages, query_of, resolve


class MemoryOSMemory(BaseMemory):
    """Chat memory for LlamaIndex agents and chat engines, backed by MemoryOS.

    ``get`` returns a system message with the recalled memory (profile, knowledge, relevant past
    pages) followed by the user's recent turns (short-term pages) and the turn in progress.
    ``put`` stores each finished turn (the user's message(s), joined, and the final answer) as one
    page; tool calls, tool results and system messages are not stored (the tools used are listed in
    the page's ``meta_data``), and a ReAct scratchpad is stored as its answer.
    ``reset`` forgets only the turn in progress: stored memory is deleted with
    ``MemoryOS.delete_memory``.

    Example:
        >>> import asyncio
        >>> from llama_index.core.agent.workflow import FunctionAgent
        >>> chat_memory = MemoryOSMemory.from_defaults(memory=memory, user_id="alice")
        >>> async def main():  # llm: any LlamaIndex LLM; an offline mock here, echoing the user
        ...     return await FunctionAgent(llm=llm, tools=[]).run("Hi, I'm Alice", memory=chat_memory)
        >>> print(asyncio.run(main()))
        Hi, I'm Alice
    """

    model_config = ConfigDict(use_enum_values=True)  # plain JSON for Context serialisation

    user_id: str = Field(description="The MemoryOS user whose memory this is.")
    assistant_id: str | None = Field(default=None, description="The assistant (default: MemoryOS's).")
    session_id: str = Field(default_factory=lambda: f"ses_{uuid.uuid4().hex}", description="Stored in pages.")
    top_k: int | None = Field(default=None, description="Past pages to recall (default: MemoryOS's).")
    memory_key: str = Field(description="Names the MemoryOS instance in this process.")
    insert_method: InsertMethod = Field(default=InsertMethod.SYSTEM, description="Where recall goes.")
    pending: list[ChatMessage] = Field(default_factory=list, description="The turn in progress.")
    _memory: MemoryOS | None = PrivateAttr(default=None)

    def __init__(self, *, memory: MemoryOS | None = None, **data: Any) -> None:
        held = bind(memory, data, "MemoryOSMemory")
        super().__init__(**data)
        self._memory = held

    @classmethod
    def class_name(cls) -> str:
        return "MemoryOSMemory"

    @classmethod
    def from_defaults(
        cls,
        memory: MemoryOS | None = None,
        user_id: str | None = None,
        *,
        assistant_id: str | None = None,
        session_id: str | None = None,
        top_k: int | None = None,
        insert_method: InsertMethod = InsertMethod.SYSTEM,
        memory_key: str | None = None,
        chat_history: list[ChatMessage] | None = None,
        **kwargs: Any,
    ) -> MemoryOSMemory:
        """Create the memory for one user of ``memory``.

        Args:
            memory: The MemoryOS that holds the data.
            user_id: Whose memory (default: the MemoryOS's default user).
            assistant_id: Which assistant answers (default: the MemoryOS's default assistant).
            session_id: Recorded in every stored page's ``meta_data`` (default: a new id).
            top_k: Older pages and knowledge to recall beyond the short-term pages.
            insert_method: ``SYSTEM`` puts recalled memory in a leading system message; ``USER``
                in front of the open turn's user message (ReActAgent drops a leading system
                message from memory unless the agent has a ``system_prompt``).
            memory_key: A stable name for ``memory``, so a ``Context`` saved by another process
                can be restored here (default: a name unique to this instance).
            chat_history: Stored like ``set(chat_history)``.
            **kwargs: Accepted and ignored (``token_limit`` and the like from LlamaIndex defaults).
        """
        extra = {"session_id": session_id} if session_id else {}
        made = cls(memory=memory, user_id=user_id, assistant_id=assistant_id, top_k=top_k,
                   insert_method=insert_method, memory_key=memory_key, **extra)  # fmt: skip
        if chat_history:
            made.set(chat_history)
        return made

    @property
    def memory(self) -> MemoryOS:
        """The MemoryOS instance (looked up by ``memory_key`` after a copy)."""
        self._memory = resolve(self.memory_key, self._memory)
        return self._memory

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> MemoryOSMemory:
        # Copy the data, share the engine: a MemoryOS holds locks and a store client.
        return self.model_copy(update={"pending": copy.deepcopy(self.pending, memo)})

    def __getstate__(self) -> dict[Any, Any]:
        state = BaseModel.__getstate__(self)  # not BaseComponent's: it logs each unpicklable attr
        state["__pydantic_private__"] = {"_memory": None}
        return state

    # --- pure helpers ---------------------------------------------------------------------------
    def _scope(self) -> dict[str, Any]:
        return {"user_id": self.user_id, "assistant_id": self.assistant_id}

    def _meta(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "source": "llama_index"}

    def _compose(self, context: RetrievedContext) -> list[ChatMessage]:
        return compose(context, self.pending, into_user=InsertMethod(self.insert_method) == InsertMethod.USER)

    def _history(
        self, messages: list[ChatMessage], known: RetrievedContext
    ) -> tuple[list[ChatMessage], list[Page]]:
        pending, pages = fold_turns([], messages, self._meta())
        stored = {(u.meta_data.get("user_input"), u.meta_data.get("agent_response")) for u in known.all_units}
        return pending, [p for p in pages if (p["user_input"], p["agent_response"]) not in stored]

    def _all(self, export: dict[str, Any]) -> list[ChatMessage]:
        assistant = self.assistant_id or self.memory.assistant_id
        pages = [p for p in export["pages"] if p.get("assistant_id") == assistant]
        return page_messages(pages) + [m.model_copy(deep=True) for m in self.pending]

    # --- sync -----------------------------------------------------------------------------------
    def get(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """Recalled memory as a system message, then recent turns and the turn in progress.

        ``kwargs`` (``initial_token_count`` from chat engines) are accepted and ignored.
        """
        query = query_of(self.pending, input)
        return self._compose(self.memory.retrieve_memory(query, **self._scope(), top_k=self.top_k))

    def get_all(self) -> list[ChatMessage]:
        """Every stored page of this user and assistant as messages, then the turn in progress."""
        return self._all(self.memory.export_memory(user_id=self.user_id))

    def put(self, message: ChatMessage) -> None:
        """Add one message; a final assistant answer stores the turn as a page."""
        self.put_messages([message])

    def put_messages(self, messages: list[ChatMessage]) -> None:
        """Add messages in order; each completed turn becomes a page (one write for all)."""
        pending, pages = fold_turns(self.pending, messages, self._meta())
        if pages:
            self.memory.add_memories(pages, **self._scope())
        self.pending = pending  # only once stored: a failed write keeps the turn

    def set(self, messages: list[ChatMessage]) -> None:
        """Take ``messages`` as the conversation: store its completed turns unless already recalled
        verbatim (so passing the same history again stores nothing twice); keep its open turn."""
        known = self.memory.retrieve_memory(query_of(messages), **self._scope(), top_k=self.top_k)
        pending, pages = self._history(messages, known)
        if pages:
            self.memory.add_memories(pages, **self._scope())
        self.pending = pending

    def reset(self) -> None:
        """Forget the turn in progress (stored memory stays; see ``MemoryOS.delete_memory``)."""
        self.pending = []

    # --- async: what agents call ----------------------------------------------------------------
    async def aget(self, input: str | None = None, **kwargs: Any) -> list[ChatMessage]:
        """Async :meth:`get`."""
        query = query_of(self.pending, input)
        return self._compose(await self.memory.aretrieve_memory(query, **self._scope(), top_k=self.top_k))

    async def aget_all(self) -> list[ChatMessage]:
        """Async :meth:`get_all`."""
        return self._all(await self.memory.aexport_memory(user_id=self.user_id))

    async def aput(self, message: ChatMessage) -> None:
        """Async :meth:`put`."""
        await self.aput_messages([message])

    async def aput_messages(self, messages: list[ChatMessage]) -> None:
        """Async :meth:`put_messages`."""
        pending, pages = fold_turns(self.pending, messages, self._meta())
        if pages:
            await self.memory.aadd_memories(pages, **self._scope())
        self.pending = pending

    async def aset(self, messages: list[ChatMessage]) -> None:
        """Async :meth:`set`."""
        known = await self.memory.aretrieve_memory(query_of(messages), **self._scope(), top_k=self.top_k)
        pending, pages = self._history(messages, known)
        if pages:
            await self.memory.aadd_memories(pages, **self._scope())
        self.pending = pending

    async def areset(self) -> None:
        """Async :meth:`reset`."""
        self.reset()
