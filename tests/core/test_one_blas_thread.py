"""The late rerank's numpy products run on one BLAS thread (OpenBLAS's spare threads spin after a
threaded product and take a core from the next recall), and the process's limit comes back after."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from memoryos_core import MemoryOS
from memoryos_core._blas import one_blas_thread
from memoryos_core.engine import late_store
from memoryos_core.policy import late


def _blas_threads() -> set[int]:
    found = {int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"}
    assert found, "numpy's BLAS is not visible to threadpoolctl"
    return found


def test_one_thread_inside_and_the_limit_found_before_after() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        assert _blas_threads() == {2}
        with one_blas_thread():
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


def test_nested_sections_keep_one_thread_until_the_outer_one_ends() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        with one_blas_thread():
            with one_blas_thread():
                assert _blas_threads() == {1}
            assert _blas_threads() == {1}
        assert _blas_threads() == {2}


def test_a_second_thread_waits_for_the_first_ones_section_and_the_limit_comes_back() -> None:
    before = _blas_threads()
    first_inside, release, second_inside = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, set[int]] = {}

    def first() -> None:
        with one_blas_thread():
            seen["first"] = _blas_threads()
            first_inside.set()
            release.wait(10)

    def second() -> None:
        with one_blas_thread():
            seen["second"] = _blas_threads()
            second_inside.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    threads[0].start()
    assert first_inside.wait(10)
    threads[1].start()
    assert not second_inside.wait(0.2)  # waits at the call while the first holds the limit
    release.set()
    for thread in threads:
        thread.join(10)
    assert second_inside.is_set() and seen == {"first": {1}, "second": {1}}
    assert _blas_threads() == before  # (not the 1 the second would have found had it not waited)


def test_an_error_inside_still_restores_the_limit() -> None:
    with threadpool_limits(limits=2, user_api="blas"):
        with pytest.raises(ZeroDivisionError), one_blas_thread():
            raise ZeroDivisionError
        assert _blas_threads() == {2}


def _recording(seen: list[set[int]], call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        seen.append(_blas_threads())
        return call(*args, **kwargs)

    return wrapped


def test_projection_and_basis_fit_run_on_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[set[int]] = []
    monkeypatch.setattr(np, "matmul", _recording(seen, np.matmul))
    monkeypatch.setattr(np.linalg, "eigh", _recording(seen, np.linalg.eigh))
    sample = np.random.default_rng(0).standard_normal((200, 384)).astype(np.float32)
    with threadpool_limits(limits=2, user_api="blas"):
        basis = late_store._pca(sample)
        projected = late_store._project(sample, basis)
        assert _blas_threads() == {2}
    assert projected.shape == (200, late_store.DIMS)
    assert len(seen) == 2 and all(threads == {1} for threads in seen)


@pytest.mark.parametrize("store_factory", ["embedded"], indirect=True)
def test_a_recall_scores_its_late_pages_on_one_thread(
    puppy_memory: MemoryOS, monkeypatch: pytest.MonkeyPatch
) -> None:
    memory = puppy_memory
    seen: list[set[int]] = []
    monkeypatch.setattr(late, "recall", _recording(seen, late.recall))
    with threadpool_limits(limits=2, user_api="blas"):
        context = memory.retrieve_memory("Which pet did they adopt?", update_heat=False)
        assert _blas_threads() == {2}
    assert seen == [{1}]  # the late scores were computed, on one thread
    assert any(u.score_parts.get("late", 0.0) for u in context.all_units)


def test_a_thread_that_held_the_limit_does_not_keep_the_others_from_it() -> None:
    done = threading.Event()

    def once_then_idle() -> None:
        with one_blas_thread():
            pass
        done.wait(10)  # alive, like the engine's journal thread between batches

    held = threading.Thread(target=once_then_idle)
    held.start()
    try:
        with threadpool_limits(limits=2, user_api="blas"):  # this thread can still set limits
            assert _blas_threads() == {2}
            with one_blas_thread():
                assert _blas_threads() == {1}
            assert _blas_threads() == {2}
    finally:
        done.set()
        held.join(10)
