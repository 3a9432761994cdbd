"""The outbound-request hook: checks that run before a backend sends a request over the network.

Backends (``llm/openai.py``, ``embeddings/openai.py``) call :func:`check_outbound` with the URL they are
about to reach; nothing is checked unless a check was installed. ``memoryos_core.testing.block_network``
installs one that refuses hosts off this machine, so the backends never import the test helpers.

Example:
    >>> def refuse_all(url: str | None) -> None:
    ...     raise RuntimeError(f"no requests here: {url}")
    >>> remove = add_outbound_check(refuse_all)
    >>> remove()
"""

from __future__ import annotations

import threading
from collections.abc import Callable

OutboundCheck = Callable[[str | None], None]
"""A check of one request's URL (None: the vendor's default endpoint); it raises to refuse the request."""

_lock = threading.Lock()
_checks: tuple[OutboundCheck, ...] = ()


def add_outbound_check(check: OutboundCheck) -> Callable[[], None]:
    """Run ``check(url)`` before every outbound backend request, until the returned callable is called.

    Returns:
        A callable that removes this check (calling it again does nothing).
    """
    global _checks
    token = _Installed(check)
    with _lock:
        _checks = (*_checks, token)

    def remove() -> None:
        global _checks
        with _lock:
            _checks = tuple(installed for installed in _checks if installed is not token)

    return remove


def check_outbound(url: str | None) -> None:
    """Run every installed check on ``url``; the first that refuses raises.

    Args:
        url: The endpoint a backend is about to call; None means the vendor's default (a public host).
    """
    for check in _checks:
        check(url)


class _Installed:
    """One installation of a check: the same callable installed twice is removed one install at a time."""

    __slots__ = ("check",)

    def __init__(self, check: OutboundCheck) -> None:
        self.check = check

    def __call__(self, url: str | None) -> None:
        self.check(url)
