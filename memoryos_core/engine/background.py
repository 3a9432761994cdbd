"""MemoryOS's background side: scheduling consolidation, running it per user, flush."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from memoryos_core._exceptions import LLMNotConfiguredError
from memoryos_core._types import Cost
from memoryos_core.engine.lease import LEASE_TTL_S, LeaseBusyError
from memoryos_core.engine.records import segment_from_record, segment_record
from memoryos_core.llm.usage import measure


class BackgroundMixin:
    """Mixed into MemoryOS: the worker's pass for a user, flush and forced analysis."""

    # Defined by MemoryOS.
    store: Any
    config: Any
    llm: Any
    consolidator: Any
    promoter: Any
    _worker: Any
    _background: Any
    _leases: Any
    _locks_guard: Any
    _visits: Any
    _short_counts: Any
    _touched: Any
    _settled: Any
    _pending_of: Any
    _ids: Any
    _lock: Any
    _now_s: Any
    _account: Any

    def _schedule(self, user_id: str, added: int = 0) -> None:
        """Wake the worker when a batch is due; otherwise once, after ``max_wait_s``.

        The short-term count is kept in memory (read from the store once per user), so the
        write path does not query the store and the worker is not woken for every page.
        """
        self._touched.add(user_id)
        if not self._background:
            return
        with self._locks_guard:
            known = self._short_counts.get(user_id)
        if known is None:
            stored = self.store.count("pages", where={"user_id": user_id, "tier": "short_term"})
            known = stored + len(self._pending_of(user_id)) - added
        count = known + added
        with self._locks_guard:
            self._short_counts[user_id] = count
        short = self.config.short_term
        if added == 0 or count >= short.capacity + short.batch_pages:
            self._worker.notify(user_id)
        elif count > short.capacity:
            self._worker.notify(user_id, short.max_wait_s)

    def _background_run(self, user_id: str) -> bool:
        """One worker pass for a user; True if a partial batch is still waiting (or another
        process holds the user's lease: then it is simply tried again later)."""
        try:
            self._run_user(user_id, force=False, wait_s=0.0)
        except LeaseBusyError:
            return True
        return bool(self.consolidator.due_pages(user_id, force=True))

    def _run_user(self, user_id: str, *, force: bool, wait_s: float = LEASE_TTL_S) -> Cost:
        self._settled()
        with measure() as tally, self._lock(user_id), self._leases.hold(user_id, wait_s=wait_s) as renew:
            moved = self.consolidator.consolidate(user_id, force=force, on_batch=renew)
            with self._locks_guard:
                if user_id in self._short_counts:
                    self._short_counts[user_id] = max(0, self._short_counts[user_id] - moved)
            self._apply_visits(user_id)
            self.promoter.promote(user_id, force=False)
            self.promoter.evict(user_id)
        return tally.cost

    def _apply_visits(self, user_id: str) -> None:
        with self._locks_guard:
            visits = self._visits.pop(user_id, None)
        if not visits:
            return
        now = self._now_s()
        records = self.store.get(
            "segments", ids=list(visits), where={"user_id": user_id}, with_embeddings=True
        )
        updated = []
        for record in records:
            segment = segment_from_record(record)
            segment = replace(segment, n_visit=segment.n_visit + visits[record.id], last_access_s=now)
            updated.append(
                segment_record(
                    user_id,
                    segment,
                    status=str(record.metadata.get("status", "active")),
                    source=str(record.metadata.get("source", "")),
                )
            )
        self.store.upsert("segments", updated)

    def flush(self, user_id: str | None = None, *, timeout_s: float | None = None) -> Cost:
        """Consolidate everything pending now (partial batches too) and wait for it.

        Args:
            user_id: only this user; by default every user this instance has written to
                or found pending work for.
            timeout_s: how long to wait for the background worker first.

        Raises:
            LLMError: the LLM failed after its retries; the work stays pending.
        """
        self._settled()
        self._worker.wait_idle(timeout_s)
        users = [self._ids(user_id)[0]] if user_id is not None else sorted(self._touched)
        total = Cost()
        for user in users:
            cost = self._run_user(user, force=True)
            self._account(user, cost)
            total = total + cost
        return total

    def force_mid_term_analysis(self, user_id: str | None = None) -> Cost:
        """Consolidate all pending pages, then analyse every segment with new pages into long-term memory."""
        user = self._ids(user_id)[0]
        self._settled()
        with measure() as tally, self._lock(user), self._leases.hold(user, wait_s=LEASE_TTL_S) as renew:
            self.consolidator.consolidate(user, force=True, on_batch=renew)
            self._apply_visits(user)
            if self.llm is None:
                raise LLMNotConfiguredError("mid-term analysis needs an LLM: pass openai_api_key= or llm=")
            self.promoter.promote(user, force=True)
        self._account(user, tally.cost)
        return tally.cost
