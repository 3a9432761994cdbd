"""`memoryos mcp` against a careless operator and a hostile client: what held once and must keep holding."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from memoryos_core.bench.mcp_auth import PROTOCOL_VERSION, http_server, mcp_command
from memoryos_core.bench.reliability_child import child_env
from tests.mcp._refuse import http_args, refuse

ALICE = "alice-token-" + "a" * 32
BOB = "bob-token-" + "b" * 32
HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": PROTOCOL_VERSION}


def initialize(request_id: int = 1) -> dict[str, Any]:
    info = {"name": "probe", "version": "1"}
    params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": info}
    return {"jsonrpc": "2.0", "id": request_id, "method": "initialize", "params": params}


# The refusals below run `memoryos mcp` in this process (tests/mcp/_refuse.py): each start must be refused
# before the store opens or anything binds.
def test_a_token_in_the_scope_column_is_never_echoed(tmp_path: Path) -> None:
    # Two tokens pasted on one line, or a long client name written before the token: the second word
    # is a secret, and the start-up error (stderr, often a CI or service log) must not show it.
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{'production-assistant-for-alice-and-co'} {ALICE}\n")
    tokens.chmod(0o600)
    runs = [
        refuse(*http_args(tmp_path), *args, env=env)
        for args, env in (
            ([], {"MEMORYOS_MCP_TOKENS": f"{ALICE} {BOB}"}),
            (["--tokens-file", str(tokens)], {}),
        )
    ]
    for done in runs:
        assert done.returncode == 1, done.stderr
        assert "'user:ID' or 'admin'" in done.stderr
        assert ALICE not in done.stderr + done.stdout and BOB not in done.stderr + done.stdout
    assert not (tmp_path / "d").exists()


def test_a_tokens_file_another_account_could_replace_is_refused(tmp_path: Path) -> None:
    # 0600 is not enough when the folder lets others rename a file of theirs over it (no sticky bit).
    shared = tmp_path / "shared"
    shared.mkdir()
    tokens = shared / "tokens"
    tokens.write_text(f"{ALICE} user:alice\n")
    tokens.chmod(0o600)
    shared.chmod(0o777)
    link = tmp_path / "private" / "tokens"  # a symlink from a private folder does not hide it
    link.parent.mkdir(mode=0o700)
    link.symlink_to(tokens)
    for given in (tokens, link):  # the file itself, then a symlink to it
        done = refuse(*http_args(tmp_path), "--tokens-file", str(given))
        assert done.returncode == 1, done.stderr
        assert f"{shared} can be written by other users" in done.stderr
    assert not (tmp_path / "d").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown a file")
def test_a_tokens_file_owned_by_another_account_is_refused(tmp_path: Path) -> None:
    # That account can rewrite it (add its own admin token) whatever its mode says today.
    tokens = tmp_path / "tokens"
    tokens.write_text(f"{ALICE} user:alice\n")
    tokens.chmod(0o600)
    os.chown(tokens, 65534, 65534)
    done = refuse(*http_args(tmp_path), "--tokens-file", str(tokens))
    assert done.returncode == 1, done.stderr
    assert "belongs to another account" in done.stderr


def test_a_token_for_a_user_id_the_store_refuses_stops_the_start(tmp_path: Path) -> None:
    # The scope passed the id pattern but not the store's own check ('..'): every call would fail.
    done = refuse(*http_args(tmp_path), env={"MEMORYOS_MCP_TOKENS": f"{ALICE} user:al..ice"})
    assert done.returncode == 1, done.stderr
    assert "entry 1: the second word is 'user:ID' or 'admin'" in done.stderr
    assert not (tmp_path / "d").exists()


def test_a_tokens_file_saved_with_a_bom_and_crlf_lines_is_read(tmp_path: Path) -> None:
    # What Notepad writes: the byte-order mark used to turn the first token into a "too short" error.
    tokens = tmp_path / "tokens"
    tokens.write_bytes(f"\ufeff{ALICE} user:alice\r\n{BOB} user:bob\r\n".encode())
    tokens.chmod(0o600)
    with http_server(tmp_path / "data", "", extra_args=["--tokens-file", str(tokens)]) as url:
        for token in (ALICE, BOB):
            opened = httpx.post(
                url, json=initialize(), headers=HEADERS | {"Authorization": f"Bearer {token}"}
            )
            assert opened.status_code == 200 and '"result"' in opened.text


def read_within(output: queue.Queue[bytes], timeout_s: float) -> bytes:
    try:
        return output.get(timeout=timeout_s)
    except queue.Empty:
        raise AssertionError(f"no reply within {timeout_s}s: the client would wait forever") from None


BAD_IDS = ["1.5", "null", "true", '{"n": 1}', "[2]"]


def test_a_request_whose_id_cannot_be_answered_gets_an_error_not_silence(tmp_path: Path) -> None:
    # The SDK reads such a message as a notification (no usable id) and drops it: the client that sent
    # it would wait forever. A request method without an id is answered with -32600 and id null.
    # One server takes every bad id in turn, each followed by a ping that must be answered after it.
    lines = [json.dumps(initialize()), '{"jsonrpc": "2.0", "method": "notifications/initialized"}']
    for number, bad_id in enumerate(BAD_IDS):
        lines.append(f'{{"jsonrpc": "2.0", "id": {bad_id}, "method": "tools/list"}}')
        lines.append(f'{{"jsonrpc": "2.0", "id": {100 + number}, "method": "ping"}}')
    lines += [
        '{"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 1}}',
        '{"jsonrpc": "2.0", "id": 3, "method": "ping"}',
    ]
    command = mcp_command("--data", str(tmp_path / "d"), "--embedding", "hash")
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=child_env()
        )
        assert server.stdin is not None and server.stdout is not None
        output: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=lambda: [output.put(line) for line in server.stdout], daemon=True).start()
        try:
            server.stdin.write("\n".join(lines).encode() + b"\n")
            server.stdin.flush()
            replies = [json.loads(read_within(output, 60)) for _ in range(2 + 2 * len(BAD_IDS))]
        finally:
            server.stdin.close()  # stdin stays open until then: the SDK drops replies once it ends
            try:
                server.wait(20)
            finally:
                if server.poll() is None:
                    server.kill()
                    server.wait()
    expected = [1] + [id_ for number in range(len(BAD_IDS)) for id_ in (None, 100 + number)] + [3]
    assert [reply.get("id") for reply in replies] == expected  # the real notification is not answered
    for bad_id, error in zip(BAD_IDS, replies[1:-1:2]):
        assert error["error"]["code"] == -32600, bad_id


def test_a_session_answers_only_the_token_that_opened_it(tmp_path: Path) -> None:
    # Held when tried: the SDK binds a session to its opener (client_id, subject), which Access relies
    # on. Kept as a guard, as an SDK upgrade that dropped it would let bob's token ride alice's session.
    tokens = f"{ALICE} user:alice\n{BOB} user:bob"
    stats = {"name": "get_memory_stats", "arguments": {}}
    with http_server(tmp_path / "data", tokens) as url, httpx.Client(timeout=30) as http:
        opened = http.post(url, json=initialize(), headers=HEADERS | {"Authorization": f"Bearer {ALICE}"})
        session = HEADERS | {"Mcp-Session-Id": opened.headers["mcp-session-id"]}
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": stats}
        as_bob = http.post(url, json=call, headers=session | {"Authorization": f"Bearer {BOB}"})
        assert as_bob.status_code == 404 and '"result"' not in as_bob.text
        anonymous = http.post(url, json=call, headers=session)
        assert anonymous.status_code == 401
        ended = http.delete(url, headers=session | {"Authorization": f"Bearer {BOB}"})
        assert ended.status_code == 404
        as_alice = http.post(url, json=call, headers=session | {"Authorization": f"Bearer {ALICE}"})
        assert as_alice.status_code == 200 and '"structuredContent":{"user_id":"alice"' in as_alice.text
