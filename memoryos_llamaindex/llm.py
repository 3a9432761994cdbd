"""``LlamaIndexLLM``: any LlamaIndex LLM as the LLM backend of MemoryOS."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.base.llms.types import ChatMessage as LlamaMessage
from llama_index.core.base.llms.types import ChatResponse
from llama_index.core.llms import LLM as LlamaLLM

from memoryos_core import ChatMessage, LLMError, LLMOutputError

_JSON_HINT = "Reply with one JSON object and nothing else."


class LlamaIndexLLM:
    """The core's LLM protocol over a LlamaIndex LLM (``chat`` / native ``achat``).

    Vendor errors become :class:`~memoryos_core.LLMError` (raised ``from`` the original); an
    empty reply is an :class:`~memoryos_core.LLMOutputError`. ``json_mode`` adds an instruction to
    the system message, since LlamaIndex has no JSON switch common to every LLM.

    Args:
        llm: Any ``llama_index.core.llms.LLM`` (OpenAI, Ollama, a mock, ...).
        name: The backend name in costs and errors (default ``llamaindex:<model or class>``).

    Example:
        >>> from memoryos_core import MemoryOS
        >>> memo = MemoryOS(llm=LlamaIndexLLM(llm))  # llm: any LlamaIndex LLM, e.g. OpenAI(model=...)
        >>> memo.get_response("Hi, I'm Alice", user_id="alice")  # the offline mock echoes
        "Hi, I'm Alice"
        >>> memo.close()
    """

    def __init__(self, llm: LlamaLLM, *, name: str | None = None) -> None:
        self.llm = llm
        model = llm.metadata.model_name
        self.name = name or f"llamaindex:{model if model != 'unknown' else llm.class_name()}"

    def __repr__(self) -> str:
        return f"LlamaIndexLLM({self.name!r})"

    @staticmethod
    def _messages(messages: Sequence[ChatMessage], json_mode: bool) -> list[LlamaMessage]:
        converted = [LlamaMessage(role=m.role, content=m.content) for m in messages]
        if json_mode:
            system = next((m for m in converted if m.role == "system"), None)
            if system is None:
                converted.insert(0, LlamaMessage(role="system", content=_JSON_HINT))
            else:
                system.content = f"{system.content}\n\n{_JSON_HINT}"
        return converted

    def _reply(self, response: ChatResponse) -> str:
        text = response.message.content or ""
        if not text.strip():
            raise LLMOutputError("the LLM returned an empty reply", backend=self.name, raw=text)
        return text

    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Return the LLM's reply to ``messages``.

        Raises:
            LLMError: the LLM call failed.
            LLMOutputError: the reply was empty.
        """
        try:
            response = self.llm.chat(self._messages(messages, json_mode))
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"{self.name} failed: {exc}", backend=self.name) from exc
        return self._reply(response)

    async def acomplete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Async :meth:`complete`, on the LLM's native ``achat``."""
        try:
            response = await self.llm.achat(self._messages(messages, json_mode))
        except LLMError:
            raise
        except Exception as exc:
            raise LLMError(f"{self.name} failed: {exc}", backend=self.name) from exc
        return self._reply(response)
