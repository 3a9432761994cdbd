"""``memoryos bench reliability``: SIGKILLed writers lose nothing; cross-user queries never leak.

The crash half runs a writer process per round (background consolidation with a slow LLM in
flight), SIGKILLs it after a random delay, and checks at the end that every page whose
``add_memory`` returned is stored exactly once and that the store is consistent. The isolation
half fills many users and checks that random queries only ever recall the asker's memory.

The writer process is ``bench/reliability_child.py``, the figures ``bench/reliability_figures.py``;
here are the whole run and its report.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memoryos_core.bench._cleanup import drop_server_collections
from memoryos_core.bench.mcp_auth import run_mcp_auth
from memoryos_core.bench.reliability_child import StoreSpec
from memoryos_core.bench.reliability_figures import deleted_user_bytes_left, run_isolation, run_kills
from memoryos_core.bench.reopen import run_reopens


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
