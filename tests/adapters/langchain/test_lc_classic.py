"""MemoryOSMemory as the legacy ``memory=`` of a langchain_classic chain, sync and async."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import pytest
from langchain_classic.chains import ConversationChain

import memoryos_langchain
from memoryos_core import MemoryOS, MissingDependencyError
from memoryos_langchain import MemoryOSMemory
from tests.adapters.langchain.fakes import RecordingChatModel, replies

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::PendingDeprecationWarning")


def test_conversation_chain_recalls_and_stores(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    memory.add_memory("My favourite colour is teal.", "Teal is lovely.", user_id="alice")
    memory.add_memory("My favourite colour is orange.", "Bright!", user_id="bob")
    model = RecordingChatModel(messages=replies("Teal, you told me.", "You said teal."))
    chain = ConversationChain(llm=model, memory=MemoryOSMemory(memory=memory, user_id="alice"))

    assert chain.invoke({"input": "What is my favourite colour?"})["response"] == "Teal, you told me."
    prompt = str(model.received[0][-1].text)
    assert "<recalled_memory>" in prompt and "My favourite colour is teal." in prompt
    assert "orange" not in prompt

    asyncio.run(chain.ainvoke({"input": "Remind me again?"}))
    assert "What is my favourite colour?" in str(model.received[1][-1].text)  # the stored turn came back
    pages = memory.export_memory(user_id="alice")["pages"]
    assert [(p["user_input"], p["agent_response"]) for p in pages[1:]] == [
        ("What is my favourite colour?", "Teal, you told me."),
        ("Remind me again?", "You said teal."),
    ]
    assert len(memory.export_memory(user_id="bob")["pages"]) == 1

    chain.memory.clear()  # type: ignore[union-attr]
    assert memory.export_memory(user_id="alice")["pages"] == []
    assert len(memory.export_memory(user_id="bob")["pages"]) == 1


def test_missing_langchain_classic_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "langchain_classic", None)
    monkeypatch.setitem(sys.modules, "langchain_classic.base_memory", None)
    monkeypatch.delitem(sys.modules, "memoryos_langchain.classic")
    monkeypatch.delattr(memoryos_langchain, "MemoryOSMemory", raising=False)
    with pytest.raises(MissingDependencyError, match=r"memoryos-py\[classic\]") as caught:
        memoryos_langchain.MemoryOSMemory  # noqa: B018 - the lazy import is the point
    assert caught.value.extra == "classic"
