"""Scoring for ``memoryos bench locomo``: turn budgets, recall/hit per category, answer F1 and BLEU-1.

Pure functions over ids and strings; the runner feeds them.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

BASE_CATEGORIES = ("1", "2", "3", "4", "5")
"""Category keys always present in the output (null when a file has no question of that category)."""

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)
_NOT_ANSWERABLE = ("no information available", "not mentioned")


def expand_turns(units: Iterable[Sequence[str]], budget: int) -> list[str]:
    """Turn ids of ranked units, in rank order, without repeats, cut at ``budget`` turns.

    A unit carrying n new turns uses n of the budget. The cut is literal (docs/benchmark.md: "cut
    at k turns"): a unit that would overflow contributes its first turns, in its own order,
    until the budget is full, so every system is scored on exactly ``min(k, available)`` turns.
    Turns already seen in a higher-ranked unit cost nothing.
    """
    seen: dict[str, None] = {}
    for ids in units:
        for dia_id in ids:
            if len(seen) >= budget:
                return list(seen)
            seen.setdefault(dia_id, None)
    return list(seen)


def units_within(units: Sequence[Sequence[str]], budget: int) -> int:
    """How many leading units are taken before ``budget`` turns are spent (the last may overflow)."""
    seen: set[str] = set()
    for position, ids in enumerate(units):
        if len(seen) >= budget:
            return position
        seen.update(ids)
    return len(units)


def recall(evidence: Sequence[str], retrieved: Iterable[str]) -> float:
    """|evidence ∩ retrieved| / |evidence| (0 for no evidence)."""
    if not evidence:
        return 0.0
    found = set(retrieved)
    return sum(1 for e in set(evidence) if e in found) / len(set(evidence))


def percent(values: Sequence[float]) -> float | None:
    """Mean of ``values`` in percent, one decimal; None when there is none."""
    return round(100.0 * sum(values) / len(values), 1) if values else None


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def category_keys(categories: Iterable[int]) -> list[str]:
    """Keys "1".."5", any other category found, then the pools "1-4" and "all"."""
    extra = sorted({str(c) for c in categories} - set(BASE_CATEGORIES), key=lambda c: (len(c), c))
    return [*BASE_CATEGORIES, *extra, "1-4", "all"]


def _pools(category: int) -> list[str]:
    pools = [str(category), "all"]
    if 1 <= category <= 4:
        pools.append("1-4")
    return pools


@dataclass
class RecallTable:
    """Per-question retrieved turns of one system, aggregated into recall@k and hit@k."""

    ks: Sequence[int]
    recalls: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    hits: dict[int, list[float]] = field(default_factory=dict)
    categories: set[int] = field(default_factory=set)

    def add(self, category: int, evidence: Sequence[str], ranked_turns: Sequence[str]) -> None:
        """Score one question; ``ranked_turns`` is the expansion cut at the largest k (a prefix per k)."""
        self.categories.add(category)
        for k in self.ks:
            top = ranked_turns[:k]
            value = recall(evidence, top)
            for pool in _pools(category):
                self.recalls.setdefault(k, {}).setdefault(pool, []).append(value)
            self.hits.setdefault(k, []).append(1.0 if value > 0 else 0.0)

    def summary(self) -> dict[str, dict[str, dict[str, float | None]]]:
        """``{"recall": {"k": {category: pct}}, "hit": {"k": {"all": pct}}}``, percent with one decimal."""
        keys = category_keys(self.categories)
        return {
            "recall": {
                str(k): {key: percent(self.recalls.get(k, {}).get(key, [])) for key in keys} for k in self.ks
            },
            "hit": {str(k): {"all": percent(self.hits.get(k, []))} for k in self.ks},
        }


# --- answers: token F1 and BLEU-1 ------------------------------------------------------------------


def normalize_answer(text: object) -> str:
    """Lowercase, strip punctuation and the articles a/an/the, collapse whitespace (LoCoMo/SQuAD)."""
    lowered = str(text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", lowered).split())


def token_f1(prediction: object, gold: object) -> float:
    """Token-level F1 between normalised answers (multiset overlap, as the LoCoMo code)."""
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = sum((Counter(predicted) & Counter(expected)).values())
    if common == 0:
        return 0.0
    precision, recall_value = common / len(predicted), common / len(expected)
    return 2 * precision * recall_value / (precision + recall_value)


def bleu1(prediction: object, gold: object) -> float:
    """BLEU-1 with one reference: clipped unigram precision times the brevity penalty.

    Equals nltk's ``sentence_bleu([gold], prediction, weights=(1, 0, 0, 0))`` on the
    normalised tokens, which is how the MemoryOS paper's evaluation scores answers.
    """
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not predicted or not expected:
        return 0.0
    clipped = sum((Counter(predicted) & Counter(expected)).values())
    brevity = 1.0 if len(predicted) > len(expected) else math.exp(1 - len(expected) / len(predicted))
    return brevity * clipped / len(predicted)


def score_answer(prediction: str, gold: str, category: int) -> tuple[float, float]:
    """(F1, BLEU-1) of one answer.

    Category 5 (adversarial) follows the LoCoMo code: the question cannot be answered from the
    conversation, so an answer scores 1 on both when it says so ("not mentioned", "no
    information available") and 0 otherwise; its ``adversarial_answer`` is the trap, never gold.
    """
    if category == 5:
        value = 1.0 if any(p in prediction.lower() for p in _NOT_ANSWERABLE) else 0.0
        return value, value
    return token_f1(prediction, gold), bleu1(prediction, gold)


@dataclass
class AnswerTable:
    """F1 and BLEU-1 per category of generated answers."""

    f1: dict[str, list[float]] = field(default_factory=dict)
    bleu: dict[str, list[float]] = field(default_factory=dict)
    categories: set[int] = field(default_factory=set)

    def add(self, category: int, prediction: str, gold: str) -> tuple[float, float]:
        f1_value, bleu_value = score_answer(prediction, gold, category)
        self.categories.add(category)
        for pool in _pools(category):
            self.f1.setdefault(pool, []).append(f1_value)
            self.bleu.setdefault(pool, []).append(bleu_value)
        return f1_value, bleu_value

    def summary(self) -> dict[str, dict[str, float | None]]:
        keys = category_keys(self.categories)
        return {
            "f1": {key: percent(self.f1.get(key, [])) for key in keys},
            "bleu1": {key: percent(self.bleu.get(key, [])) for key in keys},
        }
