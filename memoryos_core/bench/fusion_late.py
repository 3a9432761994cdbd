"""Late interaction on the cached LoCoMo features (``bench fusion --late``): a BERTScore-style rerank.

Each page and question is kept as its wordpieces' vectors (the last hidden state of the engine's int8
all-MiniLM-L6-v2 encoder, before pooling, from ``LocalEmbedder.embed_wordpieces``, each L2-normalised;
[CLS], [SEP] and punctuation dropped). A
page's late score for a question is BERTScore's recall: over the question's wordpieces, weighted by their
idf among the conversation's pages, the mean of each one's best cosine to any of the page's. The shipped
ranking's first ``depth`` pages get ``fused + weight * z(late)`` (z over those pages) and stay above the
rest, which keep their order; the weight is chosen per fold on the other conversations, 0 among them.

Two forms: "full" (the vectors in fp16) and "compact" (PCA to 64 dimensions fitted on the other
conversations' page vectors, int8 with a scale per vector, the conversation's 50 most frequent wordpieces
dropped from both sides). Neither is what the engine ships: its own form is ``fusion_late_engine.py``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from memoryos_core.bench.fusion import Evaluation, Variant, _deltas, scores, table
from memoryos_core.bench.fusion_data import ConversationFeatures
from memoryos_core.bench.locomo_data import Conversation, canonical_dia_id, load_locomo, session_pages
from memoryos_core.policy.late import unit

WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 1.6, 2.0, 3.0, 4.0, 6.0, 8.0)
"""The late score's weights tuned on the training conversations of each fold (0: the shipped ranking)."""
DEPTHS = (50, 100, 150)
"""Pages of the shipped ranking that are reranked."""
PCA_SAMPLE = 80_000
"""Page vectors (drawn with the fold as seed) a fold's PCA is fitted on."""
TOKENS_FORMAT = 1
"""Version of the token cache's layout, part of its key."""


@dataclass(frozen=True)
class Form:
    """How the vectors are stored: as computed (fp16), or PCA to ``dims`` in int8; ``frequent``: the
    conversation's most frequent wordpieces (by pages holding them), dropped from pages and questions."""

    name: str
    dims: int | None = None
    frequent: int = 0

    def wordpiece_bytes(self, dim: int) -> int:
        """What one stored wordpiece vector of ``dim`` takes: fp16, or int8 codes and an fp16 scale."""
        return 2 * dim if self.dims is None else min(self.dims, dim) + 2


FORMS = (Form("full"), Form("compact", dims=64, frequent=50))


@dataclass
class Tokens:
    """One conversation's kept wordpieces: ids and unit vectors (fp16) of the pages' (rows ``page_ptr``)
    and of the questions' (rows ``query_ptr``), and each page's cosine of its vector from the same pass
    to the features' page vector (1 when the texts are the ones the features embedded)."""

    page_ptr: np.ndarray  # P + 1
    page_ids: np.ndarray  # T int32
    page_vectors: np.ndarray  # T x dim float16
    query_ptr: np.ndarray  # Q + 1
    query_ids: np.ndarray
    query_vectors: np.ndarray
    page_cosine: np.ndarray  # P float32


def encoder_graph_name() -> str:
    """The file name of the int8 graph :class:`TokenEncoder` runs (the engine's, named by its weights, its
    builder and its int8 scheme), which keys the token vectors made with it."""
    from memoryos_core.embeddings import local

    return local._cache_path(local._read_spec(local._resolve_folder(None)), "int8").name


class TokenEncoder:
    """Texts to their kept wordpieces' unit vectors, with the engine's int8 encoder
    (``LocalEmbedder.embed_wordpieces``: the pass that makes a page's vector)."""

    def __init__(self, threads: int = 1) -> None:
        from memoryos_core.embeddings import local

        self.embedder = local.LocalEmbedder(precision="int8", threads=threads)
        self.dim = self.embedder.dim
        spec = local._read_spec(local._resolve_folder(None))
        self.dropped = dropped_wordpieces(local._tokenizer(spec.folder, spec.max_seq_length)[0])

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row pointers, kept ids, their unit vectors in fp16, each text's vector as the engine makes it)."""
        vectors, pieces = self.embedder.embed_wordpieces(texts)
        keeps = [~self.dropped[p.ids] for p in pieces]
        kept_ids = [p.ids[keep] for p, keep in zip(pieces, keeps)]
        kept_vectors = [unit(p.vectors[keep]) for p, keep in zip(pieces, keeps)]
        ptr = np.concatenate(([0], np.cumsum([len(i) for i in kept_ids]))).astype(np.int64)
        ids_all = np.concatenate([np.zeros(0, dtype=np.int32), *kept_ids]).astype(np.int32)
        vectors_all = np.concatenate([np.zeros((0, self.dim), dtype=np.float32), *kept_vectors])
        return ptr, ids_all, vectors_all.astype(np.float16), np.array(vectors, dtype=np.float32)


