"""The LLM protocol: one required method, ``complete``, plus an async default."""

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

    name: str

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Return the model's reply to ``messages``; ``json_mode`` asks for a JSON object."""
        ...


async def acomplete(llm: LLM, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
    """Call ``llm.acomplete`` when the backend has a native one, else run ``complete`` in a thread."""
    native = getattr(llm, "acomplete", None)
    if native is not None:
        return await native(messages, json_mode=json_mode)
    return await asyncio.to_thread(llm.complete, messages, json_mode=json_mode)
