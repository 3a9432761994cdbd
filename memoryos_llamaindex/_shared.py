"""Shared by the adapters: the MemoryOS registry and the mapping between chat messages and pages.

A turn is folded into one page: the user's message(s) and the assistant's final answer. Tool-call
plumbing (assistant messages that call tools, ``tool`` results) and system messages are never pages;
a ReAct scratchpad ("Thought: ... Answer: ...") is stored as its final answer only.
"""

from __future__ import annotations

import re
import time
import uuid
import weakref
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

from llama_index.core.base.llms.types import ChatMessage, MessageRole, TextBlock, ToolCallBlock

from memoryos_core import (
    ConfigError,
    MemoryOS,
    RetrievedContext,
    Turn,
    TurnMessage,
    close_turn,
    fold_messages,
)

_BY_KEY: weakref.WeakValueDictionary[str, MemoryOS] = weakref.WeakValueDictionary()
_KEY_OF: weakref.WeakKeyDictionary[MemoryOS, str] = weakref.WeakKeyDictionary()
Page = dict[str, Any]  # one item of MemoryOS.add_memories
_ANSWER = re.compile(r"(?:^|\n)Answer(?: \(Starts With\))?:[ \t]*", re.MULTILINE)


def register(memory: MemoryOS, key: str | None = None) -> str:
    """Name ``memory`` so a copy rebuilt from its ids (a LlamaIndex ``Context``) finds it again."""
    key = key or _KEY_OF.get(memory) or f"memoryos-{uuid.uuid4().hex}"
    _BY_KEY[key] = memory
    _KEY_OF[memory] = key
    return key


def resolve(key: str, held: MemoryOS | None) -> MemoryOS:
    """The MemoryOS registered as ``key`` (or the one already held).

    Raises:
        ConfigError: no live MemoryOS is registered under ``key`` in this process.
    """
    memory = held if held is not None else _BY_KEY.get(key)
    if memory is None:
        raise ConfigError(
            f"no MemoryOS is registered as {key!r} in this process: build the adapter once with "
            f"memory=<your MemoryOS>, memory_key={key!r} before restoring a saved Context"
        )
    return memory


def bind(memory: MemoryOS | None, data: dict[str, Any], owner: str) -> MemoryOS | None:
    """Fill ``memory_key`` and ``user_id`` of an adapter's constructor data; the MemoryOS if known yet."""
    if memory is not None:
        data["memory_key"] = register(memory, data.get("memory_key"))
    elif not data.get("memory_key"):
        raise ConfigError(f"{owner} needs memory=<a MemoryOS> (or the memory_key of one)")
    if not data.get("user_id"):
        data["user_id"] = resolve(data["memory_key"], memory).user_id
    return memory if memory is not None else _BY_KEY.get(data["memory_key"])


def text_of(message: ChatMessage) -> str:
    """The text blocks of a message, joined."""
    return message.content or ""


def is_plumbing(message: ChatMessage) -> bool:
    """Tool calls, tool results and anything but user/assistant/system messages."""
    if message.role == MessageRole.ASSISTANT:
        return bool(message.additional_kwargs.get("tool_calls")) or any(
            isinstance(block, ToolCallBlock) for block in message.blocks
        )
    return message.role not in (MessageRole.USER, MessageRole.SYSTEM)


def answer_of(message: ChatMessage) -> str:
    """The final answer of an assistant message; a ReAct scratchpad without an answer gives ""."""
    text = text_of(message)
    if not text.lstrip().startswith("Thought:"):
        return text
    starts = list(_ANSWER.finditer(text))
    return text[starts[-1].end() :].strip() if starts else ""


def _tool_names(message: ChatMessage) -> tuple[str, ...]:
    names = [b.tool_name for b in message.blocks if isinstance(b, ToolCallBlock)]
    names += [str(getattr(c, "tool_name", "")) for c in message.additional_kwargs.get("tool_calls") or []]
    return tuple(name for name in dict.fromkeys(names) if name)


