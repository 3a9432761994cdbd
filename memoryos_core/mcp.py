"""The MCP server: MemoryOS as tools (add, retrieve, profile, delete, stats) for any MCP client.

Every tool takes the ``user_id`` of the call, so one server serves many users. Bad input is answered with
a tool error (``isError``) naming the problem, and nothing is stored. Built on the ``mcp`` SDK 2.x
(``MCPServer``), imported lazily: ``pip install "memoryos-py[mcp]"``.
"""

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, Field

from memoryos_core._exceptions import BackendError, MemoryOSError, MissingDependencyError
from memoryos_core._memory import MemoryOS
from memoryos_core._settings import Settings
from memoryos_core._types import KnowledgeEntry
from memoryos_core._validation import ID_PATTERN

logger = logging.getLogger("memoryos")
T = TypeVar("T")

UserId = Annotated[
    str,
    Field(
        description="The user whose memory this call reads or writes (1-128 of A-Z a-z 0-9 _ . @ : -).",
        pattern=ID_PATTERN.pattern,
    ),
]
OptionalId = Annotated[
    str | None, Field(description="Optional id (1-128 of A-Z a-z 0-9 _ . @ : -).", pattern=ID_PATTERN.pattern)
]


class AddMemoryResult(BaseModel):
    """The page stored by ``add_memory``."""

    status: Literal["success"] = "success"
    page_id: str = Field(description="Id of the stored page (use it with delete_memory).")
    user_id: str
    assistant_id: str
    ms: float = Field(description="Time taken, in milliseconds.")


class PageEntry(BaseModel):
    """A recalled page (one user input and one agent response)."""

    page_id: str
    user_input: str
    agent_response: str
    timestamp: str
    meta_info: str = Field(description="Overview of the dialogue chain the page belongs to.")
    score: float


class KnowledgeHit(BaseModel):
    """A recalled item of user or assistant knowledge."""

    knowledge: str
    timestamp: str
    score: float


class RetrieveMemoryResult(BaseModel):
    """Recalled memory for a query, in the reference implementation's shape."""

    status: Literal["success"] = "success"
    query: str
    user_id: str
    short_term_memory: list[PageEntry] = Field(description="The most recent pages, verbatim.")
    retrieved_pages: list[PageEntry] = Field(description="Older pages relevant to the query.")
    retrieved_user_knowledge: list[KnowledgeHit]
    retrieved_assistant_knowledge: list[KnowledgeHit]
    user_profile: str
    total_results: int


class Trait(BaseModel):
    """One trait of the user profile, with the pages it was inferred from."""

    name: str
    value: str
    page_ids: list[str]


class KnowledgeItem(BaseModel):
    """One item of knowledge, with its provenance."""

    id: str
    knowledge: str
    page_ids: list[str]
    source_ids: list[str]


class UserProfileResult(BaseModel):
    """What long-term memory holds about a user."""

    status: Literal["success"] = "success"
    user_id: str
    user_profile: str = Field(description="The profile as text (empty until an LLM has analysed memory).")
    traits: list[Trait]
    user_knowledge: list[KnowledgeItem] | None = None
    assistant_knowledge: list[KnowledgeItem] | None = None


class DeleteMemoryResult(BaseModel):
    """What ``delete_memory`` removed."""

    status: Literal["success"] = "success"
    user_id: str
    deleted_pages: int


class MemoryStatsResult(BaseModel):
    """Counts per tier, pending work and cumulative cost for one user."""

    user_id: str
    short_term_pages: int
    pending_pages: int = Field(description="Pages waiting to be consolidated into mid-term memory.")
    mid_term_pages: int
    archived_pages: int
    segments: int
    user_knowledge: int
    assistant_knowledge: int
    profile_traits: int
    hot_segments: int = Field(description="Segments due for analysis into long-term memory.")
    skipped_llm_steps: int
    llm_fallbacks: int
    llm_calls: int
    prompt_tokens: int
    completion_tokens: int


def _items(entries: tuple[KnowledgeEntry, ...]) -> list[KnowledgeItem]:
    return [
        KnowledgeItem(id=e.id, knowledge=e.text, page_ids=list(e.page_ids), source_ids=list(e.source_ids))
        for e in entries
    ]


async def _call(operation: Callable[[], Awaitable[T]]) -> T:
    """Run a core call, turning its errors into tool errors the client can read (not a generic crash)."""
    tool_error = _sdk()[1]
    try:
        return await operation()
    except BackendError as exc:  # the store, embedder or LLM failed: say which
        raise tool_error(f"{type(exc).__name__}: {exc}") from exc
    except MemoryOSError as exc:  # InvalidInputError, NotFoundError, LLMNotConfiguredError, ...
        raise tool_error(str(exc)) from exc


