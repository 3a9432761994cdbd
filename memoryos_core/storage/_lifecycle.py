"""The process's side of Chroma clients: closing them in order at exit, the server timeout, and
recovering from a client that failed to start."""

from __future__ import annotations

import atexit
import logging
import os
from typing import Any

from memoryos_core._exceptions import ConfigError
from memoryos_core.storage._calls import exit_gate
from memoryos_core.storage._folder import close_folders

__all__ = ["close_at_exit", "close_server_client", "exit_gate", "forget_failed_system", "server_timeout_s"]
logger = logging.getLogger("memoryos")


def close_at_exit(timeout_s: float = 30.0) -> None:
    """Let the threads inside Chroma finish (up to ``timeout_s``), turn new calls away, then close
    the embedded clients; registered with ``atexit``, after MemoryOS closes its instances."""
    if exit_gate.close(timeout_s):
        close_folders()
    else:  # closing a client under a running call would crash: leave it to the OS
        logger.warning("a Chroma call was still running at exit after %.0f s", timeout_s)


atexit.register(close_at_exit)


def server_timeout_s(timeout_s: float | None = None) -> float:
    """``timeout_s``, else ``MEMORYOS_CHROMA_TIMEOUT_S``, else 30 s; a ConfigError unless > 0."""
    raw: Any = timeout_s if timeout_s is not None else os.environ.get("MEMORYOS_CHROMA_TIMEOUT_S", 30.0)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 3600:
        raise ConfigError(f"the Chroma timeout must be a number of seconds from 0 to 3600, got {raw!r}")
    return value


def forget_failed_system(path: str) -> None:
    """Chroma caches a folder's engine before starting it; when starting fails (a full disk, say),
    the broken engine stays cached and every later client of the folder fails with AttributeError.
    Drop it, unless a live client still holds it."""
    from chromadb.api.shared_system_client import SharedSystemClient

    if not SharedSystemClient._identifier_to_refcount.get(path):
        SharedSystemClient._identifier_to_system.pop(path, None)


def close_server_client(client: Any) -> None:
    """Close a Chroma HTTP client and drop the engine Chroma 1.x keeps of it after ``close()``.

    Its constructor registers the client's engine a second time, under a fresh id, for its admin client,
    and ``close()`` never releases that entry: each client made and closed would stay in memory (about
    1 MB each) for the life of the process. The entry is dropped unless a live client counts on it.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    try:
        system = client._system
    except (AttributeError, KeyError):  # already closed: nothing of it is registered
        system = None
    client.close()
    for identifier, held in list(SharedSystemClient._identifier_to_system.items()):
        if held is system and not SharedSystemClient._identifier_to_refcount.get(identifier):
            SharedSystemClient._identifier_to_system.pop(identifier, None)
