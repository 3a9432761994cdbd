"""The network guard: non-loopback connections fail at once, loopback and unix sockets work."""

from __future__ import annotations

import _socket
import asyncio
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from memoryos_core.testing import (
    NetworkBlockedError,
    allow_network,
    block_network,
    check_network_allowed,
    is_loopback_host,
    is_network_blocked,
)

TEST_NET = ("192.0.2.1", 80)  # RFC 5737 TEST-NET-1: never routed


@pytest.fixture
def guard() -> Iterator[None]:
    undo = block_network()
    try:
        yield
    finally:
        undo()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server
    finally:
        server.close()


def test_connect_to_test_net_is_rejected_before_any_packet(guard: None) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        started = time.monotonic()
        with pytest.raises(NetworkBlockedError, match=r"192\.0\.2\.1"):
            sock.connect(TEST_NET)
        assert time.monotonic() - started < 0.5  # refused by the guard, not by a network timeout


def connect_ex_ipv4() -> None:
    with socket.socket() as sock:
        sock.connect_ex(TEST_NET)


def connect_ipv6() -> None:
    with socket.socket(socket.AF_INET6) as sock:
        sock.connect(("2001:db8::1", 80))


def create_connection() -> None:
    socket.create_connection(TEST_NET, timeout=5).close()


def lookup() -> None:
    socket.getaddrinfo("example.com", 443)


@pytest.mark.parametrize("attempt", [connect_ex_ipv4, connect_ipv6, create_connection, lookup])
def test_other_entry_points_are_blocked(guard: None, attempt: Callable[[], None]) -> None:
    started = time.monotonic()
    with pytest.raises(NetworkBlockedError):
        attempt()
    assert time.monotonic() - started < 0.5


def test_guard_survives_tools_that_restore_socket_connect(guard: None) -> None:
    patched = socket.socket.connect
    socket.socket.connect = _socket.socket.connect  # type: ignore[method-assign]  # as pytest-socket does
    try:
        with socket.socket() as sock, pytest.raises(NetworkBlockedError):
            sock.connect(TEST_NET)
    finally:
        socket.socket.connect = patched  # type: ignore[method-assign]


async def test_asyncio_connections_are_blocked(guard: None) -> None:
    with pytest.raises(NetworkBlockedError):
        await asyncio.wait_for(asyncio.open_connection(*TEST_NET), timeout=5)


def test_loopback_connections_work(guard: None, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        accepted, _ = listener.accept()
        with accepted:
            client.sendall(b"ping")
            assert accepted.recv(4) == b"ping"
    with socket.create_connection(("localhost", port), timeout=5):
        listener.accept()[0].close()
    assert socket.getaddrinfo("localhost", port)


def test_unix_sockets_work(guard: None, tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        server.bind(path)
        server.listen()
        client.connect(path)
        server.accept()[0].close()


def test_undo_restores_sockets_and_nests() -> None:
    original_connect, original_lookup = socket.socket.connect, socket.getaddrinfo
    was_blocked = is_network_blocked()  # a conftest may already block the whole session
    outer = block_network()
    inner = block_network()
    inner()
    inner()  # a second call is a no-op
    assert is_network_blocked()
    outer()
    assert is_network_blocked() is was_blocked
    if not was_blocked:
        assert socket.socket.connect is original_connect
        assert socket.getaddrinfo is original_lookup


@pytest.mark.parametrize(
    ("url", "is_allowed"),
    [
        ("http://127.0.0.1:8000/v1", True),
        ("http://127.8.9.10/v1", True),
        ("http://localhost:11434/v1", True),
        ("http://[::1]:8080", True),
        ("localhost:8000", True),
        ("https://api.openai.com/v1", False),
        ("http://192.0.2.1/v1", False),
        ("http://localhost.example.com/v1", False),
        (None, False),  # the vendor default is a public host
    ],
)
def test_check_network_allowed(guard: None, url: str | None, is_allowed: bool) -> None:
    if is_allowed:
        check_network_allowed(url)
    else:
        with pytest.raises(NetworkBlockedError):
            check_network_allowed(url)
    with allow_network():
        check_network_allowed(url)  # explicitly allowed, e.g. in an integration test


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("[::1]", True),
        ("::ffff:127.0.0.1", True),
        ("LOCALHOST", True),
        ("api.localhost", True),
        (b"127.0.0.1", True),
        ("10.0.0.1", False),
        ("0.0.0.0", False),
        ("example.com", False),
        (None, False),
    ],
)
def test_is_loopback_host(host: str | bytes | None, expected: bool) -> None:
    assert is_loopback_host(host) is expected
