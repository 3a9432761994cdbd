"""The Embedder protocol: texts in, unit-length vectors out, in batches; its optional query side; and the
optional wordpieces (each token's contextual vector) of the same pass."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of length ``dim``.

    ``name`` identifies the model; the store records it so a collection is never
    queried with vectors from another model. Both are read-only: a plain attribute or a
    property satisfies them. An embedder whose vectors also depend on something else (LocalEmbedder's
    precision) may have a ``vector_space`` string, which the store records instead (see
    :func:`vector_space`).
    """

    @property
    def name(self) -> str:
        """The model's name, recorded by the store beside the vectors."""
        ...

    @property
    def dim(self) -> int:
        """The length of every vector ``embed`` returns (reading it may load the model)."""
        ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order."""
        ...


@runtime_checkable
class QueryEmbedder(Embedder, Protocol):
    """An embedder that embeds search queries apart from what is stored (optional: ``embed`` suffices).

    Models trained with a query prompt (E5's ``"query: "``, EmbeddingGemma's ``"task: search result |
    query: "``) give better recall when the query side gets its prompt and the stored side gets its own.
    ``embed`` is the stored side (pages, segments, knowledge); ``embed_queries`` the query side.
    """

    def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per search query, in order, comparable with ``embed``'s."""
        ...


def warm_up(embedder: Embedder) -> None:
    """Load ``embedder``'s model now if it has a ``warm_up`` method (LocalEmbedder does); else nothing.

    The engine calls it in a thread while the store opens, so a fresh process's first add or recall
    does not load the model and open Chroma one after the other. Looked up by name, as ``embed_queries``.
    """
    method = getattr(embedder, "warm_up", None)
    if callable(method):
        method()


def vector_space(embedder: Embedder) -> str:
    """What the store records of ``embedder``'s vectors: its ``vector_space`` if it has one (LocalEmbedder:
    the model's name plus its precision), else its ``name``."""
    space = getattr(embedder, "vector_space", None)
    return space if isinstance(space, str) else embedder.name


def embed_queries(embedder: Embedder, texts: Sequence[str]) -> list[list[float]]:
    """The query vectors of ``texts``: ``embedder.embed_queries`` if it has one, else ``embedder.embed``.

    Looked up by name rather than with ``isinstance(embedder, QueryEmbedder)``, which would read ``dim``
    (loading a model, or sending a request for an OpenAI one) just to check the attribute is there.
    """
    method = getattr(embedder, "embed_queries", None)
    if callable(method):
        vectors: list[list[float]] = method(texts)
        return vectors
    return embedder.embed(texts)


@dataclass(frozen=True)
class Wordpieces:
    """A text's wordpieces as the encoder read them, in context ([CLS], [SEP] and padding left out).

    What a late-interaction (BERTScore-style) rerank compares: each wordpiece's vector depends on the words
    around it. A text cut at the model's token limit has only the wordpieces the encoder saw.
    """

    ids: np.ndarray
    """int32 (n,): vocabulary ids."""
    tokens: tuple[str, ...]
    """The tokenizer's strings ("##" marks a continuation)."""
    offsets: np.ndarray
    """int32 (n, 2): each one's character span (start, end) in the text."""
    vectors: np.ndarray
    """float32 (n, dim): the encoder's last hidden state, as computed (not normalised)."""


def embed_wordpieces(
    embedder: Embedder, texts: Sequence[str], *, query: bool = False
) -> tuple[list[list[float]], list[Wordpieces]] | None:
    """The vectors of ``texts`` and their wordpieces from one encoder pass: ``embedder.embed_wordpieces``
    if it has one (LocalEmbedder), else None (the caller goes without).

    The vectors are what ``embed`` (``query=False``) or :func:`embed_queries` (``query=True``) return.
    Looked up by name, as ``embed_queries``.
    """
    method = getattr(embedder, "embed_wordpieces", None)
    if callable(method):
        result: tuple[list[list[float]], list[Wordpieces]] = method(texts, query=query)
        return result
    return None
