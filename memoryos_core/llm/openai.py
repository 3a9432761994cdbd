"""The LLM backend for any OpenAI-compatible chat endpoint (OpenAI, vLLM, Ollama, LM Studio, ...).

Retries (429, 5xx, timeouts, connection errors; backoff, jitter, Retry-After) are the openai client's own.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from memoryos_core._exceptions import ConfigError, LLMError, LLMOutputError, MissingDependencyError
from memoryos_core._network import check_outbound
from memoryos_core._types import ChatMessage

if TYPE_CHECKING:
    import openai as openai_module

_BACKEND = "openai"


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise MissingDependencyError("openai") from exc
    return openai


@dataclass(frozen=True)
class TokenUsage:
    """Token counts the endpoint reported for one reply."""

    prompt_tokens: int
    completion_tokens: int


class OpenAILLM:
    """A chat model behind an OpenAI-compatible ``/chat/completions`` endpoint.

    Args:
        model: The model name sent with each request.
        api_key: The key; defaults to ``OPENAI_API_KEY``.
        base_url: The endpoint (``http://localhost:11434/v1``); defaults to ``OPENAI_BASE_URL``, then OpenAI.
        timeout_s: Timeout of one HTTP attempt, in seconds.
        max_retries: Retries after the first attempt on 429, 5xx, timeouts and connection errors.
        temperature: Sampling temperature; None leaves it to the server.
        max_tokens: Cap on the reply length; None leaves it to the server.

    Attributes:
        last_usage: Token counts of the latest reply of this instance, or None if the endpoint sent none.

    Raises:
        ConfigError: No key was given or found, or an argument is out of range.
        MissingDependencyError: The ``openai`` package is not installed.

    Example:
        >>> llm = OpenAILLM("gpt-4o-mini", api_key="sk-...")
        >>> llm.name
        'openai:gpt-4o-mini'
    """

    def __init__(
        self,
        model: str = "gpt-4o-mini",
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout_s: float = 60.0,
        max_retries: int = 4,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
    ) -> None:
        self._openai = _import_openai()
        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key:
            raise ConfigError("OpenAILLM needs an API key: pass api_key= or set OPENAI_API_KEY")
        if timeout_s <= 0 or max_retries < 0 or (max_tokens is not None and max_tokens <= 0):
            raise ConfigError("OpenAILLM: timeout_s and max_tokens must be > 0 and max_retries >= 0")
        self.model = model
        self.name = f"{_BACKEND}:{model}"
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.last_usage: TokenUsage | None = None
        self._api_key = key
        # Flipped once an endpoint answered 400 to response_format and then accepted the same call without it.
        self._is_response_format_supported = True
        self._lock = threading.Lock()
        self._client: openai_module.OpenAI | None = None
        self._async_client: openai_module.AsyncOpenAI | None = None
        self._async_loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"OpenAILLM(model={self.model!r}, base_url={self.base_url!r})"

    # -- public API ------------------------------------------------------------------------------------------
    def complete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Return the model's reply to ``messages``.

        Args:
            messages: The conversation to answer.
            json_mode: Ask for a JSON object (``response_format``); dropped once if the endpoint rejects it.

        Returns:
            The reply text (never empty).

        Raises:
            LLMError: The endpoint failed after the retries, or refused the request (4xx other than 429).
            LLMOutputError: The endpoint replied with an empty message.
        """
        client = self._sync_client()
        use_format = json_mode and self._is_response_format_supported
        try:
            try:
                check_outbound(self.base_url)
                completion = client.chat.completions.create(**self._request(messages, use_format))
            except self._openai.BadRequestError:
                if not use_format:
                    raise
                check_outbound(self.base_url)
                completion = client.chat.completions.create(**self._request(messages, False))
                self._is_response_format_supported = False
        except (self._openai.OpenAIError, json.JSONDecodeError) as exc:
            raise self._translate(exc) from exc
        return self._reply_text(completion)

    async def acomplete(self, messages: Sequence[ChatMessage], *, json_mode: bool = False) -> str:
        """Async twin of :meth:`complete`, on ``openai.AsyncOpenAI``."""
        client = self._async_client_for_loop()
        use_format = json_mode and self._is_response_format_supported
        try:
            try:
                check_outbound(self.base_url)
                completion = await client.chat.completions.create(**self._request(messages, use_format))
            except self._openai.BadRequestError:
                if not use_format:
                    raise
                check_outbound(self.base_url)
                completion = await client.chat.completions.create(**self._request(messages, False))
                self._is_response_format_supported = False
        except (self._openai.OpenAIError, json.JSONDecodeError) as exc:
            raise self._translate(exc) from exc
        return self._reply_text(completion)

    def close(self) -> None:
        """Close the sync HTTP client (a later call opens a new one)."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the async HTTP client (a later call opens a new one)."""
        client, self._async_client, self._async_loop = self._async_client, None, None
        if client is not None:
            await client.close()

    # -- helpers -------------------------------------------------------------------------------------------
    def _sync_client(self) -> openai_module.OpenAI:
        with self._lock:
            if self._client is None:
                self._client = self._openai.OpenAI(
                    api_key=self._api_key,
                    base_url=self.base_url,
                    timeout=self.timeout_s,
                    max_retries=self.max_retries,
                )
            return self._client

    def _async_client_for_loop(self) -> openai_module.AsyncOpenAI:
        # An async HTTP pool is bound to the event loop that opened it: open one per loop.
        loop = asyncio.get_running_loop()
        if self._async_client is None or self._async_loop is not loop:
            self._async_client = self._openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=self.max_retries,
            )
            self._async_loop = loop
        return self._async_client

    def _request(self, messages: Sequence[ChatMessage], use_response_format: bool) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": message.role, "content": message.content} for message in messages],
        }
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if use_response_format:
            params["response_format"] = {"type": "json_object"}
        return params

    def _reply_text(self, completion: Any) -> str:
        usage = getattr(completion, "usage", None)
        self.last_usage = (
            TokenUsage(int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0)) if usage else None
        )
        choices = getattr(completion, "choices", None) or []
        content = choices[0].message.content if choices else None
        if content is None or not content.strip():
            finish = getattr(choices[0], "finish_reason", None) if choices else None
            message = f"{self.name} returned an empty reply (finish_reason={finish!r})"
            raise LLMOutputError(message, backend=_BACKEND, raw=content or "")
        text: str = content
        return text

    def _translate(self, exc: Exception) -> LLMError:
        openai = self._openai
        attempts = f"after {self.max_retries + 1} attempts"
        if isinstance(exc, openai.APIStatusError):
            is_retried = exc.status_code in (408, 409, 429) or exc.status_code >= 500
            when = attempts if is_retried else "(not retried)"
            return LLMError(f"{self.name}: HTTP {exc.status_code} {when}: {exc.message}", backend=_BACKEND)
        if isinstance(exc, openai.APITimeoutError):
            return LLMError(f"{self.name}: timed out ({self.timeout_s} s) {attempts}", backend=_BACKEND)
        if isinstance(exc, openai.APIConnectionError):
            return LLMError(f"{self.name}: cannot connect to {self._endpoint()} {attempts}", backend=_BACKEND)
        return LLMError(f"{self.name}: unreadable response from {self._endpoint()}: {exc}", backend=_BACKEND)

    def _endpoint(self) -> str:
        return self.base_url or "https://api.openai.com/v1"
