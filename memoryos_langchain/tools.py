"""Memory tools (``recall_memory``, ``remember``) for agents that manage their memory themselves."""

# No ``from __future__ import annotations`` here: LangChain finds the injected ``ToolRuntime``
# argument by its type hint, which must stay a real class, not a string.

from typing import Any

from langchain.tools import ToolRuntime
from langchain_core.tools import BaseTool, StructuredTool
from pydantic import BaseModel, Field

from memoryos_core import MemoryOS
from memoryos_langchain._common import resolve_user_id


class _RecallInput(BaseModel):
    query: str = Field(description="What to look for in the user's memory.")


class _RememberInput(BaseModel):
    fact: str = Field(description="A fact about the user or the conversation worth keeping.")


def memory_tools(memory: MemoryOS, user_id: str | None = None, *, top_k: int | None = None) -> list[BaseTool]:
    """``recall_memory(query)`` and ``remember(fact)`` bound to one MemoryOS.

    The user is taken from the agent's runtime context or ``configurable.user_id`` (then ``user_id``),
    like :class:`~memoryos_langchain.MemoryOSMiddleware` does.
    """

    def user_of(runtime: ToolRuntime) -> str:
        return resolve_user_id(runtime.context, runtime.config, user_id)

    def recall(query: str, runtime: ToolRuntime) -> str:
        return memory.retrieve_memory(query, user_id=user_of(runtime), top_k=top_k).render()

    async def arecall(query: str, runtime: ToolRuntime) -> str:
        return (await memory.aretrieve_memory(query, user_id=user_of(runtime), top_k=top_k)).render()

    def _meta(runtime: ToolRuntime) -> dict[str, Any]:
        meta: dict[str, Any] = {"langchain": {"tool": "remember"}}
        if runtime.tool_call_id:
            meta["message_ids"] = [runtime.tool_call_id]
        return meta

    def remember(fact: str, runtime: ToolRuntime) -> str:
        added = memory.add_memory(fact, "", meta_data=_meta(runtime), user_id=user_of(runtime))
        return f"Remembered (page {added.page_id})."

    async def aremember(fact: str, runtime: ToolRuntime) -> str:
        added = await memory.aadd_memory(fact, "", meta_data=_meta(runtime), user_id=user_of(runtime))
        return f"Remembered (page {added.page_id})."

    return [
        StructuredTool.from_function(
            func=recall,
            coroutine=arecall,
            name="recall_memory",
            description="Search the long-term memory of this user (profile, facts, past conversations).",
            args_schema=_RecallInput,
            infer_schema=False,
        ),
        StructuredTool.from_function(
            func=remember,
            coroutine=aremember,
            name="remember",
            description="Store a fact about the user in long-term memory, for later conversations.",
            args_schema=_RememberInput,
            infer_schema=False,
        ),
    ]
