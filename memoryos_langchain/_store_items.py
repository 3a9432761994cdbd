"""Pure mapping between MemoryOS pages / knowledge / recalled units and LangGraph store items (no I/O)."""

from __future__ import annotations

import json
import operator
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from langgraph.store.base import Item, MatchCondition, SearchItem
from langgraph.store.base.embed import get_text_at_path

from memoryos_core import ContextUnit, InvalidInputError, Page, UserProfile, validate_id

Index = dict[str, tuple[SearchItem, list[str]]]
"""key -> (item, ids of the pages holding it, oldest first; [] for derived knowledge)."""

PUT_KEY = "langgraph"
"""``meta_data`` key of a page written by ``MemoryOSStore.put``: ``{key, value, created_at, updated_at}``."""
KEY_FIELD = "langgraph_key"
"""``meta_data`` key holding the same page's item key flat, so ``find_pages`` finds it."""

_PAGE_TIERS = ("short_term", "mid_term", "archive")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "$eq": operator.eq, "$ne": operator.ne, "$gt": operator.gt,
    "$gte": operator.ge, "$lt": operator.lt, "$lte": operator.le,
}  # fmt: skip


def parse_when(text: str) -> datetime:
    """An aware datetime from ISO text; the epoch when the text is not ISO (a free-form timestamp)."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        return datetime(1970, 1, 1, tzinfo=timezone.utc)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _from_epoch(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat()


def _item(ns: tuple[str, ...], key: str, value: dict[str, Any], created: str, updated: str) -> SearchItem:
    return SearchItem(ns, key, value, parse_when(created), parse_when(updated))


def _page_value(
    user_input: str, agent_response: str, tier: str, stamp: str, sources: Iterable[str]
) -> dict[str, Any]:
    return {
        "kind": "page",
        "user_input": user_input,
        "agent_response": agent_response,
        "tier": tier,
        "timestamp": stamp,
        "source_ids": list(sources),
    }


def _knowledge_value(kind: str, text: str, page_ids: Iterable[str], sources: Iterable[str]) -> dict[str, Any]:
    return {"kind": kind, "text": text, "page_ids": list(page_ids), "source_ids": list(sources)}


def plain_item(item: Item) -> Item:
    """An ``Item`` (what ``get`` returns) from a ``SearchItem``."""
    return Item(
        value=item.value, key=item.key, namespace=item.namespace,
        created_at=item.created_at, updated_at=item.updated_at,
    )  # fmt: skip


def is_id(key: str) -> bool:
    """Whether ``key`` could be a page id (store keys may be any text; page ids are MemoryOS ids)."""
    try:
        validate_id(key, "key")
    except InvalidInputError:
        return False
    return True


def put_meta(key: str, value: Mapping[str, Any], created: str, updated: str) -> dict[str, Any]:
    """The ``meta_data`` of a page written by ``put``: the item under ``PUT_KEY``, the key flat under
    ``KEY_FIELD`` too (``MemoryOS.find_pages`` matches top-level pairs)."""
    put = {"key": key, "value": value, "created_at": created, "updated_at": updated}
    return {PUT_KEY: put, KEY_FIELD: key}


def put_of(page: Page) -> Mapping[str, Any] | None:
    """The item a page written by ``put`` holds; None for a conversation page."""
    put = page.meta_data.get(PUT_KEY)
    return put if isinstance(put, Mapping) else None


def page_item(ns: tuple[str, ...], page: Page) -> SearchItem:
    """A page as an item: the item it holds (``put``), or the conversation page keyed by its id."""
    put = put_of(page)
    if put is not None:
        return _item(ns, put["key"], put["value"], put["created_at"], put["updated_at"])
    stamp = _from_epoch(page.created_ns / 1e9)
    value = _page_value(page.user_input, page.agent_response, page.tier, page.timestamp, page.source_ids)
    return _item(ns, page.id, value, stamp, stamp)


def knowledge_items(ns: tuple[str, ...], profile: UserProfile) -> dict[str, SearchItem]:
    """The user's knowledge items by id (derived: readable, never put or deleted through the store)."""
    items = {}
    for kind, entries in (
        ("user_knowledge", profile.user_knowledge),
        ("assistant_knowledge", profile.assistant_knowledge),
    ):
        for entry in entries:
            stamp = _from_epoch(entry.updated_s)
            value = _knowledge_value(kind, entry.text, entry.page_ids, entry.source_ids)
            items[entry.id] = _item(ns, entry.id, value, stamp, stamp)
    return items


def index_pages(ns: tuple[str, ...], pages: Iterable[Page], profile: UserProfile) -> Index:
    """Every item of one user: pages (put or conversation; oldest first, the newest of a key wins)
    and knowledge."""
    index: Index = {}
    for page in pages:
        found = page_item(ns, page)
        index[found.key] = (found, [*index.get(found.key, (found, []))[1], page.id])
    index.update((key, (item, [])) for key, item in knowledge_items(ns, profile).items())
    return index


def unit_item(ns: tuple[str, ...], unit: ContextUnit) -> SearchItem:
    """A recalled unit as a scored ``SearchItem`` (the same key and value ``get`` gives)."""
    put = (unit.meta_data.get("meta_data") or {}).get(PUT_KEY)
    if unit.tier not in _PAGE_TIERS:
        value = _knowledge_value(unit.tier, unit.text, unit.page_ids, unit.source_ids)
        found = _item(ns, unit.id, value, unit.timestamp, unit.timestamp)
    elif isinstance(put, Mapping):
        found = _item(ns, put["key"], put["value"], put["created_at"], put["updated_at"])
    else:
        said, answered = unit.meta_data.get("user_input", ""), unit.meta_data.get("agent_response", "")
        value = _page_value(said, answered, unit.tier, unit.timestamp, unit.source_ids)
        found = _item(ns, unit.id, value, unit.timestamp, unit.timestamp)
    found.score = unit.score
    return found


def value_matches(value: Mapping[str, Any], conditions: Mapping[str, Any] | None) -> bool:
    """LangGraph's search ``filter``: equality, or ``{"$gt": 3}``-style comparisons, on value fields."""
    for key, wanted in (conditions or {}).items():
        actual = value.get(key)
        if isinstance(wanted, Mapping) and wanted and all(name in _OPS for name in wanted):
            try:
                if not all(_OPS[name](actual, arg) for name, arg in wanted.items()):
                    return False
            except TypeError:  # e.g. None > 3
                return False
        elif actual != wanted:
            return False
    return True


def text_of(value: Mapping[str, Any], fields: Any) -> str:
    """The text stored (and embedded) for a put value: ``index=`` fields, a text field, or its JSON."""
    if isinstance(fields, list):
        return "\n".join(part for path in fields for part in get_text_at_path(value, path))
    for name in ("text", "content", "memory"):
        if isinstance(value.get(name), str) and value[name].strip():
            return str(value[name])
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def namespace_matches(condition: MatchCondition, namespace: tuple[str, ...]) -> bool:
    """A ``list_namespaces`` match condition (prefix or suffix, ``*`` matches any label)."""
    path = tuple(condition.path)
    if len(namespace) < len(path):
        return False
    part = namespace[: len(path)] if condition.match_type == "prefix" else namespace[-len(path) :]
    return all(p in ("*", n) for p, n in zip(path, part))
