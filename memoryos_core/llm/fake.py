"""Offline LLMs for tests and examples: ``FunctionLLM`` (a callable), ``ScriptedLLM`` (replies in order)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from memoryos_core._exceptions import LLMError
from memoryos_core._types import ChatMessage


class FunctionLLM:
    """An LLM whose replies come from ``handler(messages, json_mode)``, like httpx's ``MockTransport``.

    Args:
        handler: Called with the messages and the ``json_mode`` flag; returns the reply text.
        name: The backend name reported in costs and errors.

    Example:
        >>> llm = FunctionLLM(lambda messages, json_mode: messages[-1].content.upper())
        >>> llm.complete([ChatMessage("user", "hi")])
        'HI'
    """

    def __init__(self, handler: Callable[[Sequence[ChatMessage], bool], str], name: str = "function") -> None:
        self.handler = handler
        self.name = name

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Return ``handler(messages, json_mode)``."""
        return self.handler(messages, json_mode)


class ScriptedLLM:
    """An LLM that gives ``replies`` in order, raises the exception items, and records every call.

    Args:
        replies: Reply texts, or exceptions to raise, one per call.
        name: The backend name reported in costs and errors.

    Attributes:
        calls: The messages of every call, in order (also of calls that raised).
        json_modes: The ``json_mode`` flag of every call, in order.

    Example:
        >>> llm = ScriptedLLM(["first", LLMError("down")])
        >>> llm.complete([ChatMessage("user", "hi")])
        'first'
    """

    def __init__(self, replies: Sequence[str | Exception], name: str = "scripted") -> None:
        self.replies: list[str | Exception] = list(replies)
        self.name = name
        self.calls: list[list[ChatMessage]] = []
        self.json_modes: list[bool] = []
        self._lock = threading.Lock()

    @property
    def remaining(self) -> int:
        """How many scripted replies are left."""
        with self._lock:
            return max(0, len(self.replies) - len(self.calls))

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Return the next scripted reply.

        Raises:
            Exception: The next item, when it is an exception.
            LLMError: Every scripted reply has been used.
        """
        with self._lock:
            index = len(self.calls)
            self.calls.append(list(messages))
            self.json_modes.append(json_mode)
        if index >= len(self.replies):
            message = f"ScriptedLLM exhausted: call {index + 1} but only {len(self.replies)} replies"
            raise LLMError(message, backend=self.name)
        reply = self.replies[index]
        if isinstance(reply, BaseException):
            raise reply
        return reply
