"""LangChainLLM: a LangChain chat model drives MemoryOS; ChatOpenAI over the real HTTP path, offline."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_openai import ChatOpenAI

from memoryos_core import ChatMessage, LLMError, LLMOutputError, MemoryOS
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.testing import FakeOpenAIServer, Fault
from memoryos_langchain import LangChainLLM

PROMPT = [ChatMessage("system", "Be brief."), ChatMessage("user", "Say hi.")]


def _rules_handler() -> Callable[[dict[str, Any]], str]:
    rules = RuleBasedLLM()

    def handler(body: dict[str, Any]) -> str:
        messages = [ChatMessage(m["role"], m["content"]) for m in body["messages"]]
        reply = rules.complete(messages, json_mode="response_format" in body)
        if '"topics"' not in reply:
            return reply
        data = json.loads(reply)  # mark the summaries, to tell them from the extractive fallback's
        for topic in data["topics"]:
            topic["summary"] = f"(via http) {topic['summary']}"
        return json.dumps(data)

    return handler


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(_rules_handler()) as server:
        yield server


def _chat_openai(server: FakeOpenAIServer) -> ChatOpenAI:
    return ChatOpenAI(base_url=server.base_url, api_key="sk-test", model="fake-model", max_retries=0)


def test_any_chat_model_sync_and_async() -> None:
    llm = LangChainLLM(FakeListChatModel(responses=["hello", "again"]))
    assert llm.name == "langchain:FakeListChatModel" and llm.json_kwargs == {}
    assert llm.complete(PROMPT) == "hello"
    assert asyncio.run(llm.acomplete(PROMPT, json_mode=True)) == "again"


def test_chat_openai_drives_consolidation_promotion_and_answers(
    make_memory: Callable[..., MemoryOS], server: FakeOpenAIServer
) -> None:
    memory = make_memory(llm=LangChainLLM(_chat_openai(server)), short_term_capacity=2)
    memory.add_memory("I love hiking in the Alps.", "Mountains are great.")
    memory.add_memory("I love hiking with my dog.", "Dogs enjoy trails.")
    memory.add_memory("I work as a nurse in Lyon.", "A caring job.")
    memory.add_memory("I like baking sourdough bread.", "Tasty!")
    memory.flush()

    chats = server.requests_to("/chat/completions")
    assert chats and all(r.body["model"] == "fake-model" for r in chats)
    assert chats[0].body["response_format"] == {"type": "json_object"}  # json_mode reached the server
    segments = memory.export_memory()["segments"]
    assert segments and all(s["summary"].startswith("(via http) ") for s in segments)
    assert memory.get_memory_stats().llm_fallbacks == 0

    memory.force_mid_term_analysis()
    profile = memory.get_user_profile()
    assert any("hiking" in k.text for k in profile.user_knowledge)
    assert profile.traits and memory.get_memory_stats().cost.llm_calls >= 2

    answer = memory.get_response("What do I do on weekends?")
    assert answer.startswith("I remember:")
    assert "response_format" not in server.requests_to("/chat/completions")[-1].body


def test_a_server_without_json_mode_is_retried_without_it(server: FakeOpenAIServer) -> None:
    with FakeOpenAIServer(lambda body: '{"ok": true}', reject_response_format=True) as strict:
        llm = LangChainLLM(_chat_openai(strict))
        assert llm.complete(PROMPT, json_mode=True) == '{"ok": true}'
        assert ["response_format" in r.body for r in strict.requests_to("/chat/completions")] == [True, False]


def test_provider_errors_become_llm_errors(server: FakeOpenAIServer) -> None:
    llm = LangChainLLM(_chat_openai(server), name="lc-openai")
    server.enqueue(Fault.status(500), Fault.empty(), Fault.status(503))
    with pytest.raises(LLMError, match="lc-openai failed") as caught:
        llm.complete(PROMPT)
    assert caught.value.backend == "lc-openai" and "openai" in type(caught.value.__cause__).__module__
    with pytest.raises(LLMOutputError, match="empty reply"):
        llm.complete(PROMPT)
    with pytest.raises(LLMError) as async_caught:
        asyncio.run(llm.acomplete(PROMPT))
    assert not isinstance(async_caught.value, LLMOutputError) and async_caught.value.__cause__ is not None
