"""The Embedder protocol: texts in, unit-length vectors out, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of length ``dim``.

    ``name`` identifies the model; the store records it so a collection is never
    queried with vectors from another model. Both are read-only: a plain attribute or a
    property satisfies them.
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
