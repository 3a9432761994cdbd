"""``LangChainLLM``: any LangChain chat model as the LLM backend of MemoryOS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langchain_core.runnables import Runnable

from memoryos_core import ChatMessage, LLMError, LLMOutputError

_ROLES = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
_OPENAI_JSON = {"response_format": {"type": "json_object"}}


def _to_langchain(messages: Sequence[ChatMessage]) -> list[BaseMessage]:
    return [_ROLES[message.role](message.content) for message in messages]


def _rejected_request(exc: Exception) -> bool:
    """An HTTP 400 (for example a server that does not know ``response_format``)."""
    return getattr(exc, "status_code", None) == 400


class LangChainLLM:
    """Drives MemoryOS (consolidation, promotion, answers) with a LangChain chat model.

    Implements the core's LLM protocol: ``complete`` and a native ``acomplete`` (``ainvoke``).
    ``json_mode`` is best effort: the core's prompts always ask for JSON and its parser is robust;
    in addition ``json_kwargs`` are bound to the model for JSON calls (by default
    ``response_format={"type": "json_object"}`` for ``langchain_openai`` models, nothing for others),
    and a call the server rejects with HTTP 400 is retried once without them.

    Errors of the model or provider become ``LLMError`` (raised ``from`` the original); an empty
    reply is an ``LLMOutputError``. Retries are the chat model's own (for example ``max_retries``).

    Args:
        chat_model: any ``BaseChatModel`` (``ChatOpenAI(...)``, ``ChatAnthropic(...)``, a fake).
        name: the backend name reported in costs and errors (default ``langchain:<model>``).
        json_kwargs: model arguments bound for JSON calls (see above).

    Example:
        >>> from memoryos_core import MemoryOS
        >>> memo = MemoryOS(llm=LangChainLLM(model))  # model: any chat model, e.g. ChatOpenAI(model=...)
        >>> memo.get_response("Hi, I'm Alice", user_id="alice")
        'Hello!'
        >>> memo.close()
    """

    def __init__(
        self,
        chat_model: BaseChatModel,
        *,
        name: str | None = None,
        json_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.chat_model = chat_model
        model = getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None)
        self.name = name or f"langchain:{model or type(chat_model).__name__}"
        if json_kwargs is None:
            is_openai = type(chat_model).__module__.startswith("langchain_openai")
            json_kwargs = _OPENAI_JSON if is_openai else {}
        self.json_kwargs = dict(json_kwargs)

    def _attempts(self, json_mode: bool) -> list[Runnable[Any, BaseMessage]]:
        if json_mode and self.json_kwargs:
            return [self.chat_model.bind(**self.json_kwargs), self.chat_model]
        return [self.chat_model]

    def _reply(self, reply: Any) -> str:
        text = str(reply.text) if isinstance(reply, BaseMessage) else ""
        if not text.strip():
            raise LLMOutputError("the chat model returned an empty reply", backend=self.name, raw=text)
        return text

    def _error(self, exc: Exception) -> LLMError:
        return LLMError(f"{self.name} failed: {type(exc).__name__}: {exc}", backend=self.name)

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """The model's reply to ``messages``.

        Raises:
            LLMError: the model or its provider failed.
            LLMOutputError: the reply was empty.
        """
        prompt = _to_langchain(messages)
        attempts = self._attempts(json_mode)
        for number, runnable in enumerate(attempts, 1):
            try:
                reply = runnable.invoke(prompt)
            except Exception as exc:  # any provider's exception: translated, never leaked
                if number < len(attempts) and _rejected_request(exc):
                    continue
                raise self._error(exc) from exc
            return self._reply(reply)
        raise AssertionError("unreachable")  # pragma: no cover

    async def acomplete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Async twin of :meth:`complete` (the model's native ``ainvoke``)."""
        prompt = _to_langchain(messages)
        attempts = self._attempts(json_mode)
        for number, runnable in enumerate(attempts, 1):
            try:
                reply = await runnable.ainvoke(prompt)
            except Exception as exc:
                if number < len(attempts) and _rejected_request(exc):
                    continue
                raise self._error(exc) from exc
            return self._reply(reply)
        raise AssertionError("unreachable")  # pragma: no cover
