"""Export of one user's memory as JSON-ready data, and import of an export: every value validated,
the whole file built, and only then written.

An export may come from anywhere (a backup, another machine, a file someone sent), so it is treated
as hostile input: ids must be well-formed, counters bounded integers, times finite epoch seconds no
later than a year from now, texts within the configured limits. Any bad value is an
``InvalidInputError`` naming it, and nothing is written.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import InvalidInputError
from memoryos_core._types import KnowledgeEntry, KnowledgeKind, Page, ProfileTrait
from memoryos_core._validation import (
    MAX_FUTURE_S,
    check_count,
    check_epoch_s,
    check_id,
    check_ids,
    check_meta,
    check_text,
    parse_timestamp,
)
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine.records import (
    knowledge_from_record,
    knowledge_record,
    page_from_record,
    page_record,
    segment_from_record,
    segment_record,
    source_ids,
)
from memoryos_core.engine.repository import Repository
from memoryos_core.policy.mid_term import SegmentState
from memoryos_core.storage.base import Record

EXPORT_VERSION = 1
_TIERS = ("short_term", "mid_term", "archive")
_STATUSES = ("active", "archived")
_SHORT_TEXT = 1000  # keywords, trait names, provenance ids

PageEntry = tuple[Page, float, tuple[str, ...]]
AssistantEntry = tuple[KnowledgeEntry, str]
"""A knowledge entry and the assistant it belongs to."""


def export_user(repository: Repository, user_id: str) -> dict[str, Any]:
    """Everything of one user as JSON-ready data (see ``MemoryOS.export_memory``)."""
    store = repository.store
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
    knowledge = repository.knowledge(user_id)

    def entries(kind: str) -> list[dict[str, Any]]:
        out = []
        for record in (r for r in knowledge if r.metadata.get("kind") == kind):
            entry = knowledge_from_record(record)
            item: dict[str, Any] = {
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
            for t in repository.profile(user_id).values()
        ],
        "user_knowledge": entries("user"),
        "assistant_knowledge": entries("assistant"),
    }


def import_user(
    repository: Repository,
    embedder: Embedder,
    config: MemoryConfig,
    user_id: str,
    data: Mapping[str, Any],
    now: datetime,
    *,
    embed_pages: Callable[[Sequence[str]], list[list[float]]] | None = None,
    on_stored: Callable[[str, list[Record]], None] | None = None,
) -> int:
    """Validate and build the whole export, then write it (nothing is written if any part is bad).

    Ids are kept unless another user owns them; those are remapped deterministically (per
    collection), so importing the same export twice stores everything once. ``embed_pages``
    embeds the pages (``embedder.embed`` by default); ``on_stored`` is called with the user and
    the pages once written (the late rerank's wordpieces).
    """
    store = repository.store
    try:
        pages, segments, knowledge, traits = _parse_export(repository, config, user_id, data, now)
    except InvalidInputError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
        raise InvalidInputError(f"malformed export: {type(exc).__name__}: {exc}") from exc
    vectors = (embed_pages or embedder.embed)([p.text for p, _, _ in pages]) if pages else []
    segment_vectors = embedder.embed([seg.summary for seg, _ in segments]) if segments else []
    knowledge_vectors = embedder.embed([item.text for item, _ in knowledge]) if knowledge else []
    page_records = [page_record(p, v, ts_s=ts, source_ids=src) for (p, ts, src), v in zip(pages, vectors)]
    store.upsert("pages", page_records)
    if on_stored is not None and page_records:
        on_stored(user_id, page_records)
    store.upsert(
        "segments",
        [
            segment_record(user_id, replace(seg, embedding=tuple(v)), status=status)
            for (seg, status), v in zip(segments, segment_vectors)
        ],
    )
    store.upsert(
        "knowledge",
        [
            knowledge_record(user_id, assistant, replace(item, embedding=tuple(v)))
            for (item, assistant), v in zip(knowledge, knowledge_vectors)
        ],
    )
    if traits:
        repository.save_profile(user_id, repository.profile(user_id) | traits)
    return len(pages)


def _owned_by_others(
    repository: Repository, kind: Literal["pages", "segments", "knowledge"], ids: list[str], user_id: str
) -> set[str]:
    return {r.id for r in repository.store.get(kind, ids=ids) if r.metadata.get("user_id") != user_id}


def _listed(data: Mapping[str, Any], key: str, where: str = "") -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise InvalidInputError(f"{where}{key} must be a list")
    return value


def _objects(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = _listed(data, key)
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"{key}[{index}] must be an object, not {type(item).__name__}")
    return items


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise InvalidInputError(f"{what} {value!r} appears twice in the export")
        seen.add(value)


def _strings(values: Any, what: str) -> tuple[str, ...]:
    if not isinstance(values, list):
        raise InvalidInputError(f"{what} must be a list of strings")
    return tuple(_required_text(value, what, _SHORT_TEXT) for value in values)


def _required_text(value: Any, what: str, limit: int) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInputError(f"{what} must be a non-empty string, not {repr(value)[:80]}")
    return check_text(value, what, limit)


def _parse_export(
    repository: Repository, config: MemoryConfig, user_id: str, data: Mapping[str, Any], now: datetime
) -> tuple[list[PageEntry], list[tuple[SegmentState, str]], list[AssistantEntry], dict[str, ProfileTrait]]:
    version = data.get("version", EXPORT_VERSION)
    if version != EXPORT_VERSION or isinstance(version, bool):  # True == 1 in Python
        raise InvalidInputError(f"unknown export version {version!r}: this MemoryOS reads version 1")
    pages = [
        _import_page(item, user_id, config, now, f"pages[{index}]")
        for index, item in enumerate(_objects(data, "pages"))
    ]
    _unique([p.id for p, _, _ in pages], "page id")
    copied = bool(_owned_by_others(repository, "pages", [p.id for p, _, _ in pages], user_id))
    remap = {p.id: _remapped("pg", user_id, p.id) for p, _, _ in pages} if copied else {}
    raw_segments = _objects(data, "segments")
    segment_ids = [check_id(s.get("id"), f"segments[{i}] id") for i, s in enumerate(raw_segments)]
    _unique(segment_ids, "segment id")
    for page, _, _ in pages:
        if page.segment_id and page.segment_id not in segment_ids:
            raise InvalidInputError(f"page {page.id!r} names segment {page.segment_id!r}, not in the export")
    foreign = _owned_by_others(repository, "segments", segment_ids, user_id)
    seg_remap = {sid: _remapped("seg", user_id, sid) for sid in segment_ids if copied or sid in foreign}
    pages = [
        (
            replace(p, id=remap.get(p.id, p.id), segment_id=seg_remap.get(p.segment_id or "", p.segment_id)),
            ts,
            src,
        )
        for p, ts, src in pages
    ]
    now_s = _latest_now(now)
    segments = [
        _import_segment(item, seg_remap.get(sid, sid), remap, config, now_s, f"segments[{index}]")
        for index, (item, sid) in enumerate(zip(raw_segments, segment_ids))
    ]
    knowledge: list[AssistantEntry] = []
    kinds: tuple[KnowledgeKind, ...] = ("user", "assistant")
    for kind in kinds:
        items = _objects(data, f"{kind}_knowledge")
        given = [
            check_id(i["id"], f"{kind}_knowledge[{n}] id") if i.get("id") not in (None, "") else ""
            for n, i in enumerate(items)
        ]
        foreign = _owned_by_others(repository, "knowledge", [g for g in given if g], user_id)
        for index, (item, known) in enumerate(zip(items, given)):
            where = f"{kind}_knowledge[{index}]"
            text = _required_text(item.get("text"), f"{where} text", config.max_text_chars)
            if not known:  # no id: one derived from the text, so a second import finds the same item
                new_id = _remapped("kn", user_id, f"{kind}:{text}")
            elif copied or known in foreign:
                new_id = _remapped("kn", user_id, known)
            else:
                new_id = known
            cited = check_ids(item.get("page_ids", []), f"{where} page_ids")
            updated_s = check_epoch_s(item.get("updated_s", 0.0), f"{where} updated_s", now_s)
            entry = KnowledgeEntry(
                new_id,
                kind,
                text,
                tuple(remap.get(p, p) for p in cited),
                _strings(item.get("source_ids", []), f"{where} source_ids"),
                updated_s,
            )
            assistant = check_id(item.get("assistant_id") or "default_assistant", f"{where} assistant_id")
            knowledge.append((entry, assistant))
    traits: dict[str, ProfileTrait] = {}
    for index, item in enumerate(_objects(data, "profile")):
        where = f"profile[{index}]"
        name = _required_text(item.get("name"), f"{where} name", _SHORT_TEXT)
        cited = check_ids(item.get("page_ids", []), f"{where} page_ids")
        traits[name.lower()] = ProfileTrait(
            name,
            _required_text(item.get("value"), f"{where} value", config.max_text_chars),
            tuple(remap.get(p, p) for p in cited),
            check_epoch_s(item.get("updated_s", 0.0), f"{where} updated_s", now_s),
        )
    return pages, segments, knowledge, traits


def _import_segment(
    item: Mapping[str, Any],
    segment_id: str,
    remap: dict[str, str],
    config: MemoryConfig,
    now_s: float,
    where: str,
) -> tuple[SegmentState, str]:
    status = item.get("status", "active")
    if status not in _STATUSES:
        raise InvalidInputError(f"{where} status must be active or archived, not {repr(status)[:80]}")
    pending = check_ids(item.get("pending_page_ids", []), f"{where} pending_page_ids")
    state = SegmentState(
        id=segment_id,
        summary=check_text(item.get("summary"), f"{where} summary", config.max_text_chars),
        keywords=_strings(item.get("keywords", []), f"{where} keywords"),
        embedding=(),
        page_count=len(check_ids(item.get("page_ids", []), f"{where} page_ids")),
        n_visit=check_count(item.get("n_visit", 0), f"{where} n_visit"),
        l_interaction=check_count(item.get("l_interaction", 0), f"{where} l_interaction"),
        last_access_s=check_epoch_s(item.get("last_access_s", 0.0), f"{where} last_access_s", now_s),
        created_s=check_epoch_s(item.get("created_s", 0.0), f"{where} created_s", now_s),
        pending_page_ids=tuple(remap.get(p, p) for p in pending),
    )
    return state, status


def _latest_now(now: datetime) -> float:
    """The later of the memory's clock (segment and knowledge times) and the wall clock (``created_ns``)."""
    return max(now.timestamp(), time.time())


def _remapped(kind: str, user_id: str, old_id: str) -> str:
    return f"{kind}_{uuid.uuid5(uuid.NAMESPACE_URL, f'memoryos:{user_id}:{old_id}').hex}"


def _import_page(
    item: Mapping[str, Any], user_id: str, config: MemoryConfig, now: datetime, where: str
) -> PageEntry:
    tier = item.get("tier", "short_term")
    if tier not in _TIERS:
        raise InvalidInputError(f"{where}: unknown tier {tier!r}")
    limit = config.max_text_chars
    meta_json, sources = check_meta(item.get("meta_data") or {}, config.max_meta_bytes)
    stamp, ts_s = parse_timestamp(item.get("timestamp"), now)
    latest_ns = int((_latest_now(now) + MAX_FUTURE_S) * 1e9)
    segment_id = item.get("segment_id")
    page = Page(
        id=check_id(item.get("id") or f"pg_{uuid.uuid4().hex}", f"{where} id"),
        user_id=user_id,
        assistant_id=check_id(item.get("assistant_id") or "default_assistant", f"{where} assistant_id"),
        user_input=check_text(item.get("user_input"), f"{where} user_input", limit),
        agent_response=check_text(item.get("agent_response"), f"{where} agent_response", limit),
        timestamp=stamp,
        tier=tier,
        segment_id=check_id(segment_id, f"{where} segment_id") if segment_id else None,
        chain_overview=check_text(item.get("chain_overview"), f"{where} chain_overview", limit),
        meta_data=json.loads(meta_json),
        created_ns=check_count(item.get("created_ns") or 0, f"{where} created_ns", latest_ns),
    )
    if not page.user_input.strip() and not page.agent_response.strip():
        raise InvalidInputError(f"{where} needs a non-empty user_input or agent_response")
    extra = tuple(s for s in _strings(item.get("source_ids", []), f"{where} source_ids") if s not in sources)
    return page, ts_s, sources + extra
