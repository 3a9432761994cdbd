"""``MemoryOSChatMessageHistory``: a LangChain chat history whose turns are MemoryOS pages."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from memoryos_core import (
    AddResult,
    InvalidInputError,
    MemoryOS,
    NotFoundError,
    Page,
    Turn,
    TurnMessage,
    close_turn,
    fold_messages,
)
from memoryos_langchain._common import message_text


@dataclass(frozen=True)
class _Pending:
    """A stored human message still waiting for its answer (a page with ``pending`` in its meta_data)."""

    page_id: str
    text: str
    message_id: str | None


_UNKNOWN = object()  # the pending page has not been looked up yet


def _turn_message(message: BaseMessage) -> TurnMessage[BaseMessage | None]:
    """A LangChain message as the core's folding sees it (an AI message without text is plumbing)."""
    if isinstance(message, HumanMessage):
        return TurnMessage("user", message_text(message), message, message.id)
    if isinstance(message, AIMessage):
        return TurnMessage("assistant", message_text(message), message, message.id)
    return TurnMessage("system" if isinstance(message, SystemMessage) else "tool", "", message, message.id)


def _page(turn: Turn[BaseMessage | None], *, pending: bool = False) -> dict[str, Any] | None:
    human = turn.users[0] if turn.users else None  # one at most: unanswered ones are turns of their own
    if not turn.user_input.strip() and not turn.agent_response.strip():
        return None
    ai_id = turn.answer.id if turn.answer is not None else None
    info = {"human_id": human.id if human else None, "ai_id": ai_id, "pending": pending or None}
    meta: dict[str, Any] = {"langchain": {k: v for k, v in info.items() if v is not None}}
    ids = [i for i in (human.id if human else None, ai_id) if i]
    if ids:
        meta["message_ids"] = ids  # the core keeps them as source_ids on every unit derived from the page
    return {"user_input": turn.user_input, "agent_response": turn.agent_response, "meta_data": meta}


def _plan_pages(
    messages: Sequence[BaseMessage], pending: _Pending | None
) -> tuple[list[dict[str, Any]], tuple[str, dict[str, Any]] | None]:
    """Pages to add for ``messages``, and the stored pending page their first answer completes.

    The core's ``fold_messages`` with ``join_users=False``: a human message and the next AI message
    with text make one page; a human message followed by another human message is stored alone; a
    trailing human message is stored as a pending page that the next AI message completes in place.
    System and tool messages, and AI messages that only call tools, are not conversation turns.
    """
    opened: TurnMessage[BaseMessage | None] | None = None
    if pending is not None:  # the stored human message waiting for its answer opens the turn
        opened = TurnMessage("user", pending.text, None, pending.message_id)
    turns, left = fold_messages(map(_turn_message, messages), [opened] if opened else [], join_users=False)
    pages: list[dict[str, Any] | None] = []
    completion: tuple[str, dict[str, Any]] | None = None
    for turn in turns:
        page = _page(turn)
        if opened is None or not turn.users or turn.users[0] is not opened:
            pages.append(page)
        elif pending is not None and turn.answer is not None and page is not None:
            completion = (pending.page_id, page)  # (unanswered, the stored pending page stays as it is)
    last = close_turn(left)
    if last is not None and last.users[0] is not opened:
        pages.append(_page(last, pending=True))
    return [p for p in pages if p is not None], completion


def _to_messages(page: Page) -> list[BaseMessage]:
    info = page.meta_data.get("langchain") or {}
    out: list[BaseMessage] = []
    if page.user_input:
        out.append(HumanMessage(page.user_input, id=info.get("human_id")))
    if page.agent_response:
        out.append(AIMessage(page.agent_response, id=info.get("ai_id")))
    return out


