"""An MCP client of a ``memoryos mcp --transport http`` server, for the tests that talk to one."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp import Client
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client


@asynccontextmanager
async def connect(url: str, token: str) -> AsyncIterator[Client]:
    """A session on ``url`` with ``token`` as its bearer token, closed (HTTP client too) when the block ends.

    The HTTP client has the SDK's timeouts (30 s; 300 s to read), not httpx's 5 s: a first call on a busy
    machine can take longer (a test failed so once in a whole run, its server's log clean).
    """
    async with (
        create_mcp_http_client(headers={"Authorization": f"Bearer {token}"}) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client
