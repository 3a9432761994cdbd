"""``memoryos bench locomo``: turn-level recall of MemoryOS on LoCoMo against BM25 and dense baselines.

Protocol and output shape: ``docs/benchmark.md``. One memory per conversation (user_id =
sample_id), every turn ingested with its dia_id as provenance; each question is answered by
``retrieve_memory`` and the ranked units are expanded into turns and cut at k turns.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tqdm import tqdm

from memoryos_core._exceptions import ConfigError
from memoryos_core._types import ContextUnit, Cost
from memoryos_core.bench.answers import Answerer
from memoryos_core.bench.baselines import BM25Turns, DenseTurns
from memoryos_core.bench.locomo_data import (
    Conversation,
    Question,
    canonical_dia_id,
    load_locomo,
    session_pages,
)
from memoryos_core.bench.metrics import RecallTable, expand_turns, percentile, recall
from memoryos_core.bench.segment_figures import segment_figures
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine.registry import make_embedder
from memoryos_core.engine.repository import Repository
from memoryos_core.storage.chroma import ChromaStore

LLM_CHOICES = ("none", "fake", "openai")
EMBEDDER_CHOICES = ("local", "local-int8", "local-fp32", "hash")
# Redrawn every 0.1 s on a terminal; into a log file, a line every 10 s is enough.
_BAR: dict[str, Any] = {"mininterval": 0.1 if sys.stderr.isatty() else 10.0}


@dataclass(frozen=True)
class LocomoOptions:
    """What one run measures; the CLI's flags."""

    data: Path
    ks: tuple[int, ...] = (5, 10, 25, 50)
    limit_conversations: int | None = None
    llm: str = "none"
    embedder: str = "local"
    answer: bool = False
    answer_k: int = 10
    api_key: str | None = None
    base_url: str | None = None
    model: str = "gpt-4o-mini"
    details: Path | None = None
    show_progress: bool = True


@dataclass
class Diagnostics:
    """Figures for whoever improves retrieval; printed, not part of the JSON shape."""

    timings_s: dict[str, float] = field(default_factory=dict)
    returned_units: list[int] = field(default_factory=list)
    returned_turns: list[int] = field(default_factory=list)
    candidate_recall: list[float] = field(default_factory=list)
    tier_units: Counter[str] = field(default_factory=Counter)
    tier_evidence_at_10: Counter[str] = field(default_factory=Counter)
    query_phase_cost: Cost = field(default_factory=Cost)
    dropped_evidence_ids: int = 0
    pages: int = 0
    turns: int = 0
    consolidated_pages: int = 0
    promoted_pages: int = 0
    segments: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        def mean(values: Sequence[float]) -> float:
            return round(statistics.fmean(values), 2) if values else 0.0

        return {
            "timings_s": {name: round(value, 2) for name, value in self.timings_s.items()},
            "pages": self.pages,
            "turns": self.turns,
            "dropped_evidence_ids": self.dropped_evidence_ids,
            "units_per_query": mean(self.returned_units),
            "turns_per_query": mean(self.returned_turns),
            "recall_all_returned": round(100 * statistics.fmean(self.candidate_recall), 1)
            if self.candidate_recall
            else None,
            "units_by_tier": dict(self.tier_units.most_common()),
            "evidence_at_10_by_tier": dict(self.tier_evidence_at_10.most_common()),
            "query_phase_llm_calls": self.query_phase_cost.llm_calls,
        }


def make_llm_backend(kind: str, options: LocomoOptions) -> Any:
    """The consolidation LLM for ``--llm``: None, the counting RuleBasedLLM, or an OpenAI-compatible one."""
    if kind == "none":
        return None
    if kind == "fake":
        from memoryos_core.llm.rules import RuleBasedLLM

        return RuleBasedLLM()
    if kind == "openai":
        return openai_llm(options)
    raise ConfigError(f"--llm must be one of {', '.join(LLM_CHOICES)}, not {kind!r}")


