"""``memoryos bench scale``: add and retrieve latency, memory and disk as a store grows."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from memoryos_core._types import render_page
from memoryos_core.bench._cleanup import drop_server_collections
from memoryos_core.engine.registry import make_embedder
from memoryos_core.storage.chroma import ChromaStore

_WORDS = (
    "hiking mountain trail coffee morning work meeting project deadline python code bug family sister dinner "
    "pasta recipe garden tomato weekend movie music guitar concert travel lisbon train ticket doctor health "
    "running marathon book novel author cat dog walk park rain weather birthday gift friend party holiday"
).split()


TEXTS = ("synthetic", "locomo")
"""Where ``bench scale``'s pages and queries come from (``--text``)."""


def _sentence(rng: random.Random, words: int = 14) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


class Texts:
    """The benchmark's messages (a page holds two) and queries.

    ``synthetic``: sentences of 14 words, queries of 8, drawn from 46 words, so that every query word is
    in nearly half of the pages: the lexical side's worst case (its work is in the pages holding a query
    word). ``locomo``: real messages (``speaker: text``, as ``bench locomo`` stores them) and questions
    of the LoCoMo-format file ``data``, a page pairing two messages drawn at random (5,882 messages in
    LoCoMo's file: distinct pages, each text many times over at 100k).
    """

    def __init__(self, kind: str, rng: random.Random, data: Path | None = None) -> None:
        if kind not in TEXTS:
            raise ValueError(f"text must be one of {', '.join(TEXTS)}, not {kind!r}")
        if (kind == "locomo") != (data is not None):
            raise ValueError("a LoCoMo file is needed for text 'locomo', and only for it")
        self.kind, self.rng = kind, rng
        self._messages: list[str] = []
        self._questions: list[str] = []
        if data is not None:
            from memoryos_core.bench.locomo_data import load_locomo

            for conversation in load_locomo(data):
                self._messages += [
                    f"{turn.speaker}: {turn.text}" for _, turns in conversation.sessions for turn in turns
                ]
                self._questions += [q.question for q in conversation.questions]
            if not self._messages or not self._questions:
                raise ValueError(f"{data} holds no messages or no questions")

    def message(self) -> str:
        """One side of a page."""
        return self.rng.choice(self._messages) if self._messages else _sentence(self.rng)

    def query(self) -> str:
        return self.rng.choice(self._questions) if self._questions else _sentence(self.rng, 8)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _disk_mb(path: str | None) -> float:
    if not path:
        return 0.0
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()) / 1e6


