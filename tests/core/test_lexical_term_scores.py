"""PageIndex keeps each kept posting's BM25 term scores between queries: the scores stay byte-identical
to a fresh index's as pages are added (idf and length norm change with the page count)."""

from __future__ import annotations

from memoryos_core.engine.lexical import PageIndex, tokens
from tests.core.test_lexical_store import in_memory, pages

QUERIES = ["hiking trail", "sister dinner pasta yesterday", "lisbon 7", "coffee coffee", "nothing here"]


def test_kept_term_scores_equal_a_fresh_index_s_as_pages_are_added() -> None:
    records = pages(150)
    index = in_memory(records[:50])
    for held in (50, 50, 51, 120, 120, 150):
        for record in records[len(index) : held]:
            index.add(record.id, record.document, float(record.metadata["ts_s"]))
        fresh = in_memory(records[:held])
        for query in QUERIES * 2:  # the second time from the kept term scores
            assert index.bm25(tokens(query)).tobytes() == fresh.bm25(tokens(query)).tobytes(), (held, query)
    assert index._term_scores and index._terms_count == 150


def test_kept_term_scores_stay_within_the_keep_budget() -> None:
    index = PageIndex(in_memory(pages(200)).to_snapshot())
    index._keep_budget = len(index._base[1]) // 3
    fresh = in_memory(pages(200))
    for query in QUERIES * 3:
        assert index.bm25(tokens(query)).tobytes() == fresh.bm25(tokens(query)).tobytes(), query
        assert 0 < index._term_scores_size == sum(len(s) for _, s in index._term_scores.values())
        assert index._term_scores_size <= index._keep_budget
