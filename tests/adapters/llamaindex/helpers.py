"""Helpers for the LlamaIndex adapter tests: a recording mock-LLM generator and seed data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM

from memoryos_core import MemoryOS

CAT_FACT = "My cat is called Pixel and she loves tuna"
SEED_PAGES = [
    {"user_input": CAT_FACT, "agent_response": "Pixel sounds adorable", "meta_data": {"message_id": "m-1"}},
    {"user_input": "I went hiking in the alpine mountains", "agent_response": "Great trail"},
    {"user_input": "I cooked pasta with basil tonight", "agent_response": "Yum"},
    {"user_input": "I fixed python bugs at work", "agent_response": "Well done"},
]


class Recorder:
    """A ``response_generator`` for ``MockFunctionCallingLLM``: records every call, replies in order.

    Replies are strings or ready ``ChatMessage``s; when they run out it answers ``reply <n>``.
    """

    def __init__(self, replies: Sequence[str | ChatMessage] = ()) -> None:
        self.replies = list(replies)
        self.calls: list[list[ChatMessage]] = []

    def __call__(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatMessage:
        self.calls.append([m.model_copy(deep=True) for m in messages])
        reply = self.replies.pop(0) if self.replies else f"reply {len(self.calls)}"
        return reply if isinstance(reply, ChatMessage) else ChatMessage(role="assistant", content=reply)

    def llm(self) -> MockFunctionCallingLLM:
        """A LlamaIndex LLM (chat model, function calling) answering through this recorder."""
        return MockFunctionCallingLLM(response_generator=self, is_chat_model=True)

    def seen(self, index: int = -1) -> str:
        """Everything the LLM received in one call, as one text."""
        return "\n".join(f"{m.role.value}: {m.content or ''}" for m in self.calls[index])


def pages(memory: MemoryOS, user_id: str) -> list[tuple[str, str]]:
    """(user_input, agent_response) of every stored page of a user, oldest first."""
    return [(p["user_input"], p["agent_response"]) for p in memory.export_memory(user_id)["pages"]]
