"""MemoryOSRetriever: langchain-tests' standard retriever suite, metadata, chains, user isolation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnablePassthrough
from langchain_tests.integration_tests import RetrieversIntegrationTests

from memoryos_core import MemoryOS
from memoryos_langchain import MemoryOSRetriever
from tests.adapters.langchain.fakes import RecordingChatModel, replies
from tests.conftest import topic_pages


class TestMemoryOSRetrieverStandard(RetrieversIntegrationTests):
    """The standard suite, on a memory with both short-term and consolidated (mid-term) pages."""

    @pytest.fixture(autouse=True)
    def _filled_memory(self, make_memory: Callable[..., MemoryOS]) -> None:
        memory = make_memory(short_term_capacity=2)
        memory.add_memories(topic_pages("hiking", 4) + topic_pages("cooking", 4), user_id="alice")
        memory.flush()
        self.memory = memory

    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return MemoryOSRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"memory": self.memory, "user_id": "alice"}

    @property
    def retriever_query_example(self) -> str:
        return "hiking in the mountains"


def test_documents_carry_tier_score_and_provenance(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory(short_term_capacity=2)
    memory.add_memories(topic_pages("hiking", 4) + topic_pages("coding", 4), user_id="alice")
    memory.flush()

    docs = MemoryOSRetriever(memory=memory, user_id="alice", k=3, tiers=("mid_term",)).invoke(
        "alpine trail boots"
    )
    assert len(docs) == 3
    for doc in docs:
        meta = doc.metadata
        assert meta["tier"] == "mid_term" and meta["user_id"] == "alice"
        assert isinstance(meta["score"], float) and meta["timestamp"]
        assert meta["page_ids"] == [doc.id] and len(meta["source_ids"]) == 1
    assert docs[0].metadata["source_ids"][0].startswith("hiking-")  # the best match is about hiking
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs), reverse=True)


def test_one_users_memory_never_reaches_another(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    memory.add_memories(topic_pages("hiking", 3), user_id="alice")
    memory.add_memories(topic_pages("cooking", 2), user_id="bob")

    bob = MemoryOSRetriever(memory=memory, user_id="bob", k=10)
    docs = bob.invoke("hiking in the mountains with boots")
    assert {d.metadata["user_id"] for d in docs} == {"bob"}
    assert docs and not any("hiking" in d.page_content for d in docs)
    adocs = asyncio.run(bob.ainvoke("hiking in the mountains"))
    assert [d.id for d in adocs] == [d.id for d in bob.invoke("hiking in the mountains")]


def test_recalled_documents_reach_the_model_in_a_chain(make_memory: Callable[..., MemoryOS]) -> None:
    memory = make_memory()
    memory.add_memory("My sister Ana lives in Porto.", "Porto is beautiful.", user_id="alice")
    memory.add_memory("I cooked pasta with basil.", "Yum.", user_id="alice")
    memory.add_memory("My brother lives in Oslo.", "Cold there!", user_id="bob")
    model = RecordingChatModel(messages=replies("Ana lives in Porto."))

    def join(docs: list[Document]) -> str:
        return "\n".join(d.page_content for d in docs)

    prompt = ChatPromptTemplate.from_messages([("system", "Memory:\n{memory}"), ("human", "{question}")])
    retriever = MemoryOSRetriever(memory=memory, user_id="alice", k=1)
    chain = RunnablePassthrough.assign(memory=(lambda x: x["question"]) | retriever | join) | prompt | model
    assert chain.invoke({"question": "Where does my sister Ana live?"}).text == "Ana lives in Porto."

    system = model.system_texts()[0]
    assert "My sister Ana lives in Porto." in system
    assert "pasta" not in system and "Oslo" not in system  # k=1, and bob's memory stays his
