"""Helpers shared by the adapters: user ids from LangGraph runtimes, units as metadata, message text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

from memoryos_core import ConfigError, ContextUnit


def message_text(message: BaseMessage) -> str:
    """The text of a message (text blocks only; images and tool-call payloads are left out)."""
    return str(message.text)


def resolve_user_id(context: Any, config: Mapping[str, Any] | None, default: str | None) -> str:
    """The user id of a run: ``context.user_id`` (attribute or key), then ``configurable.user_id``.

    Raises:
        ConfigError: no user id in the context, the config or the adapter's default.
    """
    configurable = (config or {}).get("configurable") or {}
    for source in (context, configurable):
        value = source.get("user_id") if isinstance(source, Mapping) else getattr(source, "user_id", None)
        if value is not None:
            if not isinstance(value, str):
                raise ConfigError(f"user_id must be a str, not {type(value).__name__}")
            return value
    if default is not None:
        return default
    raise ConfigError(
        "no user id for this run: pass user_id= to the adapter, or give it in the runtime context "
        "(context={'user_id': ...}) or in config={'configurable': {'user_id': ...}}"
    )


def unit_metadata(unit: ContextUnit, user_id: str) -> dict[str, Any]:
    """A recalled unit's tier, score, timestamp and provenance as flat Document metadata."""
    return {
        **unit.meta_data,
        "id": unit.id,
        "user_id": user_id,
        "tier": unit.tier,
        "score": unit.score,
        "timestamp": unit.timestamp,
        "page_ids": list(unit.page_ids),
        "source_ids": list(unit.source_ids),
    }


def last_turn(messages: Sequence[BaseMessage]) -> tuple[HumanMessage, AIMessage | None] | None:
    """The last human message and the last AI message with text after it (None if no human message)."""
    for index in range(len(messages) - 1, -1, -1):
        human = messages[index]
        if isinstance(human, HumanMessage):
            answers = [m for m in messages[index + 1 :] if isinstance(m, AIMessage) and message_text(m)]
            return human, (answers[-1] if answers else None)
    return None
