"""Offline text helpers: keywords, Jaccard, cosine, extractive summaries."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)

STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren't as at be because been before
    being below between both but by can can't cannot could couldn't did didn't do does doesn't doing
    don't down during each few for from further get got had hadn't has hasn't have haven't having he
    he'd he'll he's her here here's hers herself him himself his how how's i i'd i'll i'm i've if in
    into is isn't it it's its itself just let's like me more most mustn't my myself no nor not now
    of off on once only or other ought our ours ourselves out over own really same shan't she she'd
    she'll she's should shouldn't so some such than that that's the their theirs them themselves
    then there there's these they they'd they'll they're they've this those through to too under
    until up very was wasn't we we'd we'll we're we've were weren't what what's when when's where
    where's which while who who's whom why why's will with won't would wouldn't yeah yes you you'd
    you'll you're you've your yours yourself yourselves user assistant oh hey hi hello thanks thank
    wow cool great good well sure okay ok lot lots thing things really much many one two also gonna
    wanna know think see say said going want make made way time
    """.split()
)


def words(text: str) -> list[str]:
    """Lower-cased words of ``text`` (letters first; digits and underscores split)."""
    return [w.strip("'-") for w in _WORD.findall(text.lower()) if w.strip("'-")]


def content_words(text: str) -> list[str]:
    return [w for w in words(text) if len(w) > 2 and w not in STOPWORDS]


def keywords(texts: Iterable[str], limit: int = 12) -> list[str]:
    """The most frequent content words across ``texts``, ties broken by first appearance."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(content_words(text))
    return [word for word, _ in counts.most_common(limit)]


def merge_keywords(old: Sequence[str], new: Sequence[str], limit: int) -> list[str]:
    """Keywords of a merged segment: the new topic's first, then the old ones, without repeats."""
    merged: list[str] = []
    for word in [*new, *old]:
        if word not in merged:
            merged.append(word)
    return merged[:limit]


def jaccard(a: Iterable[str], b: Iterable[str]) -> float:
    sa, sb = set(a), set(b)
    if not sa or not sb:
        return 0.0
    return len(sa & sb) / len(sa | sb)


def cosine(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    va, vb = np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)
    denominator = float(np.linalg.norm(va) * np.linalg.norm(vb))
    return float(va @ vb) / denominator if denominator else 0.0


def normalise(vector: Sequence[float] | np.ndarray) -> list[float]:
    v = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(v))
    values: list[float] = (v / norm).tolist() if norm else v.tolist()
    return values


def mean_vector(vectors: Sequence[Sequence[float]], weights: Sequence[float] | None = None) -> list[float]:
    """The normalised (weighted) mean of ``vectors``."""
    matrix = np.asarray(vectors, dtype=np.float32)
    w = np.ones(len(matrix), dtype=np.float32) if weights is None else np.asarray(weights, dtype=np.float32)
    return normalise((matrix * w[:, None]).sum(axis=0))


def extractive_summary(texts: Sequence[str], vectors: Sequence[Sequence[float]], max_chars: int) -> str:
    """The texts closest to their centroid, in their original order, cut to ``max_chars``.

    An offline stand-in for an LLM topic summary: it only quotes what was said.
    """
    if not texts:
        return ""
    centre = np.asarray(mean_vector(vectors), dtype=np.float32)
    scores = np.asarray(vectors, dtype=np.float32) @ centre
    chosen: list[int] = []
    length = 0
    for index in np.argsort(-scores):
        piece = texts[int(index)].strip()
        if not piece:
            continue
        if chosen and length + len(piece) > max_chars:
            continue
        chosen.append(int(index))
        length += len(piece) + 1
    return clip(" ".join(texts[i].strip() for i in sorted(chosen)), max_chars)


def clip(text: str, max_chars: int) -> str:
    """``text`` cut at a word boundary to at most ``max_chars`` characters."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1].rsplit(" ", 1)[0]
    return cut + "…"
