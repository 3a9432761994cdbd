"""Features for ``memoryos bench fusion``: LoCoMo ingested once, every question's per-page signals cached.

For each conversation: the pages in index order (their turn ids, times, "places in time" flags,
segment), and for each question the BM25 score of every page (stemmed and not), the cosine of every
page and of every segment to the question, and the segments' own BM25 (summary + keywords). A ranking
variant is then a numpy function of these arrays, evaluated in seconds (``bench/fusion.py``).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core.bench.locomo_data import Conversation, canonical_dia_id, load_locomo
from memoryos_core.embeddings.base import Embedder
from memoryos_core.engine import lexical
from memoryos_core.engine.lexical import PageIndex
from memoryos_core.engine.repository import Repository
from memoryos_core.policy.dates import asks_when, query_window
from memoryos_core.policy.text import STOPWORDS
from memoryos_core.storage.base import Record
from memoryos_core.storage.chroma import ChromaStore

FORMAT = 3
"""Version of the cache file's layout: a file of another version is rebuilt (2: term counts, vectors;
3: the words, their surface forms and their vectors)."""


@dataclass
class ConversationFeatures:
    """One conversation's pages and questions as arrays (P pages, Q questions, S segments)."""

    sample_id: str
    page_turns: list[list[str]]  # P: the turn ids of each page
    times: np.ndarray  # P float64
    timed: np.ndarray  # P bool
    segment: np.ndarray  # P int64: the page's segment (row of the segment arrays), -1 for none
    categories: np.ndarray  # Q int64
    evidence: list[list[str]]  # Q
    when: np.ndarray  # Q bool
    window: np.ndarray  # Q x 2 float64 (nan when the question names no period)
    lexical: np.ndarray  # Q x P float32: BM25 over stemmed tokens (the engine's)
    lexical_raw: np.ndarray  # Q x P float32: BM25 without stemming
    dense: np.ndarray  # Q x P float32: cosine of page and question
    segment_lexical: np.ndarray  # Q x S float32: BM25 of the segment's summary + keywords
    segment_dense: np.ndarray  # Q x S float32: cosine of the segment vector and question
    # Stemmed term counts (the engine's tokens) over the conversation's vocabulary, for variants that
    # rescore words (feedback, coverage): CSR rows of pages and of questions (terms in no page dropped).
    page_ptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # P + 1
    page_term: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    page_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    query_ptr: np.ndarray = field(default_factory=lambda: np.zeros(1, np.int64))  # Q + 1
    query_term: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    query_count: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    page_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # P x dim, unit
    query_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # Q x dim, unit
    # Words, for variants that expand the query by meaning: ``vocab`` holds the stemmed terms (the ids of
    # page_term), ``surface`` each term's most frequent word in the pages, ``query_words`` each
    # question's stemmed terms (those in no page too) with their surface words; ``word_vectors`` the
    # embedder's unit vector of each word in ``lexicon`` (every surface word of pages and questions).
    vocab: list[str] = field(default_factory=list)  # V
    surface: list[str] = field(default_factory=list)  # V
    query_words: list[list[list[str]]] = field(default_factory=list)  # Q x [term, word]
    lexicon: list[str] = field(default_factory=list)  # L
    word_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))  # L x dim, unit

    _ARRAYS = (
        "times",
        "timed",
        "segment",
        "categories",
        "when",
        "window",
        "lexical",
        "lexical_raw",
        "dense",
        "segment_lexical",
        "segment_dense",
        "page_ptr",
        "page_term",
        "page_count",
        "query_ptr",
        "query_term",
        "query_count",
        "page_vectors",
        "query_vectors",
        "word_vectors",
    )
    _STRINGS = ("vocab", "surface", "query_words", "lexicon")

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {f"{prefix}{name}": getattr(self, name) for name in self._ARRAYS}


