"""Fail early, with the install line, when llama-index-core is not installed."""

from memoryos_core import MissingDependencyError

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:
    raise MissingDependencyError("llama-index-core", "llamaindex") from exc
