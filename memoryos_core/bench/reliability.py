"""``memoryos bench reliability``: SIGKILLed writers lose nothing; cross-user queries never leak.

The crash half runs a writer process per round (background consolidation with a slow LLM in
flight), SIGKILLs it after a random delay, and checks at the end that every page whose
``add_memory`` returned is stored exactly once and that the store is consistent. The isolation
half fills many users and checks that random queries only ever recall the asker's memory.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memoryos_core._config import MemoryConfig, MidTermConfig, ShortTermConfig
from memoryos_core._types import ChatMessage
from memoryos_core.bench._cleanup import drop_server_collections
from memoryos_core.bench.mcp_auth import run_mcp_auth
from memoryos_core.bench.reopen import run_reopens
from memoryos_core.embeddings.fake import HashingEmbedder
from memoryos_core.engine.memory import MemoryOS
from memoryos_core.llm.fake import FunctionLLM
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.storage.base import Kind
from memoryos_core.storage.chroma import ChromaStore

CRASH_USERS = ("crash_a", "crash_b")
CRASH_CONFIG = MemoryConfig(
    short_term=ShortTermConfig(capacity=3, batch_pages=4, max_wait_s=0.3),
    mid_term=MidTermConfig(capacity=12, heat_threshold=4.0),
)
"""Small tiers, so a few seconds of writing consolidate, promote and archive many times."""
TOPICS = (
    "I love hiking mountain trails with my dog on weekends",
    "I work as a nurse on night shifts at the city hospital",
    "I like cooking pasta with fresh basil and garden tomatoes",
    "I am learning guitar chords and jazz songs every evening",
    "I prefer trains to planes when I travel across Europe",
)
_TOKEN = re.compile(r"\bzx\d{3}q\b")


@dataclass(frozen=True)
class StoreSpec:
    """Where a store lives: a folder (embedded Chroma) or a ``chroma run`` URL, and a prefix."""

    path: str | None = None
    url: str | None = None
    prefix: str = "memoryos_"

    def make(self) -> ChromaStore:
        return ChromaStore(path=self.path, url=self.url, prefix=self.prefix)


@dataclass(frozen=True)
class ChildSpec:
    """What one writer process does until it is killed."""

    store: StoreSpec
    round: int
    users: tuple[str, ...] = CRASH_USERS
    llm_delay_s: float = 0.05
    pause_s: float = 0.05
    """Between adds: slow enough for consolidation to keep up, so kills also land in promotion."""
    lease_ttl_s: float = 2.0


@dataclass
class RoundResult:
    """What a killed writer reported: accepted pages (id -> (user, marker)) and its events."""

    accepted: dict[str, tuple[str, str]]
    events: Counter[str]
    delay_s: float
    exit_code: int


@dataclass
class Verification:
    """One user's store after the crashes: what was lost or duplicated, and broken invariants."""

    user_id: str
    accepted: int
    stored: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def slow_rules_llm(delay_s: float) -> FunctionLLM:
    """RuleBasedLLM behind a delay, so consolidation and promotion are in flight for a while."""
    rules = RuleBasedLLM()

    def answer(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        time.sleep(delay_s)
        return rules.complete(messages, json_mode=json_mode)

    return FunctionLLM(answer, name="slow-rules")


def page_text(rng: random.Random, marker: str) -> str:
    return f"{rng.choice(TOPICS)}, note {marker}."


# --- the writer process --------------------------------------------------------------------------
def child_main(raw_spec: str) -> None:
    """Write pages forever, printing ``page <id> <user> <marker>`` after each add returned."""
    spec = json.loads(raw_spec)
    from memoryos_core.engine import lease as _lease

    # One writer runs at a time and the last one was SIGKILLed holding its lease: a short TTL
    # lets this one take over within seconds instead of LEASE_TTL_S (see the bench's notes).
    _lease.LEASE_TTL_S = float(spec["lease_ttl_s"])
    out = threading.Lock()

    def say(*parts: object) -> None:
        with out:
            sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
            sys.stdout.flush()

    users = list(spec["users"])
    memory = MemoryOS(
        user_id=users[0],
        store=StoreSpec(**spec["store"]).make(),
        embedder=HashingEmbedder(64),
        llm=slow_rules_llm(float(spec["llm_delay_s"])),
        config=CRASH_CONFIG,
        background=True,
        on_event=lambda name, details: say("event", name),
    )
    memory.get_memory_stats()  # opens the store: the last writer's pending work is scheduled
    say("ready")
    rng = random.Random(spec["round"])
    for i in range(1_000_000):
        user = users[i % len(users)]
        markers = [f"r{spec['round']}p{i}x{j}" for j in range(1 if i % 7 else 3)]
        items = [
            {
                "user_input": page_text(rng, m),
                "agent_response": "I will remember that.",
                "meta_data": {"message_id": m},
            }
            for m in markers
        ]
        for result, marker in zip(memory.add_memories(items, user_id=user), markers):
            say("page", result.page_id, user, marker)
        if i % 5 == 4:
            memory.retrieve_memory(rng.choice(TOPICS), user_id=user)
        time.sleep(float(spec["pause_s"]))


def _child_command(spec: ChildSpec) -> list[str]:
    return [sys.executable, "-m", "memoryos_core.bench.reliability", "child", json.dumps(asdict(spec))]


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout first on the import path."""
    root = str(Path(__file__).resolve().parents[2])
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def kill_round(spec: ChildSpec, delay_s: float, *, startup_timeout_s: float = 120.0) -> RoundResult:
    """Start a writer, SIGKILL it ``delay_s`` after it is ready, and collect what it reported."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            _child_command(spec), stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env()
        )
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip("\n"))
                if line.startswith("ready"):
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + startup_timeout_s
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"writer did not start (exit {proc.returncode}):\n{tail}")
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
        reader.join(10)
    accepted = {}
    events: Counter[str] = Counter()
    for line in lines:
        parts = line.split()
        if parts[:1] == ["page"] and len(parts) == 4:
            accepted[parts[1]] = (parts[2], parts[3])
        elif parts[:1] == ["event"] and len(parts) == 2:
            events[parts[1]] += 1
    return RoundResult(accepted, events, delay_s, code)


