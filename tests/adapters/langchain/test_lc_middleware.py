"""MemoryOSMiddleware in create_agent, sync and async: recall reaches the model, turns are stored."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.checkpoint.memory import InMemorySaver

from memoryos_core import ConfigError, MemoryOS
from memoryos_langchain import MemoryOSMiddleware
from tests.adapters.langchain.fakes import RecordingChatModel, replies


@dataclass
class Context:
    user_id: str


@pytest.fixture
def memory(make_memory: Callable[..., MemoryOS]) -> MemoryOS:
    memory = make_memory()
    memory.add_memory("I keep bees in my garden.", "Bees are wonderful.", user_id="alice")
    memory.add_memory("I race cars on weekends.", "Sounds fast!", user_id="bob")
    return memory


def _pages(memory: MemoryOS, user: str) -> list[tuple[str, str, list[str]]]:
    pages = memory.export_memory(user_id=user)["pages"]
    return [(p["user_input"], p["agent_response"], p["source_ids"]) for p in pages]


def test_sync_agent_recalls_into_the_system_message_and_stores_the_turn(memory: MemoryOS) -> None:
    model = RecordingChatModel(messages=replies("Your bees are in the garden."))
    agent = create_agent(
        model, tools=[], system_prompt="You are helpful.", middleware=[MemoryOSMiddleware(memory)]
    )
    question = HumanMessage("Where are my bees?", id="h-1")
    result = agent.invoke({"messages": [question]}, context=Context("alice"))

    system = model.system_texts()[0]
    assert system.startswith("You are helpful.\n\n<recalled_memory>")
    assert "I keep bees in my garden." in system and "race cars" not in system
    assert not any(isinstance(m, SystemMessage) for m in result["messages"])  # for that call only
    answer = result["messages"][-1]
    assert _pages(memory, "alice")[-1] == (
        "Where are my bees?",
        "Your bees are in the garden.",
        ["h-1", answer.id],
    )
    assert len(_pages(memory, "bob")) == 1


def test_async_agent_takes_the_user_from_config(memory: MemoryOS) -> None:
    model = RecordingChatModel(messages=replies("You race cars."))
    agent = create_agent(model, tools=[], middleware=[MemoryOSMiddleware(memory)])
    config = {"configurable": {"user_id": "bob"}}
    asyncio.run(agent.ainvoke({"messages": [HumanMessage("What do I do on weekends?")]}, config=config))

    system = model.system_texts()[0]
    assert system.startswith("<recalled_memory>")
    assert "I race cars on weekends." in system and "bees" not in system
    assert _pages(memory, "bob")[-1][:2] == ("What do I do on weekends?", "You race cars.")
    assert len(_pages(memory, "alice")) == 1


def test_memory_tools_in_a_tool_calling_loop(memory: MemoryOS) -> None:
    remember = {"name": "remember", "args": {"fact": "Alice is allergic to peanuts."}, "id": "call-1"}
    recall = {"name": "recall_memory", "args": {"query": "allergic peanuts"}, "id": "call-2"}
    model = RecordingChatModel(
        messages=replies(
            AIMessage("", tool_calls=[remember]),
            "Noted your allergy.",
            AIMessage("", tool_calls=[recall]),
            "You are allergic to peanuts.",
        )
    )
    agent = create_agent(model, tools=[], middleware=[MemoryOSMiddleware(memory, tools=True)])
    agent.invoke(
        {"messages": [HumanMessage("I am allergic to peanuts, remember that.")]}, context=Context("alice")
    )
    assert [call[0] for call in _pages(memory, "alice")[1:]] == [
        "Alice is allergic to peanuts.",  # stored by the tool, citing its tool call
        "I am allergic to peanuts, remember that.",  # then the turn
    ]
    assert _pages(memory, "alice")[1][2] == ["call-1"]
    assert len(model.received) == 2 and "<recalled_memory>" in model.system_texts()[1]  # every call

    question = {"messages": [HumanMessage("What am I allergic to?")]}
    result = asyncio.run(agent.ainvoke(question, config={"configurable": {"user_id": "alice"}}))
    tool_output = next(m for m in result["messages"] if m.type == "tool")
    assert "Alice is allergic to peanuts." in str(tool_output.content)
    assert "Alice is allergic to peanuts." in model.system_texts()[2]
    assert not any("peanuts" in text for text in _texts_of(memory, "bob"))


def _texts_of(memory: MemoryOS, user: str) -> list[str]:
    return [f"{u} {a}" for u, a, _ in _pages(memory, user)]


def test_a_turn_is_stored_once_with_a_checkpointer(memory: MemoryOS) -> None:
    model = RecordingChatModel(messages=replies("First answer.", "Second answer.", "Again the second."))
    agent = create_agent(
        model, tools=[], middleware=[MemoryOSMiddleware(memory)], checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "t-1", "user_id": "alice"}}
    agent.invoke({"messages": [HumanMessage("first question")]}, config=config)
    agent.invoke({"messages": [HumanMessage("second question")]}, config=config)
    agent.invoke({"messages": []}, config=config)  # no new human message: nothing new to store

    assert [page[:2] for page in _pages(memory, "alice")[1:]] == [
        ("first question", "First answer."),
        ("second question", "Second answer."),
    ]
    assert "first question" in model.system_texts()[1]  # the stored turn is recalled next time


def test_without_a_user_id_the_agent_refuses(memory: MemoryOS) -> None:
    agent = create_agent(
        RecordingChatModel(messages=replies("x")), tools=[], middleware=[MemoryOSMiddleware(memory)]
    )
    with pytest.raises(ConfigError, match="no user id"):
        agent.invoke({"messages": [HumanMessage("hello")]})
