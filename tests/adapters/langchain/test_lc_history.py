"""MemoryOSChatMessageHistory: driven by RunnableWithMessageHistory, pages stored, users kept apart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
from langchain_core.runnables.history import RunnableWithMessageHistory

from memoryos_core import InvalidInputError, MemoryOS
from memoryos_langchain import MemoryOSChatMessageHistory
from tests.adapters.langchain.fakes import RecordingChatModel, replies

pytestmark = pytest.mark.filterwarnings("ignore:RunnableWithMessageHistory is deprecated")


def _pages(memory: MemoryOS, user: str) -> list[tuple[str, str]]:
    return [(p["user_input"], p["agent_response"]) for p in memory.export_memory(user_id=user)["pages"]]


def _chain(
    model: RecordingChatModel, factory: Callable[[str], MemoryOSChatMessageHistory]
) -> RunnableWithMessageHistory:
    prompt = ChatPromptTemplate.from_messages(
        [("system", "You are a helpful assistant."), MessagesPlaceholder("history"), ("human", "{input}")]
    )
    return RunnableWithMessageHistory(
        prompt | model, factory, input_messages_key="input", history_messages_key="history"
    )


def _texts(call: list[object]) -> list[str]:
    return [str(m.text) for m in call]  # type: ignore[attr-defined]


def test_runnable_with_message_history_recalls_each_users_own_turns(
    make_memory: Callable[..., MemoryOS],
) -> None:
    memory = make_memory()
    model = RecordingChatModel(messages=replies("Hello Alice, bees are great.", "Hi Bob.", "You keep bees."))
    chain = _chain(model, MemoryOSChatMessageHistory.factory(memory))

    def ask(text: str, session: str) -> None:
        chain.invoke({"input": text}, config={"configurable": {"session_id": session}})

    ask("I am Alice and I keep bees.", "alice")
    ask("I am Bob and I race cars.", "bob")
    ask("What do I keep?", "alice")

    third = _texts(model.received[2])
    assert third == [
        "You are a helpful assistant.",
        "I am Alice and I keep bees.",
        "Hello Alice, bees are great.",
        "What do I keep?",
    ]
    assert not any("Bob" in text for text in third)
    assert _texts(model.received[1])[1:] == ["I am Bob and I race cars."]  # bob saw none of alice
    assert _pages(memory, "alice") == [
        ("I am Alice and I keep bees.", "Hello Alice, bees are great."),
        ("What do I keep?", "You keep bees."),
    ]
    assert _pages(memory, "bob") == [("I am Bob and I race cars.", "Hi Bob.")]


def test_async_chain_with_a_session_to_user_mapping(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    model = RecordingChatModel(messages=replies("Noted: tea, no sugar.", "Tea without sugar."))
    factory = MemoryOSChatMessageHistory.factory(memory, {"s-1": "carol", "s-2": "carol"})
    chain = _chain(model, factory)

    async def run() -> None:
        await chain.ainvoke({"input": "I drink tea without sugar."}, {"configurable": {"session_id": "s-1"}})
        await chain.ainvoke({"input": "How do I take my tea?"}, {"configurable": {"session_id": "s-2"}})

    asyncio.run(run())
    assert "I drink tea without sugar." in _texts(model.received[1])  # another session, same user
    assert _pages(memory, "carol")[-1] == ("How do I take my tea?", "Tea without sugar.")
    with pytest.raises(InvalidInputError, match="no user id is mapped"):
        factory("s-3")


def test_an_unanswered_message_waits_durably_for_its_answer(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    MemoryOSChatMessageHistory(memory, "alice").add_messages([HumanMessage("I moved to Lyon.", id="h-1")])

    later = MemoryOSChatMessageHistory(memory, "alice")  # a new object, as after a restart
    assert later.messages == [HumanMessage("I moved to Lyon.", id="h-1")]
    later.add_messages([AIMessage("Lyon is lovely in spring.", id="a-1")])

    assert _pages(memory, "alice") == [("I moved to Lyon.", "Lyon is lovely in spring.")]
    assert MemoryOSChatMessageHistory(memory, "alice").messages == [
        HumanMessage("I moved to Lyon.", id="h-1"),
        AIMessage("Lyon is lovely in spring.", id="a-1"),
    ]
    unit = memory.retrieve_memory("Lyon", user_id="alice").all_units[0]
    assert set(unit.source_ids) == {"h-1", "a-1"}  # message ids reach recalled units


def test_system_and_tool_messages_are_not_stored(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    call = {"name": "weather", "args": {"city": "Oslo"}, "id": "call-1", "type": "tool_call"}
    MemoryOSChatMessageHistory(memory, "alice").add_messages(
        [
            SystemMessage("Be brief."),
            HumanMessage("Weather in Oslo?", id="h-1"),
            AIMessage("", tool_calls=[call], id="a-0"),
            ToolMessage("-3C, snow", tool_call_id="call-1"),
            AIMessage("It is -3C and snowing.", id="a-1"),
            HumanMessage("Thanks."),
            HumanMessage("And tomorrow?"),
        ]
    )
    assert _pages(memory, "alice") == [
        ("Weather in Oslo?", "It is -3C and snowing."),
        ("Thanks.", ""),  # followed by another human message: stored alone
        ("And tomorrow?", ""),  # pending: the next AI message completes it
    ]
    export = memory.export_memory(user_id="alice")
    assert export["pages"][0]["source_ids"] == ["h-1", "a-1"]


def test_messages_window_and_clear_only_touch_one_user(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    alice = MemoryOSChatMessageHistory(memory, "alice", max_pages=2)
    for n in range(3):
        alice.add_messages([HumanMessage(f"question {n}"), AIMessage(f"answer {n}")])
    MemoryOSChatMessageHistory(memory, "bob").add_messages([HumanMessage("bob here"), AIMessage("hi bob")])

    assert _texts(alice.messages) == ["question 1", "answer 1", "question 2", "answer 2"]
    alice.clear()
    assert alice.messages == []
    assert _texts(MemoryOSChatMessageHistory(memory, "bob").messages) == ["bob here", "hi bob"]


def test_async_twins(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    history = MemoryOSChatMessageHistory(memory, "dave")

    async def run() -> tuple[list[object], list[object]]:
        await history.aadd_messages([HumanMessage("I play chess.", id="h-1")])
        await MemoryOSChatMessageHistory(memory, "dave").aadd_messages([AIMessage("Chess is fun.", id="a-1")])
        before = await MemoryOSChatMessageHistory(memory, "dave").aget_messages()
        await history.aclear()
        return before, await history.aget_messages()

    before, after = asyncio.run(run())
    assert before == [HumanMessage("I play chess.", id="h-1"), AIMessage("Chess is fun.", id="a-1")]
    assert after == []
