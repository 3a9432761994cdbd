"""``memoryos bench fusion``: the vectorised scoring equals bench locomo's, and the command end to end."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from memoryos_core.bench import fusion
from memoryos_core.bench.cli import bench_app
from memoryos_core.bench.fusion_data import ConversationFeatures, term_counts
from memoryos_core.bench.metrics import expand_turns, recall
from memoryos_core.engine.lexical import K1, B, PageIndex, tokens
from memoryos_core.policy import ranking, term_context

WORDS = "lake trail sister paris guitar lesson cake recipe chess garden dog walk".split()


def _text(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(low, high))))


def _features(questions: int, pages: int, seed: int) -> ConversationFeatures:
    rng = np.random.default_rng(seed)
    vocab: dict[str, int] = {}
    documents = [tokens(_text(rng, 1, 9)) for _ in range(pages)]
    queries = [tokens(_text(rng, 1, 4)) for _ in range(questions)]
    page_ptr, page_term, page_count = term_counts(documents, vocab, grow=True)
    query_ptr, query_term, query_count = term_counts(queries, vocab, grow=False)
    page_turns = [
        [f"D1:{2 * p + 1}", f"D1:{2 * p + 2}"] if p % 3 else [f"D1:{2 * p + 1}"] for p in range(pages)
    ]
    turns = [t for ts in page_turns for t in ts]
    shape = (questions, pages)
    return ConversationFeatures(
        sample_id=f"conv-{seed}",
        page_turns=page_turns,
        times=np.arange(pages, dtype=np.float64) * 600.0,
        timed=rng.random(pages) > 0.7,
        segment=np.full(pages, -1, dtype=np.int64),
        categories=rng.integers(1, 6, size=questions),
        evidence=[
            list(rng.choice(turns, size=int(rng.integers(1, 4)), replace=False)) for _ in range(questions)
        ],
        when=rng.random(questions) > 0.5,
        window=np.full((questions, 2), np.nan),
        # Rounded, so that ties occur and their order (conversation order) is checked too.
        lexical=np.round(rng.gamma(0.4, 2.0, size=shape), 1).astype(np.float32),
        lexical_raw=rng.gamma(0.4, 2.0, size=shape).astype(np.float32),
        dense=rng.normal(0.3, 0.1, size=shape).astype(np.float32),
        segment_lexical=np.zeros((questions, 0), dtype=np.float32),
        segment_dense=np.zeros((questions, 0), dtype=np.float32),
        page_ptr=page_ptr,
        page_term=page_term,
        page_count=page_count,
        query_ptr=query_ptr,
        query_term=query_term,
        query_count=query_count,
    )


def test_scorer_recall_equals_the_turn_expansion_of_bench_locomo() -> None:
    features = _features(questions=12, pages=30, seed=3)
    ks = (1, 5, 10, 25)
    scores = np.round(fusion.scores(features, fusion.Variant()), 1)  # ties on purpose
    got = fusion.Scorer(features, ks).recall(scores)
    for q, evidence in enumerate(features.evidence):
        order = np.argsort(-scores[q], kind="stable")
        ranked = expand_turns([features.page_turns[p] for p in order], max(ks))
        assert got[q].tolist() == [recall(evidence, ranked[:k]) for k in ks]


def test_term_signals_from_the_cached_counts_equal_the_engines(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    documents = [_text(rng, 2, 12) for _ in range(40)]
    questions = ["lake trail", "sister in paris", "chess chess dog", "unicorn"]
    index = PageIndex()
    for position, text in enumerate(documents):
        index.add(str(position), text, float(position))
    engine = []
    for question in questions:
        count, bm25, _ = index.snapshot(tokens(question))
        engine.append(term_context.lexical(bm25, *index.matches(tokens(question), count), k1=K1, b=B))
    vocab: dict[str, int] = {}
    pages = term_counts([tokens(d) for d in documents], vocab, grow=True)
    asked = term_counts([tokens(q) for q in questions], vocab, grow=False)
    features = _features(len(questions), len(documents), seed=1)
    features.page_ptr, features.page_term, features.page_count = pages
    features.query_ptr, features.query_term, features.query_count = asked
    bench = fusion.term_lexical(
        features, np.stack([index.bm25(tokens(q)) for q in questions]), term_context.DEFAULT
    )
    assert np.allclose(bench, np.stack(engine), atol=1e-5)
    assert not np.allclose(bench[0], index.bm25(tokens(questions[0])))  # the signals change the scores


def test_candidate_dense_scores_equal_the_engines_for_each_query() -> None:
    sims = np.random.default_rng(5).normal(0.3, 0.1, size=(6, 80)).astype(np.float32)
    matrix = fusion.candidate_dense_z(sims, candidates=20)
    for row in range(6):
        top = np.argsort(-sims[row])[:20]
        known = {int(i): float(sims[row, i]) for i in top}
        assert np.allclose(matrix[row], ranking.dense_z(80, known), atol=1e-5)


def test_cross_validation_scores_each_conversation_with_weights_chosen_on_the_others() -> None:
    evaluation = fusion.Evaluation([_features(8, 20, seed) for seed in (1, 2, 3)], ks=(5, 10))
    variants = fusion.grid(fusion.Variant(), {"dense": (0.0, 0.85, 3.0)})
    held, chosen = fusion.cross_validate(evaluation, variants)
    assert len(held) == len(chosen) == 3
    for fold, variant in enumerate(chosen):
        train = evaluation.conversation != fold
        means = [evaluation.rows(v)[train, 1].mean() for v in variants]
        assert evaluation.rows(variant)[train, 1].mean() == max(means)
        assert held[fold] == 100 * evaluation.rows(variant)[~train, 1].mean()


def test_the_cache_key_tells_the_models_precisions_apart(locomo_file: Callable[..., Path]) -> None:
    from memoryos_core.bench.fusion_data import cache_key
    from memoryos_core.embeddings.local import LocalEmbedder

    data = locomo_file()
    keys = {p: cache_key(data, LocalEmbedder(precision=p), None) for p in ("int8", "fp32")}
    assert keys["int8"] != keys["fp32"]  # (a cache of one precision is never read for the other)
    assert keys["int8"] == cache_key(data, LocalEmbedder(), None)  # the default, a new store's: int8


@pytest.mark.parametrize("option", [[], ["--learn"], ["--expansion"]])
def test_a_file_of_one_conversation_is_refused_with_a_clear_error(
    locomo_file: Callable[..., Path], tmp_path: Path, option: list[str]
) -> None:
    one = tmp_path / "one.json"
    one.write_text(json.dumps(json.loads(locomo_file().read_text())[:1]))
    out = tmp_path / "fusion.json"
    args = ["fusion", "--data", str(one), "--embedder", "hash", "--out", str(out), *option]
    result = CliRunner().invoke(bench_app, args)
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)  # an error line, no traceback
    assert "needs two or more, it has 1" in " ".join(result.output.split()) and not out.exists()


def test_command_prints_cross_validation_and_ablation_and_reuses_its_cache(
    locomo_file: Callable[..., Path], tmp_path: Path
) -> None:
    data, cache, out = locomo_file(), tmp_path / "features.npz", tmp_path / "fusion.json"
    args = ["fusion", "--data", str(data), "--embedder", "hash", "--cache", str(cache), "--out", str(out)]
    args += ["--expansion", "--learn"]
    first = CliRunner().invoke(bench_app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert cache.exists() and "features written" in first.output
    result = json.loads(out.read_text())
    assert result["conversations"] == 2 and result["k"] == [5, 10, 25, 50]
    cv = result["cross_validation"]
    assert cv["conversations"] == ["conv-1", "conv-2"] and len(cv["tuned_held_out"]) == 2
    rules = {row["rule"].split(" (")[0] for row in result["ablation"]}
    assert rules == {*fusion.RULES, "stemming"}
    assert {"query-term coverage", "neighbour text"} <= rules
    assert [row["k"] for row in result["expansion"]] == [5, 10, 25, 50]
    assert "query expansion by word vectors" in first.output
    assert "learned fusion" in first.output and len(result["learned"]["rows"]) == 7
    assert all(len(row["gain"]) == 4 for row in result["learned"]["rows"])
    second = CliRunner().invoke(bench_app, args)
    assert second.exit_code == 0 and "features read" in second.output
    assert json.loads(out.read_text()) == result
