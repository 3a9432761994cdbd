"""``memoryos ui``: the memory inspector, a local web page over the public ``MemoryOS`` API.

The page (``app/ui_static/``: plain HTML, CSS and JS, no build step, nothing fetched from the network)
calls the JSON API of ``app/ui_api.py``. Both are served by Starlette under uvicorn, which the ``mcp``
extra brings. Who may see what is decided as for the HTTP MCP server (``app/mcp_access.py``): every API
request needs ``Authorization: Bearer TOKEN`` (a header, never a cookie: no cross-site request can
carry it), a user-bound token sees its own user only, an admin token lists and opens every user, and
the Host and Origin headers are checked against DNS rebinding. Without a tokens file, a loopback
server makes an admin token for its own run and prints the page's address with it in the URL
fragment (``#token=...``), which the browser never sends to a server.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any

from memoryos_core._exceptions import ConfigError, MissingDependencyError
from memoryos_core.app.mcp_access import (
    HOW_TO_CONFIGURE,
    Grant,
    TokenTable,
    is_loopback,
    parse_tokens,
    transport_security,
)
from memoryos_core.app.settings import Settings

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from memoryos_core.engine.memory import MemoryOS

__all__ = ["create_app", "page_address", "prepare_tokens", "run_ui"]

logger = logging.getLogger("memoryos")
STATIC = {"ui.js": "text/javascript", "ui.css": "text/css", "index.html": "text/html"}
"""The page's files (package data in ``app/ui_static/``) and their content types."""
SECURITY_HEADERS = {
    # Only this server's own script and style run: stored text that slipped into markup could not.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _starlette() -> Any:
    try:
        import starlette.applications
        import uvicorn  # noqa: F401  (the server; checked before anything is opened)
    except ImportError as exc:
        raise MissingDependencyError("starlette and uvicorn", extra="mcp") from exc
    return starlette.applications


def static_file(name: str) -> bytes:
    """One of the page's files, as shipped in the package."""
    return (resources.files("memoryos_core.app") / "ui_static" / name).read_bytes()


def prepare_tokens(tokens: TokenTable | None, host: str) -> tuple[TokenTable, str | None]:
    """The tokens to serve with, and the token made for this run when none were configured.

    Raises:
        ConfigError: no tokens for a server off loopback.
    """
    if tokens is not None and len(tokens):
        return tokens, None
    if not is_loopback(host):
        raise ConfigError(f"memoryos ui --host {host} needs tokens (off loopback): {HOW_TO_CONFIGURE}")
    made = secrets.token_urlsafe(32)
    return parse_tokens([("this run's token", f"{made} admin")]), made


def page_address(host: str, port: int, token: str | None) -> str:
    """The page's URL; a token goes in the fragment, which browsers never send to the server."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/" + (f"#token={token}" if token else "")


class Guard:
    """The checks every request passes: Host and Origin (DNS rebinding), then the bearer token."""

    def __init__(self, tokens: TokenTable, host: str, allowed_hosts: Sequence[str]) -> None:
        from mcp.server.transport_security import TransportSecurityMiddleware

        self.tokens = tokens
        self._security = TransportSecurityMiddleware(transport_security(host, allowed_hosts))

    async def refused(self, request: Request) -> Response | None:
        """The answer to a request from a host or origin not allowed (421, 403), or None."""
        sends_json = request.method in ("POST", "PATCH", "PUT")
        return await self._security.validate_request(request, is_post=sends_json)

    def grant(self, request: Request) -> Grant | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.tokens.grant_for(token.strip())


def create_app(
    memory: MemoryOS, *, tokens: TokenTable, host: str = "127.0.0.1", allowed_hosts: Sequence[str] = ()
) -> Starlette:
    """The inspector's Starlette app on ``memory`` (which the caller closes).

    Args:
        memory: The memory the page shows and corrects.
        tokens: Bearer tokens; every API request needs one (see the module docstring).
        host: The address the server listens on (the Host headers it accepts follow from it).
        allowed_hosts: Other host names clients use to reach the server.

    Raises:
        MissingDependencyError: Starlette or uvicorn is not installed (the ``mcp`` extra).
        ConfigError: a wildcard bind without ``allowed_hosts``.
    """
    applications = _starlette()
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import Response
    from starlette.routing import Route

    from memoryos_core.app.ui_api import api_routes

    guard = Guard(tokens, host, allowed_hosts)

    async def checked(request: Request, call_next: Callable[[Request], Any]) -> Response:
        refused = await guard.refused(request)
        response: Response = refused if refused is not None else await call_next(request)
        for key, value in SECURITY_HEADERS.items():
            response.headers.setdefault(key, value)
        return response

    def static(name: str) -> Callable[[Request], Any]:
        body, media_type = static_file(name), STATIC[name]

        async def serve(request: Request) -> Response:
            return Response(body, media_type=media_type)

        return serve

    async def no_icon(request: Request) -> Response:
        return Response(status_code=204)

    routes = [Route("/", static("index.html")), Route("/favicon.ico", no_icon)]
    routes += [Route(f"/static/{name}", static(name)) for name in STATIC]
    app: Starlette = applications.Starlette(
        routes=routes + api_routes(memory, guard.grant),
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=checked)],
    )
    return app


def run_ui(
    settings: Settings,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    tokens: TokenTable | None = None,
    allowed_hosts: Sequence[str] = (),
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the inspector until stopped; ``on_ready`` gets the page's address once the store is open
    and the port listens.

    Raises:
        MissingDependencyError: Starlette or uvicorn is not installed.
        ConfigError: no tokens off loopback, a wildcard bind without ``allowed_hosts``, or settings
            that cannot open a memory.
    """
    _starlette()
    import uvicorn

    served, made = prepare_tokens(tokens, host)
    transport_security(host, allowed_hosts)  # a wildcard bind without host names fails before opening
    if not is_loopback(host):
        logger.warning("serving plain HTTP on %s: put a TLS proxy in front (see the README)", host)
    # The inspector changes only what it is asked to: no background consolidation of its own.
    memory = settings.open_memory(background=False)
    try:
        memory.list_users()  # opens the store now: a bad configuration fails at start
        app = create_app(memory, tokens=served, host=host, allowed_hosts=allowed_hosts)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning")
        listening = config.bind_socket()  # before the address is given out: a click on it connects
        listening.listen(config.backlog)  # bind_socket only binds: until uvicorn listened, refused
        try:
            if on_ready is not None:
                on_ready(page_address(host, port, made))
            uvicorn.Server(config).run(sockets=[listening])
        finally:
            listening.close()
    finally:
        memory.close()
