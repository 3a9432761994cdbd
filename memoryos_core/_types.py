"""Value types shared by the engine, the backends and the adapters: all frozen dataclasses."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
Tier = Literal["short_term", "mid_term", "archive", "user_knowledge", "assistant_knowledge", "profile"]


@dataclass(frozen=True)
class ChatMessage:
    """One message sent to an LLM."""

    role: Role
    content: str


@dataclass(frozen=True)
class Cost:
    """What an operation cost: LLM calls, tokens (counted with tiktoken) and wall time."""

    llm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ms: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.llm_calls + other.llm_calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.ms + other.ms,
        )

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True)
class Page:
    """One user–assistant exchange, as stored."""

    id: str
    user_id: str
    assistant_id: str
    user_input: str
    agent_response: str
    timestamp: str
    tier: Tier
    segment_id: str | None = None
    chain_overview: str = ""
    meta_data: dict[str, Any] = field(default_factory=dict)
    created_ns: int = 0
    source_ids: tuple[str, ...] = ()
    """Provenance kept from ``meta_data`` (``SOURCE_KEYS``) or an import, as on recalled units."""

    @property
    def text(self) -> str:
        return render_page(self.user_input, self.agent_response, self.timestamp)


def render_page(user_input: str, agent_response: str, timestamp: str = "") -> str:
    """The text of a page as it is embedded, indexed and shown to an LLM."""
    head = f"[{timestamp}] " if timestamp else ""
    parts = []
    if user_input:
        parts.append(f"User: {user_input}")
    if agent_response:
        parts.append(f"Assistant: {agent_response}")
    return head + "\n".join(parts)


@dataclass(frozen=True)
class AddResult:
    """Returned by ``add_memory`` once the page is durably stored."""

    page_id: str
    user_id: str
    assistant_id: str
    cost: Cost


@dataclass(frozen=True)
class ContextUnit:
    """One ranked item of recalled memory, from any tier.

    ``page_ids`` are the pages it came from (its provenance); ``source_ids`` are any ids
    the caller passed in ``meta_data`` of those pages (for example a message id). For page
    units, ``meta_data`` holds ``user_input``, ``agent_response``, ``chain_overview``,
    ``segment_id``, ``created_ns`` (the page's place in the conversation) and, under
    ``"meta_data"``, the caller's own meta_data of the page.
    Knowledge units carry the time they were last updated as ``timestamp``. ``score`` is a
    relevance on one scale across tiers (z-units of the fused lexical and dense scores; higher
    is better, not a probability).
    """

    id: str
    tier: Tier
    text: str
    score: float
    timestamp: str = ""
    page_ids: tuple[str, ...] = ()
    source_ids: tuple[str, ...] = ()
    meta_data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RetrievedContext:
    """The result of ``retrieve_memory``: the recent pages, a ranked list across tiers, and the profile.

    ``units`` holds at most ``top_k`` units ranked by relevance (older pages and knowledge);
    ``short_term`` holds the short-term pages (the recent conversation, oldest first), which come
    with every recall and are not counted in ``top_k``. ``all_units`` merges both by score.
    """

    query: str
    user_id: str
    units: tuple[ContextUnit, ...]
    profile: str
    cost: Cost
    short_term: tuple[ContextUnit, ...] = ()

    @property
    def all_units(self) -> tuple[ContextUnit, ...]:
        """The short-term pages and the ranked units in one list, best score first."""
        return tuple(sorted((*self.short_term, *self.units), key=lambda unit: unit.score, reverse=True))

    def by_tier(self, tier: Tier) -> list[ContextUnit]:
        """The units of one tier (``"short_term"`` gives the short-term pages), best score first."""
        return [unit for unit in self.all_units if unit.tier == tier]

    def render(self, max_units: int | None = None) -> str:
        """The context as text for a prompt, marked as recalled data (not instructions).

        Args:
            max_units: keep only this many units of ``all_units`` (best score first).
        """
        from memoryos_core.llm.prompts import render_context  # prompts import types, not the reverse

        return render_context(self, max_units=max_units)

    def to_mcp_dict(self) -> dict[str, Any]:
        """The shape of the reference implementation's MCP ``retrieve_memory`` tool."""

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
            "query": self.query,
            "user_id": self.user_id,
            "short_term_memory": [page_entry(u) for u in self.short_term],
            "retrieved_pages": [page_entry(u) for u in self.units if u.tier in ("mid_term", "archive")],
            "retrieved_user_knowledge": [knowledge_entry(u) for u in self.by_tier("user_knowledge")],
            "retrieved_assistant_knowledge": [
                knowledge_entry(u) for u in self.by_tier("assistant_knowledge")
            ],
            "user_profile": self.profile,
            "total_results": len(self.short_term) + len(self.units),
        }


@dataclass(frozen=True)
class ResponseResult:
    """The result of ``generate_response``: the answer, the context it used and the cost."""

    text: str
    context: RetrievedContext
    page_id: str
    cost: Cost


@dataclass(frozen=True)
class MemoryStats:
    """Counts per tier, pending work and cumulative cost for one user."""

    user_id: str
    short_term_pages: int
    pending_pages: int
    mid_term_pages: int
    archived_pages: int
    segments: int
    user_knowledge: int
    assistant_knowledge: int
    profile_traits: int
    hot_segments: int
    skipped_llm_steps: int
    llm_fallbacks: int
    cost: Cost
    truncated_replies: int = 0
    """LLM replies that were cut off (e.g. by the token limit): the cut-off value was dropped."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ProfileTrait:
    """One trait of the user profile, with the pages it was inferred from."""

    name: str
    value: str
    page_ids: tuple[str, ...]
    updated_s: float


@dataclass(frozen=True)
class KnowledgeEntry:
    """One item of user or assistant knowledge, with its provenance."""

    id: str
    kind: Literal["user", "assistant"]
    text: str
    page_ids: tuple[str, ...]
    source_ids: tuple[str, ...]
    updated_s: float


@dataclass(frozen=True)
class UserProfile:
    """What long-term memory holds about a user."""

    user_id: str
    summary: str
    traits: tuple[ProfileTrait, ...]
    user_knowledge: tuple[KnowledgeEntry, ...]
    assistant_knowledge: tuple[KnowledgeEntry, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
