"""SentenceTransformerEmbedder: a sentence-transformers model on torch (optional extra).

LocalEmbedder gives the same all-MiniLM-L6-v2 vectors without torch; use this one for other models or a GPU.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from memoryos_core._exceptions import EmbeddingError, MissingDependencyError, install_hint
from memoryos_core.embeddings.local import _DEFAULT_NAME, MODEL_PACKAGE, _check_texts, _package_folder

# Loaded models, shared by every embedder in the process: Chroma may rebuild its embedding function often.
_MODELS: dict[tuple[str, str], Any] = {}
_MODELS_LOCK = threading.Lock()


class SentenceTransformerEmbedder:
    """Embeds with ``sentence_transformers.SentenceTransformer``, L2-normalised.

    The model loads at the first ``embed`` call or ``dim`` read and is shared within the process.

    Args:
        model_name_or_path: A model folder or Hugging Face name (names need the network on first use).
            Default: the pinned all-MiniLM-L6-v2 folder that LocalEmbedder uses too.
        device: The torch device, such as ``"cpu"`` or ``"cuda"``.
        batch_size: Texts per forward pass.

    Raises:
        MissingDependencyError: sentence-transformers is not installed, or no model was given and the
            model package (a dependency of memoryos-py) is not installed.
    """

    def __init__(
        self, model_name_or_path: str | Path | None = None, device: str = "cpu", *, batch_size: int = 32
    ) -> None:
        if importlib.util.find_spec("sentence_transformers") is None:
            raise MissingDependencyError("sentence-transformers", hint="pip install sentence-transformers")
        package_folder = _package_folder()
        if model_name_or_path is None:
            if package_folder is None:
                raise MissingDependencyError(MODEL_PACKAGE, hint=install_hint())
            model_name_or_path = package_folder
        self._model_id = str(model_name_or_path)
        is_default = package_folder is not None and Path(self._model_id).resolve() == package_folder
        self.name: str = _DEFAULT_NAME if is_default else Path(self._model_id).name
        self.device = device
        self.batch_size = batch_size
        self._dim: int | None = None

    @property
    def dim(self) -> int:
        """Vector length reported by the model (loads it)."""
        if self._dim is None:
            model = self._model()
            # sentence-transformers 6 renamed get_sentence_embedding_dimension to get_embedding_dimension.
            get_dimension = getattr(model, "get_embedding_dimension", None)
            get_dimension = get_dimension or model.get_sentence_embedding_dimension
            self._dim = int(get_dimension() or len(self.embed([""])[0]))
        return self._dim

    def _model(self) -> Any:
        key = (self._model_id, self.device)
        with _MODELS_LOCK:
            if key not in _MODELS:
                from sentence_transformers import SentenceTransformer

                try:
                    _MODELS[key] = SentenceTransformer(self._model_id, device=self.device)
                except Exception as exc:
                    message = f"cannot load sentence-transformers model {self._model_id!r}: {exc}"
                    raise EmbeddingError(message, backend="sentence-transformers") from exc
            return _MODELS[key]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Return one L2-normalised vector per text, in order.

        Raises:
            TypeError: ``texts`` is a single string or holds a non-string.
            EmbeddingError: The model could not be loaded or failed.
        """
        items = _check_texts(texts)
        if not items:
            return []
        model = self._model()
        try:
            vectors = model.encode(
                items,
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        except Exception as exc:
            raise EmbeddingError(
                f"sentence-transformers failed: {exc}", backend="sentence-transformers"
            ) from exc
        rows: list[list[float]] = np.asarray(vectors, dtype=np.float32).tolist()
        return rows
