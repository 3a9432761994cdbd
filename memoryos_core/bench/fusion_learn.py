"""A learned fusion, measured on the cached LoCoMo features (``memoryos bench fusion --learn``).

The engine's ranking (:func:`memoryos_core.policy.ranking.fuse`) adds z-scores with a few hand-set
weights. Here the same signals are split into one feature per candidate page and the combination is
learned, leave one conversation out (fit on nine conversations, scored on the tenth):

- features (:data:`FEATURES`): the page's lexical z-score (BM25 with coverage and neighbour text, as the
  engine computes it), its dense z-score times the adaptive weight's factor, the previous and next
  pages' values of both, the session prior and its neighbours', and the date flag. At
  :func:`shipped_weights` their weighted sum is the shipped ranking (to rounding at the two ends);
  :data:`EXTRAS` adds the reciprocal ranks of both lists and the dense and lexical z-scores times the
  lists' agreement (the share of their top 10 they have in common);
- learners: pairwise logistic regression on (relevant, non-relevant) pairs against the pages the
  shipped ranking puts first, a listwise softmax (ListNet) over them, both L2-regularised and solved by
  Newton's method, and coordinate ascent on R@10 itself from the shipped weights (as RankLib's);
- per-question adaptation: the dense weight scaled by the lists' agreement, ``1 + alpha * (0.3 -
  overlap)`` within [1/1.5, 1.5] on top of the adaptive weight, ``alpha`` and the depth chosen on the
  other nine conversations (0 among them).

Nothing reads the question's wording. None of it beat the shipped weights held out (README, "Tried,
not kept"), so the engine keeps them; this is the measurement to repeat with another embedder.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from memoryos_core.bench.fusion import CANDIDATES, Evaluation, Variant, _deltas, candidate_dense_z, table
from memoryos_core.policy import ranking

FEATURES = (
    "lexical",
    "dense",
    "previous lexical",
    "next lexical",
    "previous dense",
    "next dense",
    "session",
    "previous session",
    "next session",
    "date",
)
"""One candidate page's features; ``dense`` is the dense z-score times the adaptive weight's factor."""
EXTRAS = ("lexical reciprocal rank", "dense reciprocal rank", "dense x agreement", "lexical x agreement")
"""Features beyond the ranking's own: rank positions and the lists' agreement."""
AGREEMENT_DEPTH = 10
"""The lists' agreement: the share of their top 10 pages they have in common."""
RANK_OFFSET = 10.0
"""A page's reciprocal rank in a list is ``RANK_OFFSET / (RANK_OFFSET + rank)`` (rank 0 first) in its top
``CANDIDATES``, 0 below."""


def shipped_weights(extras: bool = False) -> np.ndarray:
    """The weights under which the features add up to the engine's ranking (its constants)."""
    d = ranking.DEFAULT
    weights = [1.0, d.dense, d.previous, d.next, d.previous * d.dense, d.next * d.dense]
    weights += [d.session, d.previous * d.session, d.next * d.session, d.date]
    return np.array(weights + [0.0] * len(EXTRAS) * extras)


def _before(x: np.ndarray) -> np.ndarray:
    """Each page's previous page's value (the row's lowest for the first), as the score shares read it."""
    return np.concatenate((x.min(axis=-1, keepdims=True), x[..., :-1]), axis=-1)


def _after(x: np.ndarray) -> np.ndarray:
    return np.concatenate((x[..., 1:], x.min(axis=-1, keepdims=True)), axis=-1)


def overlap(first: np.ndarray, second: np.ndarray, depth: int = AGREEMENT_DEPTH) -> np.ndarray:
    """Per row, the share of the ``depth`` best of ``first`` among the ``depth`` best of ``second``."""
    depth = min(depth, first.shape[-1])
    top_first = np.argpartition(-first, depth - 1, axis=-1)[:, :depth]
    top_second = np.argpartition(-second, depth - 1, axis=-1)[:, :depth]
    held = np.zeros(first.shape, dtype=bool)
    np.put_along_axis(held, top_first, True, axis=-1)
    shared: np.ndarray = np.take_along_axis(held, top_second, axis=-1).mean(axis=-1)
    return shared


