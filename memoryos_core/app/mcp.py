"""The MCP server: MemoryOS as tools (add, retrieve, profile, delete, stats) for any MCP client.

Who a call acts for is decided by :class:`~memoryos_core.app.mcp_access.Access`: over stdio without a pin,
every tool names its ``user_id`` (a trusted backend serving many users); with ``--user`` or a user-bound
HTTP token, the call acts for that user only and naming another one is a tool error. Bad input is answered
with a tool error (``isError``) naming the problem, and nothing is stored. Built on the ``mcp`` SDK 2.x
(``MCPServer``), imported lazily: ``pip install "memoryos-py[mcp]"``.
"""

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from pydantic import Field

from memoryos_core._exceptions import BackendError, ConfigError, MemoryOSError, MissingDependencyError
from memoryos_core.app.mcp_access import HOW_TO_CONFIGURE, Access, TokenTable, is_loopback, transport_security
from memoryos_core.app.mcp_models import (
    AddMemoryResult,
    DeleteMemoryResult,
    MemoryStatsResult,
    OptionalId,
    OptionalUserId,
    RetrieveMemoryResult,
    Trait,
    UserId,
    UserProfileResult,
    knowledge_items,
    retrieve_memory_dict,
    stats_result,
)
from memoryos_core.app.settings import Settings
from memoryos_core.engine.memory import MemoryOS

__all__ = ["create_server", "retrieve_memory_dict", "run_server"]

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

logger = logging.getLogger("memoryos")
T = TypeVar("T")


