"""The late rerank as the engine ships it, on the cached LoCoMo features (``bench fusion --late``, the
"engine" rows): every step is the engine's own code, none is the bench's.

Pages and questions are encoded by ``LocalEmbedder.embed_wordpieces`` (int8; questions as queries),
masked and normalised by ``engine.late._rows``; a page's vectors pass through float16, as ``LateIndex``
keeps them between a page's embedding and its write. Each conversation's pages are written in store
order into a :class:`WordpieceFile` in a temporary folder, one ``add`` per session (as ``bench locomo``'s
ingest calls ``add_memories``; with write-behind the journal groups pages by time instead, so the basis
may be fitted on a few pages more or fewer), so the rows, their int8 codes and the PCA basis fitted when
the 100th page arrives are the file's; they are read back with ``WordpieceFile.read``. A question's
late scores over the shipped ranking's first ``RetrievalConfig.late_pages`` pages are
``engine.late.page_scores`` (what ``LateIndex.lift`` scores), its pages' gains ``policy.late.lift``, and
the reranked order ``policy.late.rerank_top``'s (what ``Retriever._late_rerank`` applies).

The wordpieces are encoded on each run (27 s for LoCoMo's pages and questions on two shared cores): no
cache to go stale.
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._config import RetrievalConfig
from memoryos_core.bench.fusion import Evaluation
from memoryos_core.bench.fusion_data import ConversationFeatures
from memoryos_core.bench.fusion_late import (
    WEIGHTS,
    cross_validate,
    late_row,
    page_texts,
    report,
    session_texts,
    shipped,
)
from memoryos_core.bench.locomo_data import Conversation, load_locomo
from memoryos_core.embeddings.base import Embedder, embed_wordpieces
from memoryos_core.engine.late import Rows, _rows, page_scores
from memoryos_core.engine.late_store import DIMS, FILE_NAME, FIT_PAGES, View, WordpieceFile
from memoryos_core.policy import late, ranking

USER = "bench"
"""The user every conversation's file is written for (one file per conversation)."""


@dataclass
class Encoded:
    """One conversation's kept wordpieces: each page's (as ``LateIndex`` writes them: float16 vectors) and
    each question's (as a recall's ``Probe`` holds them), and the pages of each write, in store order."""

    pages: list[Rows]
    questions: list[Rows]
    batches: list[int]


@dataclass
class Stored:
    """What the file holds of a conversation: ``view`` read every page (ids ``page_ids``, in store order)
    and the df of every question's wordpieces (questions one after another, ``starts``)."""

    view: View
    page_ids: list[str]
    starts: np.ndarray  # questions + 1
    row_bytes: int  # the pages' rows as stored: ids, scales and codes


def encode(embedder: Embedder, texts: Sequence[str], *, query: bool) -> list[Rows]:
    """The kept wordpieces of ``texts`` as the engine keeps a page's (``query``: a question's)."""
    found = embed_wordpieces(embedder, texts, query=query)
    if found is None:
        raise ValueError(f"{embedder.name} gives no wordpieces: the late rerank is off with it")
    rows = [_rows(pieces, text, page=not query) for pieces, text in zip(found[1], texts)]
    return rows if query else [(ids, vectors.astype(np.float16)) for ids, vectors in rows]


def session_batches(conversation: Conversation, features: ConversationFeatures) -> list[int]:
    """The features' pages per session (one ``add_memories`` each), checked to be in session order."""
    session = {turns: s for s, texts in enumerate(session_texts(conversation)) for turns in texts}
    order = [session[tuple(turns)] for turns in features.page_turns]
    if order != sorted(order):
        raise ValueError(f"{features.sample_id}: the features' pages are not in session order")
    return [n for n in np.bincount(np.array(order, dtype=np.int64)).tolist() if n]


def encode_all(data: Path, features: Sequence[ConversationFeatures], embedder: Embedder) -> list[Encoded]:
    """Every conversation's pages and questions, encoded (their texts read from ``data``)."""
    conversations = {c.sample_id: c for c in load_locomo(data)}
    out = []
    for f, texts in zip(features, page_texts(data, features)):
        conversation = conversations[f.sample_id]
        questions = [q.question for q in conversation.questions]
        out.append(
            Encoded(
                encode(embedder, texts, query=False),
                encode(embedder, questions, query=True),
                session_batches(conversation, f),
            )
        )
    return out


