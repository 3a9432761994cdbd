"""An in-process BM25 index of each user's pages, kept in conversation order (``PageIndex``;
``lexical_shared.PageIndexes`` keeps one per user in step with the file shared by processes).

Chroma's sparse (BM25) index is not available in embedded mode, rank-bm25 rescans every page
in Python on each query, and bm25s cannot add a page without re-indexing: so pages are indexed
here, incrementally, from what the store holds. The index is derived data: it is rebuilt from
the store whenever in doubt (a new process, another writer, a delete).
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import cache, lru_cache
from typing import Any

import numpy as np

from memoryos_core.engine.lexical_store import Snapshot, State
from memoryos_core.policy import ranking
from memoryos_core.policy.dates import places_in_time
from memoryos_core.policy.sparse import sizes
from memoryos_core.policy.text import STOPWORDS

K1, B = 0.9, 0.4  # BM25 parameters: measured best on LoCoMo among the usual settings
REFRESH_S = 60.0
"""An index is checked against the store at most this often (pages written by other processes)."""
_TOKEN = re.compile(r"\w+", re.UNICODE)
_STEMMER: Any = None
_STEM_LOCK = threading.Lock()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    global _STEMMER
    with _STEM_LOCK:  # a stemmer object is not thread-safe
        if _STEMMER is None:
            # Imported on first use (~1 ms; the word index's file checks its stems with it when it opens).
            # PyStemmer: Snowball's C library (the pure-Python snowballstemmer package took ~0.12 s to
            # import its 30 languages, in every new process's first recall, and stems ~100x slower; the
            # same English stems on LoCoMo's 5,660 words).
            import Stemmer

            _STEMMER = Stemmer.Stemmer("english")
        return str(_STEMMER.stemWord(word))


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words and numbers, without stop words."""
    return [_stem(word) for word in _TOKEN.findall(text.lower()) if word not in STOPWORDS]


_PROBE = (
    "Evening news: the biologist adds eggs and organic pasta, generously; organs, skies, dying, lying, "
    "universal universes, happiness, running off past the arsenal in May 2023 with communism's news"
)
"""Words whose stems differ between stemmer versions (Snowball 3 changed English's ``-ogist``, ``evening``,
``add``, ``egg``, ``off``, ``past``, ``organ`` and ``universe`` rules), and a stop word or two."""


@cache
def tokenizer_id() -> str:
    """What this process's :func:`tokens` makes of text, as a short digest of its pattern, its stop words and
    a probe's tokens. The shared
    word index stores stems: a file written under another stemmer (another PyStemmer or Snowball
    version, other stop words) would silently stop matching the queries' words, so it is rebuilt."""
    rules = " ".join([_TOKEN.pattern, *sorted(STOPWORDS), "|", *tokens(_PROBE)])
    return hashlib.sha256(rules.encode()).hexdigest()[:16]


