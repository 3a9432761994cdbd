"""Cost metering: every LLM call's tokens (tiktoken) and every operation's time, per thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from memoryos_core._types import ChatMessage, Cost
from memoryos_core.llm.base import LLM, acomplete
from memoryos_core.llm.tokens import TokenCounter


class Tally:
    """Costs gathered while it is open on this thread."""

    def __init__(self) -> None:
        self.cost = Cost()
        self._start = time.perf_counter()
        self._lock = threading.Lock()

    def add(self, cost: Cost) -> None:
        with self._lock:  # (a call run with ``carrying`` records from another thread)
            self.cost = self.cost + cost

    def close(self) -> Cost:
        self.cost = Cost(
            self.cost.llm_calls,
            self.cost.prompt_tokens,
            self.cost.completion_tokens,
            (time.perf_counter() - self._start) * 1000.0,
        )
        return self.cost


_local = threading.local()
T = TypeVar("T")


@contextmanager
def measure() -> Iterator[Tally]:
    """Open a tally for the operation on this thread; nested tallies all receive each cost."""
    stack: list[Tally] = getattr(_local, "stack", None) or []
    _local.stack = stack
    tally = Tally()
    stack.append(tally)
    try:
        yield tally
    finally:
        stack.remove(tally)
        tally.close()


def carrying(call: Callable[[], T]) -> Callable[[], T]:
    """``call``, to run on another thread, recording its costs in the tallies open on this one now."""
    stack = list(getattr(_local, "stack", None) or [])

    def run() -> T:
        saved = getattr(_local, "stack", None)
        _local.stack = list(stack)
        try:
            return call()
        finally:
            _local.stack = saved

    return run


def _record(cost: Cost) -> None:
    for tally in getattr(_local, "stack", None) or []:
        tally.add(cost)


class CountingLLM:
    """Wraps an LLM and records each completed call's tokens in the open tallies."""

    def __init__(self, llm: LLM, counter: TokenCounter) -> None:
        self.inner = llm
        self.name = getattr(llm, "name", type(llm).__name__)
        self._counter = counter

    def _cost(self, messages: Sequence[ChatMessage], reply: str) -> Cost:
        return Cost(1, self._counter.count_messages(messages), self._counter.count(reply), 0.0)

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        reply = self.inner.complete(messages, json_mode=json_mode)
        _record(self._cost(messages, reply))
        return reply

    async def acomplete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        reply = await acomplete(self.inner, messages, json_mode=json_mode)
        _record(self._cost(messages, reply))
        return reply