def openai_llm(options: LocomoOptions) -> Any:
    """An OpenAILLM on the endpoint given by the flags (or OPENAI_API_KEY / OPENAI_BASE_URL)."""
    if not options.api_key:
        raise ConfigError("an OpenAI-compatible endpoint needs a key: --api-key or OPENAI_API_KEY")
    from memoryos_core.llm.openai import OpenAILLM

    return OpenAILLM(model=options.model, api_key=options.api_key, base_url=options.base_url)


def _embedder(kind: str) -> Embedder:
    if kind not in EMBEDDER_CHOICES:
        raise ConfigError(f"--embedder must be one of {', '.join(EMBEDDER_CHOICES)}, not {kind!r}")
    if kind.startswith("local-"):  # the default model at a chosen precision (LocalEmbedder's default: local)
        from memoryos_core.embeddings.local import LocalEmbedder

        return LocalEmbedder(precision=kind.removeprefix("local-"))
    return make_embedder(None if kind == "local" else "hash:384")


def _total_cost(memory: Any, users: Sequence[str]) -> Cost:
    total = Cost()
    for user in users:
        total = total + memory.get_memory_stats(user_id=user).cost
    return total


def promotion_coverage(diagnostics: Diagnostics) -> float | None:
    """Pages analysed by promotion per page consolidated, percent (None when nothing was consolidated)."""
    if not diagnostics.consolidated_pages:
        return None
    return round(100.0 * diagnostics.promoted_pages / diagnostics.consolidated_pages, 1)


def ingest(memory: Any, conversations: Sequence[Conversation], *, show_progress: bool) -> dict[str, float]:
    """Add every session's pages in bulk, then flush; returns the wall times of both phases."""
    batches = [(c.user_id, c.sample_id, session_pages(c)) for c in conversations]
    total = sum(len(pages) for _, _, sessions in batches for pages in sessions)
    started = time.perf_counter()
    with tqdm(total=total, unit="page", desc="ingest", disable=not show_progress, **_BAR) as bar:
        for user_id, sample_id, sessions in batches:
            bar.set_postfix_str(sample_id)
            for pages in sessions:
                memory.add_memories(pages, user_id=user_id)
                bar.update(len(pages))
    added = time.perf_counter()
    memory.flush()
    flushed = time.perf_counter()
    return {"add": added - started, "flush": flushed - added, "ingest": flushed - started}


@dataclass
class _Systems:
    memoryos: RecallTable
    bm25: RecallTable
    dense: RecallTable
    query_ms: dict[str, list[float]] = field(
        default_factory=lambda: {"memoryos": [], "bm25": [], "dense": []}
    )


