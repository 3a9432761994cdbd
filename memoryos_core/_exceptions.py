"""Exceptions raised by MemoryOS.

MemoryOSError
├── ConfigError                    developer mistake, raised at construction or on bad arguments
│   └── MissingDependencyError     also an ImportError; the message holds the ``pip install`` line
├── InvalidInputError              also a ValueError; bad ids, texts or metadata (nothing is stored)
├── NotFoundError                  unknown user, page or segment id
├── LLMNotConfiguredError          a step that needs an LLM was asked for with none configured
└── BackendError                   carries ``.backend``; always raised ``from`` the vendor error
    ├── LLMError
    │   └── LLMOutputError         the model replied, but its output could not be parsed
    ├── EmbeddingError
    └── StorageError
        └── DimensionMismatchError
"""

from __future__ import annotations

DISTRIBUTION = "memoryos-py"
"""The name to ``pip install`` (``memoryos`` on the package index is another project); every hint uses it."""


def install_hint(extra: str | None = None) -> str:
    """The ``pip install`` line for this package, with ``extra`` (e.g. ``"mcp"``) if given."""
    return f'pip install "{DISTRIBUTION}[{extra}]"' if extra else f"pip install {DISTRIBUTION}"


class MemoryOSError(Exception):
    """Root of every error raised by MemoryOS."""


class ConfigError(MemoryOSError):
    """The library was configured or called in a way that cannot work."""


class MissingDependencyError(ConfigError, ImportError):
    """An optional package is missing; the message says which extra to install."""

    def __init__(self, package: str, extra: str | None = None, *, hint: str | None = None) -> None:
        install = install_hint(extra) if extra else f"pip install {package}"
        message = f"{package} is required for this feature: {hint or install}"
        super().__init__(message)
        self.package = package
        self.extra = extra


class InvalidInputError(MemoryOSError, ValueError):
    """An argument was rejected before anything was stored."""


class NotFoundError(MemoryOSError, KeyError):
    """No record exists with the given id for this user."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class LLMNotConfiguredError(MemoryOSError):
    """The operation needs an LLM, and none was configured (no key, no ``llm=``)."""


class BackendError(MemoryOSError):
    """A backend (LLM, embedder, storage) failed."""

    def __init__(self, message: str, *, backend: str = "") -> None:
        super().__init__(message)
        self.backend = backend


class LLMError(BackendError):
    """The LLM could not be reached or refused the request (after retries)."""


class LLMOutputError(LLMError):
    """The LLM replied, but the reply could not be parsed into what was asked."""

    def __init__(self, message: str, *, backend: str = "", raw: str = "") -> None:
        super().__init__(message, backend=backend)
        self.raw = raw


class EmbeddingError(BackendError):
    """The embedder failed or returned vectors of the wrong shape."""


class StorageError(BackendError):
    """The store (Chroma) failed; nothing was partially written by the failed call."""


class DimensionMismatchError(StorageError):
    """The store holds vectors of another dimension, model or precision than the embedder produces.

    ``recorded``: the vector space the store recorded (``Embedder.name``, or a ``vector_space`` such as
    ``all-MiniLM-L6-v2@int8``) when only that differs, else None.
    """

    def __init__(self, message: str, *, backend: str = "", recorded: str | None = None) -> None:
        super().__init__(message, backend=backend)
        self.recorded = recorded
