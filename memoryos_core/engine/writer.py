"""The write path: pages validated, then journaled (write-behind: embedded later, in the journal's
writer thread) or embedded in one batch and stored; indexed, scheduled."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from memoryos_core._exceptions import InvalidInputError
from memoryos_core._types import AddResult, Cost, Page
from memoryos_core._validation import check_id, check_meta, check_text, parse_timestamp
from memoryos_core.engine.lease import LEASE_TTL_S
from memoryos_core.engine.lexical_shared import PageIndexes
from memoryos_core.engine.records import page_record
from memoryos_core.engine.repository import Repository
from memoryos_core.engine.runtime import Runtime
from memoryos_core.engine.scheduler import Scheduler
from memoryos_core.llm.usage import measure

PreparedPage = tuple[Page, float, tuple[str, ...]]
"""A validated page not stored yet, its time in epoch seconds and the source ids of its meta_data."""

logger = logging.getLogger("memoryos")


class WritePath:
    """Stores new pages: ``add_memories`` (journaled when write-behind is on) and idempotent bulk loads."""

    def __init__(
        self, runtime: Runtime, repository: Repository, indexes: PageIndexes, scheduler: Scheduler
    ) -> None:
        self._runtime, self._repository = runtime, repository
        self._indexes, self._scheduler = indexes, scheduler
        self._guard = threading.Lock()
        self._last_ns = 0

    def add_memories(self, pages: Iterable[Mapping[str, Any]], user: str, assistant: str) -> list[AddResult]:
        """Validate every page, then store them in one write, in order.

        With write-behind (``runtime.pending``) the pages are journaled without vectors and
        returned: the journal's writer thread embeds them in a batch with others and writes them
        to the store, and a recall before that embeds them on demand. Without it, they are
        embedded here in one batch and written to the store.
        """
        runtime = self._runtime
        with measure() as tally:
            prepared = [self.prepare(item, user, assistant) for item in pages]
            if not prepared:
                return []
            runtime.ready(warm=True)
            pending = runtime.pending
            if pending is not None:  # durable once journaled; embedded and stored shortly, in a batch
                records = [
                    page_record(page, None, ts_s=ts_s, source_ids=sources) for page, ts_s, sources in prepared
                ]
                pending.add(user, records)
            else:
                vectors = runtime.late.embed([p[0].text for p in prepared])
                records = [
                    page_record(page, vector, ts_s=ts_s, source_ids=sources)
                    for (page, ts_s, sources), vector in zip(prepared, vectors)
                ]
                runtime.store.upsert("pages", records)
                runtime.late.add(user, records)
            self._indexes.add(user, records)
        runtime.account(user, tally.cost)
        self._repository.register(user)
        self._scheduler.schedule(user, added=len(prepared))
        share = Cost(ms=tally.cost.ms / len(prepared))
        return [AddResult(page.id, user, assistant, share) for page, _, _ in prepared]

    def prepare(self, item: Mapping[str, Any], user: str, assistant: str) -> PreparedPage:
        """Validate one page of ``add_memories`` into a Page with a new id; nothing is stored.

        Raises:
            InvalidInputError: not a mapping, bad texts, timestamp or meta_data.
        """
        if not isinstance(item, Mapping):
            raise InvalidInputError(f"each page must be a mapping, not {type(item).__name__}")
        config = self._runtime.config
        user_input = check_text(item.get("user_input"), "user_input", config.max_text_chars)
        agent_response = check_text(item.get("agent_response"), "agent_response", config.max_text_chars)
        if not user_input.strip() and not agent_response.strip():
            raise InvalidInputError("a page needs a non-empty user_input or agent_response")
        meta_json, sources = check_meta(item.get("meta_data"), config.max_meta_bytes)
        stamp, ts_s = parse_timestamp(item.get("timestamp"), self._runtime.now())
        page = Page(
            id=f"pg_{uuid.uuid4().hex}",
            user_id=user,
            assistant_id=assistant,
            user_input=user_input,
            agent_response=agent_response,
            timestamp=stamp,
            tier="short_term",
            meta_data=json.loads(meta_json),
            created_ns=self._next_ns(),
        )
        return page, ts_s, sources

    def _next_ns(self) -> int:
        # Strictly increasing within this process, so pages added in one batch keep their order.
        with self._guard:
            self._last_ns = max(time.time_ns(), self._last_ns + 1)
            return self._last_ns

    def prepare_pages(
        self,
        pages: Sequence[Mapping[str, Any]],
        page_ids: Sequence[str],
        user: str,
        assistant: str,
        label: str,
    ) -> list[PreparedPage]:
        """Validate pages as ``add_memories`` does, under the given ids; nothing is stored.

        Raises:
            InvalidInputError: the first bad page, named as ``label item N``.
        """
        prepared = []
        for number, (item, page_id) in enumerate(zip(pages, page_ids, strict=True), 1):
            try:
                page, ts_s, sources = self.prepare(item, user, assistant)
            except InvalidInputError as exc:
                raise InvalidInputError(f"{label} item {number}: {exc}") from exc
            prepared.append((replace(page, id=check_id(page_id, "page_id")), ts_s, sources))
        return prepared

    def store_pages_once(
        self,
        user: str,
        prepared: Sequence[PreparedPage],
        chunk_pages: int = 64,
        on_chunk: Callable[[int, int], None] | None = None,
    ) -> int:
        """Store the prepared pages whose ids the user does not hold yet; returns how many were new.

        Pages already stored are left as they are (their tier, segment and chain stay), so storing
        the same pages again changes nothing. Written ``chunk_pages`` at a time (one embedding batch
        each); ``on_chunk(pages handled, pages new)`` is called after each chunk.
        """
        runtime = self._runtime
        runtime.settled()
        stored, renewed = 0, time.monotonic()
        try:
            with measure() as tally, runtime.hold(user) as renew:
                for start in range(0, len(prepared), max(1, chunk_pages)):
                    chunk = prepared[start : start + max(1, chunk_pages)]
                    ids = [page.id for page, _, _ in chunk]
                    held = {r.id for r in runtime.store.get("pages", ids=ids, where={"user_id": user})}
                    new = [entry for entry in chunk if entry[0].id not in held]
                    if new:
                        vectors = runtime.late.embed([page.text for page, _, _ in new])
                        records = [
                            page_record(page, vector, ts_s=ts_s, source_ids=sources)
                            for (page, ts_s, sources), vector in zip(new, vectors)
                        ]
                        runtime.store.upsert("pages", records)
                        stored += len(new)  # (in the store: scheduled even if what follows fails)
                        runtime.late.add(user, records)
                        self._indexes.add(user, records)
                    if time.monotonic() - renewed > LEASE_TTL_S / 3:  # a long file must not let it expire
                        renew()
                        renewed = time.monotonic()
                    if on_chunk is not None:
                        on_chunk(len(chunk), len(new))
        except BaseException:
            # The chunks stored before the failure (a lost lease, a store error) stay: the user is
            # registered and they are consolidated like any stored page; storing the file again skips them.
            if stored:
                try:
                    self._schedule_stored(user, stored)
                except Exception as exc:  # (the caller hears of the first failure, not of this one)
                    logger.warning("could not schedule %d imported pages of user %s: %s", stored, user, exc)
            raise
        runtime.account(user, tally.cost)
        if stored:
            self._schedule_stored(user, stored)
        return stored

    def _schedule_stored(self, user: str, stored: int) -> None:
        self._repository.register(user)
        self._scheduler.schedule(user, added=stored)