# --- checks --------------------------------------------------------------------------------------
def consistency_problems(memory: MemoryOS, user_id: str) -> list[str]:
    """Broken invariants of one user's store (empty when consistent); call after ``flush``."""
    store, problems = memory.store, []
    if store.get("state", ids=[f"journal:{user_id}"]):
        problems.append("a consolidation journal is left")
    pages = store.get("pages", where={"user_id": user_id})
    segments = {r.id: r for r in store.get("segments", where={"user_id": user_id})}
    short = sum(1 for p in pages if p.metadata.get("tier") == "short_term")
    if short > memory.config.short_term.capacity:
        problems.append(f"{short} short-term pages, capacity {memory.config.short_term.capacity}")
    members: dict[str, set[str]] = {}
    for page in pages:
        tier, segment_id = page.metadata.get("tier"), str(page.metadata.get("segment_id") or "")
        if tier == "short_term" and segment_id:
            problems.append(f"short-term page {page.id} is in segment {segment_id}")
        elif tier != "short_term" and segment_id not in segments:
            problems.append(f"{tier} page {page.id} is in no existing segment ({segment_id!r})")
        elif tier != "short_term":
            expected = "archive" if segments[segment_id].metadata.get("status") == "archived" else "mid_term"
            if tier != expected:
                problems.append(f"page {page.id} is {tier} in a segment whose pages are {expected}")
            members.setdefault(segment_id, set()).add(page.id)
    pending_seen: Counter[str] = Counter()
    for segment_id, record in segments.items():
        meta = record.metadata
        pending = json.loads(str(meta.get("pending_json") or "[]"))
        pending_seen.update(pending)
        count = len(members.get(segment_id, ()))
        if int(meta.get("page_count", -1)) != count:
            problems.append(f"segment {segment_id}: page_count {meta.get('page_count')}, {count} pages")
        if not set(pending) <= members.get(segment_id, set()):
            problems.append(f"segment {segment_id}: pending pages that are not its members")
        if int(meta.get("l_interaction", 0)) < len(pending) or int(meta.get("n_visit", 0)) < 0:
            problems.append(f"segment {segment_id}: counters below its pending pages")
    problems += [f"page {p} pending in {n} segments" for p, n in pending_seen.items() if n > 1]
    return problems


