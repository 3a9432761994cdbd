"""OpenAILLM over real HTTP against the fake OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import socket
import struct
import threading
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from memoryos_core._exceptions import ConfigError, LLMError, LLMOutputError
from memoryos_core._types import ChatMessage
from memoryos_core.llm.base import LLM, acomplete
from memoryos_core.llm.openai import OpenAILLM, TokenUsage
from memoryos_core.testing import FakeOpenAIServer, Fault, NetworkBlockedError, block_network

MESSAGES = [ChatMessage("system", "Be brief."), ChatMessage("user", "hello there")]
FAST = 0.01  # Retry-After the fake server sends, so the client's backoff stays short


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


def make_llm(base_url: str, **options: Any) -> OpenAILLM:
    options.setdefault("timeout_s", 5.0)
    options.setdefault("max_retries", 3)
    return OpenAILLM("fake-model", api_key="test-key", base_url=base_url, **options)


def chat_bodies(server: FakeOpenAIServer) -> list[dict[str, Any]]:
    return [request.body for request in server.requests_to("/chat/completions")]


def test_complete_sends_the_messages_and_returns_the_reply(server: FakeOpenAIServer) -> None:
    llm = make_llm(server.base_url, max_tokens=50)
    assert isinstance(llm, LLM)
    assert llm.name == "openai:fake-model"
    assert llm.complete(MESSAGES) == "echo: hello there"
    [body] = chat_bodies(server)
    assert body["model"] == "fake-model"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
    ]
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 50
    assert "response_format" not in body
    assert server.requests[0].headers["authorization"] == "Bearer test-key"
    assert llm.last_usage == TokenUsage(prompt_tokens=4, completion_tokens=3)


def test_constructor_does_no_io_and_reads_the_environment(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "env-key")
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    llm = OpenAILLM("fake-model")
    assert server.requests == []
    assert llm.complete(MESSAGES) == "echo: hello there"
    assert server.requests[0].headers["authorization"] == "Bearer env-key"


@pytest.mark.parametrize("options", [{"timeout_s": 0}, {"max_retries": -1}, {"max_tokens": 0}])
def test_invalid_options_are_config_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        OpenAILLM(api_key="k", **options)


def test_missing_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAILLM()


def test_retries_timeout_429_and_500_then_succeeds(server: FakeOpenAIServer) -> None:
    server.enqueue(
        Fault.delay(3), Fault.status(429, retry_after_s=FAST), Fault.status(500, retry_after_s=FAST)
    )
    llm = make_llm(server.base_url, timeout_s=0.5, max_retries=3)
    started = time.monotonic()
    assert llm.complete(MESSAGES) == "echo: hello there"
    assert len(chat_bodies(server)) == 4
    assert time.monotonic() - started < 4


def test_retry_after_is_honoured(server: FakeOpenAIServer) -> None:
    server.enqueue(Fault.status(429, retry_after_s=1.0))
    llm = make_llm(server.base_url)
    started = time.monotonic()
    assert llm.complete(MESSAGES) == "echo: hello there"
    gap = server.requests[1].received_at - server.requests[0].received_at
    assert gap >= 0.95  # the default backoff of a first retry is at most 0.5 s
    assert time.monotonic() - started < 3


def test_gives_up_after_max_retries(server: FakeOpenAIServer) -> None:
    server.enqueue(*[Fault.status(503, retry_after_s=FAST)] * 5)
    llm = make_llm(server.base_url, max_retries=2)
    with pytest.raises(LLMError, match="HTTP 503 after 3 attempts") as caught:
        llm.complete(MESSAGES)
    assert not isinstance(caught.value, LLMOutputError)
    assert caught.value.backend == "openai"
    assert isinstance(caught.value.__cause__, openai.InternalServerError)
    assert len(chat_bodies(server)) == 3


def test_connection_errors_are_retried() -> None:
    """A server that accepts and hangs up at once: each attempt is a connection error."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    accepted: list[int] = []
    stop = threading.Event()

    def hang_up() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            connection.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        port = listener.getsockname()[1]
        llm = make_llm(f"http://127.0.0.1:{port}/v1", max_retries=1)
        with pytest.raises(LLMError, match="cannot connect"):
            llm.complete(MESSAGES)
        assert len(accepted) == 2
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.parametrize("status", [401, 400, 404])
def test_client_errors_are_not_retried(server: FakeOpenAIServer, status: int) -> None:
    server.enqueue(Fault.status(status, message="nope"))
    llm = make_llm(server.base_url)
    with pytest.raises(LLMError, match=f"HTTP {status} \\(not retried\\): .*nope"):
        llm.complete(MESSAGES)
    assert len(chat_bodies(server)) == 1


@pytest.mark.parametrize(
    "action", [Fault.empty(), Fault.empty(is_null=True), "  \n\t"], ids=["empty", "null", "blank"]
)
def test_empty_reply_is_an_output_error(server: FakeOpenAIServer, action: Fault | str) -> None:
    server.enqueue(action)
    with pytest.raises(LLMOutputError, match="empty reply"):
        make_llm(server.base_url).complete(MESSAGES)
    assert len(chat_bodies(server)) == 1