def dropped_wordpieces(tokenizer: Any) -> np.ndarray:
    """Per vocabulary id: [CLS], [SEP], [PAD], or a wordpiece of punctuation only."""
    special = {tokenizer.token_to_id(name) for name in ("[CLS]", "[SEP]", "[PAD]")}
    size = tokenizer.get_vocab_size()
    pieces = (tokenizer.id_to_token(i) or "" for i in range(size))
    return np.array(
        [i in special or not any(c.isalnum() for c in p.removeprefix("##")) for i, p in enumerate(pieces)]
    )


def session_texts(conversation: Conversation) -> list[dict[tuple[str, ...], str]]:
    """Per session (one ``add_memories`` call of ``bench locomo``'s ingest), its pages' texts rendered as
    the engine embeds them, by their turn ids."""
    from memoryos_core._types import render_page

    sessions = []
    for batch in session_pages(conversation):
        by_turns = {}
        for page in batch:
            turns = tuple(canonical_dia_id(str(i)) or str(i) for i in page["meta_data"]["dia_ids"])
            stamp = str(page.get("timestamp") or "").strip()  # as add_memories keeps it
            by_turns[turns] = render_page(
                page.get("user_input") or "", page.get("agent_response") or "", stamp
            )
        sessions.append(by_turns)
    return sessions


def page_texts(data: Path, features: Sequence[ConversationFeatures]) -> list[list[str]]:
    """Each conversation's page texts in the features' page order, rendered as the engine embeds them."""
    conversations = {c.sample_id: c for c in load_locomo(data)}
    out = []
    for f in features:
        by_turns = {
            turns: text for s in session_texts(conversations[f.sample_id]) for turns, text in s.items()
        }
        out.append([by_turns[tuple(turns)] for turns in f.page_turns])
    return out


def build_tokens(
    data: Path, features: Sequence[ConversationFeatures], progress: Callable[[str], None] = lambda line: None
) -> list[Tokens]:
    """Encode every page and question of ``features`` (their texts read from ``data``)."""
    encoder = TokenEncoder(threads=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    questions = {c.sample_id: [q.question for q in c.questions] for c in load_locomo(data)}
    out = []
    for f, texts in zip(features, page_texts(data, features)):
        page_ptr, page_ids, page_vectors, pooled = encoder.encode(texts)
        query_ptr, query_ids, query_vectors, _ = encoder.encode(questions[f.sample_id])
        same = pooled.shape == f.page_vectors.shape
        cosine = (pooled * f.page_vectors).sum(axis=1) if same else np.full(len(texts), np.nan)
        out.append(Tokens(page_ptr, page_ids, page_vectors, query_ptr, query_ids, query_vectors, cosine))
        progress(f"{f.sample_id}: {len(page_ids) / len(texts):.1f} wordpieces a page")
    return out


def tokens_for(
    data: Path,
    features: Sequence[ConversationFeatures],
    key: str,
    cache: Path | None = None,
    progress: Callable[[str], None] = lambda line: None,
) -> list[Tokens]:
    """The token vectors of ``features``: read from ``cache`` when it holds ``key``'s, else built there."""
    key = f"{key}|{encoder_graph_name()}|{TOKENS_FORMAT}"
    names = [field.name for field in fields(Tokens)]
    if cache is not None and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as stored:
                if str(stored["key"]) == key:
                    count = int(stored["count"])
                    tokens = [Tokens(*(stored[f"c{c}_{name}"] for name in names)) for c in range(count)]
                    progress(f"token vectors read from {cache}")
                    return tokens
        except Exception as exc:  # (a truncated or foreign file: built again)
            progress(f"token vectors in {cache} unreadable ({exc}); building them again")
    tokens = build_tokens(data, features, progress)
    if cache is not None:
        arrays = {f"c{c}_{name}": getattr(t, name) for c, t in enumerate(tokens) for name in names}
        with tempfile.NamedTemporaryFile(dir=cache.parent, suffix=".npz", delete=False) as tmp:
            try:
                np.savez(tmp, key=np.array(key), count=np.array(len(tokens)), **arrays)
            except BaseException:
                Path(tmp.name).unlink(missing_ok=True)
                raise
        Path(tmp.name).replace(cache)
        progress(f"token vectors written to {cache}")
    return tokens


def _rows(ptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(len(ptr) - 1), np.diff(ptr))


def _ptr(rows: np.ndarray, count: int) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=count)))).astype(np.int64)


