"""Offline chat models for the adapter tests: LangChain's own fake, recording what it receives."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import LanguageModelInput
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, SystemMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from pydantic import Field


class RecordingChatModel(GenericFakeChatModel):
    """``GenericFakeChatModel`` that keeps every prompt it receives and accepts ``bind_tools``.

    Replies come from ``messages`` in order (strings or ``AIMessage``s with ``tool_calls``).
    """

    received: list[list[BaseMessage]] = Field(default_factory=list)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        self.received.append(list(messages))
        return super()._generate(messages, stop=stop, run_manager=run_manager, **kwargs)

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        return self

    def system_texts(self) -> list[str]:
        """The system message text of every call received (empty when a call had none)."""
        return [
            next((str(m.text) for m in call if isinstance(m, SystemMessage)), "") for call in self.received
        ]


def replies(*items: str | AIMessage) -> Any:
    """An iterator of replies for ``GenericFakeChatModel(messages=...)``."""
    return iter(items)
