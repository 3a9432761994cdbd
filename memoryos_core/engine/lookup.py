"""Pages of one user by id or by ``meta_data``, wherever they live: short-term, mid-term and archive
pages in the store, and new pages still waiting in the journal (see ``engine.pending``).

Reads only; the caller validates ids (``check_page_ids``, ``check_meta_query``) and passes the
user's pending records, read *before* the store so that a page written meanwhile is not missed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from memoryos_core._exceptions import InvalidInputError
from memoryos_core._types import Page
from memoryos_core._validation import check_id
from memoryos_core.engine.records import page_from_record
from memoryos_core.storage.base import MemoryStore, Record

MetaValue = str | int | float | bool
"""A value ``find_pages`` compares with a page's ``meta_data`` (top-level keys only)."""

MAX_IDS = 10_000
"""Most page ids one ``get_pages`` call accepts."""


def check_page_ids(page_ids: Any) -> tuple[str, ...]:
    """``page_ids`` as a tuple of valid ids, first occurrence of each kept.

    Raises:
        InvalidInputError: not a sequence of ids (a lone ``str`` included), too many, or a bad id.
    """
    if isinstance(page_ids, (str, bytes)) or not isinstance(page_ids, Sequence):
        raise InvalidInputError(f"page_ids must be a list of ids, not {type(page_ids).__name__}")
    if len(page_ids) > MAX_IDS:
        raise InvalidInputError(f"page_ids holds {len(page_ids)} ids; the limit is {MAX_IDS}")
    return tuple(dict.fromkeys(check_id(page_id, "page_id") for page_id in page_ids))


def check_meta_query(meta: Any) -> dict[str, MetaValue]:
    """``meta`` as a dict of str keys to str, int, float (finite) or bool values.

    Raises:
        InvalidInputError: not a mapping, a key that is not a str, or another kind of value.
    """
    if not isinstance(meta, Mapping):
        raise InvalidInputError(f"meta must be a mapping of str to scalar values, not {type(meta).__name__}")
    checked: dict[str, MetaValue] = {}
    for key, value in meta.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"meta keys must be str, not {type(key).__name__}")
        if not isinstance(value, (str, int, float, bool)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            raise InvalidInputError(
                f"meta[{key!r}] must be a str, int, finite float or bool, not {repr(value)[:80]}"
            )
        checked[key] = value
    return checked


def check_limit(limit: Any) -> int | None:
    """``limit`` if it is None or a positive int (not a bool).

    Raises:
        InvalidInputError: anything else.
    """
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise InvalidInputError("limit must be a positive int")
    return limit


def _owned(records: Iterable[Record], user_id: str) -> dict[str, Record]:
    return {r.id: r for r in records if r.metadata.get("user_id") == user_id}


def get_pages(
    store: MemoryStore, user_id: str, page_ids: Sequence[str], pending: Sequence[Record] = ()
) -> list[Page]:
    """The user's pages with these ids, in the order asked; ids the user does not hold are left out.

    Args:
        store: where written pages are.
        user_id: whose pages (a page of another user is never returned, whatever its id).
        page_ids: validated ids (``check_page_ids``).
        pending: the user's pages not yet written to ``store`` (read before calling).
    """
    wanted = set(page_ids)
    found = _owned((r for r in pending if r.id in wanted), user_id)
    missing = [page_id for page_id in page_ids if page_id not in found]
    if missing:
        found.update(_owned(store.get("pages", ids=missing, where={"user_id": user_id}), user_id))
    return [page_from_record(found[page_id]) for page_id in page_ids if page_id in found]


def _same(actual: Any, wanted: MetaValue) -> bool:
    if isinstance(wanted, bool) or isinstance(actual, bool):  # True is not 1 here
        return actual is wanted
    if isinstance(wanted, str):
        return isinstance(actual, str) and actual == wanted
    return isinstance(actual, (int, float)) and actual == wanted


def matches(meta_data: Mapping[str, Any], meta: Mapping[str, MetaValue]) -> bool:
    """Whether ``meta_data`` holds every pair of ``meta`` (top-level keys, values of the same kind)."""
    return all(key in meta_data and _same(meta_data[key], value) for key, value in meta.items())


def find_pages(
    store: MemoryStore,
    user_id: str,
    meta: Mapping[str, MetaValue],
    pending: Sequence[Record] = (),
    limit: int | None = None,
) -> list[Page]:
    """The user's pages whose ``meta_data`` holds every pair of ``meta``, oldest first.

    An empty ``meta`` matches every page. With ``limit``, the newest ``limit`` matches are kept.
    The store cannot filter inside ``meta_data`` (it is kept as JSON), so the user's page records
    are read without embeddings and compared here: the cost grows with the user's page count.
    """
    records = _owned(pending, user_id)
    for record in store.get("pages", where={"user_id": user_id}):
        if record.metadata.get("user_id") == user_id:
            records[record.id] = record
    hits = [
        r for r in records.values() if matches(json.loads(str(r.metadata.get("meta_json") or "{}")), meta)
    ]
    hits.sort(key=lambda r: int(r.metadata.get("created_ns", 0)))
    return [page_from_record(r) for r in (hits[-limit:] if limit else hits)]
