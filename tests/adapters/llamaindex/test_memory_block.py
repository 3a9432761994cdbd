"""MemoryOSMemoryBlock inside LlamaIndex's stock ``Memory``: recall in, flushed turns stored, truncation."""

from __future__ import annotations

import copy
from collections.abc import Callable

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import ChatMessage
from llama_index.core.memory import Memory
from llama_index.core.storage.chat_store.base_db import MessageStatus
from llama_index.core.utils import get_tokenizer

from memoryos_core import MemoryOS
from memoryos_llamaindex import MemoryOSMemoryBlock
from tests.adapters.llamaindex.helpers import CAT_FACT, Recorder, pages


async def test_block_brings_recall_to_an_agent(seeded: MemoryOS, recorder: Recorder) -> None:
    block = MemoryOSMemoryBlock(memory=seeded, user_id="alice")
    chat_memory = Memory.from_defaults(session_id="s-7", memory_blocks=[block])
    agent = FunctionAgent(llm=recorder.llm(), tools=[])

    await agent.run("What is my cat called?", memory=chat_memory)

    system = recorder.calls[0][0]
    assert system.role.value == "system" and "<memoryos>" in (system.content or "")
    assert CAT_FACT in (system.content or "")


async def test_block_keeps_users_apart(seeded: MemoryOS) -> None:
    bob = MemoryOSMemoryBlock(memory=seeded, user_id="bob")
    assert await bob.aget([ChatMessage(role="user", content="What is my cat called?")]) == ""
    seeded.add_memory("My dog is called Rex", "Hi Rex!", user_id="bob")
    recalled = await bob.aget([ChatMessage(role="user", content="What is my dog called?")])
    assert "Rex" in recalled and "Pixel" not in recalled


async def test_flushed_turns_become_pages_in_order(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    block = MemoryOSMemoryBlock(memory=memory, user_id="alice")
    chat_memory = Memory.from_defaults(
        session_id="s-8", token_limit=60, token_flush_size=12, chat_history_token_ratio=0.5,
        memory_blocks=[block],
    )  # fmt: skip
    turns = [(f"Fact {i}: my lucky number is {i}", f"Noted {i}") for i in range(6)]
    for question, answer in turns:
        await chat_memory.aput_messages(
            [ChatMessage(role="user", content=question), ChatMessage(role="assistant", content=answer)]
        )

    stored = pages(memory, "alice")
    assert 0 < len(stored) < len(turns)  # the overflow went to MemoryOS, the recent turns stayed
    assert stored == turns[: len(stored)]
    active = await chat_memory.aget_all(status=MessageStatus.ACTIVE)
    queued = [m.content for m in active if m.role.value == "user"]
    assert [q for q, _ in turns] == [q for q, _ in stored] + queued  # every turn in exactly one place
    assert {p["meta_data"]["session_id"] for p in memory.export_memory("alice")["pages"]} == {"s-8"}


async def test_truncate_drops_the_lowest_ranked_units_first(seeded: MemoryOS) -> None:
    block = copy.deepcopy(MemoryOSMemoryBlock(memory=seeded, user_id="alice"))  # copies share the engine
    assert block.memory is seeded
    content = await block.aget([ChatMessage(role="user", content="What is my cat called?")])
    tokens = len(get_tokenizer()(content))

    shorter = await block.atruncate(content, 15)

    assert shorter is not None and len(get_tokenizer()(shorter)) <= tokens - 15
    assert CAT_FACT in shorter and "</recalled_memory>" in shorter  # best unit kept, still well-formed
    assert await block.atruncate(content, 10 * tokens) is None  # nothing fits (and there is no profile)
    foreign = "word " * 100  # not rendered by this block: cut to fit
    cut = await block.atruncate(foreign, 40)
    assert cut is not None and len(get_tokenizer()(cut)) < 100
