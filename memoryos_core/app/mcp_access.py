"""Who may act on whose memory through the MCP server: bearer tokens, the user of a call, allowed hosts.

Tokens come from a file (``--tokens-file``) or ``MEMORYOS_MCP_TOKENS``, one ``TOKEN SCOPE`` entry per line
(or comma-separated in the variable), where SCOPE is ``user:ID`` (the token acts for that user only) or
``admin`` (it may name any user). The SDK's bearer middleware calls :class:`TokenTable` for each request.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from memoryos_core._exceptions import ConfigError, InvalidInputError
from memoryos_core._validation import check_id

TOKENS_ENV = "MEMORYOS_MCP_TOKENS"
ADMIN_SCOPE = "memoryos:admin"
USER_SCOPE = "memoryos:user"
MIN_TOKEN_CHARS = 32
HOW_TO_CONFIGURE = (
    "put lines 'TOKEN user:ID' (or 'TOKEN admin') in a file only you can read (chmod 600) and pass "
    f"--tokens-file FILE, or set {TOKENS_ENV}='TOKEN user:ID'; make a TOKEN with "
    'python -c "import secrets; print(secrets.token_urlsafe(32))"'
)
# RFC 6750 b64token characters: the only ones a client can send after "Bearer ".
_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]


@dataclass(frozen=True)
class Grant:
    """What one token may do: act for ``user_id`` only, or for any user (``user_id`` None: admin)."""

    user_id: str | None

    @property
    def is_admin(self) -> bool:
        return self.user_id is None


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


class TokenTable:
    """The configured tokens, as the SDK's ``TokenVerifier``: known only by their SHA-256 digests."""

    def __init__(self, grants: dict[bytes, Grant]) -> None:
        self._grants = dict(grants)

    def __len__(self) -> int:
        return len(self._grants)

    @property
    def users(self) -> set[str]:
        """The users that user-bound tokens act for."""
        return {grant.user_id for grant in self._grants.values() if grant.user_id is not None}

    def grant_for(self, token: str) -> Grant | None:
        """The grant of ``token``, or None; every entry is compared in constant time, none skipped."""
        digest, found = _digest(token), None
        for known, grant in self._grants.items():
            if hmac.compare_digest(known, digest):
                found = grant
        return found

    async def verify_token(self, token: str) -> Any:
        """The SDK's ``AccessToken`` for a valid token (subject: its user), or None (the client gets 401)."""
        from mcp.server.auth.provider import AccessToken

        grant = self.grant_for(token)
        if grant is None:
            return None
        return AccessToken(
            token="sha256:" + _digest(token).hex(),  # never the secret itself: the context is widely shared
            client_id="admin" if grant.is_admin else f"user:{grant.user_id}",
            scopes=[ADMIN_SCOPE if grant.is_admin else USER_SCOPE],
            subject=grant.user_id,
        )


def _is_user_id(value: str) -> bool:
    """Whether the store accepts ``value`` as a user id (the rule of ``check_id``)."""
    try:
        check_id(value)
    except InvalidInputError:
        return False
    return True


def parse_tokens(entries: Iterable[tuple[str, str]]) -> TokenTable:
    """A table from ``(where, "TOKEN SCOPE")`` entries; ``where`` names the entry in errors (never the token).

    Raises:
        ConfigError: a malformed entry, a short token, an unknown scope or a token given twice.
    """
    grants: dict[bytes, Grant] = {}
    for where, entry in entries:
        parts = entry.split()
        if len(parts) != 2:
            raise ConfigError(f"{where}: expected 'TOKEN user:ID' or 'TOKEN admin', got {len(parts)} words")
        token, scope = parts
        if not _TOKEN.fullmatch(token) or len(token) < MIN_TOKEN_CHARS:
            raise ConfigError(
                f"{where}: a token is at least {MIN_TOKEN_CHARS} of A-Z a-z 0-9 - . _ ~ + / "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))" makes one)'
            )
        if scope == "admin":
            grant = Grant(None)
        elif scope.startswith("user:") and _is_user_id(scope[5:]):
            grant = Grant(scope[5:])
        else:
            # Not echoed: a second token or a pasted secret lands here as often as a typo does.
            raise ConfigError(f"{where}: the second word is 'user:ID' or 'admin' (it is neither)")
        if _digest(token) in grants:
            raise ConfigError(f"{where}: this token is given twice")
        grants[_digest(token)] = grant
    return TokenTable(grants)


def _check_private(path: Path, info: os.stat_result) -> None:
    """Refuse a tokens file another account could read or rewrite: by its mode, owner, or folder."""
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(
            f"{path} can be read or written by other users (mode {stat.S_IMODE(info.st_mode):o}): "
            f"run chmod 600 {path}"
        )
    euid = getattr(os, "geteuid", None)  # POSIX only
    if euid is not None and info.st_uid not in (euid(), 0):  # root can rewrite anything anyway
        raise ConfigError(
            f"{path} belongs to another account (uid {info.st_uid}), which could rewrite the tokens: "
            f"run chown $(id -u) {path}"
        )
    # Whoever may write the folder may rename their own file over this one (unless the sticky bit, as
    # on /tmp, stops them): the folder of the path as given and of the file it leads to.
    for folder in dict.fromkeys((path.absolute().parent, path.resolve().parent)):
        mode = folder.stat().st_mode
        if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
            raise ConfigError(
                f"{folder} can be written by other users, who could replace the tokens file: "
                f"run chmod go-w {folder}, or keep the file in a private folder"
            )


