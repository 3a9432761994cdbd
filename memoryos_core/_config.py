"""One typed, frozen configuration object for every tunable of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from memoryos_core._exceptions import ConfigError


@dataclass(frozen=True)
class ShortTermConfig:
    capacity: int = 7
    """Pages kept verbatim in short-term memory (the paper's 7)."""
    batch_pages: int = 16
    """Overflowing pages consolidated together in one batch (one LLM call per batch)."""
    offline_batch_pages: int = 128
    """Without an LLM: pages consolidated together in one batch. There is no prompt to keep short,
    and fewer, larger batches mean fewer store writes (LoCoMo ingest: 66 s at 16, 50 s at 128)."""
    max_wait_s: float = 30.0
    """A partial batch older than this is consolidated anyway (seconds)."""


@dataclass(frozen=True)
class MidTermConfig:
    capacity: int = 200
    """Active segments per user; the coldest is archived beyond this."""
    similarity_threshold: float = 0.6
    """theta: a topic joins a segment when cosine (to its pages nearest it) + keyword Jaccard reaches this."""
    continuity_threshold: float = 0.35
    """Offline continuity: cosine between consecutive pages at or above which they chain."""
    max_segment_pages: int = 20
    """A segment that grows beyond this is split in two by its own clustering (2-means), recursively."""
    heat_alpha: float = 1.0
    """Weight of N_visit (retrieval hits) in heat."""
    heat_beta: float = 1.0
    """Weight of L_interaction (pages added since the last analysis) in heat."""
    heat_gamma: float = 1.0
    """Weight of the recency term exp(-dt/mu) in heat."""
    recency_mu_s: float = 1e7
    """mu of the recency decay, in seconds (the paper's 1e7)."""
    heat_threshold: float = 5.0
    """tau: a segment whose heat reaches this is analysed into long-term memory."""
    summary_max_chars: int = 600
    """Upper bound of a segment summary kept after merges (characters)."""
    max_keywords: int = 12
    """Keywords kept per segment."""


@dataclass(frozen=True)
class LongTermConfig:
    knowledge_capacity: int = 100
    """Items per knowledge base (user knowledge, assistant knowledge) per user."""
    profile_capacity: int = 100
    """Profile traits kept per user."""
    duplicate_threshold: float = 0.9
    """Cosine at or above which a new knowledge item merges into an existing one."""


@dataclass(frozen=True)
class RetrievalConfig:
    top_segments: int = 5
    """m: segments searched for pages."""
    top_pages: int = 7
    """k: pages returned by default (``retrieval_queue_capacity`` in the reference)."""
    top_knowledge: int = 5
    """Items returned from each knowledge base."""
    candidate_pages: int = 50
    """Pages fetched from the vector index before fusion and re-ranking."""
    late_pages: int = 100
    """The fused ranking's first pages re-ranked by late interaction (their words' vectors matched to
    the query's, ``policy/late.py``), with an embedder that gives wordpiece vectors (``LocalEmbedder``)
    and an embedded store; 0 turns it off."""
    late_weight: float = 2.0
    """Weight of the late score's z (over the re-ranked pages) added to their fused scores."""


@dataclass(frozen=True)
class MemoryConfig:
    """Every tunable of MemoryOS; backends (LLM, embedder, store) are passed as objects."""

    short_term: ShortTermConfig = field(default_factory=ShortTermConfig)
    mid_term: MidTermConfig = field(default_factory=MidTermConfig)
    long_term: LongTermConfig = field(default_factory=LongTermConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    collection_prefix: str = "memoryos_"
    """Prefix of the Chroma collections, so several apps can share one Chroma."""
    max_text_chars: int = 200_000
    """Longest accepted user input or agent response (characters)."""
    max_meta_bytes: int = 64_000
    """Largest accepted ``meta_data`` once serialised to JSON (bytes)."""
    write_behind_s: float = 0.05
    """With an embedded store and background consolidation: how long a new page may wait,
    journaled on local disk, to be written to Chroma in one batch with others (0: each
    ``add_memory`` writes to Chroma itself)."""
    durability: Literal["fsync", "process"] = "fsync"
    """What a returned ``add_memory`` survives with write-behind on. ``"fsync"``: a power loss or
    OS crash too (each journal write is flushed to the disk, as Chroma's own SQLite commits are).
    ``"process"``: a killed or crashed process, not a power loss (the page may sit in the OS
    cache for up to ``write_behind_s`` plus Chroma's write); saves one disk flush per add."""

    def __post_init__(self) -> None:
        checks = [
            (self.short_term.capacity >= 1, "short_term.capacity must be >= 1"),
            (self.short_term.batch_pages >= 1, "short_term.batch_pages must be >= 1"),
            (self.short_term.offline_batch_pages >= 1, "short_term.offline_batch_pages must be >= 1"),
            (self.mid_term.capacity >= 1, "mid_term.capacity must be >= 1"),
            (self.mid_term.max_segment_pages >= 2, "mid_term.max_segment_pages must be >= 2"),
            (self.mid_term.recency_mu_s > 0, "mid_term.recency_mu_s must be > 0"),
            (self.long_term.knowledge_capacity >= 1, "long_term.knowledge_capacity must be >= 1"),
            (self.retrieval.top_pages >= 1, "retrieval.top_pages must be >= 1"),
            (self.retrieval.top_segments >= 1, "retrieval.top_segments must be >= 1"),
            (0 <= self.retrieval.late_pages <= 10_000, "retrieval.late_pages must be from 0 to 10000"),
            (0 <= self.retrieval.late_weight <= 100, "retrieval.late_weight must be from 0 to 100"),
            (0 <= self.write_behind_s <= 60, "write_behind_s must be from 0 to 60"),
            (self.durability in ("fsync", "process"), 'durability must be "fsync" or "process"'),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def with_reference_params(self, **params: Any) -> MemoryConfig:
        """Apply the reference implementation's flat parameter names (None means unset)."""
        mapping = {
            "short_term_capacity": ("short_term", "capacity"),
            "mid_term_capacity": ("mid_term", "capacity"),
            "mid_term_heat_threshold": ("mid_term", "heat_threshold"),
            "mid_term_similarity_threshold": ("mid_term", "similarity_threshold"),
            "long_term_knowledge_capacity": ("long_term", "knowledge_capacity"),
            "retrieval_queue_capacity": ("retrieval", "top_pages"),
        }
        config = self
        for key, value in params.items():
            if value is None:
                continue
            if key not in mapping:
                raise ConfigError(f"unknown parameter {key!r}")
            section, name = mapping[key]
            sub = replace(getattr(config, section), **{name: value})
            config = replace(config, **{section: sub})
        return config

    @classmethod
    def field_docs(cls) -> list[tuple[str, Any, str]]:
        """(dotted name, default, one-line doc) for every field; used for the README table."""
        import ast
        import inspect
        import itertools

        rows: list[tuple[str, Any, str]] = []
        for section in (ShortTermConfig, MidTermConfig, LongTermConfig, RetrievalConfig, cls):
            tree = ast.parse(inspect.getsource(section))
            definition = tree.body[0]
            assert isinstance(definition, ast.ClassDef)
            docs: dict[str, str] = {}
            for node, nxt in itertools.pairwise(definition.body):
                if (
                    isinstance(node, ast.AnnAssign)
                    and isinstance(node.target, ast.Name)
                    and isinstance(nxt, ast.Expr)
                    and isinstance(nxt.value, ast.Constant)
                    and isinstance(nxt.value.value, str)
                ):
                    docs[node.target.id] = nxt.value.value
            prefix = {
                ShortTermConfig: "short_term.",
                MidTermConfig: "mid_term.",
                LongTermConfig: "long_term.",
                RetrievalConfig: "retrieval.",
            }.get(section, "")
            for f in fields(section):
                if f.name in docs:
                    default = f.default if f.default is not f.default_factory else None
                    rows.append((prefix + f.name, default, docs[f.name]))
        return rows
