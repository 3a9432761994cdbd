"""OpenAIEmbedder: the OpenAI embeddings API, or any server compatible with it (``base_url``)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from memoryos_core._exceptions import ConfigError, EmbeddingError, MissingDependencyError
from memoryos_core._network import check_outbound
from memoryos_core.embeddings.local import _check_texts


class OpenAIEmbedder:
    """Embeds with ``client.embeddings.create``, in batches, L2-normalised.

    Args:
        model: The embedding model's name.
        api_key: Defaults to the ``OPENAI_API_KEY`` environment variable.
        base_url: An OpenAI-compatible endpoint, such as ``http://127.0.0.1:8000/v1``.
        dim: Expected vector length. Without it, ``dim`` comes from the first reply (reading ``dim`` before
            any ``embed`` sends one short request). With it, ``text-embedding-3-*`` models are asked for
            that many dimensions, and replies of another length raise EmbeddingError.
        batch_size: Texts per request.
        max_retries: Retries of the openai client on connection errors, 429 and 5xx.
        timeout: Seconds per request.

    Raises:
        ConfigError: No API key, or an argument out of range.
    """

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        api_key: str | None = None,
        base_url: str | None = None,
        dim: int | None = None,
        batch_size: int = 256,
        *,
        max_retries: int = 2,
        timeout: float = 60.0,
    ) -> None:
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key:
            raise ConfigError(
                "OpenAIEmbedder needs an API key: pass api_key= or set OPENAI_API_KEY "
                "(servers that ignore keys accept any string)"
            )
        if batch_size < 1 or (dim is not None and dim < 1):
            raise ConfigError(f"batch_size and dim must be at least 1, got {batch_size} and {dim}")
        self.name: str = model
        self.model = model
        self.batch_size = batch_size
        self._api_key = api_key
        self._base_url = base_url
        self._max_retries = max_retries
        self._timeout = timeout
        self._requested_dim = dim
        self._dim = dim
        self._client: Any = None
        self._client_lock = threading.Lock()

    def __repr__(self) -> str:  # keeps the key out of logs and tracebacks
        return f"OpenAIEmbedder(model={self.model!r}, base_url={self._base_url!r}, dim={self._dim!r})"

    @property
    def dim(self) -> int:
        """Vector length: the ``dim`` argument, else the length of the first reply's vectors."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def _get_client(self) -> Any:
        with self._client_lock:
            if self._client is None:
                try:
                    import openai
                except ImportError as exc:
                    raise MissingDependencyError("openai") from exc
                self._client = openai.OpenAI(
                    api_key=self._api_key,
                    base_url=self._base_url,
                    max_retries=self._max_retries,
                    timeout=self._timeout,
                )
            return self._client

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order, sending ``batch_size`` texts per request.

        Raises:
            TypeError: ``texts`` is a single string or holds a non-string.
            EmbeddingError: The request failed, or the reply has the wrong number or length of vectors.
        """
        items = _check_texts(texts)
        if not items:
            return []
        client = self._get_client()
        check_outbound(str(client.base_url))  # the client's URL also honours OPENAI_BASE_URL
        vectors: list[list[float]] = []
        for start in range(0, len(items), self.batch_size):
            vectors.extend(self._embed_batch(client, items[start : start + self.batch_size]))
        return vectors

    def _embed_batch(self, client: Any, batch: list[str]) -> list[list[float]]:
        import openai

        options: dict[str, Any] = {}
        # Only the text-embedding-3 models accept `dimensions`; other servers may reject the field.
        if self._requested_dim is not None and self.model.startswith("text-embedding-3"):
            options["dimensions"] = self._requested_dim
        try:
            # encoding_format="float": the client defaults to base64, which some compatible servers lack.
            reply = client.embeddings.create(
                model=self.model, input=batch, encoding_format="float", **options
            )
        except openai.OpenAIError as exc:
            raise EmbeddingError(f"OpenAI embeddings request failed: {exc}", backend="openai") from exc
        rows = sorted(reply.data, key=lambda row: row.index)
        if len(rows) != len(batch):
            raise EmbeddingError(f"asked for {len(batch)} vectors, got {len(rows)}", backend="openai")
        try:
            matrix = np.asarray([row.embedding for row in rows], dtype=np.float64)
        except (
            TypeError,
            ValueError,
        ) as exc:  # ragged rows, or base64 strings from a server ignoring the format
            raise EmbeddingError(
                f"the reply's vectors are not lists of numbers: {exc}", backend="openai"
            ) from exc
        if matrix.ndim != 2 or (self._dim is not None and matrix.shape[1] != self._dim):
            raise EmbeddingError(
                f"expected vectors of length {self._dim}, got shape {matrix.shape}", backend="openai"
            )
        self._dim = matrix.shape[1]
        matrix /= np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)
        vectors: list[list[float]] = matrix.tolist()
        return vectors
