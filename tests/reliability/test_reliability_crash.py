"""SIGKILL at random moments, and at each step of consolidation, loses and duplicates no page.

Writers are real processes; ``memoryos bench reliability`` runs the same rounds 100 times.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from memoryos_core import HashingEmbedder, MemoryOS
from memoryos_core.bench.reliability_child import (
    CRASH_CONFIG,
    CRASH_USERS,
    ChildSpec,
    StoreSpec,
    child_env,
    kill_round,
)
from memoryos_core.bench.reliability_figures import consistency_problems, crash_memory
from memoryos_core.engine.lease import LEASE_TTL_S, LeaseBusyError, Leases
from memoryos_core.llm.rules import RuleBasedLLM

if TYPE_CHECKING:  # the dying writer imports this module: it need not import the test suite's conftest
    from tests.conftest import Prestart

KILLS = {"embedded": 5, "server": 3}


def _assert_all_there_once(memory: MemoryOS, user: str, accepted: dict[str, str]) -> None:
    """Every accepted page (id -> marker) is exported exactly once, with its own content."""
    export = memory.export_memory(user_id=user)
    ids = Counter(p["id"] for p in export["pages"])
    markers = Counter(p["meta_data"].get("message_id") for p in export["pages"])
    by_id = {p["id"]: p for p in export["pages"]}
    assert [pid for pid in accepted if pid not in ids] == []  # lost
    assert [pid for pid, n in ids.items() if n > 1] == []  # duplicated ids
    assert [m for m in accepted.values() if markers[m] != 1] == []  # one page per accepted add
    assert all(marker in by_id[pid]["user_input"] for pid, marker in accepted.items())
    # Every consolidated page sits in exactly one segment; the short-term tier is within capacity.
    members = Counter(pid for s in export["segments"] for pid in s["page_ids"])
    settled = [p["id"] for p in export["pages"] if p["tier"] != "short_term"]
    assert sorted(members) == sorted(settled) and set(members.values()) <= {1}
    short = [p for p in export["pages"] if p["tier"] == "short_term"]
    assert len(short) <= memory.config.short_term.capacity


@pytest.mark.slow  # soak: writers killed at random moments, many rounds; ~30-40 s per store
def test_writers_sigkilled_at_random_moments_lose_no_accepted_page(store_spec: StoreSpec) -> None:
    kills = KILLS["embedded" if store_spec.path else "server"]
    rng = random.Random(11)
    accepted: dict[str, tuple[str, str]] = {}
    events: Counter[str] = Counter()
    for index in range(kills):
        result = kill_round(ChildSpec(store=store_spec, round=index), rng.uniform(0.3, 2.5))
        assert result.exit_code == -signal.SIGKILL
        accepted |= result.accepted
        events += result.events
    assert len(accepted) > 2 * kills  # the writers really wrote between their kills
    assert events["consolidated"] > 0  # and consolidation was in flight in the background

    memory = crash_memory(store_spec)
    try:
        memory.flush()  # the reopened store finds and finishes the pending work by itself
        for user in CRASH_USERS:
            _assert_all_there_once(memory, user, {p: m for p, (u, m) in accepted.items() if u == user})
            assert consistency_problems(memory, user) == []
            assert memory.get_memory_stats(user_id=user).pending_pages == 0
        assert memory.store.get("state", where={"key": "journal"}) == []
    finally:
        memory.close()


DYING_WRITER = textwrap.dedent("""
    import json, os, signal, sys
    from memoryos_core import ChromaStore, HashingEmbedder, MemoryOS
    from memoryos_core.engine import lease as _lease
    from memoryos_core.bench.reliability_child import StoreSpec, slow_rules_llm
    from tests.reliability.test_reliability_crash import POINT_CONFIG, dies_at, writer_pages

    spec = json.loads(sys.argv[1])
    _lease.LEASE_TTL_S = spec["lease_ttl_s"]

    class DyingStore(ChromaStore):
        # Performs the write, then SIGKILLs its own process if it was the chosen one.
        journal_seen = False

        def upsert(self, kind, records):
            super().upsert(kind, records)
            self.journal_seen |= kind == "state" and any(r.id.startswith("journal:") for r in records)
            if dies_at(spec["point"], kind, records, self.journal_seen):
                print("dying", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

    store = DyingStore(path=spec["path"], url=spec["url"], prefix=spec["prefix"])
    memory = MemoryOS(user_id="alice", store=store, embedder=HashingEmbedder(64), llm=slow_rules_llm(0.0),
                      config=POINT_CONFIG, background=False)
    for result in memory.add_memories(writer_pages()):
        print("page", result.page_id, flush=True)
    memory.flush()
    print("survived", flush=True)
""")

POINT_CONFIG = CRASH_CONFIG.with_reference_params(mid_term_capacity=2)
"""Two active segments at most, so the four topics below also archive segments."""


def writer_pages() -> list[dict[str, Any]]:
    """Four topics, six pages each: enough to consolidate, promote and archive."""
    topics = [
        "I love hiking mountain trails with my dog",
        "I work as a nurse at the city hospital",
        "I like cooking pasta with fresh basil",
        "I am learning jazz guitar chords",
    ]
    return [
        {"user_input": f"{topic}, note {t}-{i}.", "agent_response": "I will remember that.",
         "meta_data": {"message_id": f"{t}-{i}"}}
        for t, topic in enumerate(topics)
        for i in range(6)
    ]  # fmt: skip


def dies_at(point: str, kind: str, records: Any, journal_seen: bool) -> bool:
    """Whether the write just made is the chosen kill point."""
    tiers = {r.metadata.get("tier") for r in records}
    return {
        "journal": kind == "state" and any(r.id.startswith("journal:") for r in records),
        "segments": kind == "segments" and journal_seen,  # the replay wrote segments, not pages
        "pages": kind == "pages" and tiers == {"mid_term"},  # pages moved, journal not yet deleted
        "profile": kind == "state" and any(r.id.startswith("profile:") for r in records),
        "knowledge": kind == "knowledge",  # promotion half done: segments not reset
        "archive": kind == "pages" and tiers == {"archive"},  # pages archived, segment still active
    }[point]


def _run_to(
    point: str, spec: StoreSpec, lease_ttl_s: float = 1.0, env: Mapping[str, str] | None = None
) -> list[str]:
    """Run the writer until it SIGKILLs itself at ``point``; the ids of the pages it stored."""
    payload = {"path": spec.path, "url": spec.url, "prefix": spec.prefix, "point": point}
    done = subprocess.run(
        [sys.executable, "-c", DYING_WRITER, json.dumps(payload | {"lease_ttl_s": lease_ttl_s})],
        capture_output=True, text=True, timeout=120, env=child_env() if env is None else env,
        cwd=str(Path(__file__).parents[2]),
    )  # fmt: skip
    lines = done.stdout.split("\n")
    assert done.returncode == -signal.SIGKILL and "dying" in lines, done.stdout + done.stderr
    return [line.split()[1] for line in lines if line.startswith("page ")]


# The dying writers are fresh processes whose store nothing else touches until they are dead: they start
# when collection ends (tests/conftest.py's ``Prestart``) and run beside the other tests; each test then
# reopens the folder its writer left behind. Heat's recency decays over ~10^7 s, so the minutes between
# the writer's death and the reopen change nothing the tests compare; the lease test runs its writer itself.
POINTS = ["journal", "segments", "pages", "profile", "knowledge", "archive"]
_PRESTARTED_RUNS: dict[str, Callable[[pytest.Function], tuple[str, str, float]]] = {
    "test_a_kill_at_each_step_of_consolidation_resumes_to_the_same_memory": lambda item: (
        str(item.callspec.params["point"]),
        "pt_",
        1.0,
    ),
    "test_flush_after_reopening_finishes_a_promotion_killed_midway": lambda item: ("profile", "pr_", 1.0),
}


def _dying_writer_job(
    point: str, prefix: str, lease_ttl_s: float, folder: Path, environ: dict[str, str]
) -> tuple[StoreSpec, list[str]]:
    spec = StoreSpec(path=str(folder / "chroma"), prefix=prefix)
    root = str(Path(__file__).resolve().parents[2])
    env = environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, environ.get("PYTHONPATH")]))}
    return spec, _run_to(point, spec, lease_ttl_s, env)


def prestart(items: list[pytest.Item], submit: Callable[[str, Callable[..., Any]], None]) -> None:
    for item in items:
        run = _PRESTARTED_RUNS.get(getattr(item, "originalname", ""))
        if run is not None and isinstance(item, pytest.Function):
            submit(f"crash:{item.nodeid}", functools.partial(_dying_writer_job, *run(item)))


def _written(prestarted: Prestart, request: pytest.FixtureRequest) -> tuple[StoreSpec, list[str]]:
    """The store the test's dying writer left and the ids of the pages it stored (its failure raised)."""
    result: tuple[StoreSpec, list[str]] = prestarted.result(f"crash:{request.node.nodeid}")
    return result


def _point_memory(spec: StoreSpec) -> MemoryOS:
    return MemoryOS(user_id="alice", store=spec.make(), embedder=HashingEmbedder(64), llm=RuleBasedLLM(),
                    config=POINT_CONFIG, background=False)  # fmt: skip


def _state(memory: MemoryOS) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    profile = memory.get_user_profile()
    knowledge = [k.text for k in (*profile.user_knowledge, *profile.assistant_knowledge)]
    return sorted(knowledge), sorted(set(knowledge)), sorted((t.name, t.value) for t in profile.traits)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], list[str], list[tuple[str, str]]]:
    """Knowledge and profile of the same pages written without a crash."""
    spec = StoreSpec(path=str(tmp_path_factory.mktemp("reference") / "chroma"), prefix="ref_")
    memory = _point_memory(spec)
    memory.add_memories(writer_pages())
    memory.flush()
    state = _state(memory)
    memory.close()
    return state


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_step_of_consolidation_resumes_to_the_same_memory(
    point: str,
    prestarted: Prestart,
    request: pytest.FixtureRequest,
    reference: tuple[list[str], list[str], list[tuple[str, str]]],
) -> None:
    spec, accepted = _written(prestarted, request)  # _run_to(point, spec) with prefix "pt_"
    assert len(accepted) == 24
    memory = _point_memory(spec)
    try:
        memory.flush(user_id="alice")
        _assert_all_there_once(memory, "alice", _markers(memory, accepted))
        assert consistency_problems(memory, "alice") == []
        knowledge, unique, traits = _state(memory)
        assert knowledge == unique  # a re-run analysis merged into what it had written, no duplicates
        assert (knowledge, traits) == (reference[0], reference[2])
    finally:
        memory.close()


