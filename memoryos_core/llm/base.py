"""The LLM protocol: one required method, ``complete``; ``acomplete`` where a backend has a native one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from memoryos_core._types import ChatMessage


@runtime_checkable
class LLM(Protocol):
    """A chat model that turns messages into one reply text.

    Implementations raise :class:`~memoryos_core.LLMError` when the model cannot be
    reached (after their own retries), never return an error text as a reply.
    """

    @property
    def name(self) -> str:
        """The backend's name, reported in costs and errors (a plain attribute satisfies it)."""
        ...

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Return the model's reply to ``messages``; ``json_mode`` asks for a JSON object."""
        ...


@runtime_checkable
class AsyncLLM(Protocol):
    """What an :class:`LLM` with a native async ``acomplete`` adds (the OpenAI, LangChain and LlamaIndex
    backends); :func:`acomplete` runs ``complete`` in a thread for the others."""

    async def acomplete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Async twin of ``complete``."""
        ...


async def acomplete(llm: LLM, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
    """Call ``llm.acomplete`` when the backend has a native one, else run ``complete`` in a thread."""
    if isinstance(llm, AsyncLLM):
        return await llm.acomplete(messages, json_mode=json_mode)
    return await asyncio.to_thread(llm.complete, messages, json_mode=json_mode)