def page_frequency(t: Tokens) -> np.ndarray:
    """Per wordpiece id (up to the largest in pages and questions): the pages holding it."""
    size = int(max(t.page_ids.max(initial=0), t.query_ids.max(initial=0))) + 1
    pairs = np.unique(_rows(t.page_ptr).astype(np.int64) * size + t.page_ids)
    return np.bincount(pairs % size, minlength=size)


def recall_scores(
    query_ptr: np.ndarray,
    query_ids: np.ndarray,
    query_vectors: np.ndarray,
    page_ptr: np.ndarray,
    page_vectors: np.ndarray,
    idf: np.ndarray,
) -> np.ndarray:
    """Questions x pages BERTScore recall: the idf-weighted mean over a question's wordpieces of each one's
    best cosine to the page's (a page without wordpieces counts -1; a question without any scores 0)."""
    pages = len(page_ptr) - 1
    out = np.zeros((len(query_ptr) - 1, pages), dtype=np.float32)
    held = np.diff(page_ptr) > 0
    for q in range(len(query_ptr) - 1):
        start, end = query_ptr[q], query_ptr[q + 1]
        weights = idf[query_ids[start:end]]
        if not weights.sum() > 0:
            continue
        best = np.full((end - start, pages), -1.0, dtype=np.float32)
        sims = query_vectors[start:end] @ page_vectors.T
        best[:, held] = np.maximum.reduceat(sims, page_ptr[:-1][held], axis=1)
        out[q] = weights @ best / weights.sum()
    return out


