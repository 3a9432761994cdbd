"""MemoryOSMemory through LlamaIndex's BaseMemory interface: turns, plumbing, copies, users."""

from __future__ import annotations

import copy
import json
import pickle
from collections.abc import Callable

import pytest
from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
from llama_index.core.memory import BaseMemory, InsertMethod
from llama_index.core.workflow import JsonSerializer

from memoryos_core import ConfigError, MemoryOS
from memoryos_llamaindex import MemoryOSMemory
from tests.adapters.llamaindex.helpers import CAT_FACT, pages


def user(text: str) -> ChatMessage:
    return ChatMessage(role="user", content=text)


def assistant(text: str) -> ChatMessage:
    return ChatMessage(role="assistant", content=text)


def test_a_turn_is_one_page_and_tool_plumbing_is_not_stored(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    chat = MemoryOSMemory.from_defaults(memory=memory, user_id="alice", session_id="s-1")
    assert isinstance(chat, BaseMemory)
    call = ChatMessage(role="assistant", blocks=[ToolCallBlock(tool_call_id="c1", tool_name="weather")])
    result = ChatMessage(role="tool", content="sunny, 21C", additional_kwargs={"tool_call_id": "c1"})
    chat.put(ChatMessage(role="system", content="You are terse."))
    chat.put(ChatMessage(role="user", content="Weather in Lyon?", additional_kwargs={"message_id": "u-9"}))
    chat.put_messages([call, result])
    assert pages(memory, "alice") == []  # waiting for the answer
    assert [m.role.value for m in chat.get()] == ["user", "assistant", "tool"]

    chat.put(assistant("It is sunny in Lyon."))
    exported = memory.export_memory("alice")["pages"]
    assert [(p["user_input"], p["agent_response"]) for p in exported] == [
        ("Weather in Lyon?", "It is sunny in Lyon.")
    ]
    meta = exported[0]["meta_data"]
    assert meta["session_id"] == "s-1" and meta["tool_calls"] == ["weather"]
    assert exported[0]["source_ids"] == ["u-9"]
    assert chat.pending == []


def test_react_scratchpad_is_stored_as_its_final_answer(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    chat = MemoryOSMemory.from_defaults(memory=memory, user_id="alice")
    scratchpad = (
        "Thought: I should look it up.\nAction: search\nAction Input: {'q': 'capital'}\n"
        "Observation: Paris\nThought: I can answer.\nAnswer: The capital is Paris."
    )
    chat.put_messages([user("Capital of France?"), assistant(scratchpad)])
    assert pages(memory, "alice") == [("Capital of France?", "The capital is Paris.")]


def test_unpaired_user_message_survives_serialisation(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    chat = MemoryOSMemory.from_defaults(memory=memory, user_id="alice", insert_method=InsertMethod.USER)
    chat.put(user("Remember that my locker code is 4711"))
    assert pages(memory, "alice") == []

    serializer = JsonSerializer()  # what a LlamaIndex Context uses
    assert isinstance(serializer.deserialize(serializer.serialize(chat)), MemoryOSMemory)
    revived = MemoryOSMemory.from_dict(json.loads(json.dumps(chat.to_dict())))
    assert revived is not chat and revived.memory is memory and revived.insert_method == "user"
    for clone in (copy.deepcopy(revived), pickle.loads(pickle.dumps(revived)), revived.model_copy()):
        assert clone.memory is memory
        assert [m.content for m in clone.pending] == ["Remember that my locker code is 4711"]
    revived.put(assistant("Noted: 4711."))
    assert pages(memory, "alice") == [("Remember that my locker code is 4711", "Noted: 4711.")]


def test_get_gives_recalled_memory_then_recent_turns_then_the_open_turn(seeded: MemoryOS) -> None:
    chat = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    chat.put(user("What is my cat called?"))
    messages = chat.get()
    assert messages[0].role.value == "system"
    assert CAT_FACT in messages[0].content and "<recalled_memory>" in messages[0].content
    assert [(m.role.value, m.content) for m in messages[1:]] == [
        ("user", "I cooked pasta with basil tonight"),
        ("assistant", "Yum"),
        ("user", "I fixed python bugs at work"),
        ("assistant", "Well done"),
        ("user", "What is my cat called?"),
    ]
    # the returned messages are copies: LlamaIndex edits them in place (agent state prompts)
    messages[-1].blocks[0].text = "edited"
    assert chat.pending[0].content == "What is my cat called?"


async def test_async_twins_match_sync(seeded: MemoryOS) -> None:
    chat = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    await chat.aput(user("Does Pixel like fish?"))
    assert [m.content for m in await chat.aget()] == [m.content for m in chat.get()]
    await chat.aput_messages([assistant("Pixel loves tuna.")])
    assert pages(seeded, "alice")[-1] == ("Does Pixel like fish?", "Pixel loves tuna.")
    assert [m.content for m in await chat.aget_all()] == [m.content for m in chat.get_all()]
    await chat.aput(user("open"))
    await chat.areset()
    assert chat.pending == []


def test_set_stores_history_once_and_keeps_its_open_turn(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    chat = MemoryOSMemory.from_defaults(memory=memory, user_id="alice")
    history = [user("I play chess"), assistant("Nice"), user("I also swim"), assistant("Great"), user("And?")]
    chat.set(history)
    chat.set(history)
    assert pages(memory, "alice") == [("I play chess", "Nice"), ("I also swim", "Great")]
    assert [m.content for m in chat.pending] == ["And?"]


def test_get_all_and_reset(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    chat = MemoryOSMemory.from_defaults(memory=memory, user_id="alice")
    chat.put_messages([user("one"), assistant("1"), user("two"), assistant("2"), user("three")])
    assert [m.content for m in chat.get_all()] == ["one", "1", "two", "2", "three"]
    chat.reset()
    assert [m.content for m in chat.get_all()] == ["one", "1", "two", "2"]
    assert len(pages(memory, "alice")) == 2  # reset never deletes stored memory


def test_users_stay_apart(seeded: MemoryOS) -> None:
    alice = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    bob = MemoryOSMemory.from_defaults(memory=seeded, user_id="bob")
    bob.put_messages([user("My dog is Rex"), assistant("Hi Rex!")])
    seen_by_bob = "\n".join(m.content or "" for m in bob.get("What is my cat called?"))
    assert "Pixel" not in seen_by_bob and "Rex" in seen_by_bob
    assert "Rex" not in "\n".join(m.content or "" for m in alice.get("dog"))
    assert pages(seeded, "bob") == [("My dog is Rex", "Hi Rex!")]


def test_configuration_errors_are_clear(make_memory: Callable[..., MemoryOS]) -> None:
    with pytest.raises(ConfigError):
        MemoryOSMemory.from_defaults(user_id="alice")
    orphan = MemoryOSMemory.from_dict({"user_id": "alice", "memory_key": "nobody-registered-this"})
    with pytest.raises(ConfigError, match="nobody-registered-this"):
        orphan.get()
    memory = make_memory()
    named = MemoryOSMemory.from_defaults(memory=memory, memory_key="app-memory")
    assert named.user_id == "alice"  # the MemoryOS's default user
    assert MemoryOSMemory.from_dict({"user_id": "bob", "memory_key": "app-memory"}).memory is memory
