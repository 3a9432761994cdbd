"""Conversion between the engine's values and store records (metadata is flat: JSON for lists).

Every record <-> value conversion lives here: pages, segments, knowledge, the profile record, the
per-user state records, and the one JSON form of a whole record (journals and batch plans).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

from memoryos_core._types import KnowledgeEntry, Page, ProfileTrait, Tier, render_page
from memoryos_core.policy.mid_term import SegmentState
from memoryos_core.storage.base import Record


def page_record(
    page: Page,
    embedding: Sequence[float] | None,
    *,
    ts_s: float,
    source_ids: tuple[str, ...],
    chain_prev: str = "",
) -> Record:
    return Record(
        id=page.id,
        document=render_page(page.user_input, page.agent_response, page.timestamp),
        embedding=embedding,
        metadata={
            "user_id": page.user_id,
            "assistant_id": page.assistant_id,
            "tier": page.tier,
            "created_ns": page.created_ns,
            "timestamp": page.timestamp,
            "ts_s": ts_s,
            "user_input": page.user_input,
            "agent_response": page.agent_response,
            "segment_id": page.segment_id or "",
            "chain_prev": chain_prev,
            "chain_overview": page.chain_overview,
            "meta_json": json.dumps(page.meta_data, ensure_ascii=False, separators=(",", ":")),
            "source_ids_json": json.dumps(list(source_ids)),
        },
    )


def page_from_record(record: Record) -> Page:
    m = record.metadata
    return Page(
        id=record.id,
        user_id=str(m["user_id"]),
        assistant_id=str(m.get("assistant_id", "")),
        user_input=str(m.get("user_input", "")),
        agent_response=str(m.get("agent_response", "")),
        timestamp=str(m.get("timestamp", "")),
        tier=cast(Tier, m.get("tier", "short_term")),
        segment_id=str(m.get("segment_id") or "") or None,
        chain_overview=str(m.get("chain_overview", "")),
        meta_data=json.loads(str(m.get("meta_json") or "{}")),
        created_ns=int(m.get("created_ns", 0)),
        source_ids=source_ids(record),
    )


def source_ids(record: Record) -> tuple[str, ...]:
    return tuple(json.loads(str(record.metadata.get("source_ids_json") or "[]")))


def segment_record(
    user_id: str, segment: SegmentState, *, status: str = "active", source: str = ""
) -> Record:
    return Record(
        id=segment.id,
        document=segment.summary,
        embedding=list(segment.embedding),
        metadata={
            "user_id": user_id,
            "status": status,
            "source": source,
            "keywords_json": json.dumps(list(segment.keywords), ensure_ascii=False),
            "page_count": segment.page_count,
            "n_visit": segment.n_visit,
            "l_interaction": segment.l_interaction,
            "last_access_s": segment.last_access_s,
            "created_s": segment.created_s,
            "pending_json": json.dumps(list(segment.pending_page_ids)),
        },
    )


def segment_from_record(record: Record) -> SegmentState:
    m = record.metadata
    return SegmentState(
        id=record.id,
        summary=record.document,
        keywords=tuple(json.loads(str(m.get("keywords_json") or "[]"))),
        embedding=tuple(record.embedding or ()),
        page_count=int(m.get("page_count", 0)),
        n_visit=int(m.get("n_visit", 0)),
        l_interaction=int(m.get("l_interaction", 0)),
        last_access_s=float(m.get("last_access_s", 0.0)),
        created_s=float(m.get("created_s", 0.0)),
        pending_page_ids=tuple(json.loads(str(m.get("pending_json") or "[]"))),
    )


def knowledge_record(user_id: str, assistant_id: str, entry: KnowledgeEntry) -> Record:
    return Record(
        id=entry.id,
        document=entry.text,
        embedding=list(entry.embedding),
        metadata={
            "user_id": user_id,
            "assistant_id": assistant_id,
            "kind": entry.kind,
            "page_ids_json": json.dumps(list(entry.page_ids)),
            "source_ids_json": json.dumps(list(entry.source_ids)),
            "updated_s": entry.updated_s,
        },
    )


def knowledge_from_record(record: Record) -> KnowledgeEntry:
    m = record.metadata
    return KnowledgeEntry(
        id=record.id,
        kind="assistant" if m.get("kind") == "assistant" else "user",
        text=record.document,
        page_ids=tuple(json.loads(str(m.get("page_ids_json") or "[]"))),
        source_ids=source_ids(record),
        updated_s=float(m.get("updated_s", 0.0)),
        embedding=tuple(record.embedding or ()),
    )


def profile_record(user_id: str, profile: Mapping[str, ProfileTrait]) -> Record:
    """The state record holding the user's whole profile (``profile:<user>``)."""
    document = json.dumps(
        [
            {"name": t.name, "value": t.value, "page_ids": list(t.page_ids), "updated_s": t.updated_s}
            for t in profile.values()
        ],
        ensure_ascii=False,
    )
    return Record(f"profile:{user_id}", document, {"user_id": user_id, "key": "profile"})


def profile_from_record(record: Record | None) -> dict[str, ProfileTrait]:
    """The traits of a profile record, keyed by lower-cased name (empty without a record)."""
    items = json.loads(record.document or "[]") if record is not None else []
    return {
        item["name"].lower(): ProfileTrait(
            item["name"], item["value"], tuple(item.get("page_ids", ())), float(item.get("updated_s", 0.0))
        )
        for item in items
    }


def state_record(key: str, user_id: str, payload: Mapping[str, Any]) -> Record:
    return Record(
        id=f"{key}:{user_id}",
        document=json.dumps(payload, ensure_ascii=False),
        metadata={"user_id": user_id, "key": key},
    )


def record_to_json(record: Record) -> dict[str, Any]:
    """A whole record as JSON-ready data: the one form of page journals and batch plans."""
    return {
        "id": record.id,
        "doc": record.document,
        "meta": record.metadata,
        "vec": list(record.embedding or ()),
    }


def record_from_json(data: Mapping[str, Any]) -> Record:
    """The record of :func:`record_to_json` data.

    Raises:
        KeyError, TypeError, ValueError: not such data (a line cut short by a crash, say).
    """
    # Batch plans journaled by versions before the one format used the long key names.
    document = data["doc"] if "doc" in data else data["document"]
    metadata = data["meta"] if "meta" in data else data["metadata"]
    vector = data["vec"] if "vec" in data else data["embedding"]
    return Record(str(data["id"]), str(document), dict(metadata), [float(x) for x in vector])