def run_scale(
    *,
    users: int,
    pages: int,
    embedder: str,
    chroma_url: str | None,
    samples: int = 200,
    sizes: list[int] | None = None,
    seed: int = 7,
    durability: str = "fsync",
    text: str = "synthetic",
    data: Path | None = None,
    progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Fill ``users`` users to each size (bulk), then time ``samples`` single calls at each size, on
    ``text`` (:class:`Texts`; ``data``: the LoCoMo file for ``locomo``)."""
    from memoryos_core import MemoryConfig, MemoryOS

    rng = random.Random(seed)
    texts = Texts(text, rng, data)  # (checked before anything is created)
    checkpoints = sorted(s for s in (sizes or [1_000, 10_000, 100_000]) if s <= pages) or [pages]
    folder = None if chroma_url else tempfile.mkdtemp(prefix="memoryos-scale-")
    prefix = f"scale{uuid.uuid4().hex[:8]}_"
    store = ChromaStore(url=chroma_url, prefix=prefix) if chroma_url else ChromaStore(path=folder)
    model = make_embedder("hash:384" if embedder == "hash" else None)
    config = MemoryConfig(durability=durability)  # type: ignore[arg-type]  # MemoryConfig checks it
    memory = MemoryOS(store=store, embedder=model, background=True, config=config)
    try:
        points = _measure(
            memory, store, model, users, checkpoints, samples, texts, folder, progress, chroma_url
        )
    finally:
        memory.close()
        if folder:  # up to half a GB at 100k pages
            shutil.rmtree(folder, ignore_errors=True)
        else:
            drop_server_collections(str(chroma_url), prefix)
    return {
        "backend": "chroma-http" if chroma_url else "chroma-embedded",
        "embedder": model.name,
        "users": users,
        "samples": samples,
        "durability": durability,
        "text": text,
        "points": points,
    }


def _measure(
    memory: Any,
    store: ChromaStore,
    model: Any,
    users: int,
    checkpoints: list[int],
    samples: int,
    texts: Texts,
    folder: str | None,
    progress: Callable[[str], None],
    url: str | None = None,
) -> list[dict[str, Any]]:
    """Fill every user to each checkpoint, then time single calls; one point per checkpoint."""
    user_ids = [f"user{u}" for u in range(users)]
    points, filled = [], 0
    for size in checkpoints:
        progress(f"filling to {size} pages per user")
        for user in user_ids:
            _bulk_fill(memory, store, model, user, size - filled, texts)
        filled = size
        # The bulk fill went around the engine (like an older version or a bulk load), so the
        # lexical index is rebuilt from the store here, complete (and saved beside an embedded
        # store): a one-time cost, reported apart from the steady-state percentiles.
        for user in user_ids:
            memory._indexes.forget(user)
        started = time.perf_counter()
        for user in user_ids:
            memory.retrieve_memory(texts.query(), user_id=user)
        first_ms = (time.perf_counter() - started) * 1000 / users
        # A new process's first recall: loads the saved index (embedded store) or rebuilds it
        # from the store itself (a Chroma server).
        fresh = _first_recall_in_new_process(
            folder, url, store.prefix, model.name, user_ids[0], texts.query()
        )
        adds, retrieves, added = [], [], []
        for i in range(samples):  # back to back: the background worker consolidates meanwhile
            started = time.perf_counter()
            added.append(memory.add_memory(texts.message(), texts.message(), user_id=user_ids[i % users]))
            adds.append((time.perf_counter() - started) * 1000)
        # With write-behind an add only journals its page: the journal's thread embeds and stores the
        # pages in batches meanwhile. What it has not done when the last add returns is timed here.
        started = time.perf_counter()
        memory._runtime.settled()
        backlog_ms = (time.perf_counter() - started) * 1000
        # Recalls are timed once that work is done, as between an agent's turns (a recall that
        # overlaps a consolidation batch in the same process shares the CPU and the GIL with it).
        memory.flush()
        for i in range(samples):
            started = time.perf_counter()
            memory.retrieve_memory(texts.query(), user_id=user_ids[i % users])
            retrieves.append((time.perf_counter() - started) * 1000)
        deletes = _time_deletes(memory, added[:3])
        started = time.perf_counter()
        store.erase_deleted()  # the erasure part alone (a no-op for a server)
        erase_ms = (time.perf_counter() - started) * 1000
        filled += samples // users
        points.append(
            {
                "pages": size,
                "add_ms_p50": statistics.median(adds),
                "add_ms_p95": _percentile(adds, 0.95),
                "add_backlog_ms": backlog_ms,
                "retrieve_ms_p50": statistics.median(retrieves),
                "retrieve_ms_p95": _percentile(retrieves, 0.95),
                "first_retrieve_ms": first_ms,
                **fresh,
                "delete_page_ms_p50": statistics.median(deletes),
                "erase_ms": erase_ms,
                "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "disk_mb": _disk_mb(folder),
            }
        )
        progress(str(points[-1]))
    return points


_NEW_PROCESS = """
import json, sys, time
from memoryos_core import ChromaStore, MemoryOS
from memoryos_core.engine.registry import make_embedder
folder, url, prefix, embedder, user, query = sys.argv[1:7]
started = time.perf_counter(), time.process_time()
store = ChromaStore(path=folder) if folder else ChromaStore(url=url, prefix=prefix)
model = make_embedder("hash:" + embedder.split("-")[1] if embedder.startswith("hashing-") else None)
model.embed(["warm up"])  # the model's own start is not the index's
memory = MemoryOS(store=store, embedder=model, background=False)
memory.get_memory_stats(user)  # opens the store
opened = time.perf_counter(), time.process_time()
memory._retriever.index(user)  # the word index alone: loaded (embedded store) or rebuilt (server)
indexed = time.perf_counter(), time.process_time()
memory.retrieve_memory(query, user_id=user)  # the rest: mostly Chroma's first query (its index cold)
done = time.perf_counter(), time.process_time()
second = time.perf_counter()
memory.retrieve_memory(query + " again", user_id=user)
print(json.dumps({
    "new_process_open_ms": (opened[0] - started[0]) * 1000,
    "new_process_index_ms": (indexed[0] - opened[0]) * 1000,
    "new_process_index_cpu_ms": (indexed[1] - opened[1]) * 1000,
    "new_process_first_retrieve_ms": (done[0] - opened[0]) * 1000,
    "new_process_first_retrieve_cpu_ms": (done[1] - opened[1]) * 1000,
    "new_process_second_retrieve_ms": (time.perf_counter() - second) * 1000,
}))
memory.close()
"""


def _first_recall_in_new_process(
    folder: str | None, url: str | None, prefix: str, embedder: str, user: str, query: str
) -> dict[str, float]:
    """Open the same store in a new Python process and time its first and second recall of ``user``
    (wall and CPU milliseconds; the store's opening apart)."""
    done = subprocess.run(
        [sys.executable, "-c", _NEW_PROCESS, folder or "", url or "", prefix, embedder, user, query],
        capture_output=True,
        text=True,
        timeout=1800,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"the new process failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    figures: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def _time_deletes(memory: Any, added: list[Any]) -> list[float]:
    """Milliseconds of ``delete_memory(page_id)`` for each page: deletion is erasure, so this
    includes rewriting the store's files (``ChromaStore.erase_deleted``), which grows with the store."""
    times = []
    for result in added:
        started = time.perf_counter()
        memory.delete_memory(result.page_id, user_id=result.user_id)
        times.append((time.perf_counter() - started) * 1000)
    return times


def _bulk_fill(memory: Any, store: ChromaStore, model: Any, user: str, count: int, texts: Texts) -> None:
    """Write ``count`` already-consolidated pages straight to the store, 1,000 at a time.

    Bulk loading skips consolidation (the benchmark measures calls on a store of a given
    size, not how it got there); pages go to a few hundred segments as mid-term pages.
    """
    from memoryos_core._types import Page
    from memoryos_core.engine.records import page_record, segment_record
    from memoryos_core.policy.mid_term import SegmentState

    memory.get_memory_stats(user)  # opens the store
    segments = [f"seg_{user}_{i}" for i in range(200)]
    rng = texts.rng
    vectors = model.embed([f"topic {i} {_sentence(rng, 4)}" for i in range(len(segments))])
    store.upsert(
        "segments",
        [
            segment_record(user, SegmentState(sid, f"topic {i}", (), tuple(v), 0, 0, 0, 0.0, 0.0))
            for i, (sid, v) in enumerate(zip(segments, vectors))
        ],
    )
    base = time.time_ns() - 10**12
    for start in range(0, count, 1000):
        batch = []
        for i in range(start, min(count, start + 1000)):
            page = Page(
                id=f"bulk_{user}_{os.urandom(6).hex()}",
                user_id=user,
                assistant_id="default_assistant",
                user_input=texts.message(),
                agent_response=texts.message(),
                timestamp="2025-01-01 00:00:00",
                tier="mid_term",
                segment_id=rng.choice(segments),
                created_ns=base + i,
            )
            batch.append(page)
        rendered = [render_page(p.user_input, p.agent_response, p.timestamp) for p in batch]
        late = memory._runtime.late  # the late rerank's wordpieces, kept as the engine's writes keep them
        records = [page_record(p, v, ts_s=0.0, source_ids=()) for p, v in zip(batch, late.embed(rendered))]
        store.upsert("pages", records)
        late.add(user, records)