def store(encoded: Encoded, folder: Path, dim: int) -> Stored:
    """Write the pages into a new file in ``folder``, batch by batch, and read everything back."""
    path = folder / FILE_NAME
    page_ids = [f"p{i}" for i in range(len(encoded.pages))]
    file = WordpieceFile(path, dim=dim)
    try:
        start = 0
        for size in encoded.batches:
            batch = range(start, start + size)
            file.add(
                USER,
                [(page_ids[i], encoded.pages[i][0], encoded.pages[i][1].astype(np.float32)) for i in batch],
            )
            start += size
        asked = [ids for ids, _ in encoded.questions]
        view = file.read(USER, page_ids, np.concatenate([np.zeros(0, np.int32), *asked]))
    finally:
        file.close()
    with closing(sqlite3.connect(path)) as db:
        (row_bytes,) = db.execute(
            "SELECT SUM(length(ids) + length(scales) + length(codes)) FROM page"
        ).fetchone()
    starts = np.concatenate(([0], np.cumsum([len(ids) for ids in asked]))).astype(np.int64)
    return Stored(view, page_ids, starts, int(row_bytes or 0))


def question_scores(stored: Stored, encoded: Encoded, question: int, positions: Sequence[int]) -> np.ndarray:
    """The late scores a recall of ``question`` gives the pages at ``positions`` (store order)."""
    a, b = stored.starts[question], stored.starts[question + 1]
    view = replace(stored.view, df=stored.view.df[a:b])  # as if read for this question alone
    return page_scores(view, [stored.page_ids[p] for p in positions], encoded.questions[question][1])


def reranked(
    stored: Stored, encoded: Encoded, fused: np.ndarray, depth: int, weights: Sequence[float]
) -> np.ndarray:
    """Weights x questions x pages: the fused scores with the engine's late rerank at each weight."""
    out = np.repeat(fused.astype(np.float64)[None], len(weights), axis=0)
    for q, row in enumerate(fused.astype(np.float64)):
        top = ranking.top_positions(row, depth)
        if len(top) < 2 or not stored.view.pages:  # LateIndex.lift: nothing to rerank
            continue
        scores = question_scores(stored, encoded, q, top)
        for w, weight in enumerate(weights):
            late.rerank_top(out[w, q], np.asarray(top, dtype=np.int64), late.lift(scores, weight))
    return out


def engine_table(
    data: Path,
    features: Sequence[ConversationFeatures],
    evaluation: Evaluation,
    embedder: Embedder | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, Any]:
    """The engine's late rerank at its ``late_pages``: held-out gain with the weight chosen on the other
    conversations ("engine cv") and with the shipped ``late_weight`` ("engine"), as ``late_table``'s rows."""
    if embedder is None:
        from memoryos_core.embeddings.local import LocalEmbedder

        embedder = LocalEmbedder(precision="int8")
    config = RetrievalConfig()
    depth, weight = config.late_pages, config.late_weight
    weights = sorted({*WEIGHTS, weight})
    started = time.perf_counter()
    encoded = encode_all(data, features, embedder)
    encode_s = time.perf_counter() - started
    progress(f"engine wordpieces encoded in {encode_s:.0f} s")
    base, fused = shipped(evaluation)
    grids, stored_dims, row_bytes = [], [], 0
    with tempfile.TemporaryDirectory(prefix="memoryos-late-bench-") as folder:
        for c, (e, scorer) in enumerate(zip(encoded, evaluation.scorers)):
            (Path(folder) / str(c)).mkdir()
            stored = store(e, Path(folder) / str(c), embedder.dim)
            grids.append(np.stack([scorer.recall(s) for s in reranked(stored, e, fused[c], depth, weights)]))
            stored_dims.append(DIMS if stored.view.basis is not None else embedder.dim)
            row_bytes += stored.row_bytes
    grid = np.concatenate(grids, axis=1)
    pages = sum(len(e.pages) for e in encoded)
    wordpieces = sum(len(ids) for e in encoded for ids, _ in e.pages) / max(pages, 1)
    rows = []
    for name, fixed in (("engine cv", None), ("engine", weight)):
        held, chosen = cross_validate(evaluation, [grid], weights, fixed)
        rows.append(
            late_row(evaluation, base, held, chosen, name, depth, wordpieces, row_bytes / max(pages, 1))
        )
        progress(report(rows[-1], evaluation.ks))
    return {
        "rows": rows,
        "late_pages": depth,
        "late_weight": weight,
        "weights": weights,
        "fit_pages": FIT_PAGES,
        "dims": stored_dims,
        "batches": "one add per session",
        "encode_s": round(encode_s, 1),
        "seconds": round(time.perf_counter() - started, 1),
    }
