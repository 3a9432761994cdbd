"""HashingEmbedder: a cheap deterministic embedder for tests and storage benchmarks."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from memoryos_core.policy.text import content_words, words


class HashingEmbedder:
    """Hashes lower-cased content words (``hashlib``, stable across processes) into signed buckets.

    Function words ("I", "the", "user") are left out when a text has other words, so
    similarity follows what a text is about.

    Texts sharing words land close together, so grouping can be tested offline; it knows
    nothing of meaning (synonyms are unrelated).
    """

    def __init__(self, dim: int = 64) -> None:
        if dim < 2:
            raise ValueError("dim must be >= 2")
        self._dim = dim
        self.name = f"hashing-{dim}"

    @property
    def dim(self) -> int:
        """The vector length given at construction."""
        return self._dim

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text, in order.

        Raises:
            TypeError: an item is not a string.
        """
        out: list[list[float]] = []
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"HashingEmbedder.embed takes str, not {type(text).__name__}")
            vector = np.zeros(self.dim, dtype=np.float32)
            for word in content_words(text) or words(text) or ["\x00empty"]:
                digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self.dim
                vector[bucket] += 1.0 if digest[4] & 1 else -1.0
            norm = float(np.linalg.norm(vector))
            if norm == 0.0:
                vector[0], norm = 1.0, 1.0
            out.append((vector / norm).tolist())
        return out
