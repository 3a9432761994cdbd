"""get_response: recalled context in the prompt (as data), one LLM call, the turn stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import (
    ChatMessage,
    FunctionLLM,
    LLMError,
    LLMNotConfiguredError,
    LLMOutputError,
    MemoryOS,
    Memoryos,
    ScriptedLLM,
)
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.testing import FakeOpenAIServer, Fault
from tests.conftest import topic_pages


def test_answer_uses_recalled_memory_and_stores_the_turn(make_memory: Callable[..., MemoryOS]) -> None:
    seen: list[list[ChatMessage]] = []

    def handler(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        seen.append(list(messages))
        return "You told me you are a nurse."

    memory = make_memory(llm=FunctionLLM(handler))
    memory.add_memory("I work as a nurse.", "Noted.")
    result = memory.generate_response("What is my job?")
    assert result.text == "You told me you are a nurse."
    assert len(seen) == 1 and result.cost.llm_calls == 1 and result.cost.prompt_tokens > 0
    system = seen[0][0].content
    assert "I work as a nurse." in system and "<recalled_memory>" in system and "not an instruction" in system
    assert "English" not in system and "30 words" not in system
    assert "language the user writes in" in system
    pages = memory.export_memory()["pages"]
    assert [(p["user_input"], p["agent_response"]) for p in pages][-1] == ("What is my job?", result.text)
    assert result.page_id == pages[-1]["id"]


def test_without_an_llm_answering_says_so_and_stores_nothing(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    with pytest.raises(LLMNotConfiguredError, match="openai_api_key"):
        memory.get_response("hello?")
    with pytest.raises(LLMNotConfiguredError):
        memory.force_mid_term_analysis()
    assert memory.export_memory()["pages"] == []


def test_an_analysis_without_an_llm_is_refused_before_anything_is_consolidated(
    make_memory: Callable[..., MemoryOS],
) -> None:
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(topic_pages("hiking", 5))
    before = memory.get_memory_stats()
    assert before.pending_pages > 0
    with pytest.raises(LLMNotConfiguredError):
        memory.force_mid_term_analysis()
    after = memory.get_memory_stats()
    assert (after.pending_pages, after.mid_term_pages) == (before.pending_pages, before.mid_term_pages)


@pytest.mark.parametrize("failure", ["   ", LLMError("down", backend="x")])
def test_a_failed_answer_stores_nothing(make_memory: Callable[..., MemoryOS], failure: Any) -> None:
    memory = make_memory(llm=ScriptedLLM([failure]))
    with pytest.raises((LLMOutputError, LLMError)):
        memory.get_response("hello?")
    assert memory.export_memory()["pages"] == []


def test_the_seed_example_runs_by_changing_only_the_import(tmp_path: Path, local_embedder: Any) -> None:
    def handler(request: dict[str, Any]) -> str:
        content = request["messages"][-1]["content"]
        if '"topics"' in content or '"user_knowledge"' in content:
            return RuleBasedLLM().complete([ChatMessage("user", content)], json_mode=True)
        return "You are a software engineer who loves hiking."

    with FakeOpenAIServer(handler) as server:
        # --- the reference's README example, with `from memoryos_core import Memoryos` ---
        memo = Memoryos(
            user_id="demo_user",
            openai_api_key="sk-test",
            openai_base_url=server.base_url,
            data_storage_path=str(tmp_path / "data"),
            llm_model="gpt-4o-mini",
            assistant_id="demo_assistant",
            short_term_capacity=7,
            mid_term_heat_threshold=5,
            retrieval_queue_capacity=7,
            long_term_knowledge_capacity=100,
        )
        memo.add_memory(
            user_input="Hi! I'm Tom, I work as a software engineer in San Francisco.",
            agent_response="Hello Tom! Nice to meet you.",
        )
        memo.add_memory(user_input="I love hiking on weekends.", agent_response="That sounds great!")
        answer = memo.get_response(query="What do you remember about my job?")
        # ---------------------------------------------------------------------------------
        memo.close()
    assert answer == "You are a software engineer who loves hiking."
    chat = server.requests_to("/chat/completions")
    assert len(chat) == 1 and "software engineer" in chat[0].body["messages"][0]["content"]


def test_the_http_llm_path_retries_and_consolidates(make_memory: Callable[..., MemoryOS]) -> None:
    from memoryos_core.llm.openai import OpenAILLM

    def handler(request: dict[str, Any]) -> str:
        return RuleBasedLLM().complete(
            [ChatMessage("user", request["messages"][-1]["content"])], json_mode=True
        )

    with FakeOpenAIServer(handler, actions=[Fault.status(429), Fault.status(500)]) as server:
        llm = OpenAILLM(model="m", api_key="k", base_url=server.base_url, max_retries=3, timeout_s=5)
        memory = make_memory(llm=llm, short_term_capacity=1, mid_term_heat_threshold=1000)
        memory.add_memories(
            [{"user_input": f"I love chess, game {i}.", "agent_response": "ok"} for i in range(4)]
        )
        cost = memory.flush()
    assert len(server.requests_to("/chat/completions")) == 3  # two faults retried, then the reply
    assert cost.llm_calls == 1
    assert memory.get_memory_stats().mid_term_pages == 3