async def _call(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a core call, turning its errors into tool errors the client can read (not a generic crash)."""
    tool_error = _sdk()[1]
    try:
        return await operation()
    except BackendError as exc:  # the store, embedder or LLM failed: say which
        raise tool_error(f"{type(exc).__name__}: {exc}") from exc
    except MemoryOSError as exc:  # InvalidInputError, NotFoundError, LLMNotConfiguredError, ...
        raise tool_error(str(exc)) from exc


def _sdk() -> "tuple[type[MCPServer], type[ToolError]]":
    """The SDK's ``MCPServer`` and ``ToolError`` (mcp 2.x), or a MissingDependencyError."""
    try:
        from mcp.server.mcpserver import MCPServer as server_class
        from mcp.server.mcpserver.exceptions import ToolError as tool_error
    except ImportError as exc:
        raise MissingDependencyError("mcp", extra="mcp") from exc
    return server_class, tool_error


def create_server(
    memory: MemoryOS, *, name: str = "memoryos", user: str | None = None, tokens: TokenTable | None = None
) -> "MCPServer":
    """An ``MCPServer`` with the MemoryOS tools, on ``memory`` (which the caller closes).

    Args:
        memory: The memory the tools act on.
        name: The server's name, as clients show it.
        user: Pin the server to this one user: calls naming another user are tool errors.
        tokens: Bearer tokens for the HTTP transport (the SDK's auth answers 401 without a valid one);
            a user-bound token acts for its user only. Without ``user`` and ``tokens``, every call names
            its user: the trusted multi-user mode, for a backend that already authenticates people.

    Raises:
        MissingDependencyError: the ``mcp`` package is not installed.
    """
    server_class, tool_error = _sdk()
    access = Access(pinned_user=user, requires_token=tokens is not None)
    # Many users: user_id is required in the schema (a forgotten id must not land in a default user's
    # memory). Pinned or token-bound: it is optional and defaults to that user. ``...`` as a parameter
    # default is pydantic's "required", which the SDK's argument model passes through.
    user_default: Any
    if TYPE_CHECKING:  # picked at run time (the SDK reads the annotations); to a type checker, an optional id
        UserArg = str | None
        user_default = None
    else:
        UserArg, user_default = (UserId, ...) if access.is_multi_user else (OptionalUserId, None)
    server = server_class(
        name,
        version=_version(),
        instructions=(
            "Long-term memory of conversations. Call retrieve_memory with the user's message before "
            "answering, and add_memory with the finished exchange afterwards. "
            + ("Always pass the user's id." if access.is_multi_user else "The user is set by the server.")
        ),
        log_level="WARNING",
        **_auth_options(tokens),
    )

    @server.tool()
    async def add_memory(
        user_input: Annotated[str, Field(description="What the user said.")],
        agent_response: Annotated[str, Field(description="What the assistant answered.")],
        user_id: UserArg = user_default,
        assistant_id: OptionalId = None,
        timestamp: Annotated[
            str | None, Field(description="When it was said, e.g. 2025-03-01 19:00:00 (default: now).")
        ] = None,
        meta_data: Annotated[
            dict[str, Any] | None,
            Field(description="Any JSON object; message_id / source_id / dia_id become provenance."),
        ] = None,
    ) -> AddMemoryResult:
        """Store one exchange (a page) in the user's memory; consolidation happens in the background."""
        user = access.user_for(user_id)
        result = await _call(
            lambda: memory.aadd_memory(
                user_input, agent_response, timestamp, meta_data, user_id=user, assistant_id=assistant_id
            )
        )
        return AddMemoryResult(
            page_id=result.page_id,
            user_id=result.user_id,
            assistant_id=result.assistant_id,
            ms=result.cost.ms,
        )

    @server.tool()
    async def retrieve_memory(
        query: Annotated[str, Field(description="What to recall memory for, e.g. the user's message.")],
        user_id: UserArg = user_default,
        max_results: Annotated[
            int, Field(ge=1, le=100, description="Older pages and knowledge beyond the recent pages.")
        ] = 7,
    ) -> RetrieveMemoryResult:
        """Recall the user's memory for a query: recent pages, relevant older pages, knowledge, profile."""
        user = access.user_for(user_id)
        if not query.strip():
            raise tool_error("query must not be empty")
        context = await _call(lambda: memory.aretrieve_memory(query, user_id=user, top_k=max_results))
        return RetrieveMemoryResult.model_validate(retrieve_memory_dict(context))

    @server.tool()
    async def get_user_profile(
        user_id: UserArg = user_default,
        include_knowledge: Annotated[
            bool, Field(description="Also return user and assistant knowledge.")
        ] = True,
    ) -> UserProfileResult:
        """The user's profile (traits inferred from memory) and, optionally, what is known about them."""
        user = access.user_for(user_id)
        profile = await _call(lambda: memory.aget_user_profile(user))
        traits = [Trait(name=t.name, value=t.value, page_ids=list(t.page_ids)) for t in profile.traits]
        return UserProfileResult(
            user_id=profile.user_id,
            user_profile=profile.summary,
            traits=traits,
            user_knowledge=knowledge_items(profile.user_knowledge) if include_knowledge else None,
            assistant_knowledge=knowledge_items(profile.assistant_knowledge) if include_knowledge else None,
        )

    @server.tool(annotations=_destructive())
    async def delete_memory(
        user_id: UserArg = user_default,
        page_id: Annotated[
            str | None, Field(description="The page to delete (what was derived from it goes too).")
        ] = None,
        everything: Annotated[bool, Field(description="Delete all of the user's memory instead.")] = False,
    ) -> DeleteMemoryResult:
        """Delete one page of the user's memory, or all of it with everything=true."""
        user = access.user_for(user_id)
        if (page_id is None) == (not everything):
            raise tool_error("give either page_id or everything=true, not both or neither")
        deleted = await _call(lambda: memory.adelete_memory(page_id, user_id=user, everything=everything))
        return DeleteMemoryResult(user_id=user, deleted_pages=deleted)

    @server.tool()
    async def get_memory_stats(user_id: UserArg = user_default) -> MemoryStatsResult:
        """Counts per memory tier, pending work and the LLM cost so far for the user."""
        user = access.user_for(user_id)
        return stats_result(await _call(lambda: memory.aget_memory_stats(user)))

    return server


def _destructive() -> Any:
    from mcp.types import ToolAnnotations

    return ToolAnnotations(destructive_hint=True, idempotent_hint=True)


def _version() -> str:
    from memoryos_core._version import package_version

    return package_version()


def _auth_options(tokens: TokenTable | None) -> dict[str, Any]:
    """The SDK's bearer-token auth for ``MCPServer``: its middleware answers 401 before any tool runs."""
    if tokens is None:
        return {}
    from mcp.server.auth.settings import AuthSettings
    from pydantic import AnyHttpUrl

    # This server verifies its own tokens (no OAuth issuer): the issuer URL is required by AuthSettings
    # but only published with resource_server_url, which stays unset.
    return {
        "token_verifier": tokens,
        "auth": AuthSettings(issuer_url=AnyHttpUrl("http://localhost"), resource_server_url=None),
    }


def run_server(
    settings: Settings,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    user: str | None = None,
    tokens: TokenTable | None = None,
    allowed_hosts: Sequence[str] = (),
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve MemoryOS over stdio, or streamable HTTP at ``http://HOST:PORT/mcp``, until stopped.

    Args:
        settings: Where the memory lives and which backends it uses.
        transport: ``stdio`` (the client starts the server), or ``http``, which needs ``tokens``.
        host: Address to listen on (http); other than loopback, clients' Host headers must be allowed.
        port: Port to listen on (http).
        user: Pin the server to this one user.
        tokens: Bearer tokens (http); ignored over stdio, where the client that started the server is trusted.
        allowed_hosts: Host names clients use to reach the server (http), besides the bind address.
        on_ready: Called once the store is open, just before serving.

    Raises:
        MissingDependencyError: the ``mcp`` package is not installed.
        ConfigError: no token for http, tokens for other users than ``user``, a wildcard bind without
            ``allowed_hosts``, or settings that cannot open a memory.
    """
    _sdk()  # before opening anything
    is_http = transport == "http"
    if is_http:
        if tokens is None or not len(tokens):
            raise ConfigError(
                f"memoryos mcp --transport http never serves without a token: {HOW_TO_CONFIGURE}"
            )
        if user is not None and tokens.users - {user}:
            others = ", ".join(sorted(tokens.users - {user}))
            raise ConfigError(f"--user {user} pins the server, but tokens act for other users too: {others}")
        security = transport_security(host, allowed_hosts)
        if not is_loopback(host):
            logger.warning(
                "serving plain HTTP on %s: bearer tokens cross the network in clear text; put a TLS proxy "
                "in front (see the README, MCP server)",
                host,
            )
    memory = settings.open_memory()
    try:
        # Open the store now: a bad configuration fails at start, and the first call is not slow.
        memory.get_memory_stats(user or settings.user_id)
        server = create_server(memory, user=user, tokens=tokens if is_http else None)
        if on_ready is not None:
            on_ready()
        if is_http:
            server.run("streamable-http", host=host, port=port, transport_security=security)
        else:
            import anyio

            from memoryos_core.app.mcp_stdio import serve_stdio

            anyio.run(serve_stdio, server)
    finally:
        memory.close()
