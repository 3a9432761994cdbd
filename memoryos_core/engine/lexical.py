"""An in-process BM25 index of each user's pages, kept in conversation order.

Chroma's sparse (BM25) index is not available in embedded mode, rank-bm25 rescans every page
in Python on each query, and bm25s cannot add a page without re-indexing: so pages are indexed
here, incrementally, from what the store holds. The index is derived data: it is rebuilt from
the store whenever in doubt (a new process, another writer, a delete).
"""

from __future__ import annotations

import math
import re
import threading
import time
from array import array
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from memoryos_core.policy.dates import places_in_time
from memoryos_core.policy.text import STOPWORDS
from memoryos_core.storage.base import Record

K1, B = 0.9, 0.4  # BM25 parameters: measured best on LoCoMo among the usual settings
REFRESH_S = 60.0
"""An index is checked against the store at most this often (pages written by other processes)."""
_TOKEN = re.compile(r"\w+", re.UNICODE)
_STEMMER: Any = None
_STEM_LOCK = threading.Lock()


@lru_cache(maxsize=200_000)
def _stem(word: str) -> str:
    global _STEMMER
    with _STEM_LOCK:  # snowballstemmer objects are not thread-safe
        if _STEMMER is None:
            # Imported on first use: snowballstemmer loads all of its ~30 languages (~0.1 s), and a
            # process that never ranks text (`memoryos stats`, a first add_memory) should not pay that.
            import snowballstemmer

            _STEMMER = snowballstemmer.stemmer("english")
        return str(_STEMMER.stemWord(word))


def tokens(text: str) -> list[str]:
    """Lower-cased, stemmed words and numbers, without stop words."""
    return [_stem(word) for word in _TOKEN.findall(text.lower()) if word not in STOPWORDS]


class PageIndex:
    """BM25 postings, times and order of one user's pages (position = conversation order)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.position: dict[str, int] = {}
        self.times = array("d")
        self.lengths = array("f")
        self.timed = array("b")  # the page's words place something in time
        self.postings: dict[str, tuple[array[int], array[float]]] = {}
        self.checked_at = time.monotonic()
        # Writers append while readers score: every access holds the lock, and reads copy out of
        # the arrays (a live numpy view of an array.array makes a concurrent append fail).
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def add(self, page_id: str, text: str, time_s: float) -> None:
        terms = Counter(tokens(text))
        timed = places_in_time(text)
        with self._lock:
            self._add(page_id, terms, time_s, timed)

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
            return count, self._bm25(query_terms, count), np.array(self.times, dtype=np.float64)

    def timed_pages(self, count: int) -> np.ndarray:
        """Whether each of the first ``count`` pages places something in time ("last week")."""
        with self._lock:
            return np.array(self.timed[:count], dtype=bool)

    def bm25(self, query_terms: Iterable[str]) -> np.ndarray:
        """BM25 score of every page for the query terms (zeros when none matches)."""
        return self.snapshot(query_terms)[1]

    def _bm25(self, query_terms: Iterable[str], count: int) -> np.ndarray:
        scores = np.zeros(count, dtype=np.float32)
        if not count:
            return scores
        lengths = np.array(self.lengths, dtype=np.float32)
        norm = K1 * (1 - B + B * lengths / max(float(lengths.mean()), 1e-9))
        for term in set(query_terms):
            posting = self.postings.get(term)
            if posting is None:
                continue
            where = np.array(posting[0], dtype=np.int64)
            freqs = np.array(posting[1], dtype=np.float32)
            idf = math.log(1 + (count - len(where) + 0.5) / (len(where) + 0.5))
            scores[where] += idf * freqs * (K1 + 1) / (freqs + norm[where])
        return scores


class PageIndexes:
    """One PageIndex per recently used user (least recently used dropped beyond ``max_users``)."""

    def __init__(self, max_users: int = 64) -> None:
        self.max_users = max_users
        self._indexes: OrderedDict[str, PageIndex] = OrderedDict()
        self._lock = threading.RLock()

    def get(self, user_id: str) -> PageIndex | None:
        with self._lock:
            index = self._indexes.get(user_id)
            if index is not None:
                self._indexes.move_to_end(user_id)
            return index

    def build(self, user_id: str, pages: Sequence[Record]) -> PageIndex:
        """A fresh index from the user's stored pages (any order; sorted by creation here)."""
        index = PageIndex()
        for record in sorted(pages, key=lambda r: int(r.metadata.get("created_ns", 0))):
            index.add(record.id, record.document, float(record.metadata.get("ts_s", 0.0)))
        with self._lock:
            self._indexes[user_id] = index
            self._indexes.move_to_end(user_id)
            while len(self._indexes) > self.max_users:
                self._indexes.popitem(last=False)
        return index

    def add(self, user_id: str, records: Sequence[Record]) -> None:
        """Pages just written by this process (ignored for users not indexed yet)."""
        with self._lock:
            index = self._indexes.get(user_id)
            if index is not None:
                for record in records:
                    index.add(record.id, record.document, float(record.metadata.get("ts_s", 0.0)))

    def forget(self, user_id: str) -> None:
        """Drop a user's index (after a delete, an update or an import): rebuilt when next needed."""
        with self._lock:
            self._indexes.pop(user_id, None)