def _timed(into: list[float], call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    started = time.perf_counter()
    result = call(*args, **kwargs)
    into.append((time.perf_counter() - started) * 1000.0)
    return result


def _score_system(
    units: Sequence[ContextUnit], question: Question, ks: Sequence[int], diagnostics: Diagnostics
) -> list[str]:
    """The system's expansion cut at the largest k; records what the engine returned."""
    ids = [tuple(canonical_dia_id(i) or i for i in unit.source_ids) for unit in units]
    ranked = expand_turns(ids, max(ks))
    everything = expand_turns(ids, 10**9)
    diagnostics.returned_units.append(len(units))
    diagnostics.returned_turns.append(len(everything))
    diagnostics.candidate_recall.append(recall(question.evidence, everything))
    diagnostics.tier_units.update(unit.tier for unit in units)
    seen: set[str] = set()
    for unit, unit_ids in zip(units, ids):  # which tier delivered each evidence turn in the first 10 turns
        for dia_id in unit_ids:
            if dia_id in seen or len(seen) >= 10:
                continue
            seen.add(dia_id)
            if dia_id in question.evidence:
                diagnostics.tier_evidence_at_10[unit.tier] += 1
    return ranked


@dataclass
class _Asker:
    """Asks one question to the system and both baselines, and scores the three."""

    memory: Any
    options: LocomoOptions
    systems: _Systems
    diagnostics: Diagnostics
    answerer: Answerer | None

    def ask(
        self, conversation: Conversation, question: Question, bm25: BM25Turns, dense: DenseTurns
    ) -> dict[str, Any]:
        top, ms, systems = max(self.options.ks), self.systems.query_ms, self.systems
        context = _timed(
            ms["memoryos"],
            self.memory.retrieve_memory,
            question.question,
            user_id=conversation.user_id,
            top_k=top,
        )
        # The short-term pages are ranked with the rest, as a turn budget counts every turn shown.
        units = context.all_units
        ranked = _score_system(units, question, self.options.ks, self.diagnostics)
        bm25_ids = _timed(ms["bm25"], bm25.search, question.question, top)
        dense_ids = _timed(ms["dense"], dense.search, question.question, top)
        for table, ids in ((systems.memoryos, ranked), (systems.bm25, bm25_ids), (systems.dense, dense_ids)):
            table.add(question.category, question.evidence, ids)
        record: dict[str, Any] = {
            "sample_id": question.sample_id,
            "qa_index": question.index,
            "category": question.category,
            "question": question.question,
            "evidence": list(question.evidence),
            "memoryos": ranked,
            "memoryos_units": [[u.tier, round(u.score, 4), list(u.source_ids)] for u in units],
            "bm25": bm25_ids,
            "dense": dense_ids,
        }
        if self.answerer is not None:
            record.update(self.answerer.answer(context, question, conversation))
        return record


def evaluate(
    asker: _Asker, conversations: Sequence[Conversation], embedder: Embedder, details: IO[str] | None
) -> None:
    """Ask every question of every conversation; baselines are built per conversation."""
    build = 0.0
    total = sum(len(c.questions) for c in conversations)
    with tqdm(
        total=total, unit="q", desc="questions", disable=not asker.options.show_progress, **_BAR
    ) as bar:
        for conversation in conversations:
            started = time.perf_counter()
            bm25 = BM25Turns(conversation.turns)
            dense = DenseTurns(conversation.turns, embedder)
            build += time.perf_counter() - started
            for question in conversation.questions:
                record = asker.ask(conversation, question, bm25, dense)
                if details is not None:
                    details.write(json.dumps(record, ensure_ascii=False) + "\n")
                bar.update(1)
    asker.diagnostics.timings_s["baseline_build"] = build


def run_locomo(options: LocomoOptions) -> tuple[dict[str, Any], Diagnostics]:
    """Run the whole benchmark; returns the docs/benchmark.md JSON and the diagnostics.

    Raises:
        ConfigError: a bad option or a missing key for ``--llm openai`` / ``--answer``.
        ValueError: the data file is not in LoCoMo format.
    """
    from memoryos_core import MemoryOS

    if not options.ks or any(k < 1 for k in options.ks):
        raise ConfigError("--k needs positive integers, e.g. 5,10,25,50")
    if max(options.ks) > 1000:
        raise ConfigError("--k values above 1000 exceed retrieve_memory's top_k limit")
    conversations = load_locomo(options.data, options.limit_conversations)
    embedder = _embedder(options.embedder)
    llm = make_llm_backend(options.llm, options)
    answerer = Answerer(openai_llm(options), options.answer_k) if options.answer else None
    diagnostics = Diagnostics(
        dropped_evidence_ids=sum(len(c.dropped_ids) for c in conversations),
        turns=sum(len(c.turns) for c in conversations),
    )
    started = time.perf_counter()
    embedder.embed(["warm-up"])  # loads the model, so ingest_s measures ingestion only
    diagnostics.timings_s["embedder_load"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory(prefix="memoryos-locomo-") as folder:
        # An explicit embedded store: never a server named by MEMORYOS_CHROMA_URL.
        store = ChromaStore(path=str(Path(folder) / "chroma"))
        memory = MemoryOS(store=store, embedder=embedder, llm=llm, background=True)
        try:
            systems, cost = _measure(memory, conversations, embedder, options, diagnostics, answerer)
            diagnostics.segments = segment_figures(store, [c.user_id for c in conversations])
        finally:
            memory.close()
    return _result(options, conversations, embedder, systems, cost, diagnostics, answerer), diagnostics


def _measure(
    memory: Any,
    conversations: Sequence[Conversation],
    embedder: Embedder,
    options: LocomoOptions,
    diagnostics: Diagnostics,
    answerer: Answerer | None,
) -> tuple[_Systems, Cost]:
    """Ingest, then ask every question; returns the scores and the ingestion's LLM cost."""
    users = [c.user_id for c in conversations]
    diagnostics.timings_s.update(ingest(memory, conversations, show_progress=options.show_progress))
    cost = _total_cost(memory, users)
    diagnostics.pages = sum(len(p) for c in conversations for p in session_pages(c))
    systems = _Systems(RecallTable(options.ks), RecallTable(options.ks), RecallTable(options.ks))
    asker = _Asker(memory, options, systems, diagnostics, answerer)
    started = time.perf_counter()
    details = options.details.open("w", encoding="utf-8") if options.details else None
    try:
        evaluate(asker, conversations, embedder, details)
    finally:
        if details is not None:
            details.close()
    diagnostics.timings_s["questions"] = time.perf_counter() - started
    memory.flush()  # retrieval visits may have made segments hot: count what that cost too
    after = _total_cost(memory, users)
    diagnostics.query_phase_cost = Cost(
        after.llm_calls - cost.llm_calls,
        after.prompt_tokens - cost.prompt_tokens,
        after.completion_tokens - cost.completion_tokens,
    )
    states = [Repository(memory.store).user_state(user).data for user in users]
    diagnostics.consolidated_pages = sum(int(s["consolidated_pages"]) for s in states)
    diagnostics.promoted_pages = sum(int(s["promoted_pages"]) for s in states)
    return systems, cost


def _result(
    options: LocomoOptions,
    conversations: Sequence[Conversation],
    embedder: Embedder,
    systems: _Systems,
    cost: Cost,
    diagnostics: Diagnostics,
    answerer: Answerer | None,
) -> dict[str, Any]:
    ms = systems.query_ms
    memoryos: dict[str, Any] = {
        **systems.memoryos.summary(),
        "ingest_s": round(diagnostics.timings_s["ingest"], 2),
        "query_ms_p50": round(statistics.median(ms["memoryos"]), 2) if ms["memoryos"] else 0.0,
        "query_ms_p95": round(percentile(ms["memoryos"], 0.95), 2),
        "llm_calls": cost.llm_calls,
        "llm_prompt_tokens": cost.prompt_tokens,
        "llm_completion_tokens": cost.completion_tokens,
        "llm_calls_per_100_pages": round(100.0 * cost.llm_calls / diagnostics.pages, 2)
        if diagnostics.pages
        else 0.0,
        # Pages analysed into long-term memory per page consolidated (after the final flush).
        "promotion_coverage": promotion_coverage(diagnostics) if options.llm != "none" else None,
    }
    if diagnostics.segments:
        memoryos["segments"] = diagnostics.segments
    if answerer is not None:
        memoryos["answer"] = answerer.summary()

    def baseline(table: RecallTable, name: str) -> dict[str, Any]:
        p50 = round(statistics.median(ms[name]), 2) if ms[name] else 0.0
        return {**table.summary(), "query_ms_p50": p50}

    return {
        "dataset": options.data.name,
        "conversations": len(conversations),
        "questions": sum(len(c.questions) for c in conversations),
        "skipped": sum(c.skipped for c in conversations),
        "k": list(options.ks),
        "llm": options.llm,
        "embedder": embedder.name
        + (f" ({precision})" if (precision := getattr(embedder, "precision", "")) else ""),
        "systems": {
            "memoryos": memoryos,
            "bm25": baseline(systems.bm25, "bm25"),
            "dense": baseline(systems.dense, "dense"),
        },
    }
