"""The figures of ``memoryos bench reliability``: the crash soak (``run_kills``: what was lost or duplicated
after the killed writers, ``consistency_problems``) and the isolation half (``run_isolation``: cross-user
leaks, what a deleted user leaves behind).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from memoryos_core.bench.reliability_child import (
    CRASH_CONFIG,
    CRASH_USERS,
    TOPICS,
    ChildSpec,
    StoreSpec,
    kill_round,
)
from memoryos_core.embeddings.fake import HashingEmbedder
from memoryos_core.engine.memory import MemoryOS
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.storage._scrub import HNSW_HEAP_FILES
from memoryos_core.storage.base import Kind

_TOKEN = re.compile(r"\bzx\d{3}q\b")


@dataclass
class Verification:
    """One user's store after the crashes: what was lost or duplicated, and broken invariants."""

    user_id: str
    accepted: int
    stored: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


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

    Hits inside Chroma's HNSW files (``HNSW_HEAP_FILES``) are counted apart (``in_hnsw_data=True``
    counts only those): Chroma can write stale heap memory into a surviving collection's index
    files, which erasure cannot reach and heap scrubbing makes rare (storage/_scrub.py; README,
    Guarantees)."""
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
        files = [path for path in files if (path.name in HNSW_HEAP_FILES) == in_hnsw_data]
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
