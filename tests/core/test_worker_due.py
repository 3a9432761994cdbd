"""The background worker runs a user at the earliest time asked; a later request neither postpones it
nor wakes the thread (a recall's heat visit, once per recall, used to cost the caller a thread switch)."""

from __future__ import annotations

import threading
import time

from memoryos_core.engine.worker import Worker


def _worker() -> tuple[Worker, list[float], threading.Event]:
    runs: list[float] = []
    ran = threading.Event()

    def run_user(user_id: str) -> bool:
        runs.append(time.monotonic())
        ran.set()
        return False

    return Worker(run_user, recheck_s=0.05), runs, ran


def test_a_later_request_does_not_postpone_an_earlier_one() -> None:
    worker, runs, ran = _worker()
    try:
        started = time.monotonic()
        worker.notify("alice", 0.2)
        for _ in range(50):
            worker.notify("alice", 30.0)  # e.g. each recall's visits
        assert ran.wait(10.0)
        assert runs[0] - started < 10.0 and len(runs) == 1
    finally:
        worker.stop()


def test_an_earlier_request_moves_the_run_forward() -> None:
    worker, _, ran = _worker()
    try:
        worker.notify("alice", 30.0)
        worker.notify("alice", 0.0)
        assert ran.wait(10.0)
    finally:
        worker.stop()
