"""retrieve_memory embeds the query in a thread of the recall pool while it scores the pages' words:
same results as a vector given up front, the embedder's errors raised as before, its costs counted,
a bounded wait, and no thread left after close."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait

import pytest

from memoryos_core import EmbeddingError, HashingEmbedder, MemoryOS
from memoryos_core._types import ChatMessage
from memoryos_core.embeddings.base import embed_queries
from memoryos_core.engine import retrieval
from memoryos_core.llm.fake import FunctionLLM
from memoryos_core.llm.tokens import TokenCounter
from memoryos_core.llm.usage import CountingLLM, carrying, measure
from tests.conftest import topic_pages


class ThreadEmbedder(HashingEmbedder):
    """A HashingEmbedder that records the thread of each query embedding; can fail or wait."""

    def __init__(self) -> None:
        super().__init__(64)
        self.threads: list[str] = []
        self.error: Exception | None = None
        self.release: threading.Event | None = None
        self.llm: CountingLLM | None = None

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        self.threads.append(threading.current_thread().name)
        if self.release is not None:
            self.release.wait(30)
        if self.error is not None:
            raise self.error
        if self.llm is not None:  # an embedder that asks an LLM (say, to rewrite the query)
            self.llm.complete([ChatMessage(role="user", content=texts[0])])
        return self.embed(texts)


def _filled(make_memory: Callable[..., MemoryOS], embedder: ThreadEmbedder) -> MemoryOS:
    memory = make_memory(embedder=embedder, short_term_capacity=3)
    memory.add_memories([*topic_pages("hiking", 8), *topic_pages("cooking", 8), *topic_pages("coding", 8)])
    return memory


def test_the_query_is_embedded_in_the_recall_pool_with_the_same_result(
    make_memory: Callable[..., MemoryOS],
) -> None:
    embedder = ThreadEmbedder()
    memory = _filled(make_memory, embedder)
    for query in ("mountain trail boots", "pasta with basil", "unit tests for python", "zzz"):
        embedder.threads.clear()
        got = memory.retrieve_memory(query, update_heat=False)
        assert [name.startswith("memoryos-recall") for name in embedder.threads] == [True]
        vector = embed_queries(embedder, [query])[0]  # the vector given up front, as before
        given = memory._retriever.recall("alice", memory.assistant_id, query, vector, None)
        assert repr(got.units) == repr(given.units) and got.units
        assert repr(got.short_term) == repr(given.short_term) and got.profile == given.profile


def test_an_embedding_error_is_raised_by_retrieve_memory(make_memory: Callable[..., MemoryOS]) -> None:
    embedder = ThreadEmbedder()
    memory = _filled(make_memory, embedder)
    embedder.error = EmbeddingError("model unavailable", backend="test")
    with pytest.raises(EmbeddingError, match="model unavailable"):
        memory.retrieve_memory("mountain trail")
    embedder.error = None
    assert memory.retrieve_memory("mountain trail").units


def test_the_costs_of_the_query_embedding_reach_the_recall_and_the_callers_tallies(
    make_memory: Callable[..., MemoryOS],
) -> None:
    embedder = ThreadEmbedder()
    memory = _filled(make_memory, embedder)
    embedder.llm = CountingLLM(FunctionLLM(lambda messages, json_mode: "ok"), TokenCounter())
    with measure() as outer:
        context = memory.retrieve_memory("mountain trail")
    assert [name.startswith("memoryos-recall") for name in embedder.threads[-1:]] == [True]
    assert context.cost.llm_calls == 1 and context.cost.prompt_tokens > 0
    assert outer.cost.llm_calls == 1 and outer.cost.prompt_tokens == context.cost.prompt_tokens


def test_carrying_records_in_the_tallies_open_when_it_was_made() -> None:
    llm = CountingLLM(FunctionLLM(lambda messages, json_mode: "ok"), TokenCounter())
    with measure() as tally:
        call = carrying(lambda: llm.complete([ChatMessage(role="user", content="hello there")]))
    with measure() as later:  # opened after: not this call's
        thread = threading.Thread(target=call)
        thread.start()
        thread.join()
    assert tally.cost.llm_calls == 1 and later.cost.llm_calls == 0


def test_a_query_embedding_that_never_ends_is_not_waited_for_forever(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = ThreadEmbedder()
    memory = _filled(make_memory, embedder)
    monkeypatch.setattr(retrieval, "WAIT_S", 0.2)
    embedder.release = threading.Event()
    try:
        with pytest.raises(EmbeddingError, match="not embedded within"):
            memory.retrieve_memory("mountain trail")
    finally:
        embedder.release.set()
    embedder.release = None
    assert memory.retrieve_memory("mountain trail").units


def test_close_leaves_no_recall_thread(make_memory: Callable[..., MemoryOS]) -> None:
    before = set(threading.enumerate())
    memory = _filled(make_memory, ThreadEmbedder())
    for query in ("mountain trail", "pasta", "python"):
        memory.retrieve_memory(query)
    started = [t for t in set(threading.enumerate()) - before if t.name.startswith("memoryos-recall")]
    assert started
    memory.close()
    assert not any(t.is_alive() for t in started)


def test_the_pool_only_embeds_and_searches_the_reads_run_in_the_calling_thread(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On two cores a third busy thread slowed the query's embedding: the newest pages and the profile
    are read by the caller once it has scored the words, while the pool embeds and searches."""
    embedder = ThreadEmbedder()
    memory = _filled(make_memory, embedder)
    store, read, readers = memory.store, memory.store.get, []

    def recorded(kind: str, **kwargs: object) -> object:
        readers.append((kind, threading.current_thread().name))
        return read(kind, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(store, "get", recorded)
    context = memory.retrieve_memory("mountain trail", update_heat=False)
    assert len(context.short_term) == 3 and context.units
    assert readers and all(name == threading.current_thread().name for _, name in readers)
    assert {"pages"} <= {kind for kind, _ in readers}


def test_when_the_search_is_back_first_the_newest_pages_are_read_with_the_pages_kept(
    make_memory: Callable[..., MemoryOS], monkeypatch: pytest.MonkeyPatch
) -> None:
    embedder = ThreadEmbedder()
    memory = _filled(make_memory, embedder)
    store = memory._retriever.store
    get, lexical, submit = store.get, retrieval.Retriever._lexical, retrieval.Retriever._submit
    profiled = threading.Event()
    searches: list[Future[object]] = []
    reads: list[tuple[str, tuple[str, ...]]] = []

    def kept(self: retrieval.Retriever, call: Callable[[], object]) -> Future[object]:
        searches.append(submit(self, call))
        return searches[-1]

    def counted_get(kind: str, **kwargs: object) -> object:
        reads.append((kind, tuple(kwargs.get("ids") or ())))  # type: ignore[arg-type]
        if kind == "state":  # the profile, read after the newest pages: the query may be embedded now
            profiled.set()
        return get(kind, **kwargs)  # type: ignore[arg-type]

    def score(index: object, terms: list[str]) -> object:
        if embedder.release is None:
            wait([searches[-1]], timeout=30)  # the search is back before the words are scored
        return lexical(index, terms)  # type: ignore[arg-type]

    monkeypatch.setattr(retrieval.Retriever, "_submit", kept)
    monkeypatch.setattr(store, "get", counted_get)
    monkeypatch.setattr(retrieval.Retriever, "_lexical", staticmethod(score))
    embedder.release = profiled  # first the words (and the newest pages), then the search
    later = memory.retrieve_memory("mountain trail boots", update_heat=False)
    embedder.release = None
    late_reads = [ids for kind, ids in reads if kind == "pages" and ids]
    reads.clear()
    first = memory.retrieve_memory("mountain trail boots", update_heat=False)
    first_reads = [ids for kind, ids in reads if kind == "pages" and ids]
    assert len(first_reads) == len(late_reads) - 1  # the newest pages were read with the best
    newest = {p.id for p in later.short_term}
    assert set(late_reads[0]) == newest and newest <= set(first_reads[0])
    assert repr(first.short_term) == repr(later.short_term) and len(first.short_term) == 3
    assert repr(first.units) == repr(later.units)
