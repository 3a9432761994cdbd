"""``bench fusion --expansion``: a question word no page holds is matched by its nearest vocabulary words."""

from __future__ import annotations

import numpy as np

from memoryos_core.bench import fusion, fusion_expand
from memoryos_core.bench.fusion_data import ConversationFeatures, term_counts
from memoryos_core.engine.lexical import PageIndex, tokens
from memoryos_core.policy import term_context

PAGES = [
    "we walked the dog by the lake",
    "my mom bakes bread every sunday",
    "the chess club meets on friday",
    "my sister moved to paris",
    "the garden needs rain",
    "dog food is expensive",
]
QUESTIONS = ["what does her mother bake", "where did the dog walk", "when does the chess club meet"]
WORDS = ["lake", "walked", "dog", "mom", "mother", "bakes", "bake", "bread", "sunday", "chess", "club"]


def _vectors(lexicon: list[str]) -> np.ndarray:
    """Orthogonal unit vectors, except "mother" at cosine 0.8 to "mom" (and 0.6 to "sister")."""
    dim = len(lexicon) + 2
    vectors = np.eye(len(lexicon), dim, dtype=np.float32)
    for row, word in enumerate(lexicon):
        if word == "mother":
            vectors[row] = 0.0
            vectors[row, lexicon.index("mom")] = 0.8
            vectors[row, lexicon.index("sister")] = 0.6
    return vectors.astype(np.float16)


def _features() -> ConversationFeatures:
    vocab: dict[str, int] = {}
    pages = term_counts([tokens(p) for p in PAGES], vocab, grow=True)
    asked = term_counts([tokens(q) for q in QUESTIONS], vocab, grow=False)
    index = PageIndex()
    for position, text in enumerate(PAGES):
        index.add(str(position), text, float(position))
    by_id = sorted(vocab, key=vocab.__getitem__)
    surface = {tokens(w)[0]: w for p in PAGES for w in p.split() if tokens(w)}
    query_words = [[[tokens(w)[0], w] for w in q.split() if tokens(w)] for q in QUESTIONS]
    lexicon = sorted({surface[t] for t in by_id} | {w for row in query_words for _, w in row})
    count = len(PAGES)
    return ConversationFeatures(
        sample_id="conv-x",
        page_turns=[[f"D1:{p + 1}"] for p in range(count)],
        times=np.arange(count, dtype=np.float64),
        timed=np.zeros(count, dtype=bool),
        segment=np.full(count, -1, dtype=np.int64),
        categories=np.ones(len(QUESTIONS), dtype=np.int64),
        evidence=[["D1:2"], ["D1:1"], ["D1:3"]],
        when=np.zeros(len(QUESTIONS), dtype=bool),
        window=np.full((len(QUESTIONS), 2), np.nan),
        lexical=np.stack([index.bm25(tokens(q)) for q in QUESTIONS]).astype(np.float32),
        lexical_raw=np.zeros((len(QUESTIONS), count), dtype=np.float32),
        dense=np.zeros((len(QUESTIONS), count), dtype=np.float32),
        segment_lexical=np.zeros((len(QUESTIONS), 0), dtype=np.float32),
        segment_dense=np.zeros((len(QUESTIONS), 0), dtype=np.float32),
        page_ptr=pages[0],
        page_term=pages[1],
        page_count=pages[2],
        query_ptr=asked[0],
        query_term=asked[1],
        query_count=asked[2],
        vocab=by_id,
        surface=[surface[t] for t in by_id],
        query_words=query_words,
        lexicon=lexicon,
        word_vectors=_vectors(lexicon),
    )


def test_without_expansion_the_scores_are_the_engines_term_signals() -> None:
    features = _features()
    evaluation = fusion_expand.ExpandedEvaluation([features])
    off = fusion_expand.ExpandedVariant()
    expected = fusion.term_lexical(features, features.lexical, term_context.DEFAULT)
    assert np.allclose(evaluation.lexical(0, off), expected)
    space = evaluation.spaces[0]
    for q in range(len(QUESTIONS)):  # also with an expansion that finds nothing above its threshold
        quiet = space.lexical(q, fusion_expand.Expansion(threshold=0.9, weight=2.0), term_context.DEFAULT)
        assert np.allclose(quiet, expected[q], atol=1e-5)


def test_a_missing_word_is_matched_by_its_nearest_vocabulary_word_above_the_threshold() -> None:
    space = fusion_expand.WordSpace(_features())
    weights = term_context.DEFAULT
    before = space.lexical(0, fusion_expand.Expansion(), weights)
    after = space.lexical(0, fusion_expand.Expansion(threshold=0.7, per_word=3, weight=2.0), weights)
    # "mother" (in no page) reaches "mom" (cosine 0.8), not "sister" (0.6, under the threshold).
    assert np.argmax(after) == 1 and after[1] > before[1]
    assert after[3] == after[0] == after[5]  # the sister's page, like the others holding no query word
    lower = space.lexical(0, fusion_expand.Expansion(threshold=0.7, per_word=3, weight=1.0), weights)
    assert before[1] < lower[1] < after[1]  # the weight scales it
    # Words that some page holds are not expanded: the other questions do not change.
    for q in (1, 2):
        same = space.lexical(q, fusion_expand.Expansion(threshold=0.05, per_word=5, weight=4.0), weights)
        assert np.allclose(same, space.lexical(q, fusion_expand.Expansion(), weights), atol=1e-5)


def test_the_table_cross_validates_the_expansion_against_the_shipped_ranking() -> None:
    rows = fusion_expand.expansion_table([_features(), _features()], ks=(1, 5))
    assert [row["k"] for row in rows] == [1, 5]
    assert all(len(row["chosen"]) == 2 for row in rows)
    assert all(row["tuned"]["better"] + row["tuned"]["worse"] <= 2 for row in rows)
