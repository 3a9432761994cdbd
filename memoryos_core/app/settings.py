"""Settings shared by the CLI and the MCP server: flags, then a JSON config file, then environment variables.

The JSON keys are the reference implementation's (``user_id``, ``openai_api_key``, ``data_storage_path``,
``short_term_capacity``, ...) plus ``chroma_url``; an unknown key is a :class:`ConfigError`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from memoryos_core._exceptions import ConfigError

logger = logging.getLogger("memoryos")

CONFIG_ENV = "MEMORYOS_CONFIG"
"""Environment variable naming a JSON config file, used when no ``--config`` flag is given."""

ENVIRONMENT = {
    "user_id": "MEMORYOS_USER_ID",
    "assistant_id": "MEMORYOS_ASSISTANT_ID",
    "openai_api_key": "OPENAI_API_KEY",
    "openai_base_url": "OPENAI_BASE_URL",
    "llm_model": "MEMORYOS_LLM_MODEL",
    "data_storage_path": "MEMORYOS_DATA",
    "chroma_url": "MEMORYOS_CHROMA_URL",
    "embedding_model_name": "MEMORYOS_EMBEDDING",
    "short_term_capacity": "MEMORYOS_SHORT_TERM_CAPACITY",
    "mid_term_capacity": "MEMORYOS_MID_TERM_CAPACITY",
    "long_term_knowledge_capacity": "MEMORYOS_LONG_TERM_KNOWLEDGE_CAPACITY",
    "retrieval_queue_capacity": "MEMORYOS_RETRIEVAL_QUEUE_CAPACITY",
    "mid_term_heat_threshold": "MEMORYOS_MID_TERM_HEAT_THRESHOLD",
    "mid_term_similarity_threshold": "MEMORYOS_MID_TERM_SIMILARITY_THRESHOLD",
}
"""The environment variable read for each setting."""

IGNORED_KEYS = frozenset({"embedding_model_kwargs"})
"""Reference keys accepted in a config file but without effect here (a warning is logged)."""


@dataclass(frozen=True)
class Settings:
    """Everything needed to open a MemoryOS from the command line or the MCP server."""

    user_id: str = "default_user"
    assistant_id: str = "default_assistant"
    openai_api_key: str | None = None
    openai_base_url: str | None = None
    llm_model: str = "gpt-4o-mini"
    data_storage_path: str | None = None
    chroma_url: str | None = None
    embedding_model_name: str | None = None
    short_term_capacity: int | None = None
    mid_term_capacity: int | None = None
    long_term_knowledge_capacity: int | None = None
    retrieval_queue_capacity: int | None = None
    mid_term_heat_threshold: float | None = None
    mid_term_similarity_threshold: float | None = None

    @property
    def has_llm(self) -> bool:
        """Whether an LLM is configured (an API key is set)."""
        return bool(self.openai_api_key)

    def open_memory(self, **kwargs: Any) -> Any:
        """A :class:`MemoryOS` built from these settings; ``kwargs`` (``background=``, ...) are passed on."""
        from memoryos_core.engine.memory import MemoryOS

        return MemoryOS(**asdict(self), **kwargs)

    def describe(self) -> str:
        """One line naming the store, the embedder and the LLM, never the API key."""
        store = self.chroma_url or str(Path(self.data_storage_path or "./memoryos_data").resolve())
        llm = f"{self.llm_model} at {self.openai_base_url or 'OpenAI'}" if self.has_llm else "none (offline)"
        return f"store: {store}; embedder: {self.embedding_model_name or 'all-MiniLM-L6-v2'}; LLM: {llm}"


_KEYS = tuple(f.name for f in fields(Settings))
_INT_KEYS = frozenset(
    {"short_term_capacity", "mid_term_capacity", "long_term_knowledge_capacity", "retrieval_queue_capacity"}
)
_FLOAT_KEYS = frozenset({"mid_term_heat_threshold", "mid_term_similarity_threshold"})


def _coerce(key: str, value: Any, origin: str) -> Any:
    """``value`` converted to the type of setting ``key``; strings (from the environment) are parsed."""
    if value is None:
        return None
    if key in _INT_KEYS:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{origin}: {key} must be an integer, got {value!r}")
        return value
    if key in _FLOAT_KEYS:
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = float(value)
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"{origin}: {key} must be a number, got {value!r}")
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{origin}: {key} must be a non-empty string, got {value!r}")
    if key == "embedding_model_name":
        from memoryos_core.engine.registry import check_embedding_name

        try:  # refused here, before any store is opened or model looked for
            check_embedding_name(value.strip())
        except ConfigError as exc:
            raise ConfigError(f"{origin}: {exc}") from exc
    return value.strip()


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The settings in a JSON config file; a relative ``data_storage_path`` is taken from the file's folder.

    A ``null`` or empty value counts as not given.

    Raises:
        ConfigError: the file cannot be read, is not a JSON object, or has unknown keys or bad values.
    """
    file = Path(path).expanduser()
    origin = f"config file {file}"
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{origin} does not exist") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{origin} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{origin} must hold a JSON object of settings")
    unknown = sorted(set(data) - set(_KEYS) - IGNORED_KEYS)
    if unknown:
        raise ConfigError(
            f"{origin}: unknown key(s) {', '.join(map(repr, unknown))}; known keys: {', '.join(_KEYS)}"
        )
    for key in IGNORED_KEYS & set(data):
        logger.warning("%s: %s is accepted for compatibility and has no effect", origin, key)
    # null or "" (as in the reference's config template) leaves a setting to the environment or its default
    values = {
        key: _coerce(key, value, origin)
        for key, value in data.items()
        if key in _KEYS and value is not None and value != ""
    }
    stored = values.get("data_storage_path")
    if stored and not Path(stored).expanduser().is_absolute():
        values["data_storage_path"] = str(file.parent.resolve() / stored)
    return values


def load_settings(
    flags: Mapping[str, Any] | None = None,
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Resolve the settings: a flag wins over the config file, which wins over the environment.

    Args:
        flags: values given on the command line, by setting name (None means not given).
        config_file: a JSON file with the reference's keys (default: the file named by MEMORYOS_CONFIG).
        environ: the environment (default ``os.environ``).

    Raises:
        ConfigError: an unknown key, a value of the wrong type, or an unreadable config file.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for key, name in ENVIRONMENT.items():
        if env.get(name):
            values[key] = _coerce(key, env[name], f"environment variable {name}")
    path = config_file or env.get(CONFIG_ENV) or None
    if path:
        values.update(read_config_file(path))
    for key, value in (flags or {}).items():
        if key not in _KEYS:
            raise ConfigError(f"unknown setting {key!r}")
        if value is not None:
            values[key] = _coerce(
                key, str(value) if isinstance(value, os.PathLike) else value, f"option {key}"
            )
    if values.get("data_storage_path"):
        values["data_storage_path"] = str(Path(values["data_storage_path"]).expanduser())
    return replace(Settings(), **values)
