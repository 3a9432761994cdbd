"""Retrieval across tiers: every page scored on one scale (BM25 + dense, shared along the
conversation); the short-term pages apart, then the best older pages and user and assistant
knowledge in one ranked list of at most ``top_k``, and the profile."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TypeVar, cast

import numpy as np

from memoryos_core._config import MemoryConfig
from memoryos_core._exceptions import EmbeddingError, StorageError
from memoryos_core._types import ContextUnit, Tier
from memoryos_core.engine.late import LateIndex, Prefetched, Probe
from memoryos_core.engine.lexical import K1, REFRESH_S, B, PageIndex, tokens
from memoryos_core.engine.lexical_shared import PageIndexes
from memoryos_core.engine.records import knowledge_from_record, source_ids
from memoryos_core.engine.repository import Repository
from memoryos_core.policy import ranking, term_context
from memoryos_core.policy.dates import asks_when, query_window
from memoryos_core.policy.late import rerank_top
from memoryos_core.policy.long_term import render_profile
from memoryos_core.policy.sparse import Sparse, fuse_query
from memoryos_core.policy.text import cosine
from memoryos_core.storage.base import Record

T = TypeVar("T")


@dataclass(frozen=True)
class Recall:
    units: tuple[ContextUnit, ...]
    profile: str
    visited_segments: tuple[str, ...]
    short_term: tuple[ContextUnit, ...] = ()


def page_unit(
    record: Record, tier: Tier, score: float, parts: Mapping[str, float] | None = None
) -> ContextUnit:
    m = record.metadata
    return ContextUnit(
        id=record.id,
        tier=tier,
        text=record.document,
        score=score,
        timestamp=str(m.get("timestamp", "")),
        page_ids=(record.id,),
        source_ids=source_ids(record),
        meta_data={
            "user_input": m.get("user_input", ""),
            "agent_response": m.get("agent_response", ""),
            "chain_overview": m.get("chain_overview", ""),
            "segment_id": m.get("segment_id", ""),
            "created_ns": int(m.get("created_ns", 0)),
            "meta_data": json.loads(str(m.get("meta_json") or "{}")),
        },
        score_parts=dict(parts or {}),
    )


class Retriever:
    """Reads a user's memory for a query; never writes (visits are returned to the caller)."""

    def __init__(
        self,
        repository: Repository,
        config: MemoryConfig,
        indexes: PageIndexes,
        pending: Callable[[str], list[Record]] = lambda user_id: [],
        late: LateIndex | None = None,
    ) -> None:
        self.repository, self.store = repository, repository.store
        self.config, self.indexes = config, indexes
        self.pending = pending  # the user's new pages not yet written to the store
        self.late = late  # the pages' wordpiece vectors, for the late rerank
        self._pool: ThreadPoolExecutor | None = None  # Chroma's searches, beside the lexical scoring
        self._pool_lock = threading.Lock()

    def _submit(self, call: Callable[[], T]) -> Future[T]:
        with self._pool_lock:
            if self._pool is None:  # (again after close: a closed MemoryOS reopens when used)
                self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="memoryos-recall")
            return self._pool.submit(call)

    def close(self) -> None:
        """End the pool's threads (a recall running now finishes first)."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def index(self, user_id: str) -> PageIndex:
        """The user's page index: this process's, kept up to date with the shared file beside an
        embedded store (loaded from it in a new process), and built from the store when missing,
        or when the store holds pages it lacks (counted at first use and every ``REFRESH_S``)."""
        index = self.indexes.get(user_id)
        if index is not None and time.monotonic() - index.checked_at < REFRESH_S:
            return index
        if index is not None:
            stored = self.store.count("pages", where={"user_id": user_id})
            if self.indexes.file is not None:
                # The shared index also holds pages other processes have journaled but not yet
                # stored, and pages go out of it before they leave the store: fewer is stale.
                is_current = len(index) >= stored
            else:
                is_current = stored + len(self.pending(user_id)) == len(index)
            if is_current:
                index.checked_at = time.monotonic()
                return index
        return self.indexes.rebuild(user_id, lambda: self.store.get("pages", where={"user_id": user_id}))

    def recall(
        self,
        user_id: str,
        assistant_id: str,
        query: str,
        query_vector: Sequence[float] | Callable[[], Sequence[float]],
        top_k: int | None,
        probe: Probe | None = None,
    ) -> Recall:
        """Recall ``user_id``'s memory for ``query``.

        ``query_vector``: the query's vector, or a call that embeds the query: then it runs in a
        thread of the recall pool, followed there by Chroma's searches, while this thread scores
        the pages' words (the lexical side needs no vector). What the call raises is raised here.
        ``probe``: the query's wordpieces once ``query_vector`` ran (``probe.vector``), for the late
        rerank of the fused ranking's first ``retrieval.late_pages`` pages.
        """
        config = self.config.retrieval
        k = top_k or config.top_pages
        capacity = self.config.short_term.capacity
        embed = query_vector if callable(query_vector) else lambda: query_vector
        embedded = threading.Event()

        def search() -> tuple[Sequence[float], list[tuple[Record, float]], list[tuple[Record, float]]]:
            vector = embed()
            embedded.set()
            found = self.store.query(
                "pages",
                vector,
                where={"user_id": user_id},
                n_results=max(config.candidate_pages, k),
                ids_only=True,  # the few pages kept are fetched below
            )
            return vector, found, self._knowledge(user_id, vector)

        # The query's embedding (onnxruntime) and Chroma's searches run without the GIL: started first,
        # in a thread of the recall pool, they overlap the index's refresh and the lexical scoring here.
        searches = self._submit(search)
        index = self.index(user_id)
        records: dict[str, Record] = {}
        known: dict[int, float] = {}
        pending = self.pending(user_id)
        records.update((r.id, r) for r in pending)
        for record in pending:  # (normally indexed when added)
            if record.id not in index.position:
                index.add(record.id, record.document, float(record.metadata.get("ts_s", 0.0)))
        terms = tokens(query)
        count, lexical, times = self._lexical(index, terms)
        # The newest pages hold the short-term memory every recall returns: read here if the search is
        # not back yet (as the words are scored first, on a large store it may be), else with the pages
        # kept (one read instead of two). Read in this thread, not in a second one of the pool: on two
        # cores a third busy thread slowed the query's embedding and the scoring.
        newest_records: list[Record] = []
        if not searches.done():
            newest_ids = index.ids[max(0, count - capacity) : count]
            newest_records = self.store.get("pages", ids=newest_ids, where={"user_id": user_id})
        profile = render_profile(self.repository.profile(user_id))
        # While the query is still being embedded and searched, the late rerank's rows of the pages the
        # words rank first are read here (most of the fused ranking's first are among them), and compared
        # with the query's wordpieces once it is embedded.
        prefetched, depth = None, self.config.retrieval.late_pages
        if self.late is not None and probe is not None and depth and count and not searches.done():
            best = lexical.top(depth)
            prefetched = self.late.prefetch(user_id, [index.ids[p] for p in best], searches.done, probe)
        vector, found, knowledge = _wait(searches, embedded)
        for record in newest_records:  # (a page waiting in the journal is newer)
            records.setdefault(record.id, record)
        # A handful of pages waiting to be written: compared with the query here (with write-behind,
        # the pending pages not embedded yet were embedded by ``pending``: they rank as once stored).
        found += [(r, cosine(vector, r.embedding or [0.0] * len(vector))) for r in pending]
        unseen = list(dict.fromkeys(r.id for r, _ in found if r.id not in index.position))
        if unseen:  # pages another process wrote since the index was built: indexed, scored again
            records.update((r.id, r) for r in self.store.get("pages", ids=unseen, where={"user_id": user_id}))
            for page_id in unseen:
                if page_id in records:
                    record = records[page_id]
                    index.add(page_id, record.document, float(record.metadata.get("ts_s", 0.0)))
            count, lexical, times = self._lexical(index, terms)
        for record, similarity in found:
            position = index.position.get(record.id)
            if position is not None and position < count:  # (deleted, or added since the snapshot)
                known[position] = similarity
        if not count:
            return self._finish(assistant_id, knowledge, [], [], known, top_k, profile)
        asks = bool(ranking.DEFAULT.when) and asks_when(query)  # the "when" boost is off by default
        trace: dict[str, ranking.Part] = {}  # the parts of each score, read for the units kept only
        # (over a large store, in the work of the pages with a query word and the dense candidates)
        scores = fuse_query(
            lexical,
            known,
            times,
            query_window(query),
            session=index.sessions(count),
            session_sizes=index.session_sizes(count),
            timed=index.timed_pages(count) if asks else None,
            when=asks,
            trace=trace,
        )
        reranked = self._late_rerank(user_id, index, scores, trace, probe, prefetched)
        # The newest pages hold short-term memory (and pages waiting for consolidation).
        newest = list(range(max(0, count - capacity - self.config.short_term.batch_pages), count))
        if reranked is not None and len(reranked) >= k + capacity:  # (they are above all others)
            best = reranked[: k + capacity]
        else:
            best = ranking.top_positions(scores, k + capacity)

        def fetch(positions: list[int]) -> None:
            missing = [index.ids[p] for p in dict.fromkeys(positions) if index.ids[p] not in records]
            found = self.store.get("pages", ids=missing, where={"user_id": user_id})
            records.update((r.id, r) for r in found)

        # Only the pages used are read (Chroma's reads cost per record): the short-term pages are
        # the newest, so when the last ``capacity`` all are, older ones waiting for consolidation
        # are not read; of the best, the first ``k`` not short-term (more if one was deleted).
        fetch([*best[:k], *newest[-capacity:]])
        if not all(
            index.ids[p] in records and records[index.ids[p]].metadata.get("tier") == "short_term"
            for p in newest[-capacity:]
        ):
            fetch(newest)
        short = [
            p
            for p in newest
            if index.ids[p] in records and records[index.ids[p]].metadata.get("tier") == "short_term"
        ][-capacity:]
        recent = [
            page_unit(records[index.ids[p]], "short_term", float(scores[p]), ranking.score_parts(trace, p))
            for p in short
        ]
        short_set = set(short)
        rest = [p for p in best if p not in short_set]
        fetch(rest[:k])
        if sum(index.ids[p] in records for p in rest[:k]) < min(k, len(rest)):
            fetch(rest)
        chosen = [p for p in rest if index.ids[p] in records][:k]
        units = [
            page_unit(
                records[index.ids[p]],
                cast(Tier, records[index.ids[p]].metadata.get("tier", "mid_term")),
                float(scores[p]),
                ranking.score_parts(trace, p),
            )
            for p in chosen
        ]
        return self._finish(assistant_id, knowledge, recent, units, known, top_k, profile)

    def _late_rerank(
        self,
        user_id: str,
        index: PageIndex,
        scores: np.ndarray,
        trace: dict[str, ranking.Part],
        probe: Probe | None,
        prefetched: Prefetched | None = None,
    ) -> list[int] | None:
        """Add to the first ``late_pages`` pages of ``scores`` what their late scores give (in place), and
        keep them above the others (shifted down together, their order kept). ``prefetched``: rows
        already read, and compared with the query (``LateIndex.prefetch``). Returns the re-ranked
        positions, best first (None when nothing was re-ranked): the first of all pages, found without
        sorting every page again."""
        depth = self.config.retrieval.late_pages
        if self.late is None or probe is None or probe.rows is None or not depth:
            return None
        top = ranking.top_positions(scores, depth + 1)  # (the one after them: the others' best)
        top, others = top[:depth], top[depth:]
        gains = self.late.lift(user_id, [index.ids[p] for p in top], probe, prefetched)
        if gains is None:
            return None
        chosen = np.asarray(top, dtype=np.int64)
        shift = rerank_top(scores, chosen, gains, float(scores[others[0]]) if others else None)
        late = np.full(len(scores), -shift if shift else 0.0)  # (a page's parts add up to its score)
        late[chosen] = gains
        trace["late"] = late
        return [int(p) for p in chosen[np.argsort(-scores[chosen], kind="stable")]]

    @staticmethod
    def _lexical(index: PageIndex, terms: list[str]) -> tuple[int, Sparse, np.ndarray]:
        """(page count, lexical score of every page, page times), consistent with each other."""
        count, bm25, times = index.snapshot(terms)  # other threads may add pages meanwhile
        lexical = term_context.lexical_sparse(bm25, *index.matches(terms, count), k1=K1, b=B)
        return count, lexical, times

    def _knowledge(self, user_id: str, query_vector: Sequence[float]) -> list[tuple[Record, float]]:
        """The user's knowledge nearest the query (both kinds; ``_finish`` keeps the best of each)."""
        n_results = 2 * self.config.retrieval.top_knowledge
        return self.store.query("knowledge", query_vector, where={"user_id": user_id}, n_results=n_results)

    def _finish(
        self,
        assistant_id: str,
        found: list[tuple[Record, float]],
        recent: list[ContextUnit],
        units: list[ContextUnit],
        known: dict[int, float],
        top_k: int | None,
        profile: str,
    ) -> Recall:
        """Add knowledge (scored on the pages' dense scale) and the profile; rank pages and knowledge.

        A ``top_k`` given by the caller caps the ranked list (pages and knowledge together); by
        default it holds ``top_pages`` pages and up to ``top_knowledge`` items of each knowledge base.
        ``recent`` (the short-term pages, oldest first) stays apart and is never counted.
        """
        mean, std = ranking.dense_scale(known)
        per_kind = {"user": 0, "assistant": 0}
        for record, similarity in found:
            item = knowledge_from_record(record)
            if item.kind == "assistant" and record.metadata.get("assistant_id") != assistant_id:
                continue
            if per_kind.get(item.kind, 99) >= self.config.retrieval.top_knowledge:
                continue
            per_kind[item.kind] += 1
            dense = (similarity - mean) / std  # knowledge is scored by its dense z-score alone
            units.append(
                ContextUnit(
                    id=item.id,
                    tier="user_knowledge" if item.kind == "user" else "assistant_knowledge",
                    text=item.text,
                    score=dense,
                    timestamp=_iso(item.updated_s),
                    page_ids=item.page_ids,
                    source_ids=item.source_ids,
                    score_parts={"dense": dense},
                )
            )
        units.sort(key=lambda u: u.score, reverse=True)
        kept = units[:top_k]
        # Only the segments of the pages kept count as visited (heat's N_visit).
        visited = tuple(
            dict.fromkeys(
                str(unit.meta_data["segment_id"]) for unit in kept if unit.meta_data.get("segment_id")
            )
        )
        return Recall(tuple(kept), profile, visited, tuple(recent))


WAIT_S = 600.0
"""Longest a recall waits for a task of its pool (the query's embedding, a search): each
normally ends or raises long before (an OpenAI embedder's requests time out); past it the recall
raises instead of blocking forever."""


def _wait(future: Future[T], embedded: threading.Event | None = None) -> T:
    """``future``'s result, or what it raised; EmbeddingError / StorageError after ``WAIT_S``."""
    try:
        return future.result(timeout=WAIT_S)
    except FutureTimeout:
        if embedded is not None and not embedded.is_set():
            raise EmbeddingError(f"the query was not embedded within {WAIT_S:g} s") from None
        raise StorageError(f"the store did not answer a recall within {WAIT_S:g} s") from None


def _iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if epoch_s else ""
