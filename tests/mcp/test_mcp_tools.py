"""The MCP tools through the SDK's own client, in-process (direct dispatch and the in-memory transport)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS, MissingDependencyError
from memoryos_core.app.mcp import create_server, run_server
from memoryos_core.app.settings import Settings

TOOLS = {"add_memory", "retrieve_memory", "get_user_profile", "delete_memory", "get_memory_stats"}


@pytest.fixture
def memory(tmp_path: Path) -> Iterator[MemoryOS]:
    made = MemoryOS(
        store=ChromaStore(path=str(tmp_path / "chroma")),
        embedder=HashingEmbedder(64),
        short_term_capacity=2,
        background=False,
    )
    yield made
    made.close()


@pytest.fixture(params=["auto", "legacy"])
def mode(request: pytest.FixtureRequest) -> str:
    """``auto`` dispatches in-process directly; ``legacy`` runs JSON-RPC over the in-memory transport."""
    return str(request.param)


@asynccontextmanager
async def connect(memory: MemoryOS, mode: str) -> AsyncIterator[Client]:
    # Entered inside each test: anyio's task groups must be left by the task that entered them.
    async with Client(create_server(memory), mode=mode) as connected:
        yield connected


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


async def error(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return result.content[0].text  # type: ignore[union-attr]


async def test_tools_have_typed_inputs_and_structured_outputs(memory: MemoryOS, mode: str) -> None:
    async with connect(memory, mode) as client:
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(listed) == TOOLS
        for tool in listed.values():
            assert "user_id" in tool.input_schema["required"], tool.name
            assert tool.input_schema["properties"]["user_id"]["pattern"]
            assert tool.output_schema is not None and tool.description
        add = listed["add_memory"].input_schema
        assert set(add["required"]) == {"user_input", "agent_response", "user_id"}
        assert {"assistant_id", "timestamp", "meta_data"} <= set(add["properties"])
        assert listed["retrieve_memory"].input_schema["properties"]["max_results"]["maximum"] == 100
        assert (
            listed["delete_memory"].annotations is not None
            and listed["delete_memory"].annotations.destructive_hint
        )


async def test_add_then_retrieve_serves_each_user_their_own_memory(memory: MemoryOS, mode: str) -> None:
    async with connect(memory, mode) as client:
        added = await call(
            client,
            "add_memory",
            user_input="I adopted a cat called Pixel.",
            agent_response="Lovely name!",
            user_id="alice",
            timestamp="2025-03-01 19:00:00",
            meta_data={"message_id": "m1"},
        )
        assert added["status"] == "success" and added["page_id"].startswith("pg_")
        await call(
            client, "add_memory", user_input="I collect stamps.", agent_response="Neat.", user_id="bob"
        )
        recalled = await call(client, "retrieve_memory", query="Do I have pets?", user_id="alice")
        assert [page["user_input"] for page in recalled["short_term_memory"]] == [
            "I adopted a cat called Pixel."
        ]
        assert recalled["short_term_memory"][0]["page_id"] == added["page_id"]
        assert recalled["short_term_memory"][0]["timestamp"] == "2025-03-01 19:00:00"
        bob = await call(client, "retrieve_memory", query="Do I have pets?", user_id="bob")
        assert [page["user_input"] for page in bob["short_term_memory"]] == ["I collect stamps."]


async def test_older_pages_are_consolidated_and_retrieved(memory: MemoryOS, mode: str) -> None:
    async with connect(memory, mode) as client:
        for topic in ["hiking in the alps", "baking sourdough bread", "fixing python bugs"]:
            await call(
                client, "add_memory", user_input=f"I like {topic}.", agent_response="ok", user_id="carl"
            )
        await memory.aflush("carl")
        stats = await call(client, "get_memory_stats", user_id="carl")
        assert (stats["short_term_pages"], stats["mid_term_pages"]) == (2, 1)
        recalled = await call(
            client, "retrieve_memory", query="hiking in the alps", user_id="carl", max_results=3
        )
        assert "I like hiking in the alps." in [page["user_input"] for page in recalled["retrieved_pages"]]


@pytest.mark.parametrize(
    ("tool", "arguments", "fragment"),
    [
        ("add_memory", {"user_input": "hi", "agent_response": "yo", "user_id": "../eve"}, "user_id"),
        ("add_memory", {"user_input": " ", "agent_response": "", "user_id": "alice"}, "non-empty"),
        (
            "add_memory",
            {"user_input": "hi", "agent_response": "yo", "user_id": "alice", "meta_data": [1]},
            "meta_data",
        ),
        ("add_memory", {"agent_response": "yo", "user_id": "alice"}, "user_input"),
        ("retrieve_memory", {"query": "  ", "user_id": "alice"}, "query must not be empty"),
        ("retrieve_memory", {"query": "x", "user_id": "alice", "max_results": 0}, "max_results"),
        ("delete_memory", {"user_id": "alice"}, "either page_id or everything"),
        ("delete_memory", {"user_id": "alice", "page_id": "pg_x", "everything": True}, "not both"),
        ("delete_memory", {"user_id": "alice", "page_id": "pg_unknown"}, "no page 'pg_unknown'"),
        ("delete_memory", {"user_id": "alice", "page_id": "../etc"}, "invalid page_id"),
        ("get_memory_stats", {}, "user_id"),
    ],
)
async def test_bad_input_is_a_tool_error_and_changes_nothing(
    memory: MemoryOS, mode: str, tool: str, arguments: dict[str, Any], fragment: str
) -> None:
    async with connect(memory, mode) as client:
        await call(client, "add_memory", user_input="keep me", agent_response="ok", user_id="alice")
        assert fragment in await error(client, tool, **arguments)
        stats = await call(client, "get_memory_stats", user_id="alice")
        assert stats["short_term_pages"] == 1 and stats["mid_term_pages"] == 0


async def test_delete_one_page_or_everything(memory: MemoryOS, mode: str) -> None:
    async with connect(memory, mode) as client:
        first = await call(client, "add_memory", user_input="first", agent_response="a", user_id="dana")
        await call(client, "add_memory", user_input="second", agent_response="b", user_id="dana")
        deleted = await call(client, "delete_memory", user_id="dana", page_id=first["page_id"])
        assert deleted == {"status": "success", "user_id": "dana", "deleted_pages": 1}
        recalled = await call(client, "retrieve_memory", query="first", user_id="dana")
        assert [page["user_input"] for page in recalled["short_term_memory"]] == ["second"]
        assert (await call(client, "delete_memory", user_id="dana", everything=True))["deleted_pages"] == 1
        assert (await call(client, "get_memory_stats", user_id="dana"))["short_term_pages"] == 0


async def test_user_profile_with_and_without_knowledge(memory: MemoryOS, mode: str) -> None:
    async with connect(memory, mode) as client:
        await memory.aimport_memory(
            {
                "pages": [{"id": "pg_n1", "user_input": "I am a nurse.", "agent_response": "Nice."}],
                "profile": [{"name": "occupation", "value": "nurse", "page_ids": ["pg_n1"]}],
                "user_knowledge": [{"id": "kn_1", "text": "Works night shifts.", "page_ids": ["pg_n1"]}],
            },
            user_id="erin",
        )
        profile = await call(client, "get_user_profile", user_id="erin")
        assert profile["traits"] == [{"name": "occupation", "value": "nurse", "page_ids": ["pg_n1"]}]
        assert "nurse" in profile["user_profile"]
        assert [item["knowledge"] for item in profile["user_knowledge"]] == ["Works night shifts."]
        assert profile["user_knowledge"][0]["page_ids"] == ["pg_n1"]
        lean = await call(client, "get_user_profile", user_id="erin", include_knowledge=False)
        assert lean["user_knowledge"] is None and lean["traits"] == profile["traits"]
        empty = await call(client, "get_user_profile", user_id="nobody")
        assert empty["traits"] == [] and empty["user_knowledge"] == []


def test_without_the_mcp_sdk_the_error_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "mcp.server.mcpserver", None)  # as if the package were not installed
    settings = Settings(data_storage_path=str(tmp_path / "data"), embedding_model_name="hash")
    with pytest.raises(MissingDependencyError, match=r'pip install "memoryos-py\[mcp\]"'):
        run_server(settings)
    assert not (tmp_path / "data").exists()  # it failed before opening anything
