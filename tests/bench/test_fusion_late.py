"""``bench fusion --late``: the rerank keeps the shipped ranking at weight 0 and below its top N, the late
score weighs words by idf, a fold's PCA never sees the held-out conversation, and the command end to end."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from memoryos_core.bench import fusion, fusion_late
from memoryos_core.bench.cli import bench_app
from memoryos_core.policy.late import unit
from tests.bench.test_fusion import _features

PREBUILT_GRAPHS = ("int8",)  # the engine's graph, which gives the wordpieces too (tests/conftest.py)
SAMPLE = Path(__file__).resolve().parents[2] / "notebooks" / "data" / "locomo_sample.json"


def _ranking(scores: np.ndarray) -> np.ndarray:
    """Each row's pages best first, ties by position (as :class:`fusion.Scorer` breaks them)."""
    return np.argsort(-scores, axis=-1, kind="stable")


def test_at_weight_zero_the_rerank_is_the_shipped_ranking() -> None:
    rng = np.random.default_rng(4)
    fused = rng.integers(0, 6, size=(20, 40)).astype(np.float32)  # many ties, at every cut too
    late = rng.normal(size=fused.shape).astype(np.float32)
    for depth in (1, 7, 25, 40, 100):
        assert np.array_equal(_ranking(fusion_late.rerank(fused, late, depth, 0.0)), _ranking(fused))
    assert not np.array_equal(_ranking(fusion_late.rerank(fused, late, 25, 1.0)), _ranking(fused))
    evaluation = fusion.Evaluation([_features(12, 30, seed) for seed in (1, 2)])
    shipped = [fusion.scores(f, fusion.Variant()) for f in evaluation.features]
    lates = [rng.normal(size=s.shape) for s in shipped]
    grid = fusion_late._grid(evaluation, shipped, lates, depth=10)
    assert fusion_late.WEIGHTS[0] == 0.0 and np.array_equal(grid[0], evaluation.rows(fusion.Variant()))


def test_the_rerank_reorders_the_top_pages_only() -> None:
    rng = np.random.default_rng(5)
    fused = rng.normal(size=(30, 50))
    late = rng.normal(size=fused.shape)
    before = _ranking(fused)
    after = _ranking(fusion_late.rerank(fused, late, 12, 8.0))
    assert np.array_equal(np.sort(after[:, :12]), np.sort(before[:, :12]))  # the same pages on top
    assert np.array_equal(after[:, 12:], before[:, 12:])  # the others where they were
    assert not np.array_equal(after[:, :12], before[:, :12])
    # within the top, a large weight orders by the late score
    top_late = np.take_along_axis(late, after[:, :12], axis=-1)
    assert (np.diff(top_late, axis=-1) <= 0).mean() > 0.8