def pca_basis(vectors: Sequence[np.ndarray], dims: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the ``dims`` leading principal axes (dim x dims) of ``vectors`` (:data:`PCA_SAMPLE` drawn)."""
    x = np.concatenate(vectors).astype(np.float32)
    if len(x) > PCA_SAMPLE:
        x = x[np.random.default_rng(seed).choice(len(x), PCA_SAMPLE, replace=False)]
    mean = x.mean(axis=0)
    values, axes = np.linalg.eigh(((x - mean).T @ (x - mean)).astype(np.float64))
    return mean, axes[:, np.argsort(values)[::-1][:dims]].astype(np.float32)


def fold_basis(tokens: Sequence[Tokens], fold: int, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """The PCA basis of ``fold``: fitted on the page vectors of every conversation but the held-out one."""
    return pca_basis([t.page_vectors for c, t in enumerate(tokens) if c != fold], dims, seed=fold)


def int8_rows(x: np.ndarray) -> np.ndarray:
    """``x`` stored as int8 with an fp16 scale per row, read back."""
    scale = (np.abs(x).max(axis=-1, keepdims=True) / 127).astype(np.float16).astype(np.float32)
    codes = np.clip(np.round(x / np.where(scale > 0, scale, 1.0)), -127, 127)
    stored: np.ndarray = codes * scale
    return stored


def late_scores(
    t: Tokens, form: Form, basis: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[np.ndarray, float]:
    """Questions x pages late scores of one conversation in ``form`` (``basis``: its PCA), and the
    wordpieces a page keeps (mean)."""
    pages = len(t.page_ptr) - 1
    df = page_frequency(t)
    idf = np.log((pages + 1) / (df + 1))
    page_rows, page_ids, page_vectors = _rows(t.page_ptr), t.page_ids, t.page_vectors.astype(np.float32)
    query_rows, query_ids, query_vectors = _rows(t.query_ptr), t.query_ids, t.query_vectors.astype(np.float32)
    if form.frequent:
        frequent = np.zeros(len(df), dtype=bool)
        frequent[np.argsort(-df, kind="stable")[: form.frequent]] = True
        keep = ~frequent[page_ids]
        for page in np.flatnonzero(np.bincount(page_rows[keep], minlength=pages) == 0):
            start, end = t.page_ptr[page], t.page_ptr[page + 1]
            if end > start:  # never empty a page: it keeps its rarest wordpiece
                keep[start + int(np.argmax(idf[page_ids[start:end]]))] = True
        page_rows, page_ids, page_vectors = page_rows[keep], page_ids[keep], page_vectors[keep]
        asked = ~frequent[query_ids]
        asked |= ~(np.bincount(query_rows[asked], minlength=len(t.query_ptr) - 1) > 0)[query_rows]
        query_rows, query_ids, query_vectors = query_rows[asked], query_ids[asked], query_vectors[asked]
    if basis is not None:
        mean, axes = basis
        page_vectors = int8_rows(unit((page_vectors - mean) @ axes).astype(np.float16).astype(np.float32))
        query_vectors = unit((query_vectors - mean) @ axes)
    page_ptr, query_ptr = _ptr(page_rows, pages), _ptr(query_rows, len(t.query_ptr) - 1)
    late = recall_scores(query_ptr, query_ids, query_vectors, page_ptr, page_vectors, idf)
    return late, len(page_ids) / max(pages, 1)


def rerank(fused: np.ndarray, late: np.ndarray, depth: int, weight: float) -> np.ndarray:
    """Questions x pages: the ``depth`` pages ``fused`` ranks first (ties by position, as the scorer breaks
    them) scored ``fused + weight * z(late)``, z over those pages; the other pages below, in their order."""
    order = np.argsort(-fused, axis=-1, kind="stable")
    top, rest = order[:, :depth], order[:, depth:]
    chosen = np.take_along_axis(late, top, axis=-1).astype(np.float64)
    spread = chosen.std(axis=-1, keepdims=True)
    z = (chosen - chosen.mean(axis=-1, keepdims=True)) / np.where(spread > 0, spread, 1.0)
    lifted = np.take_along_axis(fused, top, axis=-1).astype(np.float64) + weight * z
    out = np.empty(fused.shape, dtype=np.float64)
    np.put_along_axis(out, top, lifted, axis=-1)
    if rest.shape[-1]:
        below = np.take_along_axis(fused, rest, axis=-1).astype(np.float64)
        below += lifted.min(axis=-1, keepdims=True) - below.max(axis=-1, keepdims=True) - 1.0
        np.put_along_axis(out, rest, below, axis=-1)
    return out


def _grid(evaluation: Evaluation, fused: list[np.ndarray], late: list[np.ndarray], depth: int) -> np.ndarray:
    """Weights x questions x ks recall of the reranked shipped ranking."""
    return np.stack(
        [
            np.concatenate(
                [s.recall(rerank(f, x, depth, w)) for s, f, x in zip(evaluation.scorers, fused, late)]
            )
            for w in WEIGHTS
        ]
    )


def shipped(evaluation: Evaluation) -> tuple[np.ndarray, list[np.ndarray]]:
    """The shipped ranking: its recall (questions x ks) and each conversation's fused scores."""
    fused = [
        scores(f, Variant(), evaluation.lexical(i, Variant())) for i, f in enumerate(evaluation.features)
    ]
    return evaluation.rows(Variant()), fused


def cross_validate(
    evaluation: Evaluation,
    grids: Sequence[np.ndarray],
    weights: Sequence[float] = WEIGHTS,
    fixed: float | None = None,
) -> tuple[np.ndarray, list[list[float]]]:
    """Held-out recall (questions x ks) of the reranked rankings ``grids`` (per fold, cycled: ``weights``
    x questions x ks) and the weight each fold used at each k: the best on the other conversations at
    that k, or ``fixed`` (one of ``weights``) in every fold."""
    ks = evaluation.ks
    held, chosen = np.zeros(grids[0].shape[1:]), [list[float]() for _ in ks]
    for fold in range(len(evaluation.features)):
        grid, train = grids[fold % len(grids)], evaluation.conversation != fold
        for j in range(len(ks)):
            best = (
                list(weights).index(fixed)
                if fixed is not None
                else int(np.argmax(grid[:, train, j].mean(axis=1)))
            )
            held[~train, j] = grid[best, ~train, j]
            chosen[j].append(float(weights[best]))
    return held, chosen


def late_row(
    evaluation: Evaluation,
    base: np.ndarray,
    held: np.ndarray,
    chosen: list[list[float]],
    form: str,
    depth: int,
    wordpieces: float,
    page_bytes: float,
) -> dict[str, Any]:
    """One row of the table: per k, the held-out gain over ``base`` (the shipped ranking's recall) per
    conversation, mean (sd) better/worse; the pooled held-out recall; the weights the folds used."""
    masks = [evaluation.conversation == c for c in range(len(evaluation.features))]
    ks = evaluation.ks
    gains = [
        _deltas(np.array([100 * (held[m, j].mean() - base[m, j].mean()) for m in masks]))
        for j in range(len(ks))
    ]
    return {
        "form": form,
        "depth": depth,
        "gain": gains,
        "held_out": table(held, evaluation.categories, ks),
        "chosen": {str(k): chosen[j] for j, k in enumerate(ks)},
        "wordpieces_per_page": round(wordpieces, 1),
        "bytes_per_page": round(page_bytes),
    }


def report(row: dict[str, Any], ks: Sequence[int]) -> str:
    """A progress line: the row's mean gain at R@10 (or the first k)."""
    j = list(ks).index(10) if 10 in ks else 0
    return f"late {row['form']} N={row['depth']}: R@{ks[j]} gain {row['gain'][j]['mean']:+.1f}"


def late_table(
    evaluation: Evaluation, tokens: Sequence[Tokens], progress: Callable[[str], None] = lambda line: None
) -> dict[str, Any]:
    """Per form and depth, held-out gain at each k over the shipped ranking (the weight best on the other
    conversations at that k), the pooled held-out recall, the weights chosen and a page's stored bytes."""
    count, ks = len(evaluation.features), evaluation.ks
    base, fused = shipped(evaluation)
    rows = []
    for form in FORMS:
        lates = []  # per fold: every conversation's late scores (under the fold's PCA)
        for fold in range(count if form.dims else 1):
            basis = fold_basis(tokens, fold, form.dims) if form.dims else None
            scored = [late_scores(t, form, basis) for t in tokens]
            lates.append([late for late, _ in scored])
        pages = np.array([len(t.page_ptr) - 1 for t in tokens])
        wordpieces = float(np.array([kept for _, kept in scored]) @ pages / pages.sum())
        page_bytes = wordpieces * form.wordpiece_bytes(tokens[0].page_vectors.shape[-1])
        for depth in DEPTHS:
            grids = [_grid(evaluation, fused, late, depth) for late in lates]
            held, chosen = cross_validate(evaluation, grids)
            rows.append(late_row(evaluation, base, held, chosen, form.name, depth, wordpieces, page_bytes))
            progress(report(rows[-1], ks))
    cosine = np.concatenate([t.page_cosine for t in tokens])
    return {
        "rows": rows,
        "shipped": table(base, evaluation.categories, ks),
        "weights": list(WEIGHTS),
        "forms": [{"name": f.name, "dims": f.dims, "frequent": f.frequent} for f in FORMS],
        "pca_sample": PCA_SAMPLE,
        "pooled_page_cosine_min": round(float(np.min(cosine)), 4),
    }


def print_late(console: Console, result: dict[str, Any], ks: Sequence[int]) -> None:
    """The late rerank's table: held-out gain at each k over the shipped ranking."""
    title = (
        "late interaction rerank, leave one conversation out: gain over the shipped ranking (mean, sd, b/w)"
    )
    at = "10" if 10 in ks else str(ks[0])
    shipped = result["shipped"].get(at, {})
    caption = f"shipped R@{at} {shipped.get('all', 0):.1f} / {shipped.get('1-4', 0):.1f}; w: chosen at R@{at}"
    out = Table(title=title, caption=caption, pad_edge=False)  # (80 columns with "1.2-1.6" in w)
    out.add_column("form", min_width=7)  # not "compa…" in 80 columns ("engine cv" wraps)
    for column in ("N", *(f"R@{k}" for k in ks), f"R@{at} all / 1-4"):
        out.add_column(column, justify="right")
    out.add_column("bytes a page", justify="right", min_width=6)
    out.add_column("w", justify="right", no_wrap=True, min_width=5)
    for row in result["rows"]:
        cells = [f"{g['mean']:+.1f} ({g['std']:.1f}) {g['better']}/{g['worse']}" for g in row["gain"]]
        held, weights = row["held_out"].get(at, {}), row["chosen"][at]
        span = f"{min(weights):g}-{max(weights):g}" if len(set(weights)) > 1 else f"{weights[0]:g}"
        out.add_row(
            row["form"],
            str(row["depth"]),
            *cells,
            f"{held.get('all', 0):.1f} / {held.get('1-4', 0):.1f}",
            f"{row['bytes_per_page']:,}",
            span,
        )
    console.print(out)