def _file_entries(path: Path) -> list[tuple[str, str]]:
    try:
        with path.open("rb") as file:
            # The checks look at the file that was opened, not at a name that could be swapped after.
            _check_private(path, os.fstat(file.fileno()))
            lines = file.read().decode("utf-8-sig").splitlines()  # as Notepad saves it, with a BOM
    except OSError as exc:
        raise ConfigError(f"cannot read the tokens file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the tokens file {path} is not UTF-8 text") from exc
    return [
        (f"{path} line {number}", line)
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def load_tokens(path: Path | None = None, env: str | None = None) -> TokenTable:
    """The tokens of a file (which must not be readable by group or others) and of ``env`` together.

    Args:
        path: A tokens file, one ``TOKEN SCOPE`` per line (``#`` comments and blank lines ignored).
        env: The value of ``MEMORYOS_MCP_TOKENS``: entries separated by newlines or commas.

    Raises:
        ConfigError: the file is unreadable or too open, or an entry is malformed.
    """
    entries = _file_entries(path) if path is not None else []
    if env:
        pieces = [piece for piece in re.split(r"[\n,]", env) if piece.strip()]
        entries += [(f"{TOKENS_ENV} entry {index}", piece) for index, piece in enumerate(pieces, 1)]
    return parse_tokens(entries)


@dataclass(frozen=True)
class Access:
    """Decides the user of each tool call from the server's pin and the caller's token, never the model alone.

    Attributes:
        pinned_user: ``--user``: the only user this server acts for.
        requires_token: Served over HTTP: a call without a verified token is refused (the middleware
            already answers 401; this is the second lock).
    """

    pinned_user: str | None = None
    requires_token: bool = False

    @property
    def is_multi_user(self) -> bool:
        """Trusted multi-user mode (stdio, no pin): every call must name its user."""
        return self.pinned_user is None and not self.requires_token

    def user_for(self, requested: str | None) -> str:
        """The user a call acts for; raises the SDK's ``ToolError`` if ``requested`` is not allowed."""
        from mcp.server.auth.middleware.auth_context import get_access_token
        from mcp.server.mcpserver.exceptions import ToolError

        token = get_access_token()
        if self.requires_token and token is None:
            raise ToolError("not authenticated: send Authorization: Bearer TOKEN")
        allowed, why = self.pinned_user, "this server acts"
        if token is not None and ADMIN_SCOPE not in token.scopes:
            if token.subject is None or (allowed is not None and token.subject != allowed):
                raise ToolError("this token may not act on this server's user")
            allowed, why = token.subject, "this token acts"
        if allowed is None:
            if requested is None:
                raise ToolError("name the user_id: this server serves many users")
            return requested
        if requested is not None and requested != allowed:
            raise ToolError(f"{why} for user {allowed!r} only, not {requested!r}")
        return allowed


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_patterns(name: str) -> list[str]:
    """Host header values for a name: ``name`` alone (default port) and ``name:*``, or ``name:port``."""
    if ":" in name and not name.startswith("["):
        try:
            ipaddress.IPv6Address(name)
            name = f"[{name}]"
        except ValueError:
            return [name]  # host:port as given
    if name.startswith("[") and "]:" in name:
        return [name]
    return [name, f"{name}:*"]


def transport_security(host: str, allowed_hosts: Sequence[str] = ()) -> Any:
    """The SDK's Host/Origin checks (DNS-rebinding protection), on for every bind address.

    Loopback binds accept the loopback names; a specific address accepts itself; ``allowed_hosts`` adds
    the names clients use (``memory.example.com`` for any port, or ``memory.example.com:8443``).

    Raises:
        ConfigError: a wildcard bind (0.0.0.0, ::) with no ``allowed_hosts``: no Host header could be checked.
    """
    from mcp.server.transport_security import TransportSecuritySettings

    hosts = [pattern for name in allowed_hosts for pattern in _host_patterns(name)]
    if is_loopback(host):
        hosts += _host_patterns(host) + _LOOPBACK_HOSTS
    elif host in ("0.0.0.0", "::", ""):
        if not allowed_hosts:
            raise ConfigError(
                f"--host {host or '(all)'} listens on every address: name the host names clients use "
                "with --allowed-host NAME (checked against the Host header, against DNS rebinding)"
            )
    else:
        hosts += _host_patterns(host)
    hosts = list(dict.fromkeys(hosts))
    origins = [f"{scheme}://{pattern}" for pattern in hosts for scheme in ("http", "https")]
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins
    )
