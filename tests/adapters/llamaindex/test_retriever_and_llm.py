"""MemoryOSRetriever in a query engine, and LlamaIndexLLM as the core's LLM backend."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest
from llama_index.core.base.llms.types import ChatMessage as LlamaMessage
from llama_index.core.llms.mock import MockFunctionCallingLLM, MockLLMWithChatMemoryOfLastCall
from llama_index.core.query_engine import RetrieverQueryEngine

from memoryos_core import LLM, ChatMessage, LLMError, LLMOutputError, MemoryOS
from memoryos_llamaindex import LlamaIndexLLM, MemoryOSRetriever
from tests.adapters.llamaindex.helpers import CAT_FACT, Recorder, pages


async def test_retriever_nodes_carry_provenance(seeded: MemoryOS) -> None:
    seeded.import_memory({"profile": [{"name": "pet", "value": "a cat called Pixel"}]}, user_id="alice")
    retriever = MemoryOSRetriever(memory=seeded, user_id="alice", k=2)

    nodes = retriever.retrieve("What is my cat called?")

    assert [n.node.metadata["tier"] for n in nodes][:2] == ["profile", "mid_term"]
    assert "a cat called Pixel" in nodes[0].node.get_content()
    best = nodes[1]
    assert CAT_FACT in best.node.get_content() and best.score is not None and best.score > 0
    assert best.node.metadata["source_ids"] == ["m-1"] and len(best.node.metadata["page_ids"]) == 1
    assert best.node.metadata["timestamp"] and best.node.metadata["user_id"] == "alice"
    assert len(nodes) == 3  # the profile plus k units
    assert [n.node.get_content() for n in await retriever.aretrieve("What is my cat called?")] == [
        n.node.get_content() for n in nodes
    ]


def test_retriever_in_a_query_engine_and_users_apart(seeded: MemoryOS, recorder: Recorder) -> None:
    retriever = MemoryOSRetriever(memory=seeded, user_id="alice")
    engine = RetrieverQueryEngine.from_args(retriever, llm=recorder.llm())
    assert str(engine.query("What is my cat called?")) == "reply 1"
    assert CAT_FACT in recorder.seen(0)
    bob = MemoryOSRetriever(memory=seeded, user_id="bob").retrieve("What is my cat called?")
    assert bob == []


def test_llamaindex_llm_serves_the_core(make_memory: Callable[..., MemoryOS], recorder: Recorder) -> None:
    recorder.replies = ["Your cat is Pixel."]
    backend = LlamaIndexLLM(recorder.llm())
    assert isinstance(backend, LLM) and backend.name == "llamaindex:MockFunctionCallingLLM"
    memory = make_memory(llm=backend)
    memory.add_memory(CAT_FACT, "Pixel sounds adorable")

    result = memory.generate_response("What is my cat called?")

    assert result.text == "Your cat is Pixel."
    assert CAT_FACT in recorder.seen(0)  # the core's prompt, with its recalled memory
    assert pages(memory, "alice")[-1] == ("What is my cat called?", "Your cat is Pixel.")


async def test_llamaindex_llm_async_is_native_and_json_mode_asks_for_json() -> None:
    llm = MockLLMWithChatMemoryOfLastCall()  # echoes its prompt
    backend = LlamaIndexLLM(llm, name="echo")
    messages = [ChatMessage("system", "Summarise."), ChatMessage("user", "hi")]
    reply = await backend.acomplete(messages, json_mode=True)
    assert "achat" in llm.last_called_chat_function  # not ``chat`` in a worker thread
    assert "Summarise." in reply and "JSON object" in reply and "hi" in reply
    assert "JSON object" not in backend.complete([ChatMessage("user", "hi")])


def _failing(messages: Sequence[LlamaMessage], **kwargs: Any) -> LlamaMessage:
    raise RuntimeError("connection reset")


async def test_llamaindex_llm_translates_errors(make_memory: Callable[..., MemoryOS]) -> None:
    backend = LlamaIndexLLM(MockFunctionCallingLLM(response_generator=_failing))
    with pytest.raises(LLMError, match="connection reset") as caught:
        backend.complete([ChatMessage("user", "hi")])
    assert isinstance(caught.value.__cause__, RuntimeError) and caught.value.backend == backend.name
    with pytest.raises(LLMError) as caught_async:
        await backend.acomplete([ChatMessage("user", "hi")])
    assert isinstance(caught_async.value.__cause__, RuntimeError)

    empty = LlamaIndexLLM(Recorder(["  "]).llm())
    with pytest.raises(LLMOutputError):
        empty.complete([ChatMessage("user", "hi")])
    memory = make_memory(llm=backend)
    with pytest.raises(LLMError):
        memory.generate_response("What is my cat called?")
    assert pages(memory, "alice") == []  # a failed answer stores nothing
