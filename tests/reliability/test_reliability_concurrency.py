"""Eight threads and two processes on one store (embedded folder or one Chroma server): no page lost,
segment counters and heat consistent, and recall during consolidation always well-formed."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS, Record, RetrievedContext
from memoryos_core._config import MemoryConfig, MidTermConfig, RetrievalConfig, ShortTermConfig
from memoryos_core.bench.reliability_child import TOPICS, StoreSpec, child_env, slow_rules_llm
from memoryos_core.bench.reliability_figures import consistency_problems
from memoryos_core.storage.base import Kind
from tests.conftest import topic_pages

USERS = ("shared_a", "shared_b", "shared_c")
CONFIG = MemoryConfig(
    short_term=ShortTermConfig(capacity=3, batch_pages=4, max_wait_s=0.2),
    mid_term=MidTermConfig(heat_threshold=5.0),
)
HEAT_CONFIG = MemoryConfig(
    short_term=ShortTermConfig(capacity=2),
    mid_term=MidTermConfig(heat_threshold=1e9),  # no promotion: n_visit only ever grows
    retrieval=RetrievalConfig(top_segments=100),  # every segment is scored, so visits are predictable
)
ROOT = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent("""
    import json, sys, threading
    from memoryos_core import HashingEmbedder, MemoryOS
    from memoryos_core.bench.reliability_child import StoreSpec, slow_rules_llm
    from tests.reliability.test_reliability_concurrency import CONFIG, page

    spec = json.loads(sys.argv[1])
    memory = MemoryOS(store=StoreSpec(**spec["store"]).make(), embedder=HashingEmbedder(64),
                      llm=slow_rules_llm(0.02), config=CONFIG, background=True)
    out = threading.Lock()

    def write(thread):
        for i in range(spec["pages"]):
            user = spec["users"][(i + thread) % len(spec["users"])]
            marker = f"{spec['name']}t{thread}p{i}"
            page_id = memory.add_memory(**page(marker), user_id=user).page_id
            with out:
                print("page", page_id, user, marker, flush=True)

    threads = [threading.Thread(target=write, args=(t,)) for t in range(spec["threads"])]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    memory.flush()
    memory.close()
    print("done", flush=True)