def _sdk() -> tuple[Any, Any]:
    """The SDK's ``MCPServer`` and ``ToolError`` (mcp 2.x), or a MissingDependencyError."""
    try:
        from mcp.server.mcpserver import MCPServer
        from mcp.server.mcpserver.exceptions import ToolError
    except ImportError as exc:
        raise MissingDependencyError("mcp", extra="mcp") from exc
    return MCPServer, ToolError


def create_server(memory: MemoryOS, *, name: str = "memoryos") -> Any:
    """An ``MCPServer`` with the MemoryOS tools, on ``memory`` (which the caller closes).

    Raises:
        MissingDependencyError: the ``mcp`` package is not installed.
    """
    server_class, ToolError = _sdk()
    server = server_class(
        name,
        version=_version(),
        instructions=(
            "Long-term memory of conversations. Call retrieve_memory with the user's message before "
            "answering, and add_memory with the finished exchange afterwards. Always pass the user's id."
        ),
        log_level="WARNING",
    )

    @server.tool()
    async def add_memory(
        user_input: Annotated[str, Field(description="What the user said.")],
        agent_response: Annotated[str, Field(description="What the assistant answered.")],
        user_id: UserId,
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
        result = await _call(
            lambda: memory.aadd_memory(
                user_input, agent_response, timestamp, meta_data, user_id=user_id, assistant_id=assistant_id
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
        user_id: UserId,
        max_results: Annotated[
            int, Field(ge=1, le=100, description="Older pages to return beyond the recent ones.")
        ] = 7,
    ) -> RetrieveMemoryResult:
        """Recall the user's memory for a query: recent pages, relevant older pages, knowledge, profile."""
        if not query.strip():
            raise ToolError("query must not be empty")
        context = await _call(lambda: memory.aretrieve_memory(query, user_id=user_id, top_k=max_results))
        return RetrieveMemoryResult.model_validate(context.to_mcp_dict())

    @server.tool()
    async def get_user_profile(
        user_id: UserId,
        include_knowledge: Annotated[
            bool, Field(description="Also return user and assistant knowledge.")
        ] = True,
    ) -> UserProfileResult:
        """The user's profile (traits inferred from memory) and, optionally, what is known about them."""
        profile = await _call(lambda: memory.aget_user_profile(user_id))
        traits = [Trait(name=t.name, value=t.value, page_ids=list(t.page_ids)) for t in profile.traits]
        return UserProfileResult(
            user_id=profile.user_id,
            user_profile=profile.summary,
            traits=traits,
            user_knowledge=_items(profile.user_knowledge) if include_knowledge else None,
            assistant_knowledge=_items(profile.assistant_knowledge) if include_knowledge else None,
        )

    @server.tool(annotations=_destructive())
    async def delete_memory(
        user_id: UserId,
        page_id: Annotated[
            str | None, Field(description="The page to delete (what was derived from it goes too).")
        ] = None,
        everything: Annotated[bool, Field(description="Delete all of the user's memory instead.")] = False,
    ) -> DeleteMemoryResult:
        """Delete one page of the user's memory, or all of it with everything=true."""
        if (page_id is None) == (not everything):
            raise ToolError("give either page_id or everything=true, not both or neither")
        deleted = await _call(lambda: memory.adelete_memory(page_id, user_id=user_id, everything=everything))
        return DeleteMemoryResult(user_id=user_id, deleted_pages=deleted)

    @server.tool()
    async def get_memory_stats(user_id: UserId) -> MemoryStatsResult:
        """Counts per memory tier, pending work and the LLM cost so far for the user."""
        stats = await _call(lambda: memory.aget_memory_stats(user_id))
        values = stats.to_dict()
        cost = values.pop("cost")
        values.update({k: cost[k] for k in ("llm_calls", "prompt_tokens", "completion_tokens")})
        return MemoryStatsResult.model_validate(values)

    return server


def _destructive() -> Any:
    from mcp.types import ToolAnnotations

    return ToolAnnotations(destructive_hint=True, idempotent_hint=True)


def _version() -> str:
    from memoryos_core import __version__

    return __version__


def run_server(
    settings: Settings,
    *,
    transport: Literal["stdio", "http"] = "stdio",
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[], None] | None = None,
) -> None:
    """Serve MemoryOS over stdio, or streamable HTTP at ``http://HOST:PORT/mcp``, until stopped.

    ``on_ready`` is called once the store is open, just before serving.

    Raises:
        MissingDependencyError: the ``mcp`` package is not installed.
        ConfigError: the settings cannot open a memory.
    """
    _sdk()  # before opening anything
    memory = settings.open_memory()
    try:
        # Open the store now: a bad configuration fails at start, and the first call is not slow.
        memory.get_memory_stats(settings.user_id)
        server = create_server(memory)
        if on_ready is not None:
            on_ready()
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=host, port=port)
    finally:
        memory.close()