class PageIndex:
    """BM25 postings, times and order of one user's pages (position = conversation order).

    Postings are a compact base (CSR arrays, as loaded from the shared file) plus the pages added
    since, per term; a term's positions are the base's then the added ones, ascending.
    """

    def __init__(self, base: Snapshot | None = None, state: State | None = None) -> None:
        self.ids: list[str] = list(base.ids) if base else []
        self.position: dict[str, int] = dict(zip(self.ids, range(len(self.ids))))
        self.times = array("d", base.times.tobytes() if base else b"")
        self.lengths = array("f", base.lengths.tobytes() if base else b"")
        self.timed = array("b", base.timed.tobytes() if base else b"")  # words place it in time
        self.postings: dict[str, tuple[array[int], array[float]]] = {}
        self._base_terms = {term: row for row, term in enumerate(base.vocab)} if base else {}
        self._base = (base.ptr, base.pos, base.freq) if base else _EMPTY_CSR
        self.checked_at = time.monotonic()
        self.state = state  # the shared file's copy this index holds, up to which tail row
        self.base_count = len(self.ids)  # pages in the copy it was loaded from
        # Writers append while readers score: every access holds the lock, and reads copy out of
        # the arrays (a live numpy view of an array.array makes a concurrent append fail).
        self._lock = threading.Lock()
        self._arrays: dict[str, np.ndarray] = {}  # see _cached
        # the sessions' sizes (see session_sizes), with the ``_cached`` sessions they were counted from
        self._sizes: tuple[np.ndarray | None, np.ndarray] = (None, np.zeros(0, np.int64))
        # postings read for queries (see _posting), at most about as many entries as the base
        self._kept: dict[str, tuple[int, tuple[np.ndarray, np.ndarray]]] = {}
        self._kept_size = 0
        self._keep_budget = len(self._base[1]) + KEPT_ENTRIES
        # each kept posting's BM25 term scores at ``_terms_count`` pages (see _bm25), as many entries
        self._term_scores: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._terms_count = self._term_scores_size = 0

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, page_id: str, text: str, time_s: float) -> None:
        self.add_terms(page_id, tokens(text), time_s, places_in_time(text))

    def add_terms(self, page_id: str, terms: Sequence[str], time_s: float, timed: bool) -> None:
        counts = Counter(terms)
        with self._lock:
            self._add(page_id, counts, time_s, timed)

    def _add(self, page_id: str, counts: Counter[str], time_s: float, timed: bool) -> None:
        if page_id in self.position:
            return
        position = len(self.ids)
        self.ids.append(page_id)
        self.position[page_id] = position
        self.times.append(time_s)
        self.timed.append(timed)
        self.lengths.append(float(sum(counts.values())))
        for term, frequency in counts.items():
            where, freqs = self.postings.setdefault(term, (array("i"), array("f")))
            where.append(position)
            freqs.append(float(frequency))

    def snapshot(self, query_terms: Iterable[str]) -> tuple[int, np.ndarray, np.ndarray]:
        """(page count, BM25 score of every page, page times), consistent with each other."""
        with self._lock:
            count = len(self.ids)
            return count, self._bm25(query_terms, count), self._cached("times", count)

    def _cached(self, name: str, count: int) -> np.ndarray:
        """``times``, ``lengths``, BM25's length ``norm`` or the ``sessions`` of the first ``count`` pages
        as a read-only array, computed once per page count (pages are only ever appended; held under
        ``_lock``)."""
        cached = self._arrays.get(name)
        if cached is not None and len(cached) == count:
            return cached
        value: np.ndarray
        if name == "times":
            value = np.array(self.times[:count], dtype=np.float64)
        elif name == "lengths":
            value = np.array(self.lengths[:count], dtype=np.float32)
        elif name == "sessions":
            value = ranking.sessions(self._cached("times", count))
        else:
            lengths = self._cached("lengths", count)
            value = K1 * (1 - B + B * lengths / max(float(lengths.mean()), 1e-9))
        value.flags.writeable = False
        self._arrays[name] = value
        return value

    def matches(
        self, query_terms: Iterable[str], count: int
    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
        """Each distinct query term's pages and counts among the first ``count`` pages (terms no page
        holds left out), and those pages' lengths: what ``policy/term_context.py`` scores."""
        with self._lock:
            found = [p for p in (self._posting(term) for term in set(query_terms)) if p is not None]
            lengths = self._cached("lengths", count)
        # Positions ascend: only a posting that reaches past ``count`` (pages added since) is cut.
        return [_first(where, freqs, count) for where, freqs in found], lengths

    def sessions(self, count: int) -> np.ndarray:
        """The session number of each of the first ``count`` pages (``ranking.sessions`` of their times)."""
        with self._lock:
            return self._cached("sessions", count)

    def session_sizes(self, count: int) -> np.ndarray:
        """The number of pages of each session among the first ``count`` pages, in order."""
        with self._lock:
            sessions = self._cached("sessions", count)
            if self._sizes[0] is not sessions:  # (computed again when the page count changes)
                self._sizes = (sessions, sizes(sessions))
            return self._sizes[1]

    def timed_pages(self, count: int) -> np.ndarray:
        """Whether each of the first ``count`` pages places something in time ("last week")."""
        with self._lock:
            return np.array(self.timed[:count], dtype=bool)

    def bm25(self, query_terms: Iterable[str]) -> np.ndarray:
        """BM25 score of every page for the query terms (zeros when none matches)."""
        return self.snapshot(query_terms)[1]

    def _posting(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The term's positions (int64, as scoring indexes with them) and counts, read-only; kept
        for the next query (held under ``_lock``): a term's posting only grows by the pages added
        since, so one of the same length is the same (an update or delete makes a new index)."""
        added = self.postings.get(term)
        grown = len(added[0]) if added is not None else 0
        kept = self._kept.pop(term, None)
        if kept is not None:
            if kept[0] == grown:
                self._kept[term] = kept
                return kept[1]
            self._kept_size -= len(kept[1][0])
        posting = self._read_posting(term)
        if posting is not None:
            size = len(posting[0])
            if self._kept_size + size > self._keep_budget:
                self._kept.clear()
                self._kept_size = 0
            if size <= self._keep_budget:
                for part in posting:
                    part.flags.writeable = False
                self._kept[term] = (grown, posting)
                self._kept_size += size
        return posting

    def _read_posting(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        parts: list[tuple[np.ndarray, np.ndarray]] = []
        row = self._base_terms.get(term)
        if row is not None:
            ptr, pos, freq = self._base
            start, end = int(ptr[row]), int(ptr[row + 1])
            parts.append((pos[start:end].astype(np.int64), freq[start:end]))
        added = self.postings.get(term)
        if added is not None:
            parts.append((np.array(added[0], dtype=np.int64), np.array(added[1], dtype=np.float32)))
        if not parts:
            return None
        if len(parts) == 1:
            return parts[0]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _bm25(self, query_terms: Iterable[str], count: int) -> np.ndarray:
        scores = np.zeros(count, dtype=np.float32)
        if not count:
            return scores
        norm = self._cached("norm", count)
        if count != self._terms_count:  # idf and the length norm change with the page count
            self._term_scores.clear()
            self._terms_count, self._term_scores_size = count, 0
        for term in set(query_terms):
            posting = self._posting(term)
            if posting is None:
                continue
            where, freqs = posting
            kept = self._term_scores.get(term)
            if kept is not None and kept[0] is where:  # (the kept posting, unchanged)
                part = kept[1]
            else:
                idf = math.log(1 + (count - len(where) + 0.5) / (len(where) + 0.5))
                part = idf * freqs * (K1 + 1) / (freqs + norm[where])
                if self._term_scores_size + len(part) > self._keep_budget:
                    self._term_scores.clear()
                    self._term_scores_size = 0
                part.flags.writeable = False
                self._term_scores[term] = (where, part)
                self._term_scores_size += len(part)
            np.add.at(scores, where, part)  # faster than +=
        return scores

    def to_snapshot(self) -> Snapshot:
        """The whole index as arrays (for the shared file; ``lexical_store.edited`` changes one)."""
        with self._lock:
            vocab = list(dict.fromkeys([*self._base_terms, *self.postings]))
            columns = [p for p in (self._read_posting(term) for term in vocab) if p is not None]
            sizes = np.array([len(p[0]) for p in columns], dtype=np.int64)
            return Snapshot(
                ids=list(self.ids),
                vocab=vocab,
                ptr=np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64),
                pos=(np.concatenate([p[0] for p in columns]) if columns else np.zeros(0)).astype(np.int32),
                freq=(np.concatenate([p[1] for p in columns]) if columns else np.zeros(0)).astype(np.float32),
                lengths=np.array(self.lengths, dtype=np.float32),
                times=np.array(self.times, dtype=np.float64),
                timed=np.array(self.timed, dtype=np.int8),
            )


_EMPTY_CSR = (np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))


KEPT_ENTRIES = 1 << 16
"""Posting entries an index keeps for the next queries beyond as many as its base holds (``_posting``)."""
COMPACT_ROWS = 4096
"""Pages added to a loaded copy above which a process writes a new copy."""


def _first(where: np.ndarray, freqs: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """A posting's entries among the first ``count`` pages (``where`` ascending)."""
    if not len(where) or where[-1] < count:
        return where, freqs
    end = int(np.searchsorted(where, count))
    return where[:end], freqs[:end]