def verify_user(memory: MemoryOS, user_id: str, accepted: dict[str, str]) -> Verification:
    """Flush, then check ``accepted`` (page id -> marker) against the export and the invariants."""
    memory.flush(user_id=user_id)
    pages = memory.export_memory(user_id=user_id)["pages"]
    ids = Counter(p["id"] for p in pages)
    markers = Counter(str(p["meta_data"].get("message_id")) for p in pages)
    by_id = {p["id"]: p for p in pages}
    result = Verification(user_id, len(accepted), len(pages))
    for page_id, marker in accepted.items():
        page = by_id.get(page_id)
        if page is None or marker not in page["user_input"] or page["meta_data"].get("message_id") != marker:
            result.lost.append(page_id)
        elif ids[page_id] > 1 or markers[marker] > 1:
            result.duplicated.append(page_id)
    result.problems = consistency_problems(memory, user_id)
    return result


def crash_memory(spec: StoreSpec, on_event: Callable[[str, dict[str, Any]], None] | None = None) -> MemoryOS:
    """A MemoryOS on the crash store, configured like the writers, consolidating inline."""
    return MemoryOS(
        store=spec.make(),
        embedder=HashingEmbedder(64),
        llm=RuleBasedLLM(),
        config=CRASH_CONFIG,
        background=False,
        on_event=on_event,
    )


