"""The words BM25 ranks: lower-cased, Snowball's English stems, stop words out, numbers in; the same
stems from many threads at once (one stemmer object, behind a lock)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from memoryos_core.engine import lexical
from memoryos_core.engine.lexical import tokens


def test_inflections_share_a_stem_and_stop_words_go() -> None:
    assert tokens("Caroline went RUNNING; she runs 5 km with the running club!") == [
        "carolin", "went", "run", "run", "5", "km", "run", "club",
    ]  # fmt: skip
    assert tokens("The happiness of painting sunrises") == ["happi", "paint", "sunris"]
    assert tokens("I was there, and they were too") == []


def test_threads_stemming_at_once_get_the_same_stems() -> None:
    stems, endings = ("paint", "hik", "adopt", "volunteer"), ("ing", "ed", "s")
    words = [f"{stem}{ending}" for stem in stems for ending in endings]
    texts = [" ".join(words[i:] + words[:i]) + f" w{i}ing" for i in range(200)]
    expected = [tokens(text) for text in texts]
    lexical._stem.cache_clear()  # every word stemmed again, by eight threads at once
    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(tokens, texts)) == expected
