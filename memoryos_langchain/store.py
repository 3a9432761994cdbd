"""``MemoryOSStore``: a LangGraph ``BaseStore`` over MemoryOS, one namespace per user."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from datetime import datetime, timezone

from langgraph.store.base import (
    BaseStore,
    GetOp,
    InvalidNamespaceError,
    ListNamespacesOp,
    Op,
    PutOp,
    Result,
    SearchItem,
    SearchOp,
)

from memoryos_core import InvalidInputError, MemoryOS, NotFoundError, validate_id
from memoryos_langchain._store_items import (
    KEY_FIELD,
    Index,
    index_pages,
    is_id,
    knowledge_items,
    namespace_matches,
    page_item,
    plain_item,
    put_meta,
    put_of,
    text_of,
    unit_item,
    value_matches,
)


class MemoryOSStore(BaseStore):
    """One MemoryOS as a LangGraph store: namespace ``(*namespace_prefix, user_id)`` is that user's memory.

    * ``put(ns, key, value)`` stores ``value`` as a page of the user (its ``text``/``content``/
      ``memory`` field, the fields named by ``index=``, or else its JSON, as the user input), so it
      is consolidated and recalled like any turn; putting the key again replaces the page,
      ``delete`` removes it. ``ttl`` is not supported.
    * ``get(ns, key)`` finds items put here, and also conversation pages (key = page id, value
      ``{"kind": "page", "user_input", "agent_response", "tier", "timestamp", "source_ids"}``) and
      knowledge items (key = knowledge id, value ``{"kind", "text", "page_ids", "source_ids"}``).
    * ``search(ns, query=...)`` is ``retrieve_memory``: ranked items of every tier with their score;
      without a query it lists the user's items. ``filter`` compares value fields (``$eq``, ``$ne``,
      ``$gt``, ``$gte``, ``$lt``, ``$lte``). The prefix must be a full namespace: one user per search.
    * ``list_namespaces`` lists the users given in ``users=`` and those this store has served (the
      core has no public "list users" call).

    Any other namespace, or a user id the core rejects, is an ``InvalidNamespaceError``. LangGraph
    refuses namespace labels with a period, so user ids containing ``.`` are not reachable here.

    Example:
        >>> store = MemoryOSStore(memory)
        >>> store.put(("memories", "alice"), "diet", {"text": "Alice is vegetarian"})
        >>> [item.key for item in store.search(("memories", "alice"), query="what does alice eat?")]
        ['diet']
    """

    supports_ttl = False

    def __init__(
        self,
        memory: MemoryOS,
        *,
        namespace_prefix: tuple[str, ...] = ("memories",),
        users: Iterable[str] = (),
    ) -> None:
        self.memory = memory
        self.namespace_prefix = tuple(namespace_prefix)
        self._users: set[str] = set(users)

    def _user(self, namespace: tuple[str, ...]) -> str:
        size = len(self.namespace_prefix)
        if len(namespace) != size + 1 or tuple(namespace[:size]) != self.namespace_prefix:
            shape = (*self.namespace_prefix, "<user_id>")
            raise InvalidNamespaceError(f"MemoryOSStore namespaces are {shape}, got {tuple(namespace)}")
        try:
            return validate_id(namespace[-1], "user_id")
        except InvalidInputError as exc:
            raise InvalidNamespaceError(f"the last namespace label must be a user id: {exc}") from exc

    def batch(self, ops: Iterable[Op]) -> list[Result]:
        """Run the operations in order; a listing reads each user's memory at most once between writes."""
        views: dict[str, Index] = {}
        return [self._run(op, views) for op in ops]

    async def abatch(self, ops: Iterable[Op]) -> list[Result]:
        """Async twin of :meth:`batch` (in a worker thread, as the core's own async calls)."""
        return await asyncio.to_thread(self.batch, list(ops))

    def _run(self, op: Op, views: dict[str, Index]) -> Result:
        if isinstance(op, ListNamespacesOp):
            return self._namespaces(op)
        ns = tuple(op.namespace_prefix if isinstance(op, SearchOp) else op.namespace)
        user = self._user(ns)

        def view() -> Index:
            if user not in views:
                pages = self.memory.find_pages({}, user_id=user)
                views[user] = index_pages(ns, pages, self.memory.get_user_profile(user_id=user))
            return views[user]

        result: Result = None
        if isinstance(op, GetOp):
            found = self._lookup(user, ns, op.key)
            result = plain_item(found[0]) if found else None
        elif isinstance(op, PutOp):
            self._put(user, op, self._lookup(user, ns, op.key))
            views.pop(user, None)
        elif isinstance(op, SearchOp):
            result = self._search(user, ns, op, view)
        else:
            raise TypeError(f"unknown store operation {type(op).__name__}")
        self._users.add(user)
        return result

    def _lookup(self, user: str, ns: tuple[str, ...], key: str) -> tuple[SearchItem, list[str]] | None:
        """The item stored under ``key`` and the ids of the pages holding it ([] for knowledge).

        Items put here are found by their key (``find_pages``), conversation pages by id
        (``get_pages``), and knowledge in the user's profile: the user's memory is never exported.
        """
        pages = self.memory.find_pages({KEY_FIELD: key}, user_id=user)
        if not pages and is_id(key):
            pages = [p for p in self.memory.get_pages([key], user_id=user) if put_of(p) is None]
        if pages:
            return page_item(ns, pages[-1]), [p.id for p in pages]
        knowledge = knowledge_items(ns, self.memory.get_user_profile(user_id=user)).get(key)
        return (knowledge, []) if knowledge is not None else None

    def _put(self, user: str, op: PutOp, current: tuple[SearchItem, list[str]] | None) -> None:
        if current is not None and not current[1]:
            raise InvalidInputError(f"{op.key!r} is derived knowledge: delete the pages it cites instead")
        if op.value is not None:
            now = datetime.now(timezone.utc).isoformat()
            created = current[0].created_at.isoformat() if current is not None else now
            meta = put_meta(op.key, op.value, created, now)
            self.memory.add_memory(text_of(op.value, op.index), "", meta_data=meta, user_id=user)
        for page_id in current[1] if current is not None else []:  # after the new page: nothing is lost
            with contextlib.suppress(NotFoundError):
                self.memory.delete_memory(page_id, user_id=user)

    def _search(
        self, user: str, ns: tuple[str, ...], op: SearchOp, view: Callable[[], Index]
    ) -> list[SearchItem]:
        if op.query:
            top_k = min(1000, max(1, op.offset + op.limit))
            units = self.memory.retrieve_memory(op.query, user_id=user, top_k=top_k).all_units
            items = list({item.key: item for item in reversed([unit_item(ns, u) for u in units])}.values())
            items.sort(key=lambda item: item.score or 0.0, reverse=True)  # one item per key, best score
        else:
            items = [item for item, _ in view().values()]
        matching = [i for i in items if value_matches(i.value, op.filter)]
        return matching[op.offset : op.offset + op.limit]

    def _namespaces(self, op: ListNamespacesOp) -> list[tuple[str, ...]]:
        names = sorted((*self.namespace_prefix, user) for user in self._users)
        names = [n for n in names if all(namespace_matches(c, n) for c in op.match_conditions or ())]
        if op.max_depth is not None:
            names = sorted({n[: op.max_depth] for n in names})
        return names[op.offset : op.offset + op.limit]
