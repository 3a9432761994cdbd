"""The MCP tools' argument types and result models (pydantic), and the functions that shape core values
into them: ``retrieve_memory_dict`` (also printed by ``memoryos recall --json``), ``stats_result``,
``knowledge_items``. The server itself is ``app/mcp.py``.
"""

import dataclasses
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_type_hints

from pydantic import BaseModel, Field, create_model

from memoryos_core._types import ContextUnit, Cost, KnowledgeEntry, MemoryStats, RetrievedContext
from memoryos_core._validation import ID_PATTERN

_USER_HELP = "The user whose memory this call reads or writes (1-128 of A-Z a-z 0-9 _ . @ : -)."
UserId = Annotated[str, Field(description=_USER_HELP, pattern=ID_PATTERN.pattern)]
OptionalUserId = Annotated[
    str | None,
    Field(
        description=_USER_HELP + " Default: the user this server or your token acts for.",
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


def retrieve_memory_dict(context: RetrievedContext) -> dict[str, Any]:
    """A recall in the shape of the reference implementation's MCP ``retrieve_memory`` tool
    (:class:`RetrieveMemoryResult`'s fields); the CLI's ``recall --json`` prints it too."""

    def page_entry(unit: ContextUnit) -> dict[str, Any]:
        return {
            "user_input": unit.meta_data.get("user_input", ""),
            "agent_response": unit.meta_data.get("agent_response", ""),
            "timestamp": unit.timestamp,
            "meta_info": unit.meta_data.get("chain_overview", ""),
            "page_id": unit.id,
            "score": unit.score,
        }

    def knowledge_entry(unit: ContextUnit) -> dict[str, Any]:
        return {"knowledge": unit.text, "timestamp": unit.timestamp, "score": unit.score}

    return {
        "status": "success",
        "query": context.query,
        "user_id": context.user_id,
        "short_term_memory": [page_entry(u) for u in context.short_term],
        "retrieved_pages": [page_entry(u) for u in context.units if u.tier in ("mid_term", "archive")],
        "retrieved_user_knowledge": [knowledge_entry(u) for u in context.by_tier("user_knowledge")],
        "retrieved_assistant_knowledge": [knowledge_entry(u) for u in context.by_tier("assistant_knowledge")],
        "user_profile": context.profile,
        "total_results": len(context.short_term) + len(context.units),
    }


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


_STATS_HELP = {
    "pending_pages": "Pages waiting to be consolidated into mid-term memory.",
    "hot_segments": "Segments due for analysis into long-term memory.",
    "truncated_replies": "LLM replies cut off (e.g. by the token limit); the cut-off value was dropped.",
    "ms": "Wall time of this server's calls for the user so far, in milliseconds.",
}


def _stats_model() -> type[BaseModel]:
    """``MemoryStats`` as the tool's output model, its ``cost`` flattened (``llm_calls``,
    ``prompt_tokens``, ``completion_tokens``, ``ms``): derived from the core dataclasses, so a field
    added there is in the output schema too. Every field is always given, so every field is required."""
    fields: dict[str, Any] = {}
    for cls in (MemoryStats, Cost):
        hints = get_type_hints(cls)
        for item in dataclasses.fields(cls):
            if hints[item.name] is not Cost:
                fields[item.name] = (hints[item.name], Field(description=_STATS_HELP.get(item.name)))
    return create_model("MemoryStatsResult", __doc__=MemoryStats.__doc__, **fields)


if TYPE_CHECKING:
    MemoryStatsResult = BaseModel
else:
    MemoryStatsResult = _stats_model()


def stats_result(stats: MemoryStats) -> MemoryStatsResult:
    values = stats.to_dict()
    values.update(values.pop("cost"))
    return MemoryStatsResult.model_validate(values)


def knowledge_items(entries: tuple[KnowledgeEntry, ...]) -> list[KnowledgeItem]:
    return [
        KnowledgeItem(id=e.id, knowledge=e.text, page_ids=list(e.page_ids), source_ids=list(e.source_ids))
        for e in entries
    ]
