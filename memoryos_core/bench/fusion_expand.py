"""Query expansion by word vectors, measured on the cached LoCoMo features (``bench fusion --expansion``).

A question word that no page holds ("mother" where the chat says "mom") is matched by the words of the
user's own vocabulary whose vectors (the embedder's, one word at a time) are nearest to it: each of
the ``per_word`` nearest with cosine at least ``threshold`` is added to the query's BM25 with weight
``weight * (cosine - threshold) / (1 - threshold)``, and counts for query-term coverage as holding
the word it stands for, at that share of it. Words that some page holds are not expanded (expanding
every word was measured too and lost at R@10; README "Tried, not kept").

Nothing here reads LoCoMo's phrasing; the weights are chosen per fold on the other conversations
(:func:`expansion_table`). The engine does not do this: the gain held out is small for what it
would cost (README).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from memoryos_core.bench.fusion import Evaluation, Variant, _deltas, _folds, cross_validate, spread
from memoryos_core.bench.fusion_data import ConversationFeatures
from memoryos_core.engine.lexical import K1, B
from memoryos_core.policy import term_context


@dataclass(frozen=True)
class Expansion:
    """How a question word no page holds is expanded (``weight`` 0: off)."""

    threshold: float = 0.4
    per_word: int = 3
    weight: float = 0.0


@dataclass(frozen=True)
class ExpandedVariant(Variant):
    """A ranking variant with query expansion."""

    expansion: Expansion = Expansion()


NEAREST = 10
"""Nearest vocabulary words kept per question word (the grid's ``per_word`` stays below it)."""


class WordSpace:
    """One conversation's vocabulary as BM25 rows, and each question word's nearest vocabulary words."""

    def __init__(self, f: ConversationFeatures) -> None:
        self.features = f
        pages = len(f.page_ptr) - 1
        terms = len(f.vocab)
        page_of = np.repeat(np.arange(pages), np.diff(f.page_ptr))
        self.lengths = np.bincount(page_of, f.page_count, minlength=pages).astype(np.float32)
        norm = K1 * (1 - B + B * self.lengths / max(float(self.lengths.mean()) if pages else 0.0, 1e-9))
        df = np.bincount(f.page_term, minlength=terms)
        idf = term_context.idf(df, pages)
        tf = f.page_count.astype(np.float64)
        self.bm25 = np.zeros((terms, pages), dtype=np.float64)  # each term's BM25 over the pages
        self.bm25[f.page_term, page_of] = idf[f.page_term] * tf * (K1 + 1) / (tf + norm[page_of])
        self.holds = self.bm25 > 0
        order = np.argsort(f.page_term, kind="stable")  # term-major, pages ascending within a term
        self.where, self.counts = page_of[order], f.page_count[order]
        self.starts = np.searchsorted(f.page_term[order], np.arange(terms + 1))
        self.idf = idf
        row = {word: i for i, word in enumerate(f.lexicon)}
        vectors = f.word_vectors.astype(np.float32)
        term_vectors = vectors[[row[w] for w in f.surface]] if terms else vectors[:0]
        term_id = {t: i for i, t in enumerate(f.vocab)}
        self.asked: list[np.ndarray] = []  # per question: each word's term id (-1: in no page)
        self.nearest: list[tuple[np.ndarray, np.ndarray]] = []  # per question: ids, cosines
        for words in f.query_words:
            ids = np.array([term_id.get(t, -1) for t, _ in words], dtype=np.int64)
            sims = vectors[[row[w] for _, w in words]] @ term_vectors.T if words else np.zeros((0, terms))
            sims[:, ids[ids >= 0]] = -1.0  # the question's own words are not their expansions
            top = np.argsort(-sims, axis=1, kind="stable")[:, :NEAREST]
            self.asked.append(ids)
            self.nearest.append((top, np.take_along_axis(sims, top, axis=1)))

    def lexical(self, q: int, expansion: Expansion, weights: term_context.Weights) -> np.ndarray:
        """Question ``q``'s lexical scores (``term_context.lexical``) with its missing words expanded."""
        f = self.features
        ids = self.asked[q]
        own = sorted({int(t) for t in ids if t >= 0})
        postings = [self._posting(t) for t in own]
        bm25 = f.lexical[q].astype(np.float64)
        top, sims = self.nearest[q]
        expanded: list[tuple[int, int, float]] = []  # (question word, term, share)
        if expansion.weight and len(ids):
            for j in np.flatnonzero(ids < 0):
                near = zip(top[j, : expansion.per_word].tolist(), sims[j, : expansion.per_word].tolist())
                for near_term, sim in near:
                    if sim >= expansion.threshold:
                        share = (sim - expansion.threshold) / (1 - expansion.threshold)
                        expanded.append((int(j), near_term, share))
        if not expanded:
            return term_context.lexical(
                bm25.astype(np.float32), postings, self.lengths, k1=K1, b=B, weights=weights
            )
        best: dict[int, float] = {}
        for _, term, share in expanded:
            best[term] = max(best.get(term, 0.0), share)
        bm25 = bm25 + expansion.weight * np.fromiter(best.values(), float) @ self.bm25[list(best)]
        if weights.coverage:  # coverage counted here, a missing word held at its expansion's share
            cover = np.zeros((len(ids), bm25.shape[0]))
            mass = np.zeros(len(ids))
            for word, asked in enumerate(ids.tolist()):
                if asked >= 0:
                    cover[word], mass[word] = self.holds[asked], self.idf[asked]
            for word, term, share in expanded:
                cover[word] = np.maximum(cover[word], share * self.holds[term])
                mass[word] = max(mass[word], float(self.idf[term]))
            bm25 = bm25 * (1 + weights.coverage * (mass @ cover) / mass.sum())
            weights = replace(weights, coverage=0.0)
        return term_context.lexical(
            bm25.astype(np.float32), postings, self.lengths, k1=K1, b=B, weights=weights
        )

    def _posting(self, term: int) -> term_context.Posting:
        start, end = self.starts[term], self.starts[term + 1]
        return self.where[start:end], self.counts[start:end]


class ExpandedEvaluation(Evaluation):
    """An :class:`Evaluation` whose lexical scores follow an :class:`ExpandedVariant`'s expansion."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.spaces = [WordSpace(f) for f in self.features]
        self._expanded: dict[tuple[int, Expansion, term_context.Weights], np.ndarray] = {}

    def lexical(self, position: int, variant: Variant) -> np.ndarray:
        expansion = variant.expansion if isinstance(variant, ExpandedVariant) else Expansion()
        if not expansion.weight or not variant.stem:
            return super().lexical(position, variant)
        key = (position, expansion, variant.terms)
        if key not in self._expanded:
            space = self.spaces[position]
            self._expanded[key] = np.stack(
                [space.lexical(q, expansion, variant.terms) for q in range(len(space.asked))]
            ).astype(np.float32)
        return self._expanded[key]


GRID: dict[str, tuple[float, ...]] = {
    "threshold": (0.3, 0.4, 0.5),
    "per_word": (2, 3, 5),
    "weight": (1.0, 2.0, 3.0, 4.0),
}
"""The expansion's settings tuned on the training conversations of each fold (36 variants, plus off)."""


def expansion_table(
    features: list[ConversationFeatures], ks: tuple[int, ...] = (5, 10, 25, 50)
) -> list[dict[str, Any]]:
    """At each k, held-out recall gained by the expansion over the shipped ranking (the settings best
    on the other conversations, "off" among them), and the settings each fold chose."""
    evaluation = ExpandedEvaluation(features, ks)
    base = ExpandedVariant()
    variants = [base] + [
        ExpandedVariant(expansion=Expansion(threshold, int(per_word), weight))
        for threshold, per_word, weight in itertools.product(*GRID.values())
    ]
    rows = []
    for k_index, k in enumerate(ks):
        without = _folds(evaluation, base, k_index)
        held, chosen = cross_validate(evaluation, variants, k_index)
        rows.append(
            {
                "k": k,
                "without": spread(without.tolist()),
                "tuned": _deltas(np.asarray(held) - without),
                "chosen": [
                    [v.expansion.threshold, v.expansion.per_word, v.expansion.weight]
                    for v in chosen
                    if isinstance(v, ExpandedVariant)
                ],
            }
        )
    return rows


def print_expansion(console: Console, rows: list[dict[str, Any]]) -> None:
    """The expansion's table: held-out gain per k, its spread, conversations better / worse."""
    table = Table(title="query expansion by word vectors: held-out gain over the shipped ranking")
    for column in ("R@k", "without", "tuned: mean", "sd", "better / worse"):
        table.add_column(column, justify="right")
    for row in rows:
        tuned = row["tuned"]
        table.add_row(
            str(row["k"]),
            f"{row['without']['mean']:.1f}",
            f"{tuned['mean']:+.1f}",
            f"{tuned['std']:.1f}",
            f"{tuned['better']} / {tuned['worse']}",
        )
    console.print(table)