def _markers(memory: MemoryOS, accepted: list[str]) -> dict[str, str]:
    """page id -> its message_id, read back (the writer printed ids only)."""
    pages = {p["id"]: p for p in memory.export_memory()["pages"]}
    return {pid: pages[pid]["meta_data"]["message_id"] if pid in pages else "<lost>" for pid in accepted}


def test_flush_after_reopening_finishes_a_promotion_killed_midway(
    prestarted: Prestart,
    request: pytest.FixtureRequest,
    reference: tuple[list[str], list[str], list[tuple[str, str]]],
) -> None:
    spec, _ = _written(
        prestarted, request
    )  # _run_to("profile", ...): knowledge and the segments' reset not yet
    memory = _point_memory(spec)
    try:
        memory.flush()  # no user named: what an application calls after a restart
        assert memory.get_memory_stats().hot_segments == 0
        assert _state(memory)[0] == reference[0]
    finally:
        memory.close()


def test_a_lease_left_by_a_killed_process_is_taken_over_promptly(tmp_path: Path) -> None:
    # Not prestarted: the writer must die just before the takeover, well within the lease's TTL.
    spec = StoreSpec(path=str(tmp_path / "chroma"), prefix="ls_")
    _run_to("journal", spec, lease_ttl_s=LEASE_TTL_S)  # dies mid-batch, holding the user's lease
    store = spec.make()
    store.open(dim=64, embedder_name="hashing-64")
    try:
        with Leases(store).hold("alice", wait_s=3.0):
            pass
    except LeaseBusyError as exc:
        pytest.fail(f"the dead writer's lease still blocks after 3 s: {exc}")
