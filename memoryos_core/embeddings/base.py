"""The Embedder protocol: texts in, unit-length vectors out, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of length ``dim``.

    ``name`` identifies the model; the store records it so a collection is never
    queried with vectors from another model.
    """

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order."""
        ...
