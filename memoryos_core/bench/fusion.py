"""``memoryos bench fusion``: ranking variants on cached LoCoMo features, cross-validated by conversation.

The features (``bench/fusion_data.py``) hold every question's per-page signals; a variant is
:func:`memoryos_core.policy.ranking.fuse` with other weights (the engine's own code, run on all the
questions of a conversation at once), so hundreds of variants are scored in seconds. Recall is
scored as ``bench locomo`` scores it (pages expanded into their turns, cut at k turns), on the
ranked pages alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from memoryos_core.bench.fusion_data import ConversationFeatures
from memoryos_core.engine.lexical import K1, B
from memoryos_core.policy import ranking, term_context

CANDIDATES = 50
"""Dense candidates the engine fetches (``RetrievalConfig.candidate_pages``)."""


def candidate_dense_z(sims: np.ndarray, candidates: int = CANDIDATES) -> np.ndarray:
    """Row-wise :func:`ranking.dense_z` from the ``candidates`` most similar pages of each row."""
    count = sims.shape[-1]
    keep = min(candidates, count)
    top = np.argpartition(-sims, keep - 1, axis=-1)[:, :keep]
    known = np.take_along_axis(sims, top, axis=-1)
    mean = known.mean(axis=-1, keepdims=True)
    std = known.std(axis=-1, keepdims=True)
    std = np.where(std > 0, std, 1.0)
    scores = np.repeat(known.min(axis=-1, keepdims=True), count, axis=-1)
    np.put_along_axis(scores, top, known, axis=-1)
    z: np.ndarray = ((scores - mean) / std).astype(np.float32)
    return z


@dataclass(frozen=True)
class Variant:
    """One ranking to evaluate: the fusion weights and the switches outside them."""

    weights: ranking.Weights = ranking.DEFAULT
    stem: bool = True
    terms: term_context.Weights = term_context.DEFAULT
    """Query-term coverage and neighbour text (their postings stay stemmed when ``stem`` is off)."""


def postings(f: ConversationFeatures) -> list[list[term_context.Posting]]:
    """Each question's distinct terms' postings (pages ascending, counts), from the cached term counts."""
    pages = np.repeat(np.arange(len(f.page_ptr) - 1), np.diff(f.page_ptr))
    order = np.argsort(f.page_term, kind="stable")  # term-major; pages stay ascending within a term
    terms, where, counts = f.page_term[order], pages[order], f.page_count[order]
    starts = np.searchsorted(terms, np.arange(int(terms.max(initial=-1)) + 2))
    rows = []
    for q in range(len(f.query_ptr) - 1):
        asked = np.unique(f.query_term[f.query_ptr[q] : f.query_ptr[q + 1]])
        rows.append([(where[starts[t] : starts[t + 1]], counts[starts[t] : starts[t + 1]]) for t in asked])
    return rows


def term_lexical(f: ConversationFeatures, lexical: np.ndarray, weights: term_context.Weights) -> np.ndarray:
    """Questions x pages :func:`term_context.lexical` of ``lexical`` (the pages' BM25)."""
    if not (weights.coverage or weights.neighbour_text) or not lexical.shape[-1]:
        return lexical
    pages = len(f.page_ptr) - 1
    lengths = np.bincount(np.repeat(np.arange(pages), np.diff(f.page_ptr)), f.page_count, minlength=pages)
    return np.stack(
        [
            term_context.lexical(row, found, lengths, k1=K1, b=B, weights=weights)
            for row, found in zip(lexical, postings(f))
        ]
    )


def scores(f: ConversationFeatures, variant: Variant, lexical: np.ndarray | None = None) -> np.ndarray:
    """Questions x pages fused scores of one conversation (``lexical``: its term_lexical, if known)."""
    if lexical is None:
        lexical = term_lexical(f, f.lexical if variant.stem else f.lexical_raw, variant.terms)
    return ranking.fuse(
        lexical,
        candidate_dense_z(f.dense),
        f.times,
        f.window,
        timed=f.timed,
        when=f.when,
        weights=variant.weights,
    )


@dataclass
class Scorer:
    """Per-question recall@k of any score matrix of one conversation, vectorised.

    Each turn belongs to one page, so an evidence turn's position in the expanded ranking is the
    number of turns of the pages ranked above its page plus its place within the page.
    """

    features: ConversationFeatures
    ks: tuple[int, ...]

    def __post_init__(self) -> None:
        f = self.features
        self.turn_counts = np.array([len(t) for t in f.page_turns], dtype=np.float64)
        where = {
            turn: (page, offset)
            for page, turns in enumerate(f.page_turns)
            for offset, turn in enumerate(turns)
        }
        self.rows: list[int] = []
        self.pages: list[int] = []
        self.offsets: list[int] = []
        self.weight: list[float] = []
        for q, evidence in enumerate(f.evidence):
            found = [where[e] for e in evidence if e in where]
            for page, offset in found:
                self.rows.append(q)
                self.pages.append(page)
                self.offsets.append(offset)
                self.weight.append(1.0 / len(evidence))

    def recall(self, score: np.ndarray) -> np.ndarray:
        """Questions x ks recall (fractions) for ``score`` (questions x pages)."""
        if not self.rows:
            return np.zeros((score.shape[0], len(self.ks)))
        rows, pages = np.array(self.rows), np.array(self.pages)
        mine = score[rows, pages][:, None]
        candidates = score[rows]
        order = np.arange(score.shape[1])[None, :]
        above = (candidates > mine) | ((candidates == mine) & (order < pages[:, None]))
        position = above.astype(np.float64) @ self.turn_counts + np.array(self.offsets)
        out = np.zeros((score.shape[0], len(self.ks)))
        for j, k in enumerate(self.ks):
            np.add.at(out[:, j], rows, np.array(self.weight) * (position < k))
        return out


@dataclass
class Evaluation:
    """Per-question recall of variants over all conversations (rows in conversation order)."""

    features: Sequence[ConversationFeatures]
    ks: tuple[int, ...] = (5, 10, 25, 50)

    def __post_init__(self) -> None:
        self.scorers = [Scorer(f, self.ks) for f in self.features]
        self.conversation = np.concatenate([np.full(len(f.evidence), i) for i, f in enumerate(self.features)])
        self.categories = np.concatenate([f.categories for f in self.features])
        self._cache: dict[Variant, np.ndarray] = {}
        self._lexical: dict[tuple[int, bool, term_context.Weights], np.ndarray] = {}

    def lexical(self, position: int, variant: Variant) -> np.ndarray:
        """The lexical scores of conversation ``position`` under ``variant`` (cached: they do not
        depend on the fusion weights)."""
        key = (position, variant.stem, variant.terms)
        if key not in self._lexical:
            f = self.features[position]
            self._lexical[key] = term_lexical(f, f.lexical if variant.stem else f.lexical_raw, variant.terms)
        return self._lexical[key]

    def rows(self, variant: Variant) -> np.ndarray:
        """All questions x ks recall of ``variant`` (cached)."""
        if variant not in self._cache:
            self._cache[variant] = np.concatenate(
                [
                    scorer.recall(scores(scorer.features, variant, self.lexical(i, variant)))
                    for i, scorer in enumerate(self.scorers)
                ]
            )
        return self._cache[variant]


def table(rows: np.ndarray, categories: np.ndarray, ks: Sequence[int]) -> dict[str, dict[str, float]]:
    """``{k: {"1".."5", "1-4", "all": percent}}`` of per-question recall rows."""
    pools = {str(c): categories == c for c in sorted(set(categories.tolist()))}
    pools["1-4"] = (categories >= 1) & (categories <= 4)
    pools["all"] = np.ones(len(categories), dtype=bool)
    return {
        str(k): {
            name: round(100 * float(rows[mask, j].mean()), 1) for name, mask in pools.items() if mask.any()
        }
        for j, k in enumerate(ks)
    }


def grid(base: Variant, axes: Mapping[str, Sequence[float]]) -> list[Variant]:
    """Every combination of the weights in ``axes`` on top of ``base``."""
    variants = [base]
    for name, values in axes.items():
        variants = [with_weights(v, **{name: value}) for v in variants for value in values]
    return variants


_TERM_WEIGHTS = {"coverage", "neighbour_share", "neighbour_text"}


def with_weights(variant: Variant, **changes: Any) -> Variant:
    """``variant`` with some of its weights changed (fusion weights, or term_context's by name)."""
    terms = {name: value for name, value in changes.items() if name in _TERM_WEIGHTS}
    fused = {name: value for name, value in changes.items() if name not in _TERM_WEIGHTS}
    return replace(variant, weights=replace(variant.weights, **fused), terms=replace(variant.terms, **terms))


def cross_validate(
    evaluation: Evaluation, variants: Iterable[Variant], k_index: int = 1
) -> tuple[list[float], list[Variant]]:
    """Leave one conversation out: for each conversation, the variant with the best mean recall at
    ``ks[k_index]`` on the other conversations, scored on the held-out one (percent per fold)."""
    candidates = list(variants)
    matrix = np.stack([evaluation.rows(v)[:, k_index] for v in candidates])  # variants x questions
    held_out, chosen = [], []
    for fold in range(len(evaluation.features)):
        train = evaluation.conversation != fold
        best = int(np.argmax(matrix[:, train].mean(axis=1)))
        held_out.append(100 * float(matrix[best, ~train].mean()))
        chosen.append(candidates[best])
    return held_out, chosen


def spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation, min and max of per-fold figures."""
    array = np.asarray(values)
    return {
        "mean": round(float(array.mean()), 1),
        "std": round(float(array.std()), 1),
        "min": round(float(array.min()), 1),
        "max": round(float(array.max()), 1),
    }


RULES: dict[str, dict[str, Any]] = {
    "dense ranking": {"dense": 0.0},
    "adaptive dense weight": {"adaptive": False},
    "session prior": {"session": 0.0},
    "previous-page share": {"previous": 0.0},
    "next-page share": {"next": 0.0},
    "when boost": {"when": 0.0},
    "date boost": {"date": 0.0},
    "query-term coverage": {"coverage": 0.0},
    "neighbour text": {"neighbour_text": 0.0},
}
"""Each ranking rule and the weights that remove it (stemming is the ``stem`` switch)."""

RESTORED: dict[str, dict[str, Any]] = {"when boost": {"when": 0.5}}
"""A rule the shipped ranking leaves off, and the weight it had: its row measures adding it back."""

GRID: dict[str, tuple[float, ...]] = {
    "dense": (0.6, 0.85, 1.1),
    "session": (0.15, 0.3, 0.45),
    "previous": (0.15, 0.3, 0.45),
    "next": (0.15, 0.3, 0.45),
}
"""The weights tuned on the training conversations of each fold (81 variants)."""


def _tunable(removed: dict[str, Any]) -> dict[str, tuple[float, ...]]:
    return {name: values for name, values in GRID.items() if name not in removed}


def ablation(evaluation: Evaluation, base: Variant, k_index: int = 1) -> list[dict[str, Any]]:
    """Recall at ``ks[k_index]`` without each rule: pooled with the shipped weights, and held out
    under cross-validation (the remaining weights tuned on the other conversations), against the
    same with every rule. A rule the shipped ranking leaves off (``RESTORED``) is added back instead."""
    full, _ = cross_validate(evaluation, grid(base, GRID), k_index)
    shipped = evaluation.rows(base)[:, k_index]
    rows = []
    cases = []
    for name, removed in RULES.items():
        variant = with_weights(base, **removed)
        if variant == base and name in RESTORED:  # off when shipped: measured by adding it back
            name, variant = f"{name} (off; row: added back)", with_weights(base, **RESTORED[name])
        cases.append((name, variant, removed))
    cases.append(("stemming", replace(base, stem=False), {}))
    for name, variant, removed in cases:
        held, _ = cross_validate(evaluation, grid(variant, _tunable(removed)), k_index)
        without = evaluation.rows(variant)[:, k_index]
        deltas = np.asarray(held) - np.asarray(full)
        rows.append(
            {
                "rule": name,
                "recall_without": round(100 * float(without.mean()), 1),
                "delta": round(100 * float(without.mean() - shipped.mean()), 1),
                "cv_delta": round(float(deltas.mean()), 1),
                "folds_worse": int((deltas < 0).sum()),
                "folds_better": int((deltas > 0).sum()),
            }
        )
    return rows


TERM_GRID: dict[str, tuple[float, ...]] = {
    "coverage": (0.0, 0.5, 1.0, 2.0),
    "neighbour_text": (0.0, 0.5, 1.0, 2.0),
}
"""term_context's weights tuned on the training conversations of each fold (16 variants, one of them off)."""


def _folds(evaluation: Evaluation, variant: Variant, k_index: int) -> np.ndarray:
    rows = evaluation.rows(variant)[:, k_index]
    return np.array(
        [100 * rows[evaluation.conversation == i].mean() for i in range(len(evaluation.features))]
    )


def _deltas(values: np.ndarray) -> dict[str, Any]:
    return {**spread(values.tolist()), "better": int((values > 0).sum()), "worse": int((values < 0).sum())}


def term_signals(evaluation: Evaluation, base: Variant) -> list[dict[str, Any]]:
    """At each k, held-out recall gained by query-term coverage and neighbour text over the ranking
    without them: with the shipped weights, and with the weights best on the other conversations."""
    off = with_weights(base, coverage=0.0, neighbour_text=0.0)
    variants = grid(base, TERM_GRID)
    rows = []
    for k_index, k in enumerate(evaluation.ks):
        without = _folds(evaluation, off, k_index)
        held, _ = cross_validate(evaluation, variants, k_index)
        rows.append(
            {
                "k": k,
                "without": spread(without.tolist()),
                "shipped": _deltas(_folds(evaluation, base, k_index) - without),
                "tuned": _deltas(np.asarray(held) - without),
            }
        )
    return rows


def run_fusion(
    features: Sequence[ConversationFeatures], ks: tuple[int, ...] = (5, 10, 25, 50)
) -> dict[str, Any]:
    """The shipped ranking's recall, its cross-validation and the ablation table (docs/benchmark.md)."""
    evaluation = Evaluation(features, ks)
    k_index = ks.index(10) if 10 in ks else 0
    base = Variant()
    constant = with_weights(base, adaptive=False)
    shipped = evaluation.rows(base)[:, k_index]
    folds = [100 * float(shipped[evaluation.conversation == i].mean()) for i in range(len(features))]
    held, chosen = cross_validate(evaluation, grid(base, GRID), k_index)
    return {
        "conversations": len(features),
        "questions": len(evaluation.conversation),
        "k": list(ks),
        "ranking": table(evaluation.rows(base), evaluation.categories, ks),
        "constant_dense_weight": table(evaluation.rows(constant), evaluation.categories, ks),
        "cross_validation": {
            "k": ks[k_index],
            "conversations": [f.sample_id for f in features],
            "shipped": [round(v, 1) for v in folds],
            "shipped_spread": spread(folds),
            "tuned_held_out": [round(v, 1) for v in held],
            "tuned_held_out_spread": spread(held),
            "tuned_weights": [{name: getattr(v.weights, name) for name in GRID} for v in chosen],
        },
        "ablation": ablation(evaluation, base, k_index),
        "term_signals": term_signals(evaluation, base),
    }
