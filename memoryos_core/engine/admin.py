"""Whole-user operations: profile views, delete (with derived data) and export (import: ``_import``)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import datetime
from typing import Any

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import NotFoundError
from memoryos_core._types import KnowledgeEntry, ProfileTrait, UserProfile
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine.consolidation import UserState
from memoryos_core.engine.importer import EXPORT_VERSION
from memoryos_core.engine.promotion import load_profile
from memoryos_core.engine.records import (
    knowledge_from_record,
    page_from_record,
    segment_from_record,
    segment_record,
    source_ids,
    traits_to_json,
)
from memoryos_core.policy import text as text_policy
from memoryos_core.policy.long_term import render_profile
from memoryos_core.storage.base import KINDS, MemoryStore, Record


def users_with_pending_work(store: MemoryStore, capacity: int) -> list[str]:
    """Users with an interrupted batch, more short-term pages than ``capacity``, or segments whose
    pages were never analysed (a promotion may have been interrupted)."""
    journals = store.get("state", where={"key": "journal"})
    short = Counter(str(r.metadata["user_id"]) for r in store.get("pages", where={"tier": "short_term"}))
    unanalysed = {
        str(r.metadata["user_id"])
        for r in store.get("segments", where={"status": "active"})
        if str(r.metadata.get("pending_json") or "[]") != "[]"
    }
    pending = {str(r.metadata["user_id"]) for r in journals} | {u for u, n in short.items() if n > capacity}
    return sorted(pending | unanalysed)


def _entry(record: Record) -> KnowledgeEntry:
    item = knowledge_from_record(record)
    return KnowledgeEntry(item.id, item.kind, item.text, item.page_ids, source_ids(record), item.updated_s)  # type: ignore[arg-type]


def user_profile(store: MemoryStore, user_id: str) -> UserProfile:
    profile = load_profile(store, user_id)
    knowledge = sorted(
        store.get("knowledge", where={"user_id": user_id}), key=lambda r: r.metadata["updated_s"]
    )
    return UserProfile(
        user_id=user_id,
        summary=render_profile(profile),
        traits=tuple(ProfileTrait(t.name, t.value, t.page_ids, t.updated_s) for t in profile.values()),
        user_knowledge=tuple(_entry(r) for r in knowledge if r.metadata.get("kind") == "user"),
        assistant_knowledge=tuple(_entry(r) for r in knowledge if r.metadata.get("kind") == "assistant"),
    )


def assistant_knowledge(store: MemoryStore, user_id: str, assistant_id: str) -> list[dict[str, Any]]:
    records = store.get(
        "knowledge", where={"user_id": user_id, "kind": "assistant", "assistant_id": assistant_id}
    )
    items = sorted((knowledge_from_record(r) for r in records), key=lambda i: i.updated_s)
    return [
        {
            "knowledge": i.text,
            "timestamp": datetime.fromtimestamp(i.updated_s).isoformat(timespec="seconds"),
            "page_ids": list(i.page_ids),
        }
        for i in items
    ]


def delete_user(store: MemoryStore, user_id: str) -> int:
    """Remove every record of ``user_id`` from every collection; returns pages removed."""
    pages = len(store.get("pages", where={"user_id": user_id}))
    for kind in KINDS:
        store.delete(kind, where={"user_id": user_id})
    erase_deleted(store)
    return pages


def erase_deleted(store: MemoryStore) -> None:
    """Deleting is erasure: a store that keeps deleted text in its files (Chroma's log, freed
    pages) removes it now (``ChromaStore.erase_deleted``)."""
    erase = getattr(store, "erase_deleted", None)
    if erase is not None:
        erase()


def delete_page(
    store: MemoryStore, embedder: Embedder, config: MemoryConfig, user_id: str, page_id: str
) -> int:
    """Delete one page and what was derived from it: its segment is rebuilt from the pages
    left (or deleted), and knowledge and profile traits citing it are deleted."""
    found = store.get("pages", ids=[page_id], where={"user_id": user_id})
    if not found or found[0].metadata.get("user_id") != user_id:
        raise NotFoundError(f"no page {page_id!r} for user {user_id!r}")
    page = found[0]
    store.delete("pages", ids=[page_id], where={"user_id": user_id})
    segment_id = str(page.metadata.get("segment_id") or "")
    if segment_id:
        _rebuild_segment(store, config, user_id, segment_id, page_id)
    linked = store.get("pages", where={"user_id": user_id, "chain_prev": page_id}, with_embeddings=True)
    store.upsert("pages", [replace(p, metadata=p.metadata | {"chain_prev": ""}) for p in linked])
    cited = [
        r.id
        for r in store.get("knowledge", where={"user_id": user_id})
        if page_id in json.loads(str(r.metadata.get("page_ids_json") or "[]"))
    ]
    store.delete("knowledge", ids=cited, where={"user_id": user_id})
    profile = load_profile(store, user_id)
    kept = {key: t for key, t in profile.items() if page_id not in t.page_ids}
    if len(kept) != len(profile):
        store.upsert(
            "state",
            [Record(f"profile:{user_id}", traits_to_json(kept), {"user_id": user_id, "key": "profile"})],
        )
    state = UserState(store, user_id)
    if state.data["cursor"] == page_id:
        state.data["cursor"] = ""
        store.upsert("state", [state.record()])
    erase_deleted(store)
    return 1


def _rebuild_segment(
    store: MemoryStore, config: MemoryConfig, user_id: str, segment_id: str, page_id: str
) -> None:
    records = store.get("segments", ids=[segment_id], where={"user_id": user_id}, with_embeddings=True)
    rest = store.get("pages", where={"user_id": user_id, "segment_id": segment_id}, with_embeddings=True)
    if not records:
        return
    if not rest:
        store.delete("segments", ids=[segment_id], where={"user_id": user_id})
        return
    # The old summary may quote the deleted page: rebuild it from the pages left, extractively.
    segment = segment_from_record(records[0])
    texts, vectors = [p.document for p in rest], [list(p.embedding or ()) for p in rest]
    rebuilt = replace(
        segment,
        summary=text_policy.extractive_summary(texts, vectors, config.mid_term.summary_max_chars),
        keywords=tuple(text_policy.keywords(texts, config.mid_term.max_keywords)),
        embedding=tuple(text_policy.mean_vector(vectors)),
        page_count=len(rest),
        pending_page_ids=tuple(p for p in segment.pending_page_ids if p != page_id),
    )
    store.upsert(
        "segments",
        [
            segment_record(
                user_id, rebuilt, status=str(records[0].metadata.get("status")), source="extractive"
            )
        ],
    )
    # The pages' chain overviews may quote the deleted page too: they take the rebuilt one.
    overview = text_policy.clip(rebuilt.summary, 240)
    store.upsert("pages", [replace(p, metadata=p.metadata | {"chain_overview": overview}) for p in rest])


def export_user(store: MemoryStore, user_id: str) -> dict[str, Any]:
    pages = sorted(
        store.get("pages", where={"user_id": user_id}), key=lambda r: int(r.metadata["created_ns"])
    )
    members: dict[str, list[str]] = {}
    exported_pages = []
    for record in pages:
        page = page_from_record(record)
        if page.segment_id:
            members.setdefault(page.segment_id, []).append(page.id)
        exported_pages.append(
            {
                "id": page.id,
                "assistant_id": page.assistant_id,
                "user_input": page.user_input,
                "agent_response": page.agent_response,
                "timestamp": page.timestamp,
                "tier": page.tier,
                "segment_id": page.segment_id,
                "chain_overview": page.chain_overview,
                "meta_data": page.meta_data,
                "source_ids": list(source_ids(record)),
                "created_ns": page.created_ns,
            }
        )
    segments = []
    for record in store.get("segments", where={"user_id": user_id}):
        seg = segment_from_record(record)
        segments.append(
            {
                "id": seg.id,
                "summary": seg.summary,
                "keywords": list(seg.keywords),
                "page_ids": members.get(seg.id, []),
                "n_visit": seg.n_visit,
                "l_interaction": seg.l_interaction,
                "last_access_s": seg.last_access_s,
                "created_s": seg.created_s,
                "pending_page_ids": list(seg.pending_page_ids),
                "status": record.metadata.get("status", "active"),
            }
        )
    profile = load_profile(store, user_id)
    knowledge = sorted(
        store.get("knowledge", where={"user_id": user_id}), key=lambda r: r.metadata["updated_s"]
    )

    def entries(kind: str) -> list[dict[str, Any]]:
        out = []
        for record in (r for r in knowledge if r.metadata.get("kind") == kind):
            entry = _entry(record)
            item = {
                "id": entry.id,
                "text": entry.text,
                "page_ids": list(entry.page_ids),
                "source_ids": list(entry.source_ids),
                "updated_s": entry.updated_s,
            }
            if kind == "assistant":
                item["assistant_id"] = str(record.metadata.get("assistant_id", ""))
            out.append(item)
        return out

    return {
        "version": EXPORT_VERSION,
        "user_id": user_id,
        "pages": exported_pages,
        "segments": segments,
        "profile": [
            {"name": t.name, "value": t.value, "page_ids": list(t.page_ids), "updated_s": t.updated_s}
            for t in profile.values()
        ],
        "user_knowledge": entries("user"),
        "assistant_knowledge": entries("assistant"),
    }
