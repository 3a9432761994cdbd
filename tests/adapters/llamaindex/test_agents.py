"""MemoryOSMemory as ``memory=`` of FunctionAgent, ReActAgent and AgentWorkflow, and across Contexts."""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable

import pytest
from llama_index.core.agent.workflow import AgentWorkflow, FunctionAgent, ReActAgent
from llama_index.core.base.llms.types import ChatMessage, ToolCallBlock
from llama_index.core.memory import InsertMethod
from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context
from workflows.context.state_store import UnserializableKeyWarning

from memoryos_core import MemoryOS
from memoryos_llamaindex import MemoryOSMemory
from tests.adapters.llamaindex.helpers import CAT_FACT, Recorder, pages


def favourite_colour() -> str:
    """Look up the user's favourite colour."""
    return "blue"


async def test_function_agent_recalls_memory_and_stores_the_turn_without_tool_calls(seeded: MemoryOS) -> None:
    call = ChatMessage(
        role="assistant", blocks=[ToolCallBlock(tool_call_id="call-1", tool_name="favourite_colour")]
    )
    recorder = Recorder([call, "Pixel is your cat and blue your colour."])
    agent = FunctionAgent(llm=recorder.llm(), tools=[FunctionTool.from_defaults(fn=favourite_colour)])
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")

    result = await agent.run("What is my cat called, and my colour?", memory=memory)

    assert str(result) == "Pixel is your cat and blue your colour."
    assert CAT_FACT in recorder.seen(0)  # recalled mid-term memory reached the model
    assert "tool: blue" in recorder.seen(1)  # the loop still sees its tool result
    assert pages(seeded, "alice")[-1] == (
        "What is my cat called, and my colour?",
        "Pixel is your cat and blue your colour.",
    )
    assert len(pages(seeded, "alice")) == 5  # 4 seeded + 1: no page for the tool call or result
    assert seeded.export_memory("alice")["pages"][-1]["meta_data"]["tool_calls"] == ["favourite_colour"]


@pytest.mark.parametrize(
    ("insert_method", "system_prompt"), [(InsertMethod.USER, None), (InsertMethod.SYSTEM, "Be kind.")]
)
async def test_react_agent_recalls_and_stores_the_answer_not_the_scratchpad(
    seeded: MemoryOS, insert_method: InsertMethod, system_prompt: str | None
) -> None:
    # ReActAgent drops a leading system message of memory unless it has a system_prompt of its own.
    recorder = Recorder(["Thought: The user told me before.\nAnswer: Your cat is Pixel."])
    agent = ReActAgent(llm=recorder.llm(), tools=[], system_prompt=system_prompt)
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice", insert_method=insert_method)

    result = await agent.run("What is my cat called?", memory=memory)

    assert "Your cat is Pixel." in str(result)
    assert CAT_FACT in recorder.seen(0)
    assert pages(seeded, "alice")[-1] == ("What is my cat called?", "Your cat is Pixel.")


async def test_agent_workflow_recalls_and_stores(seeded: MemoryOS) -> None:
    recorder = Recorder(["Pixel, who loves tuna."])
    helper = FunctionAgent(name="helper", description="Answers questions.", llm=recorder.llm(), tools=[])
    workflow = AgentWorkflow(agents=[helper], root_agent="helper")
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")

    await workflow.run(user_msg="What is my cat called?", memory=memory)

    assert CAT_FACT in recorder.seen(0)
    assert pages(seeded, "alice")[-1] == ("What is my cat called?", "Pixel, who loves tuna.")


async def test_reused_and_restored_contexts_keep_the_same_store(make_memory: Callable[..., MemoryOS]) -> None:
    store = make_memory()
    recorder = Recorder(["Noted, Lyon.", "You live in Lyon.", "Still Lyon."])
    agent = FunctionAgent(llm=recorder.llm(), tools=[])
    memory = MemoryOSMemory.from_defaults(memory=store, user_id="alice")
    ctx = Context(agent)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        await agent.run("I live in Lyon", memory=memory, ctx=ctx)
        await agent.run("Where do I live?", ctx=ctx)
        saved = json.loads(json.dumps(ctx.to_dict()))
        restored = Context.from_dict(agent, saved)
        await agent.run("And now?", ctx=restored)
    assert not [w for w in caught if issubclass(w.category, UnserializableKeyWarning)]

    copied = await restored.store.get("memory")
    assert isinstance(copied, MemoryOSMemory) and copied is not memory
    assert copied.memory is store and copied.session_id == memory.session_id
    assert "I live in Lyon" in recorder.seen(1) and "You live in Lyon." in recorder.seen(2)
    assert pages(store, "alice") == [
        ("I live in Lyon", "Noted, Lyon."),
        ("Where do I live?", "You live in Lyon."),
        ("And now?", "Still Lyon."),
    ]


async def test_agents_keep_users_apart(seeded: MemoryOS) -> None:
    recorder = Recorder()
    agent = FunctionAgent(llm=recorder.llm(), tools=[])
    for question in ("My dog is Rex", "What is my cat called?"):
        await agent.run(question, memory=MemoryOSMemory.from_defaults(memory=seeded, user_id="bob"))
    assert "Pixel" not in recorder.seen(1) and "My dog is Rex" in recorder.seen(1)
    assert [u for u, _ in pages(seeded, "bob")] == ["My dog is Rex", "What is my cat called?"]
    assert "My dog is Rex" not in [u for u, _ in pages(seeded, "alice")]