def _unit(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _no_stem(text: str) -> list[str]:
    return [word for word in lexical._TOKEN.findall(text.lower()) if word not in STOPWORDS]


@contextmanager
def _unstemmed() -> Iterator[None]:
    """The engine's tokenizer without stemming, for the ablation."""
    saved = lexical.tokens
    lexical.tokens = _no_stem  # PageIndex.add looks the name up at call time
    try:
        yield
    finally:
        lexical.tokens = saved


def _scores(index: PageIndex, queries: Sequence[str]) -> np.ndarray:
    """Q x D BM25 scores of ``index``'s pages (in its order)."""
    if not len(index):
        return np.zeros((len(queries), 0), dtype=np.float32)
    return np.stack([index.bm25(lexical.tokens(q)) for q in queries]).astype(np.float32)


def _bm25_rows(documents: Sequence[str], queries: Sequence[str], stem: bool = True) -> np.ndarray:
    """Q x D BM25 scores of the engine's PageIndex (documents in order)."""

    def build() -> np.ndarray:
        index = PageIndex()
        for position, text in enumerate(documents):
            index.add(str(position), text, float(position))
        return _scores(index, queries)

    if stem:
        return build()
    with _unstemmed():
        return build()


def term_counts(rows: Sequence[Sequence[str]], vocab: dict[str, int], grow: bool) -> tuple[np.ndarray, ...]:
    """CSR (ptr, term, count) of token lists; new terms join ``vocab`` when ``grow``, else are dropped."""
    ptr, term, count = [0], list[int](), list[int]()
    for words in rows:
        counts: dict[int, int] = {}
        for word in words:
            if grow:
                vocab.setdefault(word, len(vocab))
            if word in vocab:
                counts[vocab[word]] = counts.get(vocab[word], 0) + 1
        term += counts.keys()
        count += counts.values()
        ptr.append(len(term))
    return (
        np.array(ptr, dtype=np.int64),
        np.array(term, dtype=np.int32),
        np.array(count, dtype=np.float32),
    )


def conversation_features(
    conversation: Conversation, pages: Sequence[Record], segments: Sequence[Any], embedder: Embedder
) -> ConversationFeatures:
    """The arrays of one conversation from its stored pages and segments (in the engine's page order)."""
    pages = sorted(pages, key=lambda r: int(r.metadata.get("created_ns", 0)))
    documents = [r.document for r in pages]
    questions = [q.question for q in conversation.questions]
    index = PageIndex()
    for record in pages:
        index.add(record.id, record.document, float(record.metadata.get("ts_s", 0.0)))
    row = {s.id: position for position, s in enumerate(segments)}
    query_vectors = _unit(np.asarray(embedder.embed(questions), dtype=np.float32).reshape(len(questions), -1))
    page_vectors = _unit(np.asarray([r.embedding for r in pages], dtype=np.float32))
    dim = query_vectors.shape[1]
    segment_vectors = _unit(np.asarray([s.embedding for s in segments], dtype=np.float32).reshape(-1, dim))
    windows = [query_window(q) for q in questions]
    vocab: dict[str, int] = {}
    page_ptr, page_term, page_count = term_counts([lexical.tokens(d) for d in documents], vocab, grow=True)
    query_ptr, query_term, query_count = term_counts(
        [lexical.tokens(q) for q in questions], vocab, grow=False
    )
    return ConversationFeatures(
        sample_id=conversation.sample_id,
        page_turns=[_turns(r) for r in pages],
        times=np.array(index.times, dtype=np.float64),
        timed=index.timed_pages(len(index)),
        segment=np.array([row.get(str(r.metadata.get("segment_id", "")), -1) for r in pages], dtype=np.int64),
        categories=np.array([q.category for q in conversation.questions], dtype=np.int64),
        evidence=[list(q.evidence) for q in conversation.questions],
        when=np.array([asks_when(q) for q in questions], dtype=bool),
        window=np.array([w if w else (np.nan, np.nan) for w in windows], dtype=np.float64).reshape(-1, 2),
        lexical=_scores(index, questions),  # the pages' own index, built above
        lexical_raw=_bm25_rows(documents, questions, stem=False),
        dense=(query_vectors @ page_vectors.T).astype(np.float32),
        segment_lexical=_bm25_rows([f"{s.summary} {' '.join(s.keywords)}" for s in segments], questions),
        segment_dense=(query_vectors @ segment_vectors.T).astype(np.float32),
        page_ptr=page_ptr,
        page_term=page_term,
        page_count=page_count,
        query_ptr=query_ptr,
        query_term=query_term,
        query_count=query_count,
        page_vectors=page_vectors,
        query_vectors=query_vectors,
        **word_features(documents, questions, vocab, embedder),
    )


def _words(text: str) -> list[tuple[str, str]]:
    """(stemmed term, surface word) of each token of ``text``, as :func:`lexical.tokens` reads it."""
    return [
        (lexical._stem(word), word) for word in lexical._TOKEN.findall(text.lower()) if word not in STOPWORDS
    ]


def word_features(
    documents: Sequence[str], questions: Sequence[str], vocab: dict[str, int], embedder: Embedder
) -> dict[str, Any]:
    """The words of a conversation: each term's most frequent surface word, each question's (term,
    word) pairs, and the embedder's vector of every surface word (one batch)."""
    seen: dict[str, dict[str, int]] = {}
    for text in documents:
        for term, word in _words(text):
            forms = seen.setdefault(term, {})
            forms[word] = forms.get(word, 0) + 1
    by_id = sorted(vocab, key=vocab.__getitem__)
    surface = [max(seen.get(t, {t: 1}).items(), key=lambda item: (item[1], item[0]))[0] for t in by_id]
    query_words = [[[t, w] for t, w in dict(_words(q)).items()] for q in questions]
    lexicon = sorted(set(surface) | {w for row in query_words for _, w in row})
    vectors = np.asarray(embedder.embed(lexicon), dtype=np.float32).reshape(len(lexicon), -1)
    return {
        "vocab": by_id,
        "surface": surface,
        "query_words": query_words,
        "lexicon": lexicon,
        "word_vectors": _unit(vectors).astype(np.float16),
    }


def _turns(record: Record) -> list[str]:
    meta = json.loads(str(record.metadata.get("meta_json") or "{}"))
    return [canonical_dia_id(str(i)) or str(i) for i in meta.get("dia_ids", [])]


def build_features(
    data: Path,
    embedder: Embedder,
    limit: int | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> list[ConversationFeatures]:
    """Ingest the file as ``bench locomo`` does (offline, background consolidation) and read the arrays."""
    from memoryos_core import MemoryOS
    from memoryos_core.bench.locomo import ingest

    conversations = load_locomo(data, limit)
    with tempfile.TemporaryDirectory(prefix="memoryos-fusion-") as folder:
        store = ChromaStore(path=str(Path(folder) / "chroma"))
        memory = MemoryOS(store=store, embedder=embedder, llm=None, background=True)
        try:
            timings = ingest(memory, conversations, show_progress=False)
            progress(f"ingested {len(conversations)} conversations in {timings['ingest']:.1f} s")
            repository = Repository(memory.store)
            stored = [
                (
                    memory.store.get("pages", where={"user_id": c.user_id}, with_embeddings=True),
                    repository.active_segments(c.user_id),
                )
                for c in conversations
            ]
        finally:
            memory.close()
    # After close: no worker thread runs while the unstemmed BM25 swaps the engine's tokenizer.
    features = []
    for conversation, (pages, segments) in zip(conversations, stored):
        features.append(conversation_features(conversation, pages, segments, embedder))
        progress(f"{conversation.sample_id}: {len(pages)} pages, {len(segments)} segments")
    return features


def save_features(path: Path, features: Sequence[ConversationFeatures], key: str) -> None:
    """Write the arrays (npz) and the strings (JSON inside it); no pickles."""
    arrays: dict[str, Any] = {}
    strings = {
        "format": FORMAT,
        "key": key,
        "conversations": [
            {
                "sample_id": f.sample_id,
                "page_turns": f.page_turns,
                "evidence": f.evidence,
                **{name: getattr(f, name) for name in ConversationFeatures._STRINGS},
            }
            for f in features
        ],
    }
    for position, f in enumerate(features):
        arrays.update(f.arrays(f"c{position}_"))
    arrays["strings"] = np.array(json.dumps(strings))
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as tmp:
        np.savez_compressed(tmp, **arrays)
    Path(tmp.name).replace(path)


def load_features(path: Path, key: str) -> list[ConversationFeatures] | None:
    """The cached arrays, or None when the file is missing or was built from other data or code."""
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        strings = json.loads(str(data["strings"]))
        if strings.get("format") != FORMAT or strings.get("key") != key:
            return None
        features = []
        for position, meta in enumerate(strings["conversations"]):
            values = {name: data[f"c{position}_{name}"] for name in ConversationFeatures._ARRAYS}
            features.append(
                ConversationFeatures(
                    sample_id=meta["sample_id"],
                    page_turns=meta["page_turns"],
                    evidence=meta["evidence"],
                    **{name: meta[name] for name in ConversationFeatures._STRINGS},
                    **values,
                )
            )
    return features


def cache_key(data: Path, embedder: Embedder, limit: int | None) -> str:
    """What the cached arrays were built from: the data file's content, the embedder's vector space (its
    model and precision: int8 and fp32 vectors of one model differ), the limit."""
    import hashlib

    from memoryos_core.embeddings.base import vector_space

    digest = hashlib.sha256(data.read_bytes()).hexdigest()[:16]
    return f"{digest}:{vector_space(embedder)}:{embedder.dim}:{limit}"


def features_for(
    data: Path,
    embedder: Embedder,
    limit: int | None = None,
    cache: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> list[ConversationFeatures]:
    """The features of ``data``: read from ``cache`` when it was built from the same inputs, else
    built (one offline ingestion) and written there."""
    key = cache_key(data, embedder, limit)
    if cache is not None:
        cached = load_features(cache, key)
        if cached is not None:
            progress(f"features read from {cache}")
            return cached
    features = build_features(data, embedder, limit, progress)
    if cache is not None:
        save_features(cache, features, key)
        progress(f"features written to {cache}")
    return features