def _tokens(page_ids: list[list[int]], query_ids: list[list[int]], dim: int = 8) -> fusion_late.Tokens:
    """Tokens whose vectors are one-hot per wordpiece id: a wordpiece matches itself only."""
    vectors = np.eye(max(i for row in page_ids + query_ids for i in row) + 1, dim, dtype=np.float16)

    def csr(rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        ids = np.array([i for row in rows for i in row], dtype=np.int32)
        return np.cumsum([0] + [len(row) for row in rows]), ids, vectors[ids]

    return fusion_late.Tokens(*csr(page_ids), *csr(query_ids), np.ones(len(page_ids), dtype=np.float32))


def test_the_late_score_is_the_idf_weighted_recall_of_the_question_words() -> None:
    # Question: a rare word (1) and a common one (2); page 0 holds the rare one, page 1 the common one.
    pages = [[1, 5], [2, 5], [2, 3], [2, 4], [3, 4, 5], [6]]
    tokens = _tokens(pages, [[1, 2], [7]])
    late, kept = fusion_late.late_scores(tokens, fusion_late.Form("full"))
    rare, common = np.log(7 / 2), np.log(7 / 4)  # log((pages + 1) / (pages holding it + 1)): 1 and 3 pages
    assert late[0, 0] == pytest.approx(rare / (rare + common))
    assert late[0, 1] == pytest.approx(common / (rare + common))
    assert late[0, 0] > late[0, 1] > late[0, 4] == late[0, 5] == 0.0
    assert late[0, 1] == pytest.approx(late[0, 2]) == pytest.approx(late[0, 3])
    uniform = fusion_late.recall_scores(
        tokens.query_ptr,
        tokens.query_ids,
        tokens.query_vectors.astype(np.float32),
        tokens.page_ptr,
        tokens.page_vectors.astype(np.float32),
        np.ones(8),
    )
    assert uniform[0, 0] == uniform[0, 1] == 0.5  # without idf the two pages tie
    assert late[1].tolist() == [0.0] * 6  # a word no page holds matches nothing (orthogonal vectors)
    assert kept == len(tokens.page_ids) / len(pages) == 2
    assert fusion_late.Form("full").wordpiece_bytes(384) == 768  # fp16
    assert fusion_late.Form("compact", dims=64).wordpiece_bytes(384) == 66  # int8 and an fp16 scale


def test_dropping_frequent_words_never_empties_a_page_or_a_question() -> None:
    pages = [[2, 1], [2], [2, 3], [2, 3], [2, 4], [5]]  # 2 is the most frequent (5 pages)
    tokens = _tokens(pages, [[2], [2, 1]])
    late, kept = fusion_late.late_scores(tokens, fusion_late.Form("x", frequent=1))
    assert kept == 1  # one wordpiece left in each page (page 1 keeps its only one)
    assert late[0, 1] == 1.0 and late[0, 0] == 0.0  # question 0 kept its word; page 0 kept 1, not 2
    assert late[1, 0] == 1.0 and late[1, 1] == 0.0  # question 1 lost 2 but kept 1


def _random_tokens(pages: int, questions: int, seed: int, axis: np.ndarray) -> fusion_late.Tokens:
    """Random unit vectors (dim 16) stretched along ``axis``, 1-4 wordpieces a page, 2 a question."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, size=pages)
    page_vectors = (
        rng.normal(size=(int(counts.sum()), 16)) + 6 * rng.normal(size=(int(counts.sum()), 1)) * axis
    )
    query_vectors = rng.normal(size=(2 * questions, 16))
    return fusion_late.Tokens(
        np.concatenate(([0], np.cumsum(counts))),
        rng.integers(0, 30, size=int(counts.sum())).astype(np.int32),
        unit(page_vectors).astype(np.float16),
        np.arange(0, 2 * questions + 1, 2),
        rng.integers(0, 30, size=2 * questions).astype(np.int32),
        unit(query_vectors).astype(np.float16),
        np.ones(pages, dtype=np.float32),
    )


def test_a_folds_pca_is_fitted_without_the_held_out_conversation() -> None:
    held_axis, other_axis = np.eye(16)[0], np.eye(16)[1]
    tokens = [_random_tokens(30, 5, 0, held_axis), *(_random_tokens(30, 5, s, other_axis) for s in (1, 2))]
    mean, axes = fusion_late.fold_basis(tokens, 0, dims=4)
    assert axes.shape == (16, 4) and abs(float(axes[:, 0] @ other_axis)) > 0.95  # the others' main axis
    changed = [
        replace(tokens[0], page_vectors=tokens[1].page_vectors[: len(tokens[0].page_ids)]),
        *tokens[1:],
    ]
    again = fusion_late.fold_basis(changed, 0, dims=4)
    assert np.array_equal(again[0], mean) and np.array_equal(again[1], axes)  # held-out pages unused
    trained = [tokens[0], replace(tokens[1], page_vectors=tokens[0].page_vectors[:5]), tokens[2]]
    assert not np.array_equal(fusion_late.fold_basis(trained, 0, dims=4)[1], axes)  # training pages used
    spanned = fusion_late.fold_basis(tokens, 1, dims=2)[1]  # conversation 0 trains fold 1
    assert np.linalg.norm(spanned.T @ held_axis) > 0.9 and np.linalg.norm(spanned.T @ other_axis) > 0.9


def test_the_table_cross_validates_each_form_and_depth() -> None:
    evaluation = fusion.Evaluation([_features(10, 24, seed) for seed in (1, 2, 3)], ks=(5, 10))
    tokens = [_random_tokens(24, 10, seed, np.eye(16)[0]) for seed in (1, 2, 3)]
    result = fusion_late.late_table(evaluation, tokens)
    expected = [(form.name, depth) for form in fusion_late.FORMS for depth in fusion_late.DEPTHS]
    assert [(row["form"], row["depth"]) for row in result["rows"]] == expected
    for row in result["rows"]:
        assert len(row["gain"]) == 2 and all(g["better"] + g["worse"] <= 3 for g in row["gain"])
        assert set(row["chosen"]) == {"5", "10"} and all(len(c) == 3 for c in row["chosen"].values())
        assert set(row["held_out"]) == {"5", "10"}
    full, compact = result["rows"][0]["bytes_per_page"], result["rows"][-1]["bytes_per_page"]
    assert compact < full  # int8 in at most 16 dimensions, fewer wordpieces


@pytest.mark.usefixtures("private_onnx_cache")
def test_words_of_the_question_score_higher_with_the_real_encoder() -> None:
    encoder = fusion_late.TokenEncoder()
    texts = [
        "User: Ann adopted a golden retriever puppy called Biscuit.",
        "User: The weather in Lisbon was rainy all week.",
        "User: My sister Clara visits from Berlin next week.",
    ]
    page_ptr, page_ids, page_vectors, pooled = encoder.encode(texts)
    query_ptr, query_ids, query_vectors, _ = encoder.encode(["What is the name of Ann's golden retriever?"])
    assert not encoder.dropped[page_ids].any() and np.allclose(np.linalg.norm(pooled, axis=1), 1.0)
    tokens = fusion_late.Tokens(
        page_ptr, page_ids, page_vectors, query_ptr, query_ids, query_vectors, np.ones(3, np.float32)
    )
    late, _ = fusion_late.late_scores(tokens, fusion_late.Form("full"))
    assert late[0, 0] > late[0, 1] + 0.05 and late[0, 0] > late[0, 2] + 0.05


def _steady(out: Path) -> dict[str, Any]:
    """The late result written to ``out`` without its timings."""
    late: dict[str, Any] = json.loads(out.read_text())["late"]
    for timing in ("encode_s", "seconds"):
        late["engine"].pop(timing)
    return late


@pytest.mark.usefixtures("private_onnx_cache")
def test_command_reranks_late_on_the_sample_and_reuses_its_token_cache(tmp_path: Path) -> None:
    sample = json.loads(SAMPLE.read_text())
    alone = tmp_path / "sample.json"
    alone.write_text(json.dumps(sample))
    one = CliRunner().invoke(bench_app, ["fusion", "--data", str(alone), "--embedder", "hash", "--late"])
    assert one.exit_code == 1 and "two or more" in one.output  # leave-one-out needs two conversations
    # The sample twice (a second user with the same chat): two conversations to leave out in turn.
    data = tmp_path / "sample-twice.json"
    data.write_text(json.dumps([*sample, {**sample[0], "sample_id": "sample-ann-2"}]))
    cache, out = tmp_path / "features.npz", tmp_path / "fusion.json"
    args = ["fusion", "--data", str(data), "--cache", str(cache), "--out", str(out), "--late"]
    first = CliRunner().invoke(bench_app, args)
    assert first.exit_code == 0, first.output + repr(first.exception)
    assert (tmp_path / "features.tokens.npz").exists() and "token vectors written" in first.output
    late = _steady(out)
    assert "late interaction rerank" in first.output
    assert [(row["form"], row["depth"]) for row in late["rows"]] == [
        *((form.name, depth) for form in fusion_late.FORMS for depth in fusion_late.DEPTHS),
        ("engine cv", 100),
        ("engine", 100),
    ]
    assert late["rows"][-1]["chosen"]["10"] == [2.0, 2.0]  # the shipped weight, in both folds
    assert late["engine"]["dims"] == [384, 384]  # fewer pages than FIT_PAGES: no basis yet
    assert late["pooled_page_cosine_min"] > 0.999  # page texts rendered as the engine embedded them
    second = CliRunner().invoke(bench_app, args)
    assert second.exit_code == 0 and "token vectors read" in second.output
    assert _steady(out) == late
    (tmp_path / "features.tokens.npz").write_bytes(b"half a file")  # truncated: built again, not a crash
    third = CliRunner().invoke(bench_app, args)
    assert third.exit_code == 0 and "unreadable" in third.output and "token vectors written" in third.output
    assert _steady(out) == late
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".npz") == [
        "features.npz",
        "features.tokens.npz",
    ]
