"""`memoryos mcp` as a subprocess, reached with the SDK's clients over stdio and over streamable HTTP."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from mcp import ClientSession, StdioServerParameters, stdio_client

from memoryos_core.bench.mcp_auth import http_server
from tests.mcp._client import connect

EXE = shutil.which("memoryos") or str(Path(sys.executable).parent / "memoryos")


async def test_stdio_server_serves_many_users_from_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "memoryos.json"
    config.write_text(json.dumps({"data_storage_path": "data", "embedding_model_name": "hash"}))
    params = StdioServerParameters(command=EXE, args=["mcp", "--config", str(config)])
    with open(tmp_path / "server.log", "w") as log:
        async with stdio_client(params, errlog=log) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = {tool.name for tool in (await session.list_tools()).tools}
            assert {"add_memory", "retrieve_memory", "get_user_profile"} <= names
            for user, text in (("alice", "I adopted a cat called Pixel."), ("bob", "I collect stamps.")):
                added = await session.call_tool(
                    "add_memory", {"user_input": text, "agent_response": "Nice!", "user_id": user}
                )
                assert not added.is_error and added.structured_content is not None
            recalled = await session.call_tool("retrieve_memory", {"query": "pets", "user_id": "alice"})
            assert recalled.structured_content is not None
            pages = recalled.structured_content["short_term_memory"]
            assert [page["user_input"] for page in pages] == ["I adopted a cat called Pixel."]
            bad = await session.call_tool(
                "add_memory", {"user_input": "", "agent_response": "", "user_id": "alice"}
            )
            assert bad.is_error and "non-empty" in bad.content[0].text  # type: ignore[union-attr]
    assert (tmp_path / "data").is_dir()  # the relative path from the config file, not the cwd
    assert "embedder: hash" in (tmp_path / "server.log").read_text()


async def test_http_server_keeps_memory_across_client_connections(tmp_path: Path) -> None:
    token = "t" * 40
    with http_server(tmp_path / "data", f"{token} admin") as url:
        async with connect(url, token) as client:
            added = await client.call_tool(
                "add_memory",
                {"user_input": "My sister Ana visits in May.", "agent_response": "Fun!", "user_id": "carol"},
            )
            assert not added.is_error, added.content
        async with connect(url, token) as client:
            recalled = await client.call_tool("retrieve_memory", {"query": "sister", "user_id": "carol"})
            stats = await client.call_tool("get_memory_stats", {"user_id": "carol"})
            missing = await client.call_tool("delete_memory", {"user_id": "carol", "page_id": "pg_nope"})
    assert recalled.structured_content is not None and stats.structured_content is not None
    pages = recalled.structured_content["short_term_memory"]
    assert [page["user_input"] for page in pages] == ["My sister Ana visits in May."]
    assert stats.structured_content["short_term_pages"] == 1
    assert missing.is_error and "no page 'pg_nope'" in missing.content[0].text  # type: ignore[union-attr]
