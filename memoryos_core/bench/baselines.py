"""Baselines of ``memoryos bench locomo``, over the same turns as the system: BM25 and dense cosine.

Each indexes one conversation's turns (``Turn.document``: session date prefixed, speaker, text)
and returns turn ids best first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from memoryos_core._exceptions import MissingDependencyError
from memoryos_core.bench.locomo_data import Turn
from memoryos_core.embeddings.base import Embedder, embed_queries

_TOKEN = re.compile(r"\w+", re.UNICODE)
# NLTK's English stop list (179 words; with \w+ tokens "don't" becomes "don" and "t", both listed).
# Kept here, not shared with the engine, so the baseline never moves when the engine changes.
STOP_WORDS = frozenset(
    """
    i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves
    he him his himself she she's her hers herself it it's its itself they them their theirs themselves
    what which who whom this that that'll these those am is are was were be been being have has had
    having do does did doing a an the and but if or because as until while of at by for with about
    against between into through during before after above below to from up down in out on off over
    under again further then once here there when where why how all any both each few more most other
    some such no nor not only own same so than too very s t can will just don don't should should've
    now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn
    hasn't haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn
    shouldn't wasn wasn't weren weren't won won't wouldn wouldn't
    """.split()
)


def bm25_tokens(text: str) -> list[str]:
    """Lower-cased word tokens without English stop words; no stemming."""
    return [token for token in _TOKEN.findall(text.lower()) if token not in STOP_WORDS]


class BM25Turns:
    """Okapi BM25 (``rank-bm25``'s ``BM25Okapi``, k1=1.5, b=0.75) over one conversation's turns.

    A standard BM25: on locomo10.json it gives R@5/10/25/50 within about a point of the plain
    BM25 figures docs/benchmark.md quotes (54.8 / 61.3 / 68.8 / 74.0).
    """

    name = "bm25"

    def __init__(self, turns: Sequence[Turn]) -> None:
        try:
            from rank_bm25 import BM25Okapi
        except ImportError as exc:  # pragma: no cover - installed with the bench dependencies
            raise MissingDependencyError("rank-bm25", extra="bench") from exc
        self.ids = [turn.dia_id for turn in turns]
        self._index = BM25Okapi([bm25_tokens(turn.document) or [""] for turn in turns])

    def search(self, query: str, k: int) -> list[str]:
        """The ``k`` best turn ids for ``query``."""
        scores = np.asarray(self._index.get_scores(bm25_tokens(query)), dtype=np.float64)
        return _top(self.ids, scores, k)


class DenseTurns:
    """Cosine top-k over one conversation's turns, embedded by the system's own embedder."""

    name = "dense"

    def __init__(self, turns: Sequence[Turn], embedder: Embedder, batch_size: int = 256) -> None:
        self.ids = [turn.dia_id for turn in turns]
        self._embedder = embedder
        documents = [turn.document for turn in turns]
        vectors = [
            vector
            for start in range(0, len(documents), batch_size)
            for vector in embedder.embed(documents[start : start + batch_size])
        ]
        self._matrix = _normalise(np.asarray(vectors, dtype=np.float32).reshape(len(documents), -1))

    def search(self, query: str, k: int) -> list[str]:
        """The ``k`` turn ids most similar to ``query`` (the query is embedded here, and timed with it)."""
        vector = _normalise(np.asarray(embed_queries(self._embedder, [query]), dtype=np.float32))[0]
        return _top(self.ids, self._matrix @ vector, k)


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def _top(ids: Sequence[str], scores: np.ndarray, k: int) -> list[str]:
    if len(ids) == 0:
        return []
    # A stable sort keeps conversation order among ties, so runs are reproducible.
    order = np.argsort(-scores, kind="stable")[:k]
    return [ids[i] for i in order]