def test_truncated_body_is_an_llm_error(server: FakeOpenAIServer) -> None:
    server.enqueue(Fault.truncated())
    with pytest.raises(LLMError, match="unreadable response"):
        make_llm(server.base_url).complete(MESSAGES)


def test_reasoning_and_fences_are_returned_verbatim(server: FakeOpenAIServer) -> None:
    reply = '<think>plan</think>```json\n{"a": 1}\n```'
    server.enqueue(reply)
    assert make_llm(server.base_url).complete(MESSAGES, json_mode=True) == reply


def test_json_mode_sends_response_format(server: FakeOpenAIServer) -> None:
    assert make_llm(server.base_url).complete(MESSAGES, json_mode=True) == '{"echo": "hello there"}'
    assert chat_bodies(server)[0]["response_format"] == {"type": "json_object"}


def test_json_mode_falls_back_when_response_format_is_rejected() -> None:
    with FakeOpenAIServer(lambda request: '{"ok": true}', reject_response_format=True) as server:
        llm = make_llm(server.base_url)
        assert llm.complete(MESSAGES, json_mode=True) == '{"ok": true}'
        first, second = chat_bodies(server)
        assert first["response_format"] == {"type": "json_object"}
        assert "response_format" not in second
        assert llm.complete(MESSAGES, json_mode=True) == '{"ok": true}'
        assert len(chat_bodies(server)) == 3  # the endpoint's refusal is remembered


def test_other_bad_requests_are_not_resent_without_json_mode(server: FakeOpenAIServer) -> None:
    server.enqueue(Fault.status(400), Fault.status(400))
    with pytest.raises(LLMError, match="HTTP 400"):
        make_llm(server.base_url).complete(MESSAGES, json_mode=True)
    assert len(chat_bodies(server)) == 2  # once with response_format, once without


def test_network_guard_is_checked_before_each_request(server: FakeOpenAIServer) -> None:
    undo = block_network()
    try:
        assert make_llm(server.base_url).complete(MESSAGES) == "echo: hello there"
        remote = OpenAILLM(api_key="k", base_url="https://api.openai.com/v1", max_retries=0)
        with pytest.raises(NetworkBlockedError):
            remote.complete(MESSAGES)
    finally:
        undo()


async def test_acomplete_is_native_and_retries(server: FakeOpenAIServer) -> None:
    server.enqueue(Fault.status(502, retry_after_s=FAST), Fault.delay(3))
    llm = make_llm(server.base_url, timeout_s=0.5)
    assert await acomplete(llm, MESSAGES) == "echo: hello there"
    assert len(chat_bodies(server)) == 3
    assert llm.last_usage == TokenUsage(prompt_tokens=4, completion_tokens=3)
    server.enqueue(Fault.empty())
    with pytest.raises(LLMOutputError):
        await llm.acomplete(MESSAGES)
    server.enqueue(Fault.status(401))
    with pytest.raises(LLMError, match="HTTP 401"):
        await llm.acomplete(MESSAGES)
    await llm.aclose()


async def test_acomplete_json_mode_fallback() -> None:
    with FakeOpenAIServer(lambda request: '{"ok": 1}', reject_response_format=True) as server:
        llm = make_llm(server.base_url)
        assert await llm.acomplete(MESSAGES, json_mode=True) == '{"ok": 1}'
        assert [("response_format" in body) for body in chat_bodies(server)] == [True, False]
        await llm.aclose()


def test_streaming_with_the_openai_client(server: FakeOpenAIServer) -> None:
    client = openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0)
    stream = client.chat.completions.create(
        model="fake-model",
        messages=[{"role": "user", "content": "a longer message to split"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "echo: a longer message to split"
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) > 1
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 6
    client.close()


def test_streaming_with_langchain_chat_openai(server: FakeOpenAIServer) -> None:
    from langchain_openai import ChatOpenAI

    model = ChatOpenAI(
        model="fake-model", api_key="k", base_url=server.base_url, max_retries=0, streaming=True
    )
    assert "".join(str(chunk.content) for chunk in model.stream("hi there")) == "echo: hi there"
    assert chat_bodies(server)[-1]["stream"] is True


def test_embeddings_and_models_endpoints() -> None:
    with FakeOpenAIServer(embedding_dim=16) as server:
        client = openai.OpenAI(api_key="k", base_url=server.base_url, max_retries=0)
        first = client.embeddings.create(model="e", input=["alpha", "beta"])
        encoded = (
            client.embeddings.create(model="e", input="alpha", encoding_format="base64").data[0].embedding
        )
        assert [len(item.embedding) for item in first.data] == [16, 16]
        assert first.data[0].embedding != first.data[1].embedding
        decoded = struct.unpack("<16f", base64.b64decode(encoded))  # type: ignore[arg-type]
        assert decoded == pytest.approx(first.data[0].embedding, abs=1e-6)
        assert len(client.embeddings.create(model="e", input="x", dimensions=4).data[0].embedding) == 4
        assert [model.id for model in client.models.list()] == ["fake-model"]
        client.close()