""")

RECALLER = textwrap.dedent("""
    import json, sys, threading
    from collections import Counter
    from memoryos_core import HashingEmbedder, MemoryOS
    from memoryos_core.bench.reliability_child import StoreSpec
    from tests.reliability.test_reliability_concurrency import HEAT_CONFIG, recall_visits

    spec = json.loads(sys.argv[1])
    memory = MemoryOS(store=StoreSpec(**spec["store"]).make(), embedder=HashingEmbedder(64),
                      config=HEAT_CONFIG, background=False)
    visits = Counter()
    lock = threading.Lock()

    def run(seed):
        found = recall_visits(memory, "heat_user", spec["recalls"], seed)
        with lock:
            visits.update(found)

    threads = [threading.Thread(target=run, args=(spec["seed"] + t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    memory.flush()  # the visits are written under the user's lease
    memory.close()
    print(json.dumps(visits), flush=True)
""")


def page(marker: str) -> dict[str, Any]:
    """A page that carries its writer's marker in its text and as its message id."""
    topic = TOPICS[sum(map(ord, marker)) % len(TOPICS)]
    return {
        "user_input": f"{topic}, note {marker}.",
        "agent_response": "I will remember that.",
        "meta_data": {"message_id": marker},
    }


def _spawn(script: str, spec: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        cwd=str(ROOT),
    )


def _finish(proc: subprocess.Popen[str]) -> str:
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, err[-3000:]
    return out


def _owner_problems(memory: MemoryOS, user: str, context: RetrievedContext) -> list[str]:
    """What is wrong with one recall: foreign or missing units, duplicate ids."""
    ids = [unit.id for unit in context.all_units]
    problems = [f"duplicate unit {i}" for i, n in Counter(ids).items() if n > 1]
    kinds: dict[Kind, list[str]] = {"pages": [], "knowledge": []}
    for unit in context.all_units:
        kinds["knowledge" if unit.tier.endswith("knowledge") else "pages"].append(unit.id)
        kinds["pages"] += list(unit.page_ids)
    # A page recalled while still journaled (write-behind) is in its owner's pending list; look
    # there first, then in the store (where it is once written).
    owners: dict[str, object] = {r.id: u for u in USERS for r in memory._runtime.pending_of(u)}
    for kind, wanted in kinds.items():
        owners |= {r.id: r.metadata.get("user_id") for r in memory.store.get(kind, ids=sorted(set(wanted)))}
        problems += [f"{kind} {i} belongs to {owners.get(i)!r}" for i in set(wanted) if owners.get(i) != user]
    return problems


def _run_threads(*targets: Callable[[], object]) -> list[BaseException]:
    """Run each target in a thread; return what they raised (the test re-raises it)."""
    errors: list[BaseException] = []

    def guarded(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as exc:  # collected and re-raised in the test's own thread
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    return errors


def _reraise(errors: list[BaseException]) -> None:
    if errors:
        raise errors[0]


@pytest.mark.slow  # soak: 8 threads + 2 processes writing; ~40-100 s per store
def test_eight_threads_and_two_processes_on_one_store_lose_nothing(store_spec: StoreSpec) -> None:
    # Embedded: the processes share the folder through storage/_folder.py (a file lock, and a
    # client reopened when another process wrote); a server: through the server.
    memory = MemoryOS(store=store_spec.make(), embedder=HashingEmbedder(64), llm=slow_rules_llm(0.02),
                      config=CONFIG, background=True)  # fmt: skip
    memory.get_memory_stats(user_id=USERS[0])  # open the store before the other processes do
    spec = {"store": store_spec.__dict__, "threads": 2, "pages": 12, "users": USERS}
    children = [_spawn(WRITER, spec | {"name": f"proc{n}"}) for n in range(2)]
    accepted: dict[str, tuple[str, str]] = {}
    problems: list[str] = []
    recalls: Counter[str] = Counter()
    lock, stop = threading.Lock(), threading.Event()

    def write(thread: int) -> None:
        for i in range(15):
            user, marker = USERS[(i + thread) % len(USERS)], f"main{thread}p{i}"
            page_id = memory.add_memory(**page(marker), user_id=user).page_id
            with lock:
                accepted[page_id] = (user, marker)

    def recall(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            user = rng.choice(USERS)
            found = _owner_problems(memory, user, memory.retrieve_memory(rng.choice(TOPICS), user_id=user))
            with lock:
                problems.extend(found)
                recalls[user] += 1

    def writers_then_children() -> None:
        try:
            _reraise(_run_threads(*(lambda t=t: write(t) for t in range(8))))
            for child in children:
                for line in _finish(child).splitlines():
                    if line.startswith("page "):
                        _, page_id, user, marker = line.split()
                        accepted[page_id] = (user, marker)
        finally:
            stop.set()

    errors = _run_threads(writers_then_children, lambda: recall(1), lambda: recall(2))
    try:
        _reraise(errors)
        memory.flush()
        assert problems == [] and sum(recalls.values()) > 10
        assert len(accepted) == 8 * 15 + 2 * 2 * 12
        for user in USERS:
            mine = {pid: marker for pid, (owner, marker) in accepted.items() if owner == user}
            export = memory.export_memory(user_id=user)
            stored = Counter(p["meta_data"]["message_id"] for p in export["pages"])
            assert {p["id"] for p in export["pages"]} == set(mine)  # nothing lost, nothing extra
            assert set(stored.values()) == {1}  # nothing stored twice
            assert consistency_problems(memory, user) == []
            stats = memory.get_memory_stats(user_id=user)
            tiers = stats.short_term_pages + stats.pending_pages + stats.mid_term_pages + stats.archived_pages
            assert (tiers, stats.pending_pages) == (len(mine), 0)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
        memory.close()


@pytest.mark.parametrize("seconds", [2.0, pytest.param(6.0, marks=pytest.mark.slow)])  # slow: a longer race
def test_recall_and_add_from_many_threads_never_raise(tmp_path: Path, seconds: float) -> None:
    memory = MemoryOS(store=ChromaStore(path=str(tmp_path / "chroma")), embedder=HashingEmbedder(64),
                      background=False)  # fmt: skip
    rng = random.Random(3)
    # A large index makes each BM25 scoring long enough for the race to show within seconds.
    memory.add_memories([page(f"seed{i}") | {"user_input": f"{rng.choice(TOPICS)} {i}"} for i in range(2000)])
    memory.retrieve_memory("hiking")  # the user's page index is built: every thread below shares it
    deadline = time.monotonic() + seconds
    errors: list[BaseException] = []

    def add() -> None:
        while time.monotonic() < deadline and not errors:
            memory.add_memory(**page(uuid.uuid4().hex))

    def recall() -> None:
        while time.monotonic() < deadline and not errors:
            memory.retrieve_memory("hiking trails and jazz guitar")

    def until_first_error(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except Exception as exc:
                errors.append(exc)

        return run

    _reraise(_run_threads(*(until_first_error(f) for f in (add, add, add, recall, recall, recall))))
    memory.close()
    assert errors == []


def recall_visits(memory: MemoryOS, user: str, recalls: int, seed: int) -> Counter[str]:
    """Recall ``recalls`` times; count, per segment, the recalls that drew on it (its due N_visit)."""
    rng = random.Random(seed)
    visits: Counter[str] = Counter()
    for _ in range(recalls):
        context = memory.retrieve_memory(rng.choice(["hiking boots trail", "pasta tomato", "python tests"]),
                                         user_id=user)  # fmt: skip
        visits.update({u.meta_data["segment_id"] for u in context.units if u.tier == "mid_term"})
    return visits


def _n_visits(memory: MemoryOS, user: str) -> dict[str, int]:
    return {s["id"]: s["n_visit"] for s in memory.export_memory(user_id=user)["segments"]}


def test_heat_visits_from_threads_and_processes_all_count(store_spec: StoreSpec) -> None:
    memory = MemoryOS(store=store_spec.make(), embedder=HashingEmbedder(64), config=HEAT_CONFIG,
                      background=False)  # fmt: skip
    for topic in ("hiking", "cooking", "coding"):
        memory.add_memories(topic_pages(topic, 6), user_id="heat_user")
    memory.flush()
    before = _n_visits(memory, "heat_user")
    assert len(before) >= 2
    children = [
        _spawn(RECALLER, {"store": store_spec.__dict__, "recalls": 10, "seed": 100 * n}) for n in (1, 2)
    ]
    due: Counter[str] = Counter()
    lock = threading.Lock()

    def run(seed: int) -> None:
        found = recall_visits(memory, "heat_user", 10, seed)
        with lock:
            due.update(found)

    threads = [threading.Thread(target=run, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    for child in children:
        due.update(json.loads(_finish(child).strip().splitlines()[-1]))
    try:
        memory.flush()
        after = _n_visits(memory, "heat_user")
        assert sum(due.values()) > 0
        assert {s: after[s] - before.get(s, 0) for s in after} == {s: due.get(s, 0) for s in after}
        assert consistency_problems(memory, "heat_user") == []
    finally:
        memory.close()


class _Interleaving(ChromaStore):
    """A real store that runs ``hook`` once, right after a chosen read: another process's turn."""

    hook: Callable[[], object] | None = None
    kind: str = ""

    def get(self, kind: Kind, **options: Any) -> list[Record]:  # type: ignore[override]
        records = super().get(kind, **options)
        if self.hook is not None and kind == self.kind and options.get("ids"):
            hook, self.hook = self.hook, None
            hook()
        return records


def _two_processes(tmp_path: Path) -> tuple[MemoryOS, MemoryOS, _Interleaving]:
    """Two instances on one folder, as two processes would be; the first one's reads can be interleaved."""
    interleaving = _Interleaving(path=str(tmp_path / "chroma"), prefix="il_")
    config = MemoryConfig(short_term=ShortTermConfig(capacity=2, batch_pages=4))
    first = MemoryOS(user_id="alice", store=interleaving, embedder=HashingEmbedder(64), config=config,
                     background=False)  # fmt: skip
    second = MemoryOS(user_id="alice", store=ChromaStore(path=str(tmp_path / "chroma"), prefix="il_"),
                      embedder=HashingEmbedder(64), config=config, background=False)  # fmt: skip
    second.add_memories(topic_pages("hiking", 6))
    second.flush()
    return first, second, interleaving


def _consolidate_now(memory: MemoryOS) -> Callable[[], object]:
    # What the other process's background worker does; it skips the user if the lease is taken.
    return lambda: memory._scheduler.run_due("alice")


def test_heat_written_at_close_never_overwrites_another_process_consolidation(tmp_path: Path) -> None:
    first, second, interleaving = _two_processes(tmp_path)
    context = first.retrieve_memory("hiking boots trail")  # a visit, pending in the first process
    visited = {u.meta_data["segment_id"] for u in context.units if u.tier == "mid_term"}
    assert visited
    second.add_memories(topic_pages("hiking", 4, start=6))  # a batch due in the second process
    interleaving.kind, interleaving.hook = "segments", _consolidate_now(second)
    first.close()  # reads the segment, the second process consolidates, then the visit is written
    second.flush()
    assert consistency_problems(second, "alice") == []
    segments = second.export_memory()["segments"]
    assert {s["id"]: s["n_visit"] for s in segments} == {s["id"]: int(s["id"] in visited) for s in segments}


def test_update_memory_never_undoes_another_process_consolidation(tmp_path: Path) -> None:
    first, second, interleaving = _two_processes(tmp_path)
    newest = second.recent_pages()[-1]
    second.add_memories(topic_pages("hiking", 4, start=6))  # the newest page is now due for consolidation
    interleaving.kind, interleaving.hook = "pages", _consolidate_now(second)
    first.update_memory(newest.id, agent_response="Edited answer.")
    second.flush()
    assert consistency_problems(second, "alice") == []
    [edited] = [p for p in second.export_memory()["pages"] if p["id"] == newest.id]
    assert (edited["agent_response"], edited["tier"]) == ("Edited answer.", "mid_term")