class MemoryOSChatMessageHistory(BaseChatMessageHistory):
    """The recent turns of one MemoryOS user as a LangChain chat history.

    Each human/AI pair is stored as one page (message ids go to ``meta_data["message_ids"]``, so
    recalled units cite them). An unanswered human message is stored at once as a pending page and
    completed in place (``update_memory``) when its answer arrives, so a new history object (or
    process) continues where the last one stopped. ``clear()`` forgets the user entirely
    (``delete_memory(everything=True)``).

    Args:
        memory: the MemoryOS instance.
        user_id: the user whose turns these are (with ``RunnableWithMessageHistory``: the session id,
            see :meth:`factory`).
        max_pages: how many recent pages ``messages`` returns (default: the short-term capacity).

    Example:
        >>> from langchain_core.runnables.history import RunnableWithMessageHistory
        >>> chain = RunnableWithMessageHistory(model, MemoryOSChatMessageHistory.factory(memory))
        >>> chain.invoke("Hi, I'm Alice", config={"configurable": {"session_id": "alice"}}).content
        'Hello!'
    """

    def __init__(self, memory: MemoryOS, user_id: str, *, max_pages: int | None = None) -> None:
        if max_pages is not None and max_pages < 1:
            raise InvalidInputError("max_pages must be at least 1")
        self.memory = memory
        self.user_id = user_id
        self.max_pages = max_pages or memory.config.short_term.capacity
        self._pending: Any = _UNKNOWN

    @classmethod
    def factory(
        cls,
        memory: MemoryOS,
        users: Mapping[str, str] | Callable[[str], str] | None = None,
        **kwargs: Any,
    ) -> Callable[[str], MemoryOSChatMessageHistory]:
        """A ``get_session_history`` for ``RunnableWithMessageHistory``: session id -> user id.

        Args:
            users: maps a session id to a user id (a mapping or a function); by default the session
                id is the user id. An unknown session id raises ``InvalidInputError``.
        """

        def get_session_history(session_id: str) -> MemoryOSChatMessageHistory:
            if users is None:
                return cls(memory, session_id, **kwargs)
            if callable(users):
                return cls(memory, users(session_id), **kwargs)
            if session_id not in users:
                raise InvalidInputError(f"no user id is mapped to session {session_id!r}")
            return cls(memory, users[session_id], **kwargs)

        return get_session_history

    # --- reading: the user's newest pages, then pure mapping ---------------------------------------
    def _read(self, pages: Sequence[Page]) -> list[BaseMessage]:
        self._pending = None
        if pages:
            last = pages[-1]
            info = last.meta_data.get("langchain") or {}
            if info.get("pending") and not last.agent_response:
                self._pending = _Pending(last.id, last.user_input, info.get("human_id"))
        return [message for page in pages for message in _to_messages(page)]

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The user's most recent turns, oldest first."""
        return self._read(self.memory.recent_pages(self.max_pages, user_id=self.user_id))

    async def aget_messages(self) -> list[BaseMessage]:
        """Async twin of :attr:`messages`."""
        return self._read(await self.memory.arecent_pages(self.max_pages, user_id=self.user_id))

    # --- writing ----------------------------------------------------------------------------------
    def _stored(self, pages: list[dict[str, Any]], results: list[AddResult]) -> None:
        if pages and pages[-1]["meta_data"]["langchain"].get("pending"):
            info = pages[-1]["meta_data"]["langchain"]
            self._pending = _Pending(results[-1].page_id, pages[-1]["user_input"], info.get("human_id"))
        elif pages:
            self._pending = None

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Store the turns in ``messages`` (pairs become pages; system and tool messages are skipped)."""
        if self._pending is _UNKNOWN:
            self._read(self.memory.recent_pages(1, user_id=self.user_id))
        pages, completion = _plan_pages(messages, self._pending)
        if completion is not None:
            page_id, page = completion
            with contextlib.suppress(NotFoundError):  # cleared meanwhile: the answer alone is kept below
                self.memory.update_memory(page_id, user_id=self.user_id, **page)
                self._pending = None
        results = self.memory.add_memories(pages, user_id=self.user_id)
        self._stored(pages, results)

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        """Async twin of :meth:`add_messages`."""
        if self._pending is _UNKNOWN:
            self._read(await self.memory.arecent_pages(1, user_id=self.user_id))
        pages, completion = _plan_pages(messages, self._pending)
        if completion is not None:
            page_id, page = completion
            with contextlib.suppress(NotFoundError):
                await self.memory.aupdate_memory(page_id, user_id=self.user_id, **page)
                self._pending = None
        results = await self.memory.aadd_memories(pages, user_id=self.user_id)
        self._stored(pages, results)

    def clear(self) -> None:
        """Forget everything MemoryOS holds about the user (pages, segments, profile, knowledge)."""
        self.memory.delete_memory(everything=True, user_id=self.user_id)
        self._pending = None

    async def aclear(self) -> None:
        """Async twin of :meth:`clear`."""
        await self.memory.adelete_memory(everything=True, user_id=self.user_id)
        self._pending = None