# --- the crash soak ------------------------------------------------------------------------------
def run_kills(
    spec: StoreSpec,
    kills: int,
    *,
    seed: int = 7,
    delay_range_s: tuple[float, float] = (0.2, 3.0),
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``kills`` writer rounds on one store, each SIGKILLed at a random moment, then one check."""
    rng = random.Random(seed)
    accepted: dict[str, tuple[str, str]] = {}
    events: Counter[str] = Counter()
    consolidating = promoting = 0
    for index in range(kills):
        result = kill_round(ChildSpec(store=spec, round=index), rng.uniform(*delay_range_s))
        accepted.update(result.accepted)
        events.update(result.events)
        consolidating += bool(result.events["consolidated"] or result.events["promoted"])
        promoting += bool(result.events["promoted"])
        progress(
            f"kill {index + 1}/{kills} after {result.delay_s:.2f}s: {len(result.accepted)} pages accepted, "
            f"events {dict(result.events)}"
        )
    final_events: Counter[str] = Counter()
    memory = crash_memory(spec, on_event=lambda name, details: final_events.update([name]))
    try:
        checks = [
            verify_user(memory, user, {pid: m for pid, (u, m) in accepted.items() if u == user})
            for user in CRASH_USERS
        ]
    finally:
        memory.close()
    return {
        "kills": kills,
        "pages_accepted": len(accepted),
        "pages_stored": sum(c.stored for c in checks),
        "lost": sum(len(c.lost) for c in checks),
        "duplicated": sum(len(c.duplicated) for c in checks),
        "lost_ids": [p for c in checks for p in c.lost][:20],
        "problems": [f"{c.user_id}: {p}" for c in checks for p in c.problems][:50],
        "kills_with_consolidation_running": consolidating,
        "kills_with_promotion_running": promoting,
        "batches_resumed_from_journal": events["resumed"] + final_events["resumed"],
        "writer_events": dict(events),
        "writer": {
            k: v for k, v in asdict(ChildSpec(store=spec, round=0)).items() if k not in ("store", "round")
        },
    }


# --- isolation -----------------------------------------------------------------------------------
def user_token(index: int) -> str:
    """A word only user ``index`` ever says (``zx007q``), so a leak is visible in any text."""
    return f"zx{index:03d}q"


def fill_users(memory: MemoryOS, users: int, pages_per_user: int, rng: random.Random) -> list[str]:
    """Give each user pages about shared topics plus their own token; consolidate and promote."""
    names = [f"iso_user_{index:03d}" for index in range(users)]
    for index, user in enumerate(names):
        token = user_token(index)
        items = [
            {
                "user_input": f"{rng.choice(TOPICS)} with {token}, day {day}.",
                "agent_response": f"I will remember {token}.",
                "meta_data": {"message_id": f"{token}-{day}"},
            }
            for day in range(pages_per_user)
        ]
        memory.add_memories(items, user_id=user)
        memory.flush(user_id=user)
    return names


def owned_ids(memory: MemoryOS, user_id: str) -> set[str]:
    """Ids of every page, segment and knowledge item the store holds for ``user_id``."""
    kinds: tuple[Kind, ...] = ("pages", "segments", "knowledge")
    return {r.id for kind in kinds for r in memory.store.get(kind, where={"user_id": user_id})}


def context_leaks(context: Any, user_id: str, owned: set[str], token: str) -> list[str]:
    """Why a recalled context shows memory that is not ``user_id``'s (empty when it does not)."""
    leaks = [] if context.user_id == user_id else [f"context for {context.user_id}"]
    for unit in context.all_units:
        foreign = set(_TOKEN.findall(unit.text)) - {token}
        if unit.id not in owned or not set(unit.page_ids) <= owned or foreign:
            leaks.append(f"{unit.tier} unit {unit.id} ({sorted(foreign)})")
    foreign = set(_TOKEN.findall(context.profile)) - {token}
    if foreign:
        leaks.append(f"profile mentions {sorted(foreign)}")
    return leaks


def check_isolation(memory: MemoryOS, users: list[str], queries: int, rng: random.Random) -> dict[str, Any]:
    """``queries`` recalls by random users for another random user's words; counts leaks."""
    owned = {user: owned_ids(memory, user) for user in users}
    tokens = {user: user_token(index) for index, user in enumerate(users)}
    leaks, duplicates = 0, 0
    examples: list[Any] = []
    for _ in range(queries):
        user, other = rng.sample(users, 2)
        query = f"{tokens[other]} {rng.choice(TOPICS)} {tokens[other]}"
        context = memory.retrieve_memory(query, user_id=user, update_heat=rng.random() < 0.1)
        found = context_leaks(context, user, owned[user], tokens[user])
        leaks += len(found)
        examples += [f"{user} asked for {other}: {leak}" for leak in found][: max(0, 10 - len(examples))]
        ids = [unit.id for unit in context.all_units]
        duplicates += len(ids) - len(set(ids))
    return {
        "cross_user_queries": queries,
        "leaks": leaks,
        "duplicate_units": duplicates,
        "leak_examples": examples,
    }


def check_delete(memory: MemoryOS, users: list[str]) -> dict[str, Any]:
    """Delete the first user; count what is left of them and which other users' exports changed."""
    gone, others = users[0], users[1:]
    before = {user: memory.export_memory(user_id=user) for user in others}
    memory.delete_memory(everything=True, user_id=gone)
    left = sum(
        len(memory.store.get(kind, where={"user_id": gone}))
        for kind in ("pages", "segments", "knowledge", "state")
    )
    changed = [user for user in others if memory.export_memory(user_id=user) != before[user]]
    return {"deleted_user_records_left": left, "other_users_changed": len(changed)}


def deleted_user_bytes_left(*, pages: int = 30, in_hnsw_data: bool = False) -> int:
    """Write a user whose every page and reply carries a unique marker (beside another user),
    consolidate, recall, delete the user, close, then count the marker in the bytes of every file
    under the store folder: what a deleted user left on disk (0 when deletion is erasure).

    Hits inside Chroma's HNSW ``data_level0.bin`` files are counted apart (``in_hnsw_data=True``
    counts only those): Chroma can write stale process memory into a surviving collection's index
    file, a Chroma defect that erasure cannot reach (README, Guarantees)."""
    marker = f"erasure{uuid.uuid4().hex}"
    base = tempfile.mkdtemp(prefix="memoryos-erasure-")
    try:
        memory = MemoryOS(
            data_storage_path=base,
            user_id="erased",
            embedder=HashingEmbedder(64),
            llm=RuleBasedLLM(),
            config=CRASH_CONFIG,
        )
        try:
            for i in range(pages):
                memory.add_memory(f"I love {marker} hiking trail {i}", f"Noted: {marker} {i}")
                memory.add_memory(f"I drink green tea at {i}", "Nice.", user_id="neighbour")
            memory.flush()
            memory.retrieve_memory(f"{marker} hiking")
            memory.delete_memory(everything=True)
        finally:
            memory.close()
        needle = marker.encode()
        files = [path for path in Path(base).rglob("*") if path.is_file()]
        files = [path for path in files if (path.name == "data_level0.bin") == in_hnsw_data]
        return sum(path.read_bytes().count(needle) for path in files)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_isolation(
    spec: StoreSpec,
    *,
    users: int,
    queries: int,
    pages_per_user: int = 12,
    seed: int = 7,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fill ``users`` users, run ``queries`` cross-user recalls, then delete one user."""
    rng = random.Random(seed)
    memory = MemoryOS(
        store=spec.make(),
        embedder=HashingEmbedder(64),
        llm=RuleBasedLLM(),
        config=CRASH_CONFIG,
        background=False,
    )
    try:
        progress(f"filling {users} users with {pages_per_user} pages each")
        names = fill_users(memory, users, pages_per_user, rng)
        progress(f"{queries} cross-user queries")
        result = check_isolation(memory, names, queries, rng)
        return result | {"users": users} | check_delete(memory, names)
    finally:
        memory.close()


def run_reliability(
    *,
    kills: int = 100,
    users: int = 50,
    queries: int = 10_000,
    chroma_url: str | None = None,
    seed: int = 7,
    reopen_runs: int = 200,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole soak: the crash rounds, isolation and deletion, reopen runs; returns the figures."""
    started = time.perf_counter()
    folder = None if chroma_url else tempfile.mkdtemp(prefix="memoryos-reliability-")
    tag = uuid.uuid4().hex[:8]
    specs = {
        name: StoreSpec(
            path=str(Path(folder, name)) if folder else None, url=chroma_url, prefix=f"rel{tag}{name[0]}_"
        )
        for name in ("crash", "isolation")
    }
    try:
        crash = run_kills(specs["crash"], kills, seed=seed, progress=progress)
        crash_s = time.perf_counter() - started
        isolation = run_isolation(
            specs["isolation"], users=max(2, users), queries=queries, seed=seed, progress=progress
        )
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for spec in specs.values():
                drop_server_collections(str(spec.url), spec.prefix)
    mcp_auth = run_mcp_auth()  # the MCP HTTP server against calls without valid credentials
    wall_s = time.perf_counter() - started
    backend = "chroma-http" if chroma_url else "chroma-embedded"
    return {
        "backend": backend,
        **crash,
        **isolation,
        **mcp_auth,
        "deleted_user_bytes_left": None if chroma_url else deleted_user_bytes_left(),
        "deleted_user_bytes_in_hnsw_data": None if chroma_url else deleted_user_bytes_left(in_hnsw_data=True),
        **run_reopens(reopen_runs, progress=progress),
        "crash_wall_s": round(crash_s, 1),
        "isolation_wall_s": round(wall_s - crash_s, 1),
        "wall_s": round(wall_s, 1),
    }


def failed_figures(result: dict[str, Any]) -> list[str]:
    """The figures that should be zero and are not."""
    keys = ("lost", "duplicated", "problems", "leaks", "duplicate_units", "deleted_user_records_left")
    return [
        key
        for key in (
            *keys,
            "other_users_changed",
            "mcp_unauthenticated_answered",
            "deleted_user_bytes_left",
            "reopen_bad_exits",
        )
        if result.get(key)
    ]


def _or_na(value: object) -> object:
    return "n/a (server)" if value is None else value


def print_report(console: Any, result: dict[str, Any]) -> None:
    """The figures as one rich table."""
    from rich.table import Table

    table = Table(title=f"bench reliability: {result['backend']}")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("writers killed (SIGKILL)", result["kills"]),
        ("  ... while consolidation ran", result["kills_with_consolidation_running"]),
        ("  ... after promotions in that run", result["kills_with_promotion_running"]),
        ("  batches resumed from a journal", result["batches_resumed_from_journal"]),
        ("pages accepted (add returned)", result["pages_accepted"]),
        ("pages lost", result["lost"]),
        ("pages duplicated", result["duplicated"]),
        ("store invariants broken", len(result["problems"])),
        ("users", result["users"]),
        ("cross-user queries", result["cross_user_queries"]),
        ("leaks", result["leaks"]),
        ("duplicate units in one result", result["duplicate_units"]),
        ("records left of a deleted user", result["deleted_user_records_left"]),
        ("other users changed by the delete", result["other_users_changed"]),
        (
            "unauthenticated MCP calls answered",
            f"{result['mcp_unauthenticated_answered']} of {result['mcp_unauthenticated_calls']}",
        ),
        ("bytes of a deleted user left on disk (marker hits)", _or_na(result.get("deleted_user_bytes_left"))),
        (
            "... of them in HNSW data files (Chroma defect)",
            _or_na(result.get("deleted_user_bytes_in_hnsw_data")),
        ),
        (f"bad exits over {result['reopen_runs']} reopen runs", result["reopen_bad_exits"]),
        ("wall time (s)", f"{result['wall_s']:.1f}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    console.print(table)


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child_main(sys.argv[2])