def turn_message(message: ChatMessage) -> TurnMessage[ChatMessage]:
    """A LlamaIndex message as the core's folding sees it (plumbing as ``tool``)."""
    message_id = message.additional_kwargs.get("message_id")
    found = str(message_id) if message_id else None
    tools = _tool_names(message)
    if message.role == MessageRole.SYSTEM:
        return TurnMessage("system", text_of(message), message, found, tools)
    if is_plumbing(message):
        return TurnMessage("tool", text_of(message), message, found, tools)
    if message.role == MessageRole.USER:
        return TurnMessage("user", text_of(message), message, found, tools)
    return TurnMessage("assistant", answer_of(message), message, found, tools)


def _page(turn: Turn[ChatMessage], meta: dict[str, Any]) -> Page:
    meta_data = {**meta, "seq_ns": time.time_ns()}
    if turn.message_ids:
        meta_data["message_ids"] = list(turn.message_ids)
    if turn.tool_calls:
        meta_data["tool_calls"] = list(turn.tool_calls)
    return {"user_input": turn.user_input, "agent_response": turn.agent_response, "meta_data": meta_data}


def fold_turns(
    pending: Sequence[ChatMessage], messages: Iterable[ChatMessage], meta: dict[str, Any]
) -> tuple[list[ChatMessage], list[Page]]:
    """Add ``messages`` to the turn in progress; return the new turn buffer and the completed pages
    (the core's ``fold_messages``: one page per answered turn, user messages joined)."""
    turns, buffer = fold_messages(map(turn_message, messages), [turn_message(m) for m in pending])
    return [m.source for m in buffer], [_page(turn, meta) for turn in turns]


def leftover_pages(buffer: Sequence[ChatMessage], meta: dict[str, Any]) -> list[Page]:
    """User messages that never got an answer, as user-only pages (so nothing is dropped)."""
    turn = close_turn([turn_message(m) for m in buffer])
    return [_page(turn, meta)] if turn is not None else []


def query_of(messages: Sequence[ChatMessage], input: str | ChatMessage | None = None) -> str:
    """What to recall for: ``input``, else the latest user message, else the latest message."""
    if isinstance(input, ChatMessage):
        input = text_of(input)
    if input:
        return input
    for message in reversed(messages):
        if message.role == MessageRole.USER and text_of(message):
            return text_of(message)
    return next((text_of(m) for m in reversed(messages) if text_of(m)), "")


def recent_turns(context: RetrievedContext) -> list[ChatMessage]:
    """The short-term pages of a recall as user/assistant messages, oldest first."""

    def order(unit: Any) -> tuple[str, int]:
        return unit.timestamp, int(unit.meta_data.get("meta_data", {}).get("seq_ns", 0))

    messages = []
    for unit in sorted(context.short_term, key=order):
        if unit.meta_data.get("user_input"):
            messages.append(ChatMessage(role=MessageRole.USER, content=unit.meta_data["user_input"]))
        if unit.meta_data.get("agent_response"):
            messages.append(ChatMessage(role=MessageRole.ASSISTANT, content=unit.meta_data["agent_response"]))
    return messages


def compose(
    context: RetrievedContext, open_turn: Sequence[ChatMessage], into_user: bool
) -> list[ChatMessage]:
    """Recalled memory (a system message, or the open turn's user message), recent turns, open turn.

    Short-term pages become the recent turns, so they are not rendered a second time. Messages are
    copies: LlamaIndex edits the messages it gets (agent state prompts), never ours.
    """
    recalled = replace(context, short_term=())
    open_copy = [m.model_copy(deep=True) for m in open_turn]
    turns = recent_turns(context) + open_copy
    if not recalled.units and not recalled.profile:
        return turns
    block = TextBlock(text=recalled.render())
    asking = next((m for m in reversed(open_copy) if m.role == MessageRole.USER), None)
    if into_user and asking is not None:
        asking.blocks.insert(0, block)
        return turns
    return [ChatMessage(role=MessageRole.SYSTEM, blocks=[block]), *turns]


def page_messages(pages: Iterable[dict[str, Any]]) -> list[ChatMessage]:
    """Exported pages as user/assistant messages, in the order given."""
    messages = []
    for page in pages:
        if page.get("user_input"):
            messages.append(ChatMessage(role=MessageRole.USER, content=page["user_input"]))
        if page.get("agent_response"):
            messages.append(ChatMessage(role=MessageRole.ASSISTANT, content=page["agent_response"]))
    return messages
