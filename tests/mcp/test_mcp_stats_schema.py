"""get_memory_stats: its output schema is derived from the core's MemoryStats (cost flattened), not copied."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from mcp import Client

from memoryos_core import ChromaStore, Cost, HashingEmbedder, MemoryOS, MemoryStats
from memoryos_core.app.mcp import create_server


async def test_stats_output_schema_and_values_follow_the_dataclass(tmp_path: Path) -> None:
    memory = MemoryOS(store=ChromaStore(path=str(tmp_path)), embedder=HashingEmbedder(64), background=False)
    try:
        memory.add_memory("I keep bees.", "Lovely.", user_id="alice")
        async with Client(create_server(memory)) as client:
            tool = next(t for t in (await client.list_tools()).tools if t.name == "get_memory_stats")
            result = await client.call_tool("get_memory_stats", {"user_id": "alice"})
        assert tool.output_schema is not None and result.structured_content is not None
        expected = [f.name for f in dataclasses.fields(MemoryStats) if f.name != "cost"]
        expected += [f.name for f in dataclasses.fields(Cost)]
        assert sorted(tool.output_schema["properties"]) == sorted(expected)
        assert sorted(tool.output_schema["required"]) == sorted(expected)
        assert tool.output_schema["properties"]["pending_pages"]["description"]
        stats = memory.get_memory_stats("alice")
        assert result.structured_content["short_term_pages"] == stats.short_term_pages == 1
        assert result.structured_content["llm_calls"] == stats.cost.llm_calls
    finally:
        memory.close()
