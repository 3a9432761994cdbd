"""The MCP HTTP server against callers without valid credentials: how many of their calls get answered.

Starts ``memoryos mcp --transport http`` on 127.0.0.1 with one user-bound token, opens a session with
that token (the control: it must be answered), then replays requests without a token, with wrong
tokens and with other schemes, including ``tools/call`` on the valid session. Every one must get 401.
"""

from __future__ import annotations

import base64
import json
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memoryos_core.app.mcp_access import TOKENS_ENV

PROTOCOL_VERSION = "2025-06-18"


def free_port() -> int:
    """A TCP port nothing listens on at the moment, on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mcp_command(*args: str) -> list[str]:
    """``memoryos mcp ARGS`` run by this interpreter (this checkout's code, not an installed script)."""
    return [sys.executable, "-m", "memoryos_core.app.cli", "mcp", *args]


@contextmanager
def http_server(
    data: Path,
    tokens: str,
    *,
    extra_args: Sequence[str] = (),
    env: dict[str, str] | None = None,
    startup_timeout_s: float = 90,
    log: Path | None = None,
) -> Iterator[str]:
    """``memoryos mcp --transport http`` on 127.0.0.1 (``tokens`` in ``MEMORYOS_MCP_TOKENS``); yields its URL.

    The server is stopped (SIGTERM, then SIGKILL after 15 s) when the block ends.

    Raises:
        RuntimeError: the server exited or did not listen within ``startup_timeout_s``.
    """
    from memoryos_core.bench.reliability_child import child_env

    port = free_port()
    command = mcp_command("--transport", "http", "--host", "127.0.0.1", "--port", str(port))
    command += ["--data", str(data), "--embedding", "hash", *extra_args]
    with open(log or Path(data).with_suffix(".log"), "wb") as output:
        server = subprocess.Popen(
            command,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=child_env() | (env or {}) | {TOKENS_ENV: tokens},
        )
        try:
            deadline = time.monotonic() + startup_timeout_s
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"memoryos mcp exited with {server.returncode} before listening")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"memoryos mcp did not listen within {startup_timeout_s}s"
                        ) from None
                    time.sleep(0.1)
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.terminate()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _headers(authorization: str | None, session_id: str | None = None) -> dict[str, str]:
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    headers["MCP-Protocol-Version"] = PROTOCOL_VERSION
    if authorization is not None:
        headers["Authorization"] = authorization
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
    return headers


def _initialize(request_id: int) -> dict[str, Any]:
    params = {
        "protocolVersion": PROTOCOL_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    }
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


def _recall(request_id: int, user: str) -> dict[str, Any]:
    arguments = {"query": "password", "user_id": user}
    return {
        "jsonrpc": "2.0",
        "id": request_id,
        "method": "tools/call",
        "params": {"name": "retrieve_memory", "arguments": arguments},
    }


def is_answered(response: Any) -> bool:
    """Whether an HTTP response carries a JSON-RPC result (a 2xx with ``"result"`` in its body)."""
    return 200 <= response.status_code < 300 and '"result"' in response.text


def bad_credentials(token: str) -> list[str | None]:
    """Authorization headers that must all be refused (None: no header at all)."""
    wrong = secrets.token_urlsafe(32)
    return [
        None,
        f"Bearer {wrong}",
        f"Bearer {token[:-1]}",
        f"Bearer {token}x",
        f"Bearer {token.upper() if token != token.upper() else token.lower()}",
        "Bearer",
        token,
        f"Basic {base64.b64encode(f'user:{token}'.encode()).decode()}",
        f"Token {token}",
    ]


def run_mcp_auth(calls: int = 200, *, timeout_s: float = 10.0) -> dict[str, Any]:
    """Start the server with a token, send ``calls`` requests with bad credentials, count the answered ones.

    Half are ``initialize`` (a new session), half ``tools/call retrieve_memory`` on a session opened with
    the valid token. Returns ``mcp_unauthenticated_calls`` and ``mcp_unauthenticated_answered`` (expected 0).

    Raises:
        RuntimeError: the control call with the valid token was not answered, so the figure would be void.
    """
    import httpx

    token = secrets.token_urlsafe(32)
    with (
        tempfile.TemporaryDirectory(prefix="memoryos-mcp-auth-") as folder,
        http_server(Path(folder, "data"), f"{token} user:bench_owner") as url,
        httpx.Client(timeout=timeout_s) as http,
    ):
        opened = http.post(url, json=_initialize(1), headers=_headers(f"Bearer {token}"))
        session_id = opened.headers.get("mcp-session-id")
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        http.post(url, json=initialized, headers=_headers(f"Bearer {token}", session_id))
        control = http.post(
            url, json=_recall(2, "bench_owner"), headers=_headers(f"Bearer {token}", session_id)
        )
        if not (is_answered(opened) and is_answered(control)):
            raise RuntimeError(
                f"the valid token was not answered ({opened.status_code}, {control.status_code})"
            )
        variants, answered, statuses = bad_credentials(token), 0, set()
        for index in range(calls):
            authorization = variants[index % len(variants)]
            if index % 2:
                response = http.post(
                    url,
                    json=_recall(10 + index, "bench_owner"),
                    headers=_headers(authorization, session_id),
                )
            else:
                response = http.post(url, json=_initialize(10 + index), headers=_headers(authorization))
            answered += is_answered(response)
            statuses.add(response.status_code)
    return {
        "mcp_unauthenticated_calls": calls,
        "mcp_unauthenticated_answered": answered,
        "mcp_unauthenticated_statuses": sorted(statuses),
    }


if __name__ == "__main__":
    print(json.dumps(run_mcp_auth(int(sys.argv[1]) if sys.argv[1:] else 200)))
