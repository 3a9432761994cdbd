"""MemoryOSMemory as ``memory=`` of LlamaIndex's chat engines (with MemoryOSRetriever for context)."""

from __future__ import annotations

from llama_index.core.chat_engine import CondensePlusContextChatEngine, ContextChatEngine, SimpleChatEngine

from memoryos_core import MemoryOS
from memoryos_llamaindex import MemoryOSMemory, MemoryOSRetriever
from tests.adapters.llamaindex.helpers import CAT_FACT, Recorder, pages


def test_simple_chat_engine_recalls_and_stores(seeded: MemoryOS, recorder: Recorder) -> None:
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    engine = SimpleChatEngine.from_defaults(llm=recorder.llm(), memory=memory)

    assert str(engine.chat("What is my cat called?")) == "reply 1"
    assert CAT_FACT in recorder.seen(0)
    engine.chat("And what do I cook?")
    assert "user: What is my cat called?\nassistant: reply 1" in recorder.seen(1)  # a recent turn now
    assert pages(seeded, "alice")[-2:] == [
        ("What is my cat called?", "reply 1"),
        ("And what do I cook?", "reply 2"),
    ]
    assert [m.content for m in engine.chat_history][-2:] == ["And what do I cook?", "reply 2"]


async def test_simple_chat_engine_async_and_streaming(seeded: MemoryOS, recorder: Recorder) -> None:
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    engine = SimpleChatEngine.from_defaults(llm=recorder.llm(), memory=memory)

    assert str(await engine.achat("What is my cat called?")) == "reply 1"
    assert CAT_FACT in recorder.seen(0)
    streamed = "".join(engine.stream_chat("Does she like fish?").response_gen)
    assert streamed == "reply 2"
    assert pages(seeded, "alice")[-2:] == [
        ("What is my cat called?", "reply 1"),
        ("Does she like fish?", "reply 2"),
    ]


def test_context_chat_engine_with_memory_retriever(seeded: MemoryOS, recorder: Recorder) -> None:
    retriever = MemoryOSRetriever(memory=seeded, user_id="alice", k=3)
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    engine = ContextChatEngine.from_defaults(retriever=retriever, llm=recorder.llm(), memory=memory)

    response = engine.chat("What is my cat called?")

    assert str(response) == "reply 1"
    seen = recorder.seen(0)
    assert "tier: mid_term" in seen and CAT_FACT in seen  # the retriever's node, with its metadata
    assert "page_ids" not in seen  # provenance stays in metadata, out of the prompt
    assert response.source_nodes[0].node.metadata["tier"] in {"mid_term", "short_term"}
    assert pages(seeded, "alice")[-1] == ("What is my cat called?", "reply 1")


async def test_condense_plus_context_chat_engine(seeded: MemoryOS, recorder: Recorder) -> None:
    retriever = MemoryOSRetriever(memory=seeded, user_id="alice")
    memory = MemoryOSMemory.from_defaults(memory=seeded, user_id="alice")
    engine = CondensePlusContextChatEngine.from_defaults(
        retriever=retriever, llm=recorder.llm(), memory=memory
    )

    response = await engine.achat("What is my cat called?")

    # the first call condenses the question with the recalled history, the last one answers
    assert "What is my cat called?" in recorder.seen(0)
    assert CAT_FACT in recorder.seen(-1)
    assert pages(seeded, "alice")[-1] == ("What is my cat called?", str(response))


def test_chat_engines_keep_users_apart(seeded: MemoryOS, recorder: Recorder) -> None:
    seeded.add_memory("My dog is called Rex", "Hi Rex!", user_id="bob")
    bob = MemoryOSMemory.from_defaults(memory=seeded, user_id="bob")
    engine = ContextChatEngine.from_defaults(
        retriever=MemoryOSRetriever(memory=seeded, user_id="bob"), llm=recorder.llm(), memory=bob
    )
    engine.chat("What is my cat called?")
    assert "Pixel" not in recorder.seen(0) and "Rex" in recorder.seen(0)
    assert pages(seeded, "bob")[-1] == ("What is my cat called?", "reply 1")
    assert "What is my cat called?" not in [u for u, _ in pages(seeded, "alice")]