def reciprocal_rank(scores: np.ndarray, top: int = CANDIDATES) -> np.ndarray:
    """``RANK_OFFSET / (RANK_OFFSET + rank)`` of each page in its row's ``top`` best, 0 below."""
    keep = min(top, scores.shape[-1])
    order = np.argsort(-scores, axis=-1, kind="stable")[:, :keep]
    out = np.zeros(scores.shape, dtype=np.float64)
    values = np.broadcast_to(RANK_OFFSET / (RANK_OFFSET + np.arange(keep)), order.shape)
    np.put_along_axis(out, order, values, axis=-1)
    return out


def candidate_features(evaluation: Evaluation, position: int, extras: bool = False) -> np.ndarray:
    """Questions x pages x features of conversation ``position`` (:data:`FEATURES`, then :data:`EXTRAS`)."""
    f = evaluation.features[position]
    lexical = ranking.zscore(evaluation.lexical(position, Variant()).astype(np.float64))
    raw_dense = candidate_dense_z(f.dense).astype(np.float64)
    dense = ranking.dense_weight(lexical, raw_dense, 1.0)[:, None] * raw_dense
    d = ranking.DEFAULT
    session = ranking.session_prior(lexical + d.dense * dense, ranking.sessions(f.times))
    start, end = f.window[:, 0:1], f.window[:, 1:2] + ranking.DATE_GRACE_S
    date = ((f.times >= start) & (f.times < end)).astype(np.float64)
    columns = [lexical, dense, _before(lexical), _after(lexical), _before(dense), _after(dense)]
    columns += [session, _before(session), _after(session), date]
    if extras:
        agreement = overlap(lexical, raw_dense)[:, None]
        columns += [reciprocal_rank(lexical), reciprocal_rank(raw_dense)]
        columns += [agreement * raw_dense, agreement * lexical]
    return np.stack(columns, axis=-1)


def relevance(evaluation: Evaluation, position: int) -> np.ndarray:
    """Questions x pages: the share of each question's evidence turns a page holds."""
    scorer = evaluation.scorers[position]
    f = evaluation.features[position]
    y = np.zeros(f.lexical.shape, dtype=np.float64)
    np.add.at(
        y, (np.asarray(scorer.rows, dtype=np.int64), np.asarray(scorer.pages, dtype=np.int64)), scorer.weight
    )
    return y


