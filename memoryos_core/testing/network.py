"""A network guard for offline tests: only loopback hosts and unix sockets may be reached.

Test suites call :func:`block_network` once. It patches the socket module and installs
:func:`check_network_allowed` as an outbound check (``memoryos_core._network``), which the real backends run
before each request; the backends never import this module.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from memoryos_core._network import add_outbound_check

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
_DEFAULT_OPENAI_URL = "https://api.openai.com/v1"

_lock = threading.Lock()
_block_depth = 0
_allow_depth = 0
_originals: dict[str, Any] = {}
_remove_outbound_check: Callable[[], None] | None = None
_is_audit_hook_installed = False
_LOOKUP_EVENTS = frozenset({"socket.getaddrinfo", "socket.gethostbyname", "socket.gethostbyname_ex"})


class NetworkBlockedError(RuntimeError):
    """A connection to a non-loopback host was attempted while the network guard was on."""


def is_loopback_host(host: str | bytes | None) -> bool:
    """Whether ``host`` (a name or an IP literal) stays on this machine.

    Args:
        host: A host name, an IPv4/IPv6 literal (optionally ``[bracketed]`` or with a ``%zone``), or None.

    Returns:
        True for 127.0.0.0/8, ::1 (also IPv4-mapped), ``localhost`` and ``*.localhost``; False otherwise.
    """
    if host is None:
        return False
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    name = host.strip().strip("[]").split("%", 1)[0].rstrip(".").lower()
    if name in _LOCAL_NAMES or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def is_network_blocked() -> bool:
    """Whether :func:`block_network` is in effect and not lifted by :func:`allow_network`."""
    return _block_depth > 0 and _allow_depth == 0


def check_network_allowed(url: str | None) -> None:
    """Raise when the guard is on and ``url`` points off this machine; the backends run it per request
    through the outbound hook that :func:`block_network` installs.

    Args:
        url: The endpoint about to be called; None means the vendor's default (a public host).

    Raises:
        NetworkBlockedError: The guard is on and the host is not loopback.
    """
    if not is_network_blocked():
        return
    target = url or _DEFAULT_OPENAI_URL
    host = urlsplit(target if "//" in target else f"//{target}").hostname
    if not is_loopback_host(host):
        raise NetworkBlockedError(
            f"network access to {target!r} is blocked in tests; use a fake backend, a server on 127.0.0.1, "
            "or memoryos_core.testing.allow_network() in an integration test"
        )


def _check_address(address: Any, family: int | None = None) -> None:
    if not is_network_blocked():
        return
    if family == getattr(socket, "AF_UNIX", object()) or isinstance(address, (str, bytes)):
        return  # a unix socket path
    host = address[0] if isinstance(address, tuple) and address else None
    if not is_loopback_host(host):
        raise NetworkBlockedError(f"connection to {address!r} blocked: tests may only reach loopback hosts")


def _guarded_connect(self: socket.socket, address: Any) -> None:
    _check_address(address, self.family)
    _originals["connect"](self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    _check_address(address, self.family)
    result: int = _originals["connect_ex"](self, address)
    return result


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    _check_address(address)
    connection: socket.socket = _originals["create_connection"](address, *args, **kwargs)
    return connection


def _guarded_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    # host None or "" asks for a local (bind) address: no lookup leaves the machine.
    if host not in (None, "", b"") and is_network_blocked() and not is_loopback_host(host):
        raise NetworkBlockedError(f"name lookup of {host!r} blocked: tests may only reach loopback hosts")
    return _originals["getaddrinfo"](host, port, *args, **kwargs)


def _audit_hook(event: str, args: tuple[Any, ...]) -> None:
    # A backstop below the patches: tools such as pytest-socket restore ``socket.socket.connect`` after every
    # test, which would silently drop a session-wide guard; audit events cannot be patched away.
    if not event.startswith("socket.") or not is_network_blocked():
        return
    if event in ("socket.connect", "socket.sendto"):
        _check_address(args[1], getattr(args[0], "family", None))
    elif (
        event in _LOOKUP_EVENTS and args and args[0] not in (None, "", b"") and not is_loopback_host(args[0])
    ):
        raise NetworkBlockedError(f"name lookup of {args[0]!r} blocked: tests may only reach loopback hosts")


def _patch(owner: object, name: str, value: Any) -> None:
    """Replace a socket function (setattr: the stubs' signatures are stricter than the guards')."""
    setattr(owner, name, value)


def block_network() -> Callable[[], None]:
    """Make connections and name lookups to non-loopback hosts raise :class:`NetworkBlockedError`.

    Calls nest: the sockets are restored when every returned undo callable has been called.

    Returns:
        A callable that undoes this call (calling it again does nothing).

    Example:
        >>> undo = block_network()
        >>> undo()
    """
    global _block_depth, _is_audit_hook_installed, _remove_outbound_check
    with _lock:
        if not _is_audit_hook_installed:  # audit hooks cannot be removed: it checks the depth on each event
            sys.addaudithook(_audit_hook)
            _is_audit_hook_installed = True
        if _block_depth == 0:
            _originals.update(
                connect=socket.socket.connect,
                connect_ex=socket.socket.connect_ex,
                create_connection=socket.create_connection,
                getaddrinfo=socket.getaddrinfo,
            )
            _patch(socket.socket, "connect", _guarded_connect)
            _patch(socket.socket, "connect_ex", _guarded_connect_ex)
            _patch(socket, "create_connection", _guarded_create_connection)
            _patch(socket, "getaddrinfo", _guarded_getaddrinfo)
            _remove_outbound_check = add_outbound_check(check_network_allowed)
        _block_depth += 1
    is_undone = False

    def undo() -> None:
        nonlocal is_undone
        global _block_depth, _remove_outbound_check
        with _lock:
            if is_undone:
                return
            is_undone = True
            _block_depth -= 1
            if _block_depth == 0:
                _patch(socket.socket, "connect", _originals["connect"])
                _patch(socket.socket, "connect_ex", _originals["connect_ex"])
                _patch(socket, "create_connection", _originals["create_connection"])
                _patch(socket, "getaddrinfo", _originals["getaddrinfo"])
                _originals.clear()
                if _remove_outbound_check is not None:
                    _remove_outbound_check()
                    _remove_outbound_check = None

    return undo


@contextlib.contextmanager
def allow_network() -> Iterator[None]:
    """Lift the guard (process-wide) inside the block; for tests marked ``integration`` only.

    Example:
        >>> with allow_network():
        ...     pass
    """
    global _allow_depth
    with _lock:
        _allow_depth += 1
    try:
        yield
    finally:
        with _lock:
            _allow_depth -= 1
