"""`memoryos mcp` over stdio as a subprocess: pinned to one user, and answering lines it cannot read."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from memoryos_core.bench.mcp_auth import PROTOCOL_VERSION, mcp_command
from memoryos_core.bench.reliability_child import child_env


async def test_user_pins_the_stdio_server_to_one_user(tmp_path: Path) -> None:
    command = mcp_command("--user", "alice", "--data", str(tmp_path / "data"), "--embedding", "hash")
    params = StdioServerParameters(command=command[0], args=command[1:], env=child_env())
    with open(tmp_path / "server.log", "w") as log:
        async with stdio_client(params, errlog=log) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            tools = {tool.name: tool for tool in (await session.list_tools()).tools}
            assert "user_id" not in tools["retrieve_memory"].input_schema.get("required", [])
            stored = await session.call_tool(
                "add_memory", {"user_input": "I am Alice.", "agent_response": "Hi"}
            )
            assert not stored.is_error and stored.structured_content is not None
            assert stored.structured_content["user_id"] == "alice"
            named = await session.call_tool("get_memory_stats", {"user_id": "alice"})
            assert named.structured_content is not None and named.structured_content["short_term_pages"] == 1
            for tool, arguments in (
                ("add_memory", {"user_input": "x", "agent_response": "y", "user_id": "bob"}),
                ("retrieve_memory", {"query": "Alice", "user_id": "bob"}),
                ("delete_memory", {"user_id": "bob", "everything": True}),
            ):
                refused = await session.call_tool(tool, arguments)
                assert refused.is_error, tool
                assert "acts for user 'alice' only, not 'bob'" in refused.content[0].text  # type: ignore[union-attr]
            stats = await session.call_tool("get_memory_stats", {})
            assert stats.structured_content is not None and stats.structured_content["short_term_pages"] == 1


class RawServer:
    """A ``memoryos mcp`` subprocess spoken to line by line, with every read bounded by a timeout."""

    def __init__(self, folder: Path) -> None:
        command = mcp_command("--data", str(folder / "data"), "--embedding", "hash")
        self.log = open(folder / "server.log", "wb")  # noqa: SIM115 - closed in close()
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, env=child_env()
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:  # type: ignore[union-attr]
            self.lines.put(line)

    def send(self, line: bytes) -> None:
        self.process.stdin.write(line + b"\n")  # type: ignore[union-attr]
        self.process.stdin.flush()  # type: ignore[union-attr]

    def reply(self, timeout_s: float = 30) -> dict[str, Any]:
        try:
            return dict(json.loads(self.lines.get(timeout=timeout_s)))
        except queue.Empty:
            raise AssertionError(f"no reply within {timeout_s}s: the client would wait forever") from None

    def close(self) -> None:
        self.process.stdin.close()  # type: ignore[union-attr]
        try:
            self.process.wait(20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
            self.log.close()


def _initialized(folder: Path) -> Iterator[RawServer]:
    server = RawServer(folder)
    try:
        info = {"name": "raw", "version": "1"}
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": info}
        server.send(
            json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}).encode()
        )
        assert server.reply(60)["id"] == 1
        server.send(b'{"jsonrpc": "2.0", "method": "notifications/initialized"}')
        yield server
    finally:
        server.close()


@pytest.fixture
def raw(tmp_path: Path) -> Iterator[RawServer]:
    """A server of this test's own (started, initialized, closed at the end)."""
    yield from _initialized(tmp_path)


@pytest.fixture(scope="module")
def shared_raw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawServer]:
    """One server for the malformed lines, each sent after the others: it must answer after every one."""
    yield from _initialized(tmp_path_factory.mktemp("mcp-raw"))


def stats_call(request_id: int | str, user: str = "alice", extra: str = "") -> str:
    arguments = f'{{"user_id": "{user}"{extra}}}'
    params = f'{{"name": "get_memory_stats", "arguments": {arguments}}}'
    return f'{{"jsonrpc": "2.0", "id": {request_id}, "method": "tools/call", "params": {params}}}'


MALFORMED = {
    "not JSON": (b"this is not json {", None, -32700),
    "lone surrogate": (stats_call(2, user="al\\ud800ice").encode(), 2, -32700),
    "300-deep nesting": (stats_call(3, extra=', "x": ' + "[" * 300 + "]" * 300).encode(), 3, -32700),
    "5000-digit integer": (stats_call(4, extra=', "n": ' + "9" * 5000).encode(), 4, -32700),
    "5000-digit id": (stats_call("9" * 5000).encode(), None, -32700),
    "not a JSON-RPC message": (b'{"jsonrpc": "1.0", "id": 5, "method": "tools/list"}', 5, -32600),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_line_gets_an_error_reply_and_the_next_request_an_answer(
    shared_raw: RawServer, name: str
) -> None:
    line, request_id, code = MALFORMED[name]
    shared_raw.send(line)
    error = shared_raw.reply(15)
    assert error["id"] == request_id
    assert error["error"]["code"] == code
    shared_raw.send(stats_call(99).encode())
    answered = shared_raw.reply(30)
    assert answered["id"] == 99 and answered["result"]["structuredContent"]["user_id"] == "alice"


def test_a_malformed_notification_is_dropped_with_a_log_line(raw: RawServer, tmp_path: Path) -> None:
    raw.send(b'{"jsonrpc": "2.0", "method": "notifications/x", "params": {"n": ' + b"9" * 5000 + b"}}")
    raw.send(stats_call(7).encode())
    assert raw.reply(30)["id"] == 7  # no reply to the notification came first
    raw.close()
    assert "dropped an unreadable" in (tmp_path / "server.log").read_text()  # wrapped by the SDK's logger