def _lists(
    x: np.ndarray, y: np.ndarray, first: np.ndarray, depth: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per question with evidence: (the features of its relevant pages and of the ``depth`` non-relevant
    ones ``first`` ranks best, relevant ones first; their relevance)."""
    out = []
    for q in range(y.shape[0]):
        relevant = np.flatnonzero(y[q] > 0)
        if not len(relevant):
            continue
        order = np.argsort(-np.where(y[q] > 0, -np.inf, first[q]), kind="stable")[:depth]
        pages = np.concatenate((relevant, order))
        out.append((x[q, pages], y[q, pages]))
    return out


Lists = list[tuple[np.ndarray, np.ndarray]]


def _newton(loss: Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]], dim: int) -> np.ndarray:
    """The minimum of a smooth convex ``loss`` (value, gradient, Hessian) by damped Newton steps."""
    w = np.zeros(dim)
    for _ in range(50):
        value, gradient, hessian = loss(w)
        step = np.linalg.solve(hessian, gradient)
        rate = 1.0
        while loss(w - rate * step)[0] > value - 1e-4 * rate * float(gradient @ step) and rate > 1e-4:
            rate /= 2
        w = w - rate * step
        if np.abs(rate * step).max() < 1e-7:
            break
    return w


def pairwise_logistic(lists: Lists, lam: float) -> np.ndarray:
    """Weights minimising the logistic loss of every (relevant, non-relevant) pair of each list, weighted
    by the relevant page's share of the evidence over the list's non-relevant pages, plus ``lam/2 |w|^2``."""
    rows, weights = [], []
    for x, y in lists:
        relevant = y > 0
        good, bad = x[relevant], x[~relevant]
        rows.append((good[:, None, :] - bad[None, :, :]).reshape(-1, x.shape[-1]))
        weights.append(np.repeat(y[relevant], len(bad)) / max(len(bad), 1))
    d, c = np.concatenate(rows), np.concatenate(weights)
    dim = d.shape[-1]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        margin = d @ w
        p = 1.0 / (1.0 + np.exp(-margin))
        value = float(c @ np.logaddexp(0.0, -margin)) + lam / 2 * float(w @ w)
        gradient = -(d.T @ (c * (1 - p))) + lam * w
        hessian = (d * (c * p * (1 - p))[:, None]).T @ d + lam * np.eye(dim)
        return value, gradient, hessian

    return _newton(loss, dim)


def listwise(lists: Lists, lam: float) -> np.ndarray:
    """ListNet: weights minimising the cross-entropy between each list's softmax of scores and its
    evidence distribution (questions weighted by their evidence found), plus ``lam/2 |w|^2``."""
    width, dim = max(len(y) for _, y in lists), lists[0][0].shape[-1]
    x = np.zeros((len(lists), width, dim))
    target = np.zeros((len(lists), width))
    mask = np.zeros((len(lists), width), dtype=bool)
    for i, (features, y) in enumerate(lists):
        x[i, : len(y)], target[i, : len(y)], mask[i, : len(y)] = features, y / y.sum(), True
    weight = np.array([y.sum() for _, y in lists])
    weight = weight / weight.sum()

    def loss(w: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        s = np.where(mask, x @ w, -np.inf)
        s = s - s.max(axis=1, keepdims=True)
        log_p = np.where(mask, s - np.log(np.exp(s).sum(axis=1, keepdims=True)), 0.0)
        p = np.exp(log_p) * mask
        value = -float(weight @ (target * log_p).sum(axis=1)) + lam / 2 * float(w @ w)
        gradient = np.einsum("q,qm,qmd->d", weight, p - target, x) + lam * w
        mean = np.einsum("qm,qmd->qd", p, x)
        second = np.einsum("qm,qmd,qme->qde", p, x, x) - mean[:, :, None] * mean[:, None, :]
        hessian = np.einsum("q,qde->de", weight, second) + lam * np.eye(dim)
        return value, gradient, hessian

    return _newton(loss, dim)


STEPS = (-0.4, -0.2, -0.1, -0.05, 0.05, 0.1, 0.2, 0.4)
"""Coordinate ascent's moves of one weight (the lexical weight stays 1: the ranking ignores scale)."""


def coordinate_ascent(
    objective: Callable[[np.ndarray], float], start: np.ndarray, passes: int = 3, least: float = 5e-4
) -> np.ndarray:
    """From ``start``, move one weight at a time by the best of :data:`STEPS` while it raises ``objective``
    by at least ``least``; the first weight stays fixed."""
    w, best = start.astype(np.float64), objective(start)
    for _ in range(passes):
        moved = False
        for j in range(1, len(w)):
            trials = [w + step * np.eye(len(w))[j] for step in STEPS]
            values = [objective(v) for v in trials]
            if max(values) > best + least:
                best, w, moved = max(values), trials[int(np.argmax(values))], True
        if not moved:
            break
    return w


@dataclass
class Learning:
    """The features, relevance and shipped recall of every conversation, computed once."""

    evaluation: Evaluation
    extras: bool = False

    def __post_init__(self) -> None:
        count = len(self.evaluation.features)
        self.x = [candidate_features(self.evaluation, i, self.extras) for i in range(count)]
        self.y = [relevance(self.evaluation, i) for i in range(count)]
        self.shipped = [x @ shipped_weights(self.extras) for x in self.x]
        ks = self.evaluation.ks
        self.k_index = ks.index(10) if 10 in ks else 0

    def recall(self, position: int, w: np.ndarray) -> np.ndarray:
        return self.evaluation.scorers[position].recall(self.x[position] @ w)

    def fit(self, method: str, train: Sequence[int]) -> np.ndarray:
        """Weights learned by ``method`` on the conversations ``train``, scaled to a lexical weight of 1."""
        if method == "coordinate ascent":
            total = sum(len(self.y[i]) for i in train)

            def objective(w: np.ndarray) -> float:
                return sum(float(self.recall(i, w)[:, self.k_index].sum()) for i in train) / total

            return coordinate_ascent(objective, shipped_weights(self.extras))
        lists = [item for i in train for item in _lists(self.x[i], self.y[i], self.shipped[i], LIST_DEPTH)]
        w = pairwise_logistic(lists, PAIRWISE_L2) if method == "pairwise" else listwise(lists, LISTWISE_L2)
        return w / w[0] if w[0] > 0 else w


LIST_DEPTH = 100
"""The non-relevant pages a question's list holds: those the shipped ranking puts first."""
PAIRWISE_L2 = 10.0
LISTWISE_L2 = 0.1
METHODS = ("pairwise", "listwise", "coordinate ascent")


def _row(
    evaluation: Evaluation, name: str, held: list[np.ndarray], shipped: list[np.ndarray]
) -> dict[str, Any]:
    pooled = np.concatenate(held)
    gains = [
        _deltas(np.array([100 * (h[:, j].mean() - s[:, j].mean()) for h, s in zip(held, shipped)]))
        for j in range(len(evaluation.ks))
    ]
    return {"name": name, "gain": gains, "held_out": table(pooled, evaluation.categories, evaluation.ks)}


def agreement_scores(evaluation: Evaluation, position: int, alpha: float, depth: int) -> np.ndarray:
    """The shipped ranking with its dense weight scaled per question by the lists' agreement."""
    f = evaluation.features[position]
    lexical = evaluation.lexical(position, Variant())
    dense = candidate_dense_z(f.dense)
    z = ranking.zscore(lexical)
    factor = ranking.dense_weight(z, dense, 1.0)
    factor *= np.clip(1 + alpha * (0.3 - overlap(z, dense, depth)), 1 / 1.5, 1.5)
    constant = ranking.Weights(adaptive=False)
    return ranking.fuse(
        lexical, factor[:, None] * dense, f.times, f.window, timed=f.timed, when=f.when, weights=constant
    )


AGREEMENT_GRID = [(0.0, 10)] + [(a, d) for d in (5, 10, 20) for a in (-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)]
"""(alpha, depth) settings of the agreement rule; (0, 10) is the shipped ranking."""


def learn_table(evaluation: Evaluation) -> dict[str, Any]:
    """Held-out gain over the shipped ranking of each learner (two feature sets) and of the agreement
    rule, per k: mean, sd, conversations better / worse; pooled held-out recall; weights fit on all."""
    count = len(evaluation.features)
    k_index = evaluation.ks.index(10) if 10 in evaluation.ks else 0
    base = evaluation.rows(Variant())
    shipped = [base[evaluation.conversation == i] for i in range(count)]
    rows, fitted = [], {}
    for extras in (False, True):
        learning = Learning(evaluation, extras)
        for method in METHODS:
            name = f"{method}{' + extras' if extras else ''}"
            held = []
            for fold in range(count):
                w = learning.fit(method, [i for i in range(count) if i != fold])
                held.append(learning.recall(fold, w))
            rows.append(_row(evaluation, name, held, shipped))
            w = learning.fit(method, range(count))
            fitted[name] = dict(zip(FEATURES + EXTRAS * extras, np.round(w, 3).tolist()))
    grid = [
        [evaluation.scorers[i].recall(agreement_scores(evaluation, i, a, d)) for i in range(count)]
        for a, d in AGREEMENT_GRID
    ]
    held, chosen = [], []
    for fold in range(count):
        train = [i for i in range(count) if i != fold]
        means = [sum(float(v[i][:, k_index].sum()) for i in train) for v in grid]
        held.append(grid[int(np.argmax(means))][fold])
        chosen.append(list(AGREEMENT_GRID[int(np.argmax(means))]))
    rows.append(_row(evaluation, "agreement-scaled dense weight", held, shipped))
    return {
        "rows": rows,
        "weights": fitted,
        "agreement_chosen": chosen,
        "shipped": shipped_weights().tolist(),
    }


def print_learn(console: Console, result: dict[str, Any], ks: Sequence[int]) -> None:
    """The learned fusion's table: held-out gain at each k over the shipped ranking."""
    title = (
        "learned fusion, leave one conversation out: gain over the shipped ranking (mean, sd, better / worse)"
    )
    out = Table(title=title)
    out.add_column("learner")
    for k in ks:
        out.add_column(f"R@{k}", justify="right")
    out.add_column("R@10 all / 1-4", justify="right")
    for row in result["rows"]:
        cells = [f"{g['mean']:+.1f} ({g['std']:.1f}) {g['better']}/{g['worse']}" for g in row["gain"]]
        held = row["held_out"].get("10", {})
        out.add_row(row["name"], *cells, f"{held.get('all', 0):.1f} / {held.get('1-4', 0):.1f}")
    console.print(out)
