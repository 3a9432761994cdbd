"""When consolidation runs: the background worker, a user's consolidation pass, flush, forced
analysis, and the heat visits recalls leave behind (written in batches)."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace

from memoryos_core._exceptions import LLMNotConfiguredError, MemoryOSError
from memoryos_core._types import Cost
from memoryos_core.engine.consolidation import Consolidator
from memoryos_core.engine.lease import LEASE_TTL_S, LeaseBusyError, LeaseLostError
from memoryos_core.engine.promotion import Promoter
from memoryos_core.engine.records import segment_from_record, segment_record
from memoryos_core.engine.repository import Repository
from memoryos_core.engine.runtime import Runtime
from memoryos_core.engine.worker import Worker
from memoryos_core.llm.usage import Tally, measure

logger = logging.getLogger("memoryos")


class Scheduler:
    """Runs consolidation for users with work due, in a background thread or on ``flush``.

    Args:
        runtime: the shared plumbing (store, locks, leases, clock).
        repository: where the users with work left pending are found.
        consolidator, promoter: the work itself.
        background: consolidate in a background thread; False leaves it all to ``flush``.
    """

    def __init__(
        self,
        runtime: Runtime,
        repository: Repository,
        consolidator: Consolidator,
        promoter: Promoter,
        *,
        background: bool,
    ) -> None:
        self._runtime, self._repository = runtime, repository
        self._consolidator, self._promoter = consolidator, promoter
        self._background = background
        self._worker = Worker(self.run_due, recheck_s=max(0.5, runtime.config.short_term.max_wait_s))
        self._guard = threading.Lock()
        self._visits: dict[str, Counter[str]] = {}
        self._short_counts: dict[str, int] = {}
        self._touched: set[str] = set()

    # --- scheduling ---------------------------------------------------------------------------
    def schedule(self, user_id: str, added: int = 0) -> None:
        """Wake the worker when a batch is due; otherwise once, after ``max_wait_s``.

        The short-term count is kept in memory (read from the store once per user), so the
        write path does not query the store and the worker is not woken for every page.
        """
        with self._guard:
            self._touched.add(user_id)
        if not self._background:
            return
        with self._guard:
            known = self._short_counts.get(user_id)
        if known is None:
            stored = self._runtime.store.count("pages", where={"user_id": user_id, "tier": "short_term"})
            known = stored + len(self._runtime.pending_of(user_id)) - added
        count = known + added
        with self._guard:
            self._short_counts[user_id] = count
        short = self._runtime.config.short_term
        if added == 0 or count >= short.capacity + short.batch_pages:
            self._worker.notify(user_id)
        elif count > short.capacity:
            self._worker.notify(user_id, short.max_wait_s)

    def schedule_pending_work(self) -> None:
        """Schedule every user the store holds unfinished work of (run once the store is open)."""
        for user in self._repository.users_with_pending_work(self._runtime.config.short_term.capacity):
            self.schedule(user)

    def record_visits(self, user_id: str, segment_ids: Sequence[str]) -> None:
        """Count a recall as a visit of these segments (heat's N_visit); written with the next pass."""
        with self._guard:
            self._visits.setdefault(user_id, Counter()).update(segment_ids)
        if self._background:  # heat counters need not be written at once: batch them
            self._worker.notify(user_id, self._runtime.config.short_term.max_wait_s)

    def unsaved_visits(self, user_id: str) -> dict[str, int]:
        """The visits ``record_visits`` counted for the user that are not written yet, per segment."""
        with self._guard:
            return dict(self._visits.get(user_id, {}))

    def forget(self, user_id: str) -> None:
        """Drop what is kept in memory about the user (all their records were deleted)."""
        with self._guard:
            self._visits.pop(user_id, None)
            self._short_counts.pop(user_id, None)

    # --- running ------------------------------------------------------------------------------
    def run_due(self, user_id: str) -> bool:
        """One worker pass for a user; True if a partial batch is still waiting (or another
        process holds the user's lease: then it is simply tried again later)."""
        try:
            self._run_user(user_id, force=False, wait_s=0.0)
        except LeaseBusyError:
            return True
        return bool(self._consolidator.due_pages(user_id, force=True))

    def _run_user(
        self, user_id: str, *, force: bool, wait_s: float | None = None, account: bool = False
    ) -> Cost:
        """One pass under the user's lease, waiting up to ``wait_s`` (default: the lease's time) for it
        (see ``_until_done``)."""

        def run(wait: float) -> None:
            self._run_user_once(user_id, force=force, wait_s=wait)

        return self._until_done(user_id, run, LEASE_TTL_S if wait_s is None else wait_s, account=account)

    def _until_done(
        self, user_id: str, run: Callable[[float], None], wait_s: float, *, account: bool
    ) -> Cost:
        """``run(wait_s)`` (a pass under the user's lease); a pass whose lease another process took over
        (a claim that raced it through a server) stops before its next batch's writes and, when
        ``wait_s`` allows, waits for the lease again and runs once more. The cost returned counts every
        pass, the lost ones' LLM calls included; ``account``: added to the session's cost of the user,
        also when it raises (those calls were made)."""
        deadline = time.monotonic() + wait_s
        tally: Tally | None = None
        try:
            with measure() as tally:
                while True:
                    try:
                        run(wait_s)
                        break
                    except LeaseLostError:
                        wait_s = deadline - time.monotonic()
                        if wait_s <= 0:
                            raise
                        logger.info("lease of user %s taken over mid-pass: waiting for it again", user_id)
        finally:
            if account and tally is not None:
                self._runtime.account(user_id, tally.cost)
        return tally.cost

    def _run_user_once(self, user_id: str, *, force: bool, wait_s: float) -> None:
        runtime = self._runtime
        runtime.settled()
        with runtime.hold(user_id, wait_s=wait_s) as renew:
            moved = self._consolidator.consolidate(user_id, force=force, on_batch=renew)
            with self._guard:
                if user_id in self._short_counts:
                    self._short_counts[user_id] = max(0, self._short_counts[user_id] - moved)
            renew()  # (still held: the heat and long-term memory are written next)
            self._apply_visits(user_id)
            self._promoter.promote(user_id, force=False, tail=force)
            renew()
            self._promoter.evict(user_id)

    def _apply_visits(self, user_id: str) -> None:
        with self._guard:
            visits = self._visits.pop(user_id, None)
        if not visits:
            return
        now = self._runtime.now_s()
        store = self._runtime.store
        records = store.get("segments", ids=list(visits), where={"user_id": user_id}, with_embeddings=True)
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
        store.upsert("segments", updated)

    def flush(self, user_id: str | None, *, timeout_s: float | None) -> Cost:
        """Consolidate everything pending now for ``user_id`` (default: every user this instance
        wrote to or found pending work for) and wait for it; see ``MemoryOS.flush``."""
        self._runtime.settled()
        self._worker.wait_idle(timeout_s)
        with self._guard:
            users = [user_id] if user_id is not None else sorted(self._touched)
        total = Cost()
        for user in users:
            total = total + self._run_user(user, force=True, account=True)
        return total

    def force_analysis(self, user_id: str) -> Cost:
        """Consolidate all pending pages, then analyse every segment with new pages into long-term memory
        (again, once the lease is free, if another process took it over mid-pass)."""
        if self._runtime.llm is None:
            raise LLMNotConfiguredError("mid-term analysis needs an LLM: pass openai_api_key= or llm=")

        def analyse(wait: float) -> None:
            self._analyse_once(user_id, wait)

        return self._until_done(user_id, analyse, LEASE_TTL_S, account=True)

    def _analyse_once(self, user_id: str, wait_s: float) -> None:
        runtime = self._runtime
        runtime.settled()
        with runtime.hold(user_id, wait_s=wait_s) as renew:
            self._consolidator.consolidate(user_id, force=True, on_batch=renew)
            renew()
            self._apply_visits(user_id)
            self._promoter.promote(user_id, force=True)

    # --- stopping -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop the background worker (a pass under way finishes first)."""
        self._worker.stop()

    def save_visits(self) -> None:
        """Write the heat visits not written yet (at close; a busy lease only costs the counters)."""
        with self._guard:
            users = list(self._visits)
        for user in users:
            try:
                with self._runtime.hold(user, wait_s=5.0):
                    self._apply_visits(user)
            except MemoryOSError as exc:  # counters only (a busy lease included): pages are safe
                logger.warning("could not save heat visits of user %s at close: %s", user, exc)
