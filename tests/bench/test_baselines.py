"""The BM25 and dense baselines over a conversation's turns."""

from __future__ import annotations

from collections.abc import Sequence

from memoryos_core import HashingEmbedder
from memoryos_core.bench.baselines import BM25Turns, DenseTurns, bm25_tokens
from memoryos_core.bench.locomo_data import load_locomo


def test_bm25_tokens_are_lowercase_words_without_stop_words() -> None:
    assert (
        bm25_tokens("[8 May, 2023] Ann: I adopted the Biscuit! Don't")
        == "8 may 2023 ann adopted biscuit".split()
    )


def test_bm25_and_dense_find_the_turn_that_shares_the_words(locomo_file) -> None:  # type: ignore[no-untyped-def]
    conversation = load_locomo(locomo_file())[0]
    bm25 = BM25Turns(conversation.turns)
    dense = DenseTurns(conversation.turns, HashingEmbedder(256))
    assert bm25.search("Who visits from Berlin?", 3)[0] == "D10:1"
    assert dense.search("sister Clara Berlin", 3)[0] == "D10:1"
    assert len(bm25.search("dog", 100)) == len(conversation.turns) == 10
    # The session date is part of every turn's document.
    assert conversation.turns[0].document.startswith("[1:56 pm on 8 May, 2023] Ann: ")


class _QueryPromptEmbedder(HashingEmbedder):
    """A model with a query side, as E5 or EmbeddingGemma have: queries get their own prompt."""

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed([f"sister Clara Berlin {text}" for text in texts])


def test_dense_baseline_embeds_the_question_with_the_query_side(locomo_file) -> None:  # type: ignore[no-untyped-def]
    conversation = load_locomo(locomo_file())[0]
    plain = DenseTurns(conversation.turns, HashingEmbedder(256))
    prompted = DenseTurns(conversation.turns, _QueryPromptEmbedder(256))
    assert plain.search("xylophone", 1) != ["D10:1"]
    assert prompted.search("xylophone", 1) == ["D10:1"]
