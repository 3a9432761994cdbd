"""Topic segments: join by nearest pages, split an oversized segment by its own clustering.

A segment's mean drifts towards the user's centroid as it grows, so matching a new topic against
segment means lets the first big segment swallow every topic. Here a topic is matched against the
pages nearest to it (their segments vote), and a segment that outgrows ``max_pages`` is split in
two by spherical 2-means, recursively, until every part fits. Keywords are weighted by how
distinctive a word is within the user (TF-IDF against the user's other segments).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import numpy as np

from memoryos_core.policy import text as text_policy

NEIGHBOURS_PER_SEGMENT = 3
"""A segment's similarity to a topic: the mean cosine of its (at most) 3 pages nearest to the topic."""


def nearest_segment(
    topic_vector: Sequence[float],
    topic_keywords: Sequence[str],
    neighbours: Sequence[tuple[str, Sequence[float]]],
    keywords_of: Mapping[str, Sequence[str]],
    theta: float,
) -> str | None:
    """The segment whose nearest pages best match the topic, if it reaches ``theta``; else None.

    ``neighbours`` are (segment id, page vector) pairs of pages near the topic; ``keywords_of``
    maps the candidate segments to their keywords. Score: the mean cosine of the segment's
    nearest pages plus the Jaccard of keyword sets (the paper's score, with pages for the mean).
    """
    by_segment: dict[str, list[float]] = defaultdict(list)
    for segment_id, vector in neighbours:
        if segment_id in keywords_of:
            by_segment[segment_id].append(text_policy.cosine(topic_vector, vector))
    best, best_score = None, -math.inf
    for segment_id, cosines in sorted(by_segment.items()):
        top = sorted(cosines, reverse=True)[:NEIGHBOURS_PER_SEGMENT]
        score = float(np.mean(top)) + text_policy.jaccard(topic_keywords, keywords_of[segment_id])
        if score > best_score:
            best, best_score = segment_id, score
    return best if best is not None and best_score >= theta else None


def _two_means(matrix: np.ndarray, iterations: int = 20) -> np.ndarray:
    """Labels 0/1 of spherical 2-means, seeded deterministically by the two most distant pages."""
    first = int(np.argmin(matrix @ matrix.mean(axis=0)))
    second = int(np.argmin(matrix @ matrix[first]))
    centres = matrix[[first, second]]
    labels = np.zeros(len(matrix), dtype=int)
    for step in range(iterations):
        new = np.argmax(matrix @ centres.T, axis=1)
        if step > 0 and np.array_equal(new, labels):
            break
        labels = new
        for k in (0, 1):
            members = matrix[labels == k]
            if len(members):
                mean = members.mean(axis=0)
                norm = float(np.linalg.norm(mean))
                centres[k] = mean / norm if norm else mean
    return labels


def _bisect(matrix: np.ndarray, min_pages: int) -> np.ndarray:
    """Labels 0/1 that split ``matrix`` in two coherent parts, each with at least ``min_pages``."""
    labels = _two_means(matrix)
    small = min(int(labels.sum()), len(labels) - int(labels.sum()))
    if small >= min_pages:
        return labels
    # 2-means found an outlier, not a topic: cut along the same direction at the median instead.
    centres = [matrix[labels == k].mean(axis=0) if (labels == k).any() else matrix[0] for k in (0, 1)]
    direction = centres[1] - centres[0]
    if not np.any(direction):
        direction = matrix[-1] - matrix[0]
    order = np.argsort(matrix @ direction, kind="stable")
    balanced = np.zeros(len(matrix), dtype=int)
    balanced[order[len(order) // 2 :]] = 1
    return balanced


def split_pages(vectors: Sequence[Sequence[float]], max_pages: int, min_pages: int = 3) -> list[list[int]]:
    """Index groups of a segment's pages, each at most ``max_pages`` (one group if it fits).

    The first group is the one holding page 0 (it keeps the segment's id); groups keep their
    pages in the given order.
    """
    if len(vectors) <= max_pages:
        return [list(range(len(vectors)))]
    matrix = np.asarray([text_policy.normalise(v) for v in vectors], dtype=np.float32)
    pending, done = [list(range(len(vectors)))], []
    while pending:
        group = pending.pop()
        if len(group) <= max_pages:
            done.append(group)
            continue
        labels = _bisect(matrix[group], min(min_pages, len(group) // 2))
        pending += [[i for i, label in zip(group, labels) if label == k] for k in (0, 1)]
    return sorted(done, key=min)


def distinctive_keywords(texts: Sequence[str], others: Sequence[Sequence[str]], limit: int) -> list[str]:
    """Content words of ``texts`` by TF-IDF, the documents being the user's other segments' keywords.

    A word every segment of the user has (a name, the user's hobby) ranks below one only this
    topic has. Ties keep the order of first appearance.
    """
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(text_policy.content_words(text))
    documents = [set(keywords) for keywords in others]

    def weight(word: str) -> float:
        df = sum(1 for doc in documents if word in doc)
        return counts[word] * (math.log((1 + len(documents)) / (1 + df)) + 1.0)

    order = {word: position for position, word in enumerate(counts)}
    ranked = sorted(counts, key=lambda w: (-weight(w), order[w]))
    return ranked[:limit]


def coherence(groups: Sequence[Sequence[Sequence[float]]]) -> float | None:
    """Mean over pages of cos(page, own centroid) - cos(page, nearest other centroid).

    None with fewer than two groups (no other centroid to compare with).
    """
    groups = [g for g in groups if len(g)]
    if len(groups) < 2:
        return None
    centres = np.asarray([text_policy.mean_vector(g) for g in groups], dtype=np.float32)
    margins: list[float] = []
    for index, group in enumerate(groups):
        matrix = np.asarray([text_policy.normalise(v) for v in group], dtype=np.float32)
        sims = matrix @ centres.T
        own = sims[:, index].copy()
        sims[:, index] = -np.inf
        margins += (own - sims.max(axis=1)).tolist()
    return float(np.mean(margins))
